"""Tests of morphoflow.segmentation.rois and the annotation commands (suggest-contours,
export-rois, import-rois): real ImageJ ROI zips written and read with roifile, real TIFFs."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import roifile
import tifffile
from scipy import ndimage as ndi
from typer.testing import CliRunner

from morphoflow.cli import app
from morphoflow.segmentation.files import write_labels
from morphoflow.segmentation.onnx_model import load_predictor
from morphoflow.segmentation.rois import (
    RoiFileError,
    export_roi_set,
    fill_polygon,
    import_roi_set,
    label_outlines,
    read_points,
    read_roi_set,
    rois_to_labels,
    suggest_outlines,
    trace_outline,
)
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.simulate import render_site
from morphoflow.simulate.nuclei import random_nuclei_image


def _run(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


# ----------------------------------------------------------------------------- geometry


def test_trace_outline_hand_made() -> None:
    # an L of 3 pixels: corners clockwise on screen from the first pixel's top-left corner
    mask = np.array([[1, 0], [1, 1]], bool)
    assert trace_outline(mask).tolist() == [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [0, 2]]
    # two pixels touching at a corner are one 8-connected object: one polygon through it
    diagonal = np.array([[1, 0], [0, 1]], bool)
    outline = trace_outline(diagonal)
    assert outline.tolist() == [[0, 0], [1, 0], [1, 1], [2, 1], [2, 2], [1, 2], [1, 1], [0, 1]]
    np.testing.assert_array_equal(fill_polygon(outline, (2, 2)), diagonal)


@pytest.mark.parametrize("seed", range(6))
def test_random_masks_come_back_with_holes_filled(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((24, 24)) < 0.55
    parts, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    for k in range(1, n + 1):
        part = parts == k
        filled = fill_polygon(trace_outline(part), mask.shape)
        np.testing.assert_array_equal(filled, ndi.binary_fill_holes(part))


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_of_simulated_nuclei_is_exact(tmp_path: Path, seed: int) -> None:
    """Simulated nuclei (touching, non-overlapping) -> real .zip -> labels: identical."""
    _, truth = random_nuclei_image(np.random.default_rng(seed), (160, 144))
    truth = np.asarray(truth)
    assert truth.max() > 5
    # the premise: every object simply connected
    for k in range(1, truth.max() + 1):
        obj = truth == k
        assert ndi.label(obj, structure=np.ones((3, 3)))[1] == 1
        assert (ndi.binary_fill_holes(obj) == obj).all()
    path = tmp_path / "set.zip"
    assert export_roi_set(truth, path) == truth.max()
    with zipfile.ZipFile(path) as zf:
        assert len(zf.namelist()) == truth.max()
    rois = roifile.roiread(path)  # read back by roifile itself: what Fiji's ROI Manager gets
    assert {r.roitype for r in rois} == {roifile.ROI_TYPE.TRACED}
    assert [r.name for r in rois] == [f"label_{k}" for k in range(1, truth.max() + 1)]
    back = import_roi_set(path, truth.shape)
    assert back.dtype == np.uint32
    np.testing.assert_array_equal(back, truth)


def test_holes_parts_and_gaps_are_handled_as_documented(tmp_path: Path) -> None:
    lab = np.zeros((20, 20), np.uint16)
    lab[2:9, 2:9] = 3  # a ring: 3 with a hole ...
    lab[4:7, 4:7] = 0
    lab[5, 5] = 7  # ... holding object 7 and two background pixels
    lab[5, 4] = 7
    lab[12:15, 2:5] = 9  # object 9 in two parts
    lab[16:18, 10:13] = 9
    lab[12:16, 14:18] = 12  # labels 1, 2, 4.. unused: kept as they are
    outlines = label_outlines(lab)
    assert [o.name for o in outlines] == [
        "label_3",
        "label_7",
        "label_9_part_1",
        "label_9_part_2",
        "label_12",
    ]
    export_roi_set(lab, tmp_path / "set.zip")
    back = import_roi_set(tmp_path / "set.zip", lab.shape)
    expected = lab.copy()
    expected[4:7, 4:7] = 3  # the hole filled by its object ...
    expected[5, 5] = expected[5, 4] = 7  # ... except where another object lies (smaller wins)
    np.testing.assert_array_equal(back, expected)


def test_fiji_style_rois_are_numbered_in_file_order(tmp_path: Path) -> None:
    rect = roifile.ImagejRoi.frompoints([[2, 2], [6, 2], [6, 5], [2, 5]], name="0003-0004")
    rect.roitype = roifile.ROI_TYPE.RECT
    rect.left, rect.top, rect.right, rect.bottom = 2, 2, 6, 5
    rect.integer_coordinates = None
    rect.subpixel_coordinates = None
    free = roifile.ImagejRoi.frompoints(
        np.array([[10.0, 10.0], [16.0, 10.0], [16.0, 14.0], [10.0, 14.0]]), name="cell"
    )
    inside = roifile.ImagejRoi.frompoints([[3, 3], [5, 3], [5, 4], [3, 4]], name="small")
    roifile.roiwrite(tmp_path / "fiji.zip", [rect, free, inside], mode="w")
    labels = import_roi_set(tmp_path / "fiji.zip", (20, 20))
    expected = np.zeros((20, 20), np.uint32)
    expected[2:5, 2:6] = 1
    expected[10:14, 10:16] = 2
    expected[3:4, 3:5] = 3  # overlaps the rectangle: the smaller ROI wins
    np.testing.assert_array_equal(labels, expected)


def test_bad_roi_sets_name_the_file(tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip")
    with pytest.raises(RoiFileError, match="corrupt.zip"):
        read_roi_set(corrupt)
    not_roi = tmp_path / "text.zip"
    with zipfile.ZipFile(not_roi, "w") as zf:
        zf.writestr("a.roi", b"hello, not an ImageJ ROI")
    with pytest.raises(RoiFileError, match="text.zip"):
        read_roi_set(not_roi)
    line = roifile.ImagejRoi.frompoints([[0, 0], [5, 5]], name="a line")
    line.roitype = roifile.ROI_TYPE.LINE
    roifile.roiwrite(tmp_path / "line.zip", [line], mode="w")
    with pytest.raises(RoiFileError, match=r"line.zip: ROI 'a line' is a LINE ROI, not an area"):
        import_roi_set(tmp_path / "line.zip", (8, 8))
    with pytest.raises(FileNotFoundError, match="missing.zip"):
        read_roi_set(tmp_path / "missing.zip")
    assert rois_to_labels([], (3, 4)).shape == (3, 4)


# ----------------------------------------------------------------------------- CLI: export/import


def test_export_and_import_commands_round_trip(tmp_path: Path) -> None:
    _, truth = random_nuclei_image(np.random.default_rng(4), (96, 128))
    truth = np.asarray(truth).astype(np.int32)  # an int32 label TIFF, as other tools write
    tifffile.imwrite(tmp_path / "site_masks.tif", truth)
    out = tmp_path / "export"
    result = _run("export-rois", tmp_path / "site_masks.tif", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["images"][0]
    assert report["objects"] == report["rois"] == truth.max()
    napari_labels = tifffile.imread(out / "site_labels.tif")  # what napari opens as labels
    assert napari_labels.dtype == np.uint16
    np.testing.assert_array_equal(napari_labels, truth)

    back = tmp_path / "back_labels.tif"
    result = _run("import-rois", out / "site_rois.zip", "--out", back, "--shape", "96x128")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(back), truth)
    result = _run(
        "import-rois", out / "site_rois.zip", "--out", back, "--like", out / "site_labels.tif"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["objects"] == truth.max()


def test_annotation_commands_refuse_bad_input_naming_the_file(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "dna.tif", np.random.default_rng(0).random((16, 16)))
    result = _run("export-rois", tmp_path / "dna.tif", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "dna.tif" in result.stderr and "integers" in result.stderr
    tifffile.imwrite(tmp_path / "neg.tif", np.full((8, 8), -1, np.int16))
    result = _run("export-rois", tmp_path / "neg.tif", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "neg.tif" in result.stderr and "negative" in result.stderr
    (tmp_path / "bad.zip").write_bytes(b"not a zip at all")
    result = _run(
        "import-rois", tmp_path / "bad.zip", "--out", tmp_path / "l.tif", "--shape", "8x8"
    )
    assert result.exit_code == 2 and "bad.zip" in result.stderr
    assert not (tmp_path / "l.tif").exists()
    result = _run("import-rois", tmp_path / "bad.zip", "--out", tmp_path / "l.tif")
    assert result.exit_code == 2 and "--like or --shape" in result.stderr
    write_labels(tmp_path / "a" / "s_labels.tif", np.ones((4, 4), np.uint16))
    write_labels(tmp_path / "b" / "s_masks.tif", np.ones((4, 4), np.uint16))
    result = _run(
        "export-rois", tmp_path / "a" / "s_labels.tif", tmp_path / "b" / "s_masks.tif",
        "--out", tmp_path / "o2",
    )  # fmt: skip
    assert result.exit_code == 2 and "would both write s_rois.zip" in result.stderr
    assert not (tmp_path / "o2").exists()


# ----------------------------------------------------------------------------- suggestions


def test_read_points_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "pts.csv"
    path.write_text("x,z\n1,2\n")
    with pytest.raises(RoiFileError, match=r"pts.csv must have columns x and y.*missing \['y'\]"):
        read_points(path)
    path.write_text("x,y\n1,2\n3,oops\n")
    with pytest.raises(RoiFileError, match=r"pts.csv line 3: y must be a finite number"):
        read_points(path)
    path.write_text("id,x,y\na,1,2\na,3,4\n")
    with pytest.raises(RoiFileError, match=r"pts.csv: duplicate ids \['a'\]"):
        read_points(path)
    path.write_text("x,y\n1.5,2\n3,4\n")
    assert read_points(path)["id"].tolist() == ["1", "2"]
    path.write_text("x,y\n")  # a header and no points
    with pytest.raises(RoiFileError, match=r"pts.csv has no points"):
        read_points(path)


def test_suggest_outlines_on_a_label_image() -> None:
    lab = np.zeros((10, 12), np.uint32)
    lab[2:5, 3:7] = 1
    points = pd.DataFrame(
        {"id": ["a", "b", "c", "d"], "x": [4.9, 0.5, 12.0, 6.99], "y": [3.2, 0.5, 1, 4.99]}
    )
    rows, polygons = suggest_outlines(lab, points)
    assert rows["label"].tolist() == [1, 0, 0, 1]
    assert rows["reason"].tolist()[1].startswith("background")
    assert rows["reason"].tolist()[2].startswith("outside the image")
    assert polygons[1] is None and polygons[2] is None
    assert polygons[0].tolist() == [[3, 2], [7, 2], [7, 5], [3, 5]]
    assert rows["area"].tolist() == [12, 0, 0, 12]


@pytest.fixture(scope="module")
def dna_and_labels() -> tuple[np.ndarray, np.ndarray]:
    image = render_site(11, size=128, n_cells=10)[0][0]  # DNA channel of a simulated site
    labels = segment_nuclei(load_predictor(None), image, views=1).labels
    assert labels.max() > 3
    return image, labels


def test_suggest_contours_command(tmp_path: Path, dna_and_labels) -> None:
    image, labels = dna_and_labels
    tifffile.imwrite(tmp_path / "dna.tif", image)
    centres = ndi.center_of_mass(np.ones_like(labels), labels, [1, 2, 3])
    background = np.argwhere(labels == 0)[0]
    points = pd.DataFrame(
        {
            "id": ["n1", "n2", "n3", "bg", "out"],
            "x": [c[1] + 0.5 for c in centres] + [background[1] + 0.5, 500.0],
            "y": [c[0] + 0.5 for c in centres] + [background[0] + 0.5, 3.0],
        }
    )
    points.to_csv(tmp_path / "points.csv", index=False)
    out = tmp_path / "out"
    result = _run(
        "suggest-contours", tmp_path / "dna.tif", "--points", tmp_path / "points.csv",
        "--out", out, "--views", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) | {"out": None} == {
        "out": None,
        "points": 5,
        "outlines": 3,
        "empty": 2,
    }
    rows = pd.read_csv(out / "dna_suggestions.csv", keep_default_na=False)
    assert rows["id"].tolist() == ["n1", "n2", "n3", "bg", "out"]
    assert rows["label"].tolist()[:3] == [1, 2, 3] and rows["label"].tolist()[3:] == [0, 0]
    assert rows["reason"].tolist()[3].startswith("background")
    assert rows["reason"].tolist()[4].startswith("outside the image")
    # the ROI set holds one outline per found point, named by its id; it fills the object
    rois = roifile.roiread(out / "dna_suggestions.zip")
    assert [r.name for r in rois] == ["n1", "n2", "n3"]
    for k, roi in enumerate(rois, start=1):
        obj = labels == k
        np.testing.assert_array_equal(fill_polygon(roi.coordinates(), labels.shape), obj)
    document = json.loads((out / "dna_suggestions.json").read_text())
    assert document["shape"] == [128, 128]
    assert [p["polygon"] is None for p in document["points"]] == [False] * 3 + [True] * 2
    assert document["points"][0]["polygon"] == rois[0].coordinates().tolist()


def test_suggest_contours_refuses_bad_points(tmp_path: Path, dna_and_labels) -> None:
    tifffile.imwrite(tmp_path / "dna.tif", dna_and_labels[0])
    (tmp_path / "p.csv").write_text("col,row\n1,2\n")
    result = _run(
        "suggest-contours", tmp_path / "dna.tif", "--points", tmp_path / "p.csv",
        "--out", tmp_path / "o",
    )  # fmt: skip
    assert result.exit_code == 2 and "p.csv must have columns x and y" in result.stderr
    assert not (tmp_path / "o").exists()
    # the TTA merge is an option as in `morphoflow segment`, checked by name
    (tmp_path / "p.csv").write_text("x,y\n1,2\n")
    result = _run(
        "suggest-contours", tmp_path / "dna.tif", "--points", tmp_path / "p.csv",
        "--out", tmp_path / "o", "--merge", "median",
    )  # fmt: skip
    assert result.exit_code == 2 and "median" in result.stderr
    assert not (tmp_path / "o").exists()


def test_write_labels_then_export_keeps_uint32(tmp_path: Path) -> None:
    lab = np.zeros((8, 8), np.uint32)
    lab[1:3, 1:3] = 70000  # beyond uint16
    write_labels(tmp_path / "big_labels.tif", lab)
    result = _run("export-rois", tmp_path / "big_labels.tif", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert tifffile.imread(tmp_path / "o" / "big_labels.tif").dtype == np.uint32
    back = import_roi_set(tmp_path / "o" / "big_rois.zip", (8, 8))
    np.testing.assert_array_equal(back, lab)


def test_rois_outside_the_image_are_reported(tmp_path: Path) -> None:
    # ROIs drawn on a 40 x 60 image, imported with a wrong (smaller, swapped) size
    near = roifile.ImagejRoi.frompoints([[2, 2], [8, 2], [8, 6], [2, 6]], name="near")
    far = roifile.ImagejRoi.frompoints([[50, 30], [58, 30], [58, 38], [50, 38]], name="far")
    roifile.roiwrite(tmp_path / "set.zip", [near, far], mode="w")
    with pytest.warns(UserWarning, match=r"1 of 2 ROIs lie outside the 20x20 \(HxW\).*'far'"):
        labels = import_roi_set(tmp_path / "set.zip", (20, 20))
    assert np.unique(labels).tolist() == [0, 1]
    roifile.roiwrite(tmp_path / "far.zip", [far], mode="w")
    with pytest.raises(RoiFileError, match=r"all 1 ROIs lie outside.*x 50\.\.58, y 30\.\.38"):
        import_roi_set(tmp_path / "far.zip", (20, 20))
    # the commands: a warning on stderr, or one clear error and no file
    result = _run(
        "import-rois", tmp_path / "set.zip", "--out", tmp_path / "l.tif", "--shape", "20x20"
    )
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "'far'" in result.stderr
    assert json.loads(result.stdout)["objects"] == 1
    result = _run(
        "import-rois", tmp_path / "far.zip", "--out", tmp_path / "f.tif", "--shape", "20x20"
    )
    assert result.exit_code == 2 and "far.zip" in result.stderr and "outside" in result.stderr
    assert not (tmp_path / "f.tif").exists()
    result = _run(
        "import-rois", tmp_path / "set.zip", "--out", tmp_path / "ok.tif", "--shape", "40x60"
    )
    assert result.exit_code == 0 and "warning" not in result.stderr


def test_export_keeps_huge_label_values_without_huge_memory(tmp_path: Path) -> None:
    labels = np.zeros((12, 12), np.int64)
    labels[2:5, 2:5], labels[7:10, 7:10] = 2_000_000_000, 4_000_000_000
    export_roi_set(labels, tmp_path / "big.zip")  # find_objects over 4e9 slots: MemoryError
    names = sorted(r.name for r in read_roi_set(tmp_path / "big.zip"))
    assert names == ["label_2000000000", "label_4000000000"]
    np.testing.assert_array_equal(import_roi_set(tmp_path / "big.zip", (12, 12)), labels)


def test_roi_labels_outside_uint32_and_empty_sets(tmp_path: Path) -> None:
    square = [[2, 2], [6, 2], [6, 6], [2, 6]]
    roifile.roiwrite(
        tmp_path / "zero.zip", [roifile.ImagejRoi.frompoints(square, name="label_0")], mode="w"
    )
    with pytest.raises(RoiFileError, match=r"zero.zip: ROI 'label_0' names label 0"):
        import_roi_set(tmp_path / "zero.zip", (8, 8))
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass
    with pytest.warns(UserWarning, match="empty.zip holds no ROIs"):
        assert not import_roi_set(tmp_path / "empty.zip", (8, 8)).any()
    # a ROI reaching beyond the edge (HxW swapped) is cut, with a warning
    wide = roifile.ImagejRoi.frompoints([[1, 1], [30, 1], [30, 5], [1, 5]], name="wide")
    roifile.roiwrite(tmp_path / "wide.zip", [wide], mode="w")
    with pytest.warns(UserWarning, match=r"1 of 1 ROIs reach beyond the edges.*cut at the edge"):
        import_roi_set(tmp_path / "wide.zip", (40, 20))


def test_import_rois_output_must_be_a_new_tiff(tmp_path: Path) -> None:
    square = roifile.ImagejRoi.frompoints([[2, 2], [6, 2], [6, 6], [2, 6]], name="a")
    roifile.roiwrite(tmp_path / "set.zip", [square], mode="w")
    tifffile.imwrite(tmp_path / "img.tif", np.ones((8, 8), np.uint16))
    for out, message in (
        (tmp_path / "set.zip", "must end in .tif or .tiff"),
        (tmp_path / "l.png", "must end in .tif or .tiff"),
        (tmp_path / "img.tif", "is the input"),
    ):
        result = _run(
            "import-rois", tmp_path / "set.zip", "--like", tmp_path / "img.tif", "--out", out
        )
        assert result.exit_code == 2 and message in result.stderr, result.output
    assert zipfile.is_zipfile(tmp_path / "set.zip")
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "img.tif"), np.ones((8, 8)))
    result = _run("import-rois", tmp_path, "--shape", "8x8", "--out", tmp_path / "x.tif")
    assert result.exit_code == 2 and "is a folder" in result.stderr


def test_a_point_on_a_filtered_nucleus_says_so(tmp_path: Path, dna_and_labels) -> None:
    image, labels = dna_and_labels
    tifffile.imwrite(tmp_path / "dna.tif", image)
    (r, c), background = ndi.center_of_mass(labels == 1), np.argwhere(labels == 0)[0]
    pd.DataFrame({"x": [c + 0.5, background[1] + 0.5], "y": [r + 0.5, background[0] + 0.5]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    result = _run(
        "suggest-contours", tmp_path / "dna.tif", "--points", tmp_path / "p.csv",
        "--out", tmp_path / "o", "--views", "1", "--min-diameter", "500",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    reasons = pd.read_csv(tmp_path / "o" / "dna_suggestions.csv", keep_default_na=False)["reason"]
    assert reasons[0].startswith("no object kept: the model calls this pixel nucleus")
    assert "--min-diameter" in reasons[0]
    assert reasons[1].startswith("background")


def test_an_id_with_a_slash_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "p.csv").write_text("id,x,y\na,1,2\nb/c,3,4\n")
    with pytest.raises(RoiFileError, match=r"p.csv line 3: id 'b/c' contains /"):
        read_points(tmp_path / "p.csv")


def test_points_in_fiji_forms_are_read(tmp_path: Path) -> None:
    (tmp_path / "semi.csv").write_text("x;y\n10;12\n3.5;4\n")
    (tmp_path / "results.tsv").write_text(" \tX\tY\n1\t10\t12\n")
    (tmp_path / "bom.csv").write_bytes("\ufeffx,y\n1.5,2.5\n".encode())
    assert read_points(tmp_path / "semi.csv")[["x", "y"]].to_numpy().tolist() == [
        [10.0, 12.0],
        [3.5, 4.0],
    ]
    assert read_points(tmp_path / "results.tsv")[["x", "y"]].to_numpy().tolist() == [[10.0, 12.0]]
    assert read_points(tmp_path / "bom.csv")[["x", "y"]].to_numpy().tolist() == [[1.5, 2.5]]


def test_rois_hidden_under_others_are_warned(tmp_path: Path) -> None:
    square = [[2, 2], [6, 2], [6, 6], [2, 6]]
    twice = [roifile.ImagejRoi.frompoints(square, name=n) for n in ("n1", "n2")]
    roifile.roiwrite(tmp_path / "twice.zip", twice, mode="w")  # one nucleus clicked twice
    with pytest.warns(UserWarning, match=r"1 of 2 ROIs leave no pixel.*'n1'"):
        labels = import_roi_set(tmp_path / "twice.zip", (10, 10))
    assert np.unique(labels).tolist() == [0, 2]


def test_import_memory_grows_with_the_rois_not_rois_times_image(tmp_path: Path) -> None:
    # each ROI used to keep a full-image mask: 196 ROIs x 512 x 512 = 49 MiB (2,048 px, 3,136
    # ROIs: 13 GB); filled inside its bounding box, a ROI costs about its own size
    import tracemalloc

    yy, xx = np.mgrid[:512, :512]
    labels = ((yy // 37) * 14 + xx // 37 + 1).astype(np.uint32)
    labels[(yy % 37 >= 31) | (xx % 37 >= 31)] = 0
    assert export_roi_set(labels, tmp_path / "grid.zip") == 196
    tracemalloc.start()
    try:
        back = import_roi_set(tmp_path / "grid.zip", (512, 512))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(back, labels)
    assert peak < 16 * 2**20, f"peak {peak / 2**20:.1f} MiB"
