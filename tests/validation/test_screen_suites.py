"""Great Expectations validation of screens: a good screen passes, each bad input is named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from morphoflow.screen.errors import DataValidationError
from morphoflow.screen.qc import focus_score, saturation_fraction, site_qc
from morphoflow.screen.table import load_screen
from morphoflow.validation import ValidationConfig, validate_screen


def _validate(root: Path, report: Path, table: pd.DataFrame | None = None) -> dict:
    table = load_screen(root) if table is None else table
    return validate_screen(table, site_qc(table, root), root, report)


def test_valid_screen_passes_and_writes_report(tiny_screen: Path, tmp_path: Path) -> None:
    report = tmp_path / "report"
    summary = _validate(tiny_screen, report)
    assert summary["success"] is True
    assert summary["n_sites"] == 6 and summary["n_plates"] == 2
    assert summary["expectations_evaluated"] > 15
    assert json.loads((report / "summary.json").read_text())["success"] is True
    index = report / "data_docs" / "index.html"
    assert index.is_file() and "image_table" in index.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".report")]


def test_unknown_well_name_is_reported_with_its_line(tiny_screen: Path, tmp_path: Path) -> None:
    table = load_screen(tiny_screen)
    table.loc[4, "Metadata_Well"] = "Q25"
    with pytest.raises(DataValidationError) as info:
        _validate(tiny_screen, tmp_path / "r", table)
    message = str(info.value)
    assert "expect_column_values_to_match_regex on Metadata_Well" in message
    assert "image table line 6 (P2/Q25/1)" in message
    assert "a two-digit column 01-24 (B06, not B6 or b06)" in message


def test_duplicated_site_row_is_reported(tiny_screen: Path, tmp_path: Path) -> None:
    table = load_screen(tiny_screen)
    table = pd.concat([table, table.iloc[[1]]], ignore_index=True)
    with pytest.raises(
        DataValidationError, match=r"expect_compound_columns_to_be_unique.*\n.*line 3 \(P1/A02/1\)"
    ):
        _validate(tiny_screen, tmp_path / "r", table)


def test_missing_channel_file_is_reported_by_name(tiny_screen: Path, tmp_path: Path) -> None:
    table = load_screen(tiny_screen)
    (tiny_screen / table.Path_AGP[3]).unlink()
    with pytest.raises(DataValidationError) as info:
        _validate(tiny_screen, tmp_path / "r", table)
    message = str(info.value)
    assert "Check_MissingFiles" in message
    assert "missing images/P2/P2_A01_s1_AGP.tif" in message
    assert "image file not found" in message  # the QC suite names it too


def test_plate_without_negative_controls_is_reported(tiny_screen: Path, tmp_path: Path) -> None:
    table = load_screen(tiny_screen)
    table.loc[table.Metadata_Plate == "P2", "Metadata_ControlType"] = ""
    with pytest.raises(DataValidationError, match="Check_PlateNegconWells"):
        _validate(tiny_screen, tmp_path / "r", table)


def test_corrupt_and_misshapen_files_are_reported_and_report_still_written(
    tiny_screen: Path, tmp_path: Path
) -> None:
    table = load_screen(tiny_screen)
    (tiny_screen / table.Path_DNA[0]).write_bytes(b"not a tiff at all")
    tifffile.imwrite(tiny_screen / table.Path_Mito[2], np.ones((20, 32), np.uint16) * 7)
    report = tmp_path / "report"
    with pytest.raises(DataValidationError) as info:
        _validate(tiny_screen, report, table)
    message = str(info.value)
    assert "QC_Readable" in message and "images/P1/P1_A01_s1_DNA.tif" in message
    assert "QC_ShapeConsistent" in message and "P1_B01_s1_Mito.tif" in message
    summary = json.loads((report / "summary.json").read_text())
    assert summary["success"] is False
    assert {f["column"] for f in summary["failures"]} >= {"QC_Readable", "QC_ShapeConsistent"}


def test_saturated_and_empty_images_fail_qc(tiny_screen: Path, tmp_path: Path) -> None:
    table = load_screen(tiny_screen)
    saturated = np.full((32, 32), 4095, np.uint16)
    saturated[:4] = 100
    tifffile.imwrite(tiny_screen / table.Path_RNA[1], saturated)
    tifffile.imwrite(tiny_screen / table.Path_ER[5], np.zeros((32, 32), np.uint16))
    with pytest.raises(DataValidationError) as info:
        _validate(tiny_screen, tmp_path / "r", table)
    message = str(info.value)
    assert "QC_SaturationFraction" in message and "P1_A02_s1_RNA.tif" in message
    assert "QC_Empty" in message and "P2_B01_s1_ER.tif" in message


def test_qc_statistics() -> None:
    rng = np.random.default_rng(0)
    sharp = rng.normal(1000, 100, (64, 64)).astype(np.float32)
    from scipy import ndimage

    blurred = ndimage.gaussian_filter(sharp, 3)
    assert focus_score(sharp) > 50 * focus_score(blurred)
    # invariant to a global intensity scale
    assert focus_score(sharp * 3) == pytest.approx(focus_score(sharp), rel=1e-4)
    assert saturation_fraction(np.zeros((10, 10))) == 1.0
    image = np.arange(100).reshape(10, 10)
    assert saturation_fraction(image) == 0.01


def test_unknown_validation_parameter_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown data_validation parameter\(s\) \['max_blur'\]"):
        ValidationConfig.from_params({"max_blur": 1})


def test_mistyped_moa_rows_are_listed_with_their_lines(tiny_screen: Path, tmp_path: Path) -> None:
    moa = pd.DataFrame(
        {
            "Metadata_Treatment": ["DMSO", "cpd_A", "cpd_b", "cmpd_c"],
            "Metadata_MoA": ["", "moa_x", "moa_x", "moa_y"],
        }
    )
    moa.to_csv(tiny_screen / "moa.csv", index=False)
    with pytest.raises(DataValidationError) as info:
        _validate(tiny_screen, tmp_path / "r")
    message = str(info.value)
    assert "[annotations] expect_column_values_to_be_in_set on Check_Matched: 3 failing" in message
    assert "moa.csv line 3: treatment 'cpd_A' is in no platemap well" in message
    assert "(closest on the other side: 'cpd_a')" in message
    assert "moa.csv line 5: treatment 'cmpd_c' is in no platemap well" in message
    # the platemap side points at the case-only typo, not at another name
    assert "treatment 'cpd_a' has no moa.csv row (closest on the other side: 'cpd_A')" in message
    assert "platemap.csv line" in message
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["success"] is False


def test_annotation_mismatch_can_be_a_listed_warning(tiny_screen: Path, tmp_path: Path) -> None:
    pd.DataFrame({"Metadata_Treatment": ["cpd_a"], "Metadata_MoA": ["moa_x"]}).to_csv(
        tiny_screen / "moa.csv", index=False
    )
    table = load_screen(tiny_screen)
    summary = validate_screen(
        table,
        site_qc(table, tiny_screen),
        tiny_screen,
        tmp_path / "r",
        ValidationConfig(annotation_mismatch="warn"),
    )
    assert summary["success"] is True
    (warning,) = summary["warnings"]
    assert warning["unexpected_count"] == 1
    assert "treatment 'cpd_b' has no moa.csv row" in warning["examples"][0]
    with pytest.raises(ValueError, match="annotation_mismatch must be 'fail' or 'warn'"):
        ValidationConfig(annotation_mismatch="ignore")


def test_float_image_with_nan_pixels_fails_qc_naming_the_file(
    tiny_screen: Path, tmp_path: Path
) -> None:
    table = load_screen(tiny_screen)
    path = tiny_screen / table.Path_ER[2]
    image = tifffile.imread(path).astype(np.float32)
    image[3, 4] = np.nan
    tifffile.imwrite(path, image)
    with pytest.raises(DataValidationError) as info:
        _validate(tiny_screen, tmp_path / "r", table)
    message = str(info.value)
    assert "QC_Readable" in message
    assert f"{path.name}" in message and "1 NaN or infinite pixel(s)" in message
