"""``morphoflow measure`` on real TIFF files: one row per nucleus, refused masks, grown cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from typer.testing import CliRunner

from morphoflow.cli import app
from morphoflow.profiling.cells import segment_cells
from morphoflow.profiling.classical import feature_names, feature_set_id, site_features
from morphoflow.screen.constants import CHANNELS
from morphoflow.simulate.render import render_site


@pytest.fixture(scope="module")
def field(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("field")
    image, nuclei = render_site(5, size=160, n_cells=8)
    cells = segment_cells(image.astype(np.float32), nuclei.astype(np.int32))
    files = {}
    for c, ch in enumerate(CHANNELS):
        files[ch] = folder / f"{ch.lower()}.tif"
        tifffile.imwrite(files[ch], image[c])  # uint16, 12-bit data
    tifffile.imwrite(folder / "nuclei.tif", nuclei.astype(np.uint16))
    tifffile.imwrite(folder / "cells.tif", cells.astype(np.uint16))
    return {
        "dir": folder,
        "image": image,
        "nuclei": nuclei.astype(np.int32),
        "cells": cells,
        "files": files,
    }


def _run(args: list) -> object:
    return CliRunner().invoke(app, ["measure", *[str(a) for a in args]])


def _channel_args(field: dict) -> list[str]:
    return [f"{ch}={path}" for ch, path in field["files"].items()]


def test_measure_with_cells_writes_one_row_per_nucleus(field, tmp_path: Path) -> None:
    out = tmp_path / "features.parquet"
    result = _run(
        [*_channel_args(field), "--nuclei", field["dir"] / "nuclei.tif"]
        + ["--cells", field["dir"] / "cells.tif", "--out", out]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    labels = np.unique(field["nuclei"][field["nuclei"] > 0])
    assert table["ObjectNumber"].tolist() == labels.tolist()
    assert (table["Metadata_FeatureSet"] == feature_set_id("default")).all()
    assert list(table.columns[2:]) == feature_names()
    expected = site_features(field["image"], field["nuclei"], field["cells"])
    np.testing.assert_allclose(table[feature_names()].to_numpy(), expected.to_numpy(), rtol=1e-12)
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_measure_grows_cells_like_the_pipeline_and_saves_them(field, tmp_path: Path) -> None:
    out, cells_out = tmp_path / "f.parquet", tmp_path / "grown" / "cells.tif"
    result = _run(
        [*_channel_args(field), "--nuclei", field["dir"] / "nuclei.tif"]
        + ["--cells-out", cells_out, "--out", out, "--set", "extended"]
    )
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(cells_out), field["cells"])
    table = pd.read_parquet(out)
    assert list(table.columns[2:]) == feature_names("extended")
    assert (table["Metadata_FeatureSet"] == feature_set_id("extended")).all()


def test_two_channels_with_cells_and_custom_names(field, tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    result = _run(
        [f"Hoechst={field['files']['DNA']}", f"Actin={field['files']['AGP']}"]
        + ["--nuclei", field["dir"] / "nuclei.tif", "--cells", field["dir"] / "cells.tif"]
        + ["--out", out]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert "Cells_Correlation_Correlation_Hoechst_Actin" in table.columns
    assert "Nuclei_Intensity_MeanIntensity_Hoechst" in table.columns
    np.testing.assert_allclose(
        table["Nuclei_Intensity_MeanIntensity_Hoechst"],
        site_features(field["image"], field["nuclei"], field["cells"])[
            "Nuclei_Intensity_MeanIntensity_DNA"
        ],
        rtol=1e-12,
    )


def _refused(args: list, *needles: str) -> None:
    result = _run(args)
    assert result.exit_code == 2, result.output
    for needle in needles:
        assert needle in result.output, result.output


def test_mismatched_cells_are_refused_naming_the_mismatch(field, tmp_path: Path) -> None:
    nuclei_file = field["dir"] / "nuclei.tif"
    base = [*_channel_args(field), "--nuclei", nuclei_file, "--out", tmp_path / "f.parquet"]
    cells = field["cells"].copy()
    shifted = np.where(cells > 0, cells + 100, 0).astype(np.uint16)  # other labels
    tifffile.imwrite(tmp_path / "shifted.tif", shifted)
    _refused([*base, "--cells", tmp_path / "shifted.tif"], "shifted.tif", "has no cell for")
    swapped = cells.copy()
    swapped[cells == 1], swapped[cells == 2] = 2, 1
    tifffile.imwrite(tmp_path / "swapped.tif", swapped.astype(np.uint16))
    _refused(
        [*base, "--cells", tmp_path / "swapped.tif"], "swapped.tif", "nucleus 1 lies in cell 2"
    )
    extra = cells.copy()
    extra[:3, :3] = 999
    tifffile.imwrite(tmp_path / "extra.tif", extra.astype(np.uint16))
    _refused([*base, "--cells", tmp_path / "extra.tif"], "without a nucleus", "999")
    assert not (tmp_path / "f.parquet").exists()


def test_bad_arguments_are_single_clear_errors(field, tmp_path: Path) -> None:
    nuclei_file = field["dir"] / "nuclei.tif"
    out = tmp_path / "f.parquet"
    channels = _channel_args(field)
    _refused(["DNA", "--nuclei", nuclei_file, "--out", out], "'DNA' is not NAME=FILE")
    _refused([*channels, "--nuclei", tmp_path / "nope.tif", "--out", out], "nope.tif")
    _refused([channels[0], channels[0], "--nuclei", nuclei_file, "--out", out], "given twice")
    _refused([channels[0], "--nuclei", nuclei_file, "--out", out], "without --cells", "AGP")
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((10, 10), np.uint16))
    _refused([*channels, "--nuclei", small, "--out", out], "--nuclei", "small.tif", "(10, 10)")
    floats = tmp_path / "float.tif"
    tifffile.imwrite(floats, field["nuclei"].astype(np.float32))
    _refused([*channels, "--nuclei", floats, "--out", out], "float.tif", "integer label image")
    _refused([*channels, "--nuclei", nuclei_file, "--out", out, "--set", "full"], "--set", "'full'")
    _refused(
        [*channels, "--nuclei", nuclei_file, "--cells", field["dir"] / "cells.tif"]
        + ["--cells-out", tmp_path / "c.tif", "--out", out],
        "--cells-out",
    )
    assert not out.exists()


def test_outputs_that_are_inputs_or_each_other_are_refused(field, tmp_path: Path) -> None:
    nuclei_file = tmp_path / "nuc.tif"
    nuclei_file.write_bytes((field["dir"] / "nuclei.tif").read_bytes())
    before = nuclei_file.read_bytes()
    channels = _channel_args(field)
    out = tmp_path / "f.parquet"
    _refused(
        [*channels, "--nuclei", nuclei_file, "--cells-out", nuclei_file, "--out", out],
        "--cells-out",
        "--nuclei",
        "overwrite the input",
    )
    dna = field["files"]["DNA"]
    _refused([*channels, "--nuclei", nuclei_file, "--out", dna], "--out", "channel DNA", str(dna))
    link = tmp_path / "link.tif"
    link.symlink_to(nuclei_file)
    _refused([*channels, "--nuclei", nuclei_file, "--cells-out", link, "--out", out], "--nuclei")
    same = tmp_path / "same.tif"
    _refused(
        [*channels, "--nuclei", nuclei_file, "--cells-out", same, "--out", same],
        "--out",
        "--cells-out",
        "same file",
    )
    assert nuclei_file.read_bytes() == before
    assert tifffile.imread(dna).dtype == np.uint16
    assert not out.exists() and not same.exists()


def test_unusable_output_paths_are_refused_before_anything_is_written(
    field, tmp_path: Path
) -> None:
    base = [*_channel_args(field), "--nuclei", field["dir"] / "nuclei.tif"]
    cells_out = tmp_path / "grown.tif"
    folder = tmp_path / "adir.parquet"
    folder.mkdir()
    _refused([*base, "--cells-out", cells_out, "--out", folder], "--out", "is a folder")
    _refused([*base, "--cells-out", cells_out, "--out", tmp_path], "--out", ".parquet")
    a_file = tmp_path / "make.py"
    a_file.write_text("x")
    _refused([*base, "--cells-out", cells_out, "--out", a_file / "x.parquet"], "--out", "is a file")
    _refused(
        [*base, "--cells-out", a_file / "c.tif", "--out", tmp_path / "f.parquet"],
        "--cells-out",
        "is a file",
    )
    _refused([*base, "--cells-out", cells_out, "--out", tmp_path / "out.csv"], "must end in")
    _refused(
        [*base, "--cells-out", tmp_path / "c.png", "--out", tmp_path / "f.parquet"],
        "--cells-out",
        ".tif",
    )
    assert not cells_out.exists() and not (tmp_path / "f.parquet").exists()
    assert a_file.read_text() == "x"


def test_a_failure_after_growing_cells_writes_nothing(field, tmp_path: Path, monkeypatch) -> None:
    from morphoflow.profiling import measure

    def fail(*args, **kwargs):
        raise ValueError("extraction failed")

    monkeypatch.setattr(measure.ClassicalExtractor, "site_features", fail)
    out, cells_out = tmp_path / "f.parquet", tmp_path / "cells.tif"
    with pytest.raises(ValueError, match="extraction failed"):
        measure.measure_files(field["files"], field["dir"] / "nuclei.tif", out, cells_out=cells_out)
    assert not out.exists() and not cells_out.exists()
    assert not list(tmp_path.iterdir())  # no temporary file either


def test_float_images_must_be_finite_and_in_0_1(field, tmp_path: Path) -> None:
    nuclei_file, cells_file = field["dir"] / "nuclei.tif", field["dir"] / "cells.tif"
    dna = tmp_path / "dna_float.tif"
    tifffile.imwrite(dna, (field["image"][0] / 65535).astype(np.float64))
    base = ["--nuclei", nuclei_file, "--cells", cells_file]
    out = tmp_path / "f.parquet"
    result = _run([f"DNA={dna}", f"AGP={field['files']['AGP']}", *base, "--out", out])
    assert result.exit_code == 0, result.output  # float in [0, 1]: used as stored
    ints = tmp_path / "i.parquet"
    _run([f"DNA={field['files']['DNA']}", f"AGP={field['files']['AGP']}", *base, "--out", ints])
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ints))
    raw = tmp_path / "raw.tif"
    tifffile.imwrite(raw, field["image"][0].astype(np.float32))
    _refused(
        [f"DNA={raw}", *base, "--out", tmp_path / "g.parquet"],
        "channel DNA",
        "raw.tif",
        f"[{field['image'][0].min():g}, {field['image'][0].max():g}]",
        "[0, 1]",
    )
    holed = (field["image"][0] / 65535).astype(np.float32)
    holed[field["nuclei"] > 0] = np.nan
    nan_file = tmp_path / "nan.tif"
    tifffile.imwrite(nan_file, holed)
    _refused(
        [f"DNA={nan_file}", *base, "--out", tmp_path / "g.parquet"],
        "channel DNA",
        "nan.tif",
        "non-finite",
    )
    assert not (tmp_path / "g.parquet").exists()


def test_cryptic_inputs_get_errors_that_name_them(field, tmp_path: Path) -> None:
    nuclei_file = field["dir"] / "nuclei.tif"
    out = tmp_path / "f.parquet"
    channels = _channel_args(field)
    big = tmp_path / "big.tif"
    tifffile.imwrite(big, np.where(field["nuclei"] > 0, 2**31, 0).astype(np.uint32))
    _refused([*channels, "--nuclei", big, "--out", out], "--nuclei", "big.tif", "2147483648")
    typo = [c.replace("Mito=", "Mitto=") for c in channels]
    _refused(
        [*typo, "--nuclei", nuclei_file, "--out", out],
        "missing Mito",
        "unknown channel name Mitto (did you mean Mito?)",
    )
    _refused([*channels, "--nuclei", nuclei_file, "--out", out, "--set", "Extended"], "--set")
    spaced = [f"DNA DAPI={field['files']['DNA']}", *channels[1:]]
    _refused([*spaced, "--nuclei", nuclei_file, "--out", out], "'DNA DAPI'", "spaces")
    assert not out.exists()


def test_large_sparse_labels_are_measured_as_their_own_labels(field, tmp_path: Path) -> None:
    # labels near the int32 maximum must not size per-label arrays (4-8 GB) by their value
    nuclei, cells = field["nuclei"], field["cells"]
    offset = 2**31 - 1 - int(nuclei.max())
    big_nuc = np.where(nuclei > 0, nuclei + offset, 0).astype(np.uint32)
    big_cells = np.where(cells > 0, cells + offset, 0).astype(np.uint32)
    tifffile.imwrite(tmp_path / "nuc.tif", big_nuc)
    tifffile.imwrite(tmp_path / "cells.tif", big_cells)
    base = [*_channel_args(field), "--nuclei", tmp_path / "nuc.tif"]
    out = tmp_path / "f.parquet"
    result = _run([*base, "--cells", tmp_path / "cells.tif", "--out", out])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    labels = np.unique(nuclei[nuclei > 0])
    assert table["ObjectNumber"].tolist() == (labels + offset).tolist()
    expected = site_features(field["image"], nuclei, cells)
    np.testing.assert_allclose(table[feature_names()].to_numpy(), expected.to_numpy(), rtol=1e-12)
    grown_out = tmp_path / "grown.tif"
    result = _run([*base, "--cells-out", grown_out, "--out", tmp_path / "g.parquet"])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(grown_out), big_cells)
    swapped = big_cells.copy()
    swapped[cells == 1], swapped[cells == 2] = 2 + offset, 1 + offset
    tifffile.imwrite(tmp_path / "swapped.tif", swapped)
    _refused(
        [*base, "--cells", tmp_path / "swapped.tif", "--out", out],
        f"nucleus {1 + offset} lies in cell {2 + offset}",
    )


def test_an_intensity_image_given_as_nuclei_is_refused(field, tmp_path: Path) -> None:
    # The DNA image is uint16 like a label image; only its pixel pattern tells them apart.
    out = tmp_path / "f.parquet"
    result = _run([*_channel_args(field), "--nuclei", field["files"]["DNA"], "--out", out])
    assert result.exit_code == 2
    assert "--nuclei" in result.stderr and "dna.tif" in result.stderr
    assert "does not look like a label image" in result.stderr
    assert not out.exists()


def test_wide_or_signed_integer_channels_are_refused(field, tmp_path: Path) -> None:
    out = tmp_path / "f.parquet"
    dna = field["image"][0].astype(np.int32)
    for dtype, values in ((np.int32, dna), (np.int16, dna - 150)):  # -50 at the darkest
        path = tmp_path / f"dna_{np.dtype(dtype).name}.tif"
        tifffile.imwrite(path, values.astype(dtype))
        channels = [f"DNA={path}", *_channel_args(field)[1:]]
        result = _run([*channels, "--nuclei", field["dir"] / "nuclei.tif", "--out", out])
        assert result.exit_code == 2, result.output
        assert f"channel DNA ({path})" in result.stderr
        assert np.dtype(dtype).name in result.stderr and "uint16" in result.stderr
    assert not out.exists()
