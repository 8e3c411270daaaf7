"""Tests of morphoflow.segmentation.files and the `morphoflow segment` / `score-segmentation` commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from morphoflow.cli import app
from morphoflow.segmentation.files import (
    base_stem,
    collect_images,
    label_dtype,
    label_file_index,
    load_channel,
    pair_label_files,
    read_labels,
    unique_stems,
    write_labels,
)
from morphoflow.simulate import render_site

COLUMNS = [
    "ObjectNumber",
    "Nuclei_Location_Center_X",
    "Nuclei_Location_Center_Y",
    "Nuclei_AreaShape_Area",
    "Nuclei_TTA_Agreement",
]
THRESHOLD_KEYS = [f"{0.5 + 0.05 * i:.2f}" for i in range(10)]


@pytest.fixture(scope="module")
def site() -> tuple[np.ndarray, np.ndarray]:
    """A simulated 5-channel site (uint16) and its truth labels."""
    return render_site(11, size=160, n_cells=12)


@pytest.fixture
def inputs(tmp_path: Path, site: tuple[np.ndarray, np.ndarray]) -> dict[str, Path]:
    image, _ = site
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "siteA.tif", image[0])
    tifffile.imwrite(folder / "siteB.tif", image)  # (C, H, W), DNA first
    return {"dna": folder / "siteA.tif", "stack": folder / "siteB.tif", "folder": folder}


def _run(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def _check_outputs(out: Path, stem: str) -> np.ndarray:
    labels = tifffile.imread(out / f"{stem}_labels.tif")
    assert labels.dtype == np.uint16
    table = pd.read_csv(out / f"{stem}_nuclei.csv")
    assert list(table.columns) == COLUMNS
    assert len(table) == int(labels.max())
    np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))
    return labels


# ----------------------------------------------------------------------------- CLI


def test_segment_and_score_round_trip(
    tmp_path: Path, inputs: dict[str, Path], site: tuple[np.ndarray, np.ndarray]
) -> None:
    _, truth = site
    out = tmp_path / "out"
    result = _run("segment", inputs["dna"], "--out", out, "--no-tta")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["views"] == 1
    labels = _check_outputs(out, "siteA")
    assert report["images"] == [{"image": str(inputs["dna"]), "nuclei": int(labels.max())}]
    assert table_agreement(out / "siteA_nuclei.csv") == {1.0}

    truth_dir = tmp_path / "truth"
    write_labels(truth_dir / "siteA_labels.tif", truth)
    result = _run("score-segmentation", "--pred", out, "--truth", truth_dir)
    assert result.exit_code == 0, result.output
    score = json.loads(result.stdout)
    assert 0.0 < score["dsb_score"] <= 1.0
    assert score["dsb_score"] > 0.8  # measured 0.95 for this site (shipped model, no TTA)
    assert list(score["per_threshold"]) == THRESHOLD_KEYS
    assert score["n_images"] == 1
    assert list(score["images"]) == ["siteA"]
    assert score["per_threshold"]["0.50"] >= score["per_threshold"]["0.95"]


def table_agreement(path: Path) -> set[float]:
    return set(pd.read_csv(path)["Nuclei_TTA_Agreement"].round(6))


def test_segment_with_tta_views(tmp_path: Path, inputs: dict[str, Path]) -> None:
    out = tmp_path / "out"
    result = _run("segment", inputs["dna"], "--out", out, "--tta", "--views", "8")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["views"] == 8
    _check_outputs(out, "siteA")
    agreement = pd.read_csv(out / "siteA_nuclei.csv")["Nuclei_TTA_Agreement"]
    assert agreement.between(0.0, 1.0).all()


def test_segment_multichannel_with_channel(tmp_path: Path, inputs: dict[str, Path]) -> None:
    out = tmp_path / "out"
    result = _run(
        "segment", inputs["stack"], inputs["dna"], "--out", out, "--no-tta", "--channel", "0"
    )
    assert result.exit_code == 0, result.output
    from_stack = _check_outputs(out, "siteB")
    from_dna = _check_outputs(out, "siteA")
    # channel 0 of the stack is the DNA image: same labels
    np.testing.assert_array_equal(from_stack, from_dna)


def test_segment_multichannel_without_channel_fails(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    result = _run("segment", inputs["stack"], "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "siteB.tif" in result.stderr and "--channel" in result.stderr
    assert not (tmp_path / "out" / "siteB_labels.tif").exists()


def test_segment_a_folder(tmp_path: Path, inputs: dict[str, Path]) -> None:
    # a folder holding a multi-channel image and a 2-D one: --channel 0 works for both
    result = _run(
        "segment", inputs["folder"], "--out", tmp_path / "out", "--no-tta", "--channel", "0"
    )
    assert result.exit_code == 0, result.output
    names = [Path(i["image"]).name for i in json.loads(result.stdout)["images"]]
    assert names == ["siteA.tif", "siteB.tif"]


def test_segment_missing_image_fails(tmp_path: Path) -> None:
    result = _run("segment", tmp_path / "nothing.tif", "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert "nothing.tif" in result.stderr


def test_score_truth_without_prediction_fails(
    tmp_path: Path, site: tuple[np.ndarray, np.ndarray]
) -> None:
    _, truth = site
    pred, truth_dir = tmp_path / "pred", tmp_path / "truth"
    write_labels(pred / "siteA_labels.tif", truth)
    write_labels(truth_dir / "siteA_labels.tif", truth)
    write_labels(truth_dir / "siteC_nuclei_truth.tif", truth)
    write_labels(pred / "siteD_seg.tif", truth)  # a name that pairs with nothing
    result = _run("score-segmentation", "--pred", pred, "--truth", truth_dir)
    assert result.exit_code == 2
    assert "siteC_nuclei_truth.tif" in result.stderr
    assert "predictions without truth: siteD_seg.tif" in result.stderr
    assert "dropping one of _labels" in result.stderr


def test_score_perfect_prediction_is_one(
    tmp_path: Path, site: tuple[np.ndarray, np.ndarray]
) -> None:
    _, truth = site
    write_labels(tmp_path / "pred" / "x_labels.tif", truth)
    write_labels(tmp_path / "truth" / "x_masks.tif", truth)
    result = _run("score-segmentation", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dsb_score"] == 1.0


def test_score_67600_nuclei_is_one_in_bounded_memory(tmp_path: Path) -> None:
    # Issue 12, item 2: score-segmentation used to allocate a dense 67,600 x 67,600 IoU table
    # (34 GiB). 1300 x 1300 image, one 4 x 4 nucleus per 5 x 5 cell.
    import tracemalloc

    yy, xx = np.mgrid[:1300, :1300]
    truth = ((yy // 5) * 260 + xx // 5 + 1).astype(np.uint32)
    truth[(yy % 5 == 4) | (xx % 5 == 4)] = 0
    write_labels(tmp_path / "truth" / "big_masks.tif", truth)
    write_labels(tmp_path / "pred" / "big_labels.tif", truth)
    del yy, xx
    tracemalloc.start()
    try:
        result = _run(
            "score-segmentation", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth"
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["dsb_score"] == 1.0
    assert peak < 300 * 2**20, f"peak {peak / 2**20:.0f} MiB"  # dense table: 34 GiB


# ----------------------------------------------------------------------------- files


@pytest.mark.parametrize(
    ("name", "stem"),
    [
        ("A01_s1_labels.tif", "A01_s1"),
        ("A01_s1.tif", "A01_s1"),
        ("A01_s1_nuclei_truth.tiff", "A01_s1"),
        ("x_masks.png", "x"),
        ("x_mask.png", "x"),
        ("x_truth.TIF", "x"),
        ("x_cp_masks.png", "x"),  # Cellpose's output
        ("x_label.tif", "x"),
        ("a_mask_labels.tif", "a_mask"),  # one suffix stripped
        ("a_labels_b.tif", "a_labels_b"),  # only at the end
        ("plain", "plain"),
    ],
)
def test_base_stem(name: str, stem: str) -> None:
    assert base_stem(Path("some/dir") / name) == stem


def _labels(tmp: Path, *names: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_labels(tmp / name, np.eye(4, dtype=np.uint16))
    return tmp


def test_pair_label_files(tmp_path: Path) -> None:
    pred = _labels(tmp_path / "pred", "b_labels.tif", "a_labels.tif", "extra_labels.tif")
    (pred / "a_nuclei.csv").write_text("ignored\n")
    truth = _labels(tmp_path / "truth", "b_nuclei_truth.tif", "a.tif")
    pairs = pair_label_files(pred, truth)
    assert pairs == [
        ("a", pred / "a_labels.tif", truth / "a.tif"),
        ("b", pred / "b_labels.tif", truth / "b_nuclei_truth.tif"),
    ]  # sorted by stem; predictions without truth are ignored


def test_pair_label_files_errors(tmp_path: Path) -> None:
    pred = _labels(tmp_path / "pred", "a_labels.tif")
    truth = _labels(tmp_path / "truth", "a_truth.tif", "z_truth.tif")
    with pytest.raises(FileNotFoundError, match="z_truth.tif"):
        pair_label_files(pred, truth)
    with pytest.raises(FileNotFoundError, match="folder not found"):
        pair_label_files(tmp_path / "missing", truth)
    with pytest.raises(FileNotFoundError, match="a_labels.tif is a file: --pred and --truth"):
        pair_label_files(pred / "a_labels.tif", truth)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no label images"):
        pair_label_files(pred, tmp_path / "empty")


def test_label_dtype() -> None:
    assert label_dtype(np.zeros((3, 3), np.int64)) == np.uint16
    assert label_dtype(np.array([[0, 65534]])) == np.uint16
    assert label_dtype(np.array([[0, 65535]])) == np.uint32
    assert label_dtype(np.array([[0, 70000]], np.uint32)) == np.uint32


def test_write_and_read_labels_keep_values(tmp_path: Path) -> None:
    big = np.array([[0, 1], [70000, 3]], np.uint32)
    write_labels(tmp_path / "big.tif", big)
    assert tifffile.imread(tmp_path / "big.tif").dtype == np.uint32
    np.testing.assert_array_equal(read_labels(tmp_path / "big.tif"), big)
    small = np.array([[0, 2], [1, 0]], np.int64)
    write_labels(tmp_path / "small.tif", small)
    assert tifffile.imread(tmp_path / "small.tif").dtype == np.uint16
    np.testing.assert_array_equal(read_labels(tmp_path / "small.tif"), small)


def test_read_labels_rejects_non_label_images(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "f.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="must hold integers"):
        read_labels(tmp_path / "f.tif")
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((2, 4, 4), np.uint16))
    with pytest.raises(ValueError, match="must be 2-D"):
        read_labels(tmp_path / "s.tif")


def test_collect_images(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("b.tif", "a.png", "c.TIFF", "a_labels.tif", "notes.txt"):
        (folder / name).write_bytes(b"")
    single = tmp_path / "single.tif"
    single.write_bytes(b"")
    found = collect_images([folder, single])
    assert [p.name for p in found] == ["a.png", "b.tif", "c.TIFF", "single.tif"]
    with pytest.raises(FileNotFoundError, match="image not found"):
        collect_images([tmp_path / "missing.tif"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .tif/.tiff/.png image"):
        collect_images([tmp_path / "empty"])


def test_unique_stems_refuses_colliding_outputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="x_labels.tif"):
        unique_stems([tmp_path / "a" / "x.tif", tmp_path / "b" / "x.png"])


def test_load_channel(tmp_path: Path) -> None:
    plane = np.arange(48, dtype=np.uint16).reshape(6, 8)  # (5, 5, 6) stacks are ambiguous
    tifffile.imwrite(tmp_path / "plane.tif", plane)
    np.testing.assert_array_equal(load_channel(tmp_path / "plane.tif", None), plane)
    np.testing.assert_array_equal(load_channel(tmp_path / "plane.tif", 0), plane)
    with pytest.raises(ValueError, match="single channel"):
        load_channel(tmp_path / "plane.tif", 1)

    stack = np.stack([plane + 100 * c for c in range(5)])  # (C, H, W)
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    np.testing.assert_array_equal(load_channel(tmp_path / "stack.tif", 2), stack[2])
    with pytest.raises(ValueError, match="stack.tif has 5 channels"):
        load_channel(tmp_path / "stack.tif", None)
    with pytest.raises(ValueError, match="out of range"):
        load_channel(tmp_path / "stack.tif", 5)

    rgb = np.stack([plane + 100 * c for c in range(3)], axis=-1).astype(np.uint8)  # (H, W, 3)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    np.testing.assert_array_equal(load_channel(tmp_path / "rgb.tif", 1), rgb[..., 1])


def test_segment_channels_last_site_gives_the_channels_first_labels(
    tmp_path: Path, site: tuple[np.ndarray, np.ndarray]
) -> None:
    # Issue 12, item 1: a (H, W, 5) site stored channels last (tifffile axes YXS) used to be
    # read as (C, H, W) = (H, W, 5) and gave labels of shape (W, 5).
    image, _ = site
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "first.tif", image)  # (5, H, W)
    tifffile.imwrite(
        folder / "last.tif",
        np.moveaxis(image, 0, -1),
        photometric="minisblack",
        planarconfig="contig",
    )
    with tifffile.TiffFile(folder / "last.tif") as tif:
        assert tif.series[0].axes == "YXS"
    out = tmp_path / "out"
    result = _run("segment", folder, "--out", out, "--no-tta", "--channel", "0")
    assert result.exit_code == 0, result.output
    first, last = _check_outputs(out, "first"), _check_outputs(out, "last")
    assert last.shape == image.shape[1:]
    assert first.max() > 0
    np.testing.assert_array_equal(last, first)


def test_segment_nan_pixels_error_names_the_file(tmp_path: Path) -> None:
    image = np.full((48, 48), 100.0, np.float32)
    image[3, 4] = np.nan
    tifffile.imwrite(tmp_path / "holes.tif", image)
    result = _run("segment", tmp_path / "holes.tif", "--out", tmp_path / "out", "--no-tta")
    assert result.exit_code == 2
    assert "holes.tif" in result.stderr and "NaN" in result.stderr
    assert not (tmp_path / "out" / "holes_labels.tif").exists()


def test_ambiguous_stack_error_names_the_file_and_shape(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cube.tif", np.zeros((6, 40, 6), np.uint16), metadata=None)
    result = _run("segment", tmp_path / "cube.tif", "--out", tmp_path / "out", "--channel", "0")
    assert result.exit_code == 2
    assert "cube.tif" in result.stderr and "(6, 40, 6)" in result.stderr


def test_score_shape_mismatch_names_both_files(
    tmp_path: Path, site: tuple[np.ndarray, np.ndarray]
) -> None:
    _, truth = site
    write_labels(tmp_path / "pred" / "x_labels.tif", truth[:-3])
    write_labels(tmp_path / "truth" / "x_masks.tif", truth)
    result = _run("score-segmentation", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth")
    assert result.exit_code == 2
    assert "x_labels.tif has shape" in result.stderr and "x_masks.tif" in result.stderr


def test_read_labels_refuses_intensity_images_and_negative_values(tmp_path: Path) -> None:
    image, truth = render_site(3, size=96, n_cells=6)
    tifffile.imwrite(tmp_path / "dna.tif", image[0])  # uint16 intensities, not labels
    with pytest.raises(ValueError, match=r"dna.tif does not look like a label image"):
        read_labels(tmp_path / "dna.tif")
    tifffile.imwrite(tmp_path / "neg.tif", np.array([[0, -1], [2, 2]], np.int16))
    with pytest.raises(ValueError, match=r"neg.tif holds negative values"):
        read_labels(tmp_path / "neg.tif")
    # a dense field of touching 2 x 2 objects (half of all neighbouring pairs differ) is labels
    yy, xx = np.mgrid[:64, :64]
    dense = ((yy // 2) * 32 + xx // 2 + 1).astype(np.uint16)
    tifffile.imwrite(tmp_path / "dense.tif", dense)
    np.testing.assert_array_equal(read_labels(tmp_path / "dense.tif"), dense)
    write_labels(tmp_path / "truth.tif", truth)
    np.testing.assert_array_equal(read_labels(tmp_path / "truth.tif"), truth)


def test_score_refuses_an_intensity_image_as_prediction(
    tmp_path: Path, site: tuple[np.ndarray, np.ndarray]
) -> None:
    image, truth = site
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "x.tif", image[0])
    write_labels(tmp_path / "truth" / "x_masks.tif", truth)
    result = _run("score-segmentation", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth")
    assert result.exit_code == 2
    assert "x.tif does not look like a label image" in result.stderr


def test_score_lists_predictions_without_truth(
    tmp_path: Path, site: tuple[np.ndarray, np.ndarray]
) -> None:
    _, truth = site
    for name in ("x_labels.tif", "y_labels.tif"):
        write_labels(tmp_path / "pred" / name, truth)
    write_labels(tmp_path / "truth" / "x_masks.tif", truth)
    result = _run("score-segmentation", "--pred", tmp_path / "pred", "--truth", tmp_path / "truth")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["n_images"] == 1 and list(report["images"]) == ["x"]
    assert report["unpaired_predictions"] == ["y_labels.tif"]
    assert "1 prediction(s)" in result.stderr and "y_labels.tif" in result.stderr


def test_segment_refuses_no_tta_with_several_views(tmp_path: Path, inputs: dict[str, Path]) -> None:
    result = _run("segment", inputs["dna"], "--out", tmp_path / "out", "--no-tta", "--views", "8")
    assert result.exit_code == 2
    assert "--no-tta" in result.stderr and "--views 8" in result.stderr
    assert not (tmp_path / "out").exists()
    result = _run("segment", inputs["dna"], "--out", tmp_path / "out", "--no-tta", "--views", "1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["views"] == 1


def test_label_file_index_prefers_masks_and_refuses_ambiguity(tmp_path: Path) -> None:
    folder = _labels(tmp_path / "truth", "t00.tif", "t00_mask.tif", "t01_masks.tif")
    index = label_file_index(folder)
    assert index == {"t00": folder / "t00_mask.tif", "t01": folder / "t01_masks.tif"}
    _labels(folder, "t01_labels.tif")
    with pytest.raises(ValueError, match=r"2 label images for 't01': t01_labels.tif, t01_masks"):
        label_file_index(folder)


def test_score_refuses_a_prediction_scored_against_itself(
    tmp_path: Path, site: tuple[np.ndarray, np.ndarray]
) -> None:
    _, truth = site
    write_labels(tmp_path / "pred" / "x_labels.tif", truth)
    result = _run("score-segmentation", "--pred", tmp_path / "pred", "--truth", tmp_path / "pred")
    assert result.exit_code == 2
    assert "x_labels.tif would be scored against itself" in result.stderr


def test_read_labels_refuses_a_binary_mask_of_several_objects(tmp_path: Path) -> None:
    _, truth = render_site(3, size=96, n_cells=6)
    tifffile.imwrite(tmp_path / "mask.tif", np.where(truth > 0, 255, 0).astype(np.uint8))
    with pytest.raises(ValueError, match=r"mask.tif looks like a binary mask.*one value \(255\)"):
        read_labels(tmp_path / "mask.tif")
    two_parts = np.zeros((20, 20), np.uint16)
    two_parts[2:5, 2:5] = two_parts[10:14, 10:14] = 7  # one object in two parts: accepted
    write_labels(tmp_path / "two.tif", two_parts)
    np.testing.assert_array_equal(read_labels(tmp_path / "two.tif"), two_parts)


def test_labels_beyond_uint32_are_refused_not_wrapped(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"label 4294967296 does not fit a uint32"):
        write_labels(tmp_path / "big.tif", np.array([[0, 2**32]], np.int64))
    assert not (tmp_path / "big.tif").exists()


def test_output_paths_are_checked_before_any_work(tmp_path: Path, inputs: dict[str, Path]) -> None:
    (tmp_path / "afile").write_text("x")
    result = _run("segment", inputs["dna"], "--out", tmp_path / "afile")
    assert result.exit_code == 2 and "--out" in result.stderr and "afile is a file" in result.stderr
    result = _run("segment", inputs["dna"], "--out", tmp_path / "afile" / "sub")
    assert result.exit_code == 2 and "afile is a file, not a folder" in result.stderr
    result = _run("export-rois", tmp_path / "in", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "is a folder, not an image file" in result.stderr


def test_unloadable_models_are_one_clear_error(
    tmp_path: Path, inputs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage, not a protobuf" * 20)
    result = _run(
        "segment", inputs["dna"], "--out", tmp_path / "o", "--model", tmp_path / "bad.onnx"
    )
    assert result.exit_code == 2
    assert "bad.onnx is not a loadable ONNX segmentation model" in result.stderr
    # a registry URI with no registry: refused, and no mlflow.db is created
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        result = _run("segment", inputs["dna"], "--out", "o", "--model", "models:/nope@champion")
    finally:
        mlflow.set_tracking_uri(previous)
    assert result.exit_code == 2
    assert "models:/nope@champion: no MLflow registry at" in result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "o").exists()


def test_option_errors_name_the_flags_and_h_gives_help(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    result = _run(
        "segment", inputs["dna"], "--out", tmp_path / "o", "--min-diameter", "10",
        "--max-diameter", "5",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--max-diameter (5.0) must be >= --min-diameter (10.0)" in result.stderr
    assert not (tmp_path / "o").exists()
    result = _run("segment", "-h")
    assert result.exit_code == 0 and "--min-diameter" in result.stdout


def test_a_failing_image_says_what_was_written_before_it(
    tmp_path: Path, inputs: dict[str, Path]
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", tifffile.imread(inputs["dna"]))
    (folder / "b.tif").write_bytes(tifffile.imread(inputs["dna"]).tobytes()[:100])  # not a TIFF
    (folder / "c.jpg").write_bytes(b"\xff\xd8\xff")
    result = _run("segment", folder, "--out", tmp_path / "o", "--no-tta")
    assert result.exit_code == 2
    assert "warning:" in result.stderr and "c.jpg" in result.stderr and "JPEG" in result.stderr
    assert "b.tif" in result.stderr
    assert "(1 of 2 images were written to" in result.stderr
    assert (tmp_path / "o" / "a_labels.tif").is_file()
    assert not (tmp_path / "o" / "b_labels.tif").exists()


def test_folder_of_outputs_only_and_unreadable_files_are_explained(tmp_path: Path) -> None:
    write_labels(tmp_path / "f" / "site_labels.tif", np.ones((8, 8), np.uint16))
    result = _run("segment", tmp_path / "f", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "no .tif/.tiff/.png image in folder" in result.stderr
    assert "1 *_labels file(s) skipped" in result.stderr
    (tmp_path / "notes.png").write_text("x,y\n1,2\n")
    result = _run("segment", tmp_path / "notes.png", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "cannot read image" in result.stderr and "not a TIFF/PNG file" in result.stderr
    assert "pip install" not in result.stderr  # imageio's install advice is cut
