"""Bad inputs get one clear error naming file, line and column, or a listed warning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphoflow.activity.inputs import (
    ActivityInputError,
    ActivityInputWarning,
    load_activity_data,
    read_assays,
    read_compounds,
    read_profiles,
)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_read_compounds_excludes_controls(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "compounds.csv", "Metadata_Treatment,Metadata_SMILES\nA,CCO\nDMSO,\nB,c1ccccc1\n"
    )
    compounds, controls = read_compounds(path)
    assert list(compounds.index) == ["A", "B"]
    assert controls == ["DMSO"]


def test_unparseable_smiles_names_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "compounds.csv", "Metadata_Treatment,Metadata_SMILES\nA,CCO\nB,C1CC(\n"
    )
    with pytest.raises(
        ActivityInputError, match=r"compounds.csv line 3: RDKit cannot parse .*'C1CC\('"
    ):
        read_compounds(path)


def test_duplicate_compound_names_both_lines(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "compounds.csv", "Metadata_Treatment,Metadata_SMILES\nA,CCO\nB,CC\nA,CCC\n"
    )
    with pytest.raises(
        ActivityInputError, match=r"line 4: duplicate compound 'A' \(also on line 2\)"
    ):
        read_compounds(path)


def test_assay_value_other_than_0_1_empty(tmp_path: Path) -> None:
    path = _write(tmp_path / "assays.csv", "Metadata_Treatment,a1,a2\nA,1,0\nB,,2\n")
    with pytest.raises(ActivityInputError, match=r"assays.csv line 3, column 'a2': value '2'"):
        read_assays(path)


def test_assay_parquet_reads_missing_as_nan(tmp_path: Path) -> None:
    frame = pd.DataFrame({"Metadata_Treatment": ["A", "B"], "a1": [1.0, np.nan]})
    frame.to_parquet(tmp_path / "assays.parquet")
    out = read_assays(tmp_path / "assays.parquet")
    assert out.loc["A", "a1"] == 1.0 and np.isnan(out.loc["B", "a1"])


def _compounds(n: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"Metadata_SMILES": ["C" * (i + 1) for i in range(n)]}, index=[f"C{i}" for i in range(n)]
    )
    frame.index.name = "Metadata_Treatment"
    return frame


def test_unknown_treatment_in_assays_is_an_error() -> None:
    assays = pd.DataFrame({"a": [1.0, 0.0]}, index=["C0", "X9"])
    with pytest.raises(
        ActivityInputError, match=r"assays.csv: 1 treatment id\(s\) not in compounds.csv: \['X9'\]"
    ):
        load_activity_data(
            _compounds(3),
            assays,
            {},
            sources={"assays": "assays.csv", "compounds": "compounds.csv"},
        )


def test_all_empty_and_single_class_assays_are_dropped_and_listed() -> None:
    n = 12
    assays = pd.DataFrame(
        {
            "good": [1.0] * 6 + [0.0] * 6,
            "empty": [np.nan] * n,
            "all_active": [1.0] * n,
        },
        index=[f"C{i}" for i in range(n)],
    )
    with pytest.warns(ActivityInputWarning, match="2 assay\\(s\\) dropped"):
        data = load_activity_data(_compounds(n), assays, {}, min_positives=5)
    assert data.assays == ["good"]
    assert data.report["dropped_assays"]["empty"] == "no measured value"
    assert "12 positive(s), 0 negative(s)" in data.report["dropped_assays"]["all_active"]


def test_no_usable_assay_is_one_error() -> None:
    assays = pd.DataFrame({"a": [1.0, 0.0, 0.0]}, index=["C0", "C1", "C2"])
    with (
        pytest.raises(ActivityInputError, match="no assay has >= 5 positives"),
        pytest.warns(ActivityInputWarning),
    ):
        load_activity_data(_compounds(3), assays, {})


def test_compounds_without_profiles_are_dropped_with_a_warning() -> None:
    n = 12
    assays = pd.DataFrame({"a": [1.0] * 6 + [0.0] * 6}, index=[f"C{i}" for i in range(n)])
    profiles = pd.DataFrame(
        {"Metadata_Treatment": [f"C{i}" for i in range(n - 1)], "f": np.arange(n - 1.0)}
    )
    with pytest.warns(ActivityInputWarning, match="1 compound\\(s\\) have no profile"):
        data = load_activity_data(_compounds(n), assays, {"mo": profiles}, min_positives=5)
    assert data.report["dropped_compounds"]["no mo profile"] == ["C11"]
    assert len(data.labels) == n - 1


def test_nonfinite_values_follow_the_shared_rule_and_are_named() -> None:
    """profiling.nonfinite: a mostly non-finite treatment goes, then non-finite features."""
    table = pd.DataFrame(
        {
            "Metadata_Treatment": ["A", "B", "C"],
            "f1": [1.0, np.nan, 3.0],
            "f2": [1.0, np.nan, 2.0],
            "f3": [np.inf, 1.0, 2.0],
        }
    )
    with pytest.warns(
        ActivityInputWarning,
        match=r"dropped 1 feature\(s\): f3 and 1 mostly non-finite treatment\(s\): \['B'\]",
    ):
        features, _, dropped = read_profiles(table, "mo.parquet")
    assert list(features.index) == ["A", "C"] and list(features.columns) == ["f1", "f2"]
    assert dropped == ["f3"]


def test_profiles_cells_per_well_is_the_mean_not_the_sum() -> None:
    table = pd.DataFrame(
        {
            "Metadata_Treatment": ["A", "B", "DMSO"],
            "Metadata_ControlType": ["", "", "negcon"],
            "Metadata_CellCount": [300, 100, 900],
            "Metadata_WellCount": [3, 1, 9],
            "f": [0.1, 0.2, 0.3],
        }
    )
    features, cells, dropped = read_profiles(table, "p.parquet")
    assert list(features.index) == ["A", "B"] and dropped == []
    assert cells.tolist() == [100.0, 100.0]


def test_duplicated_profile_rows_are_an_error() -> None:
    table = pd.DataFrame({"Metadata_Treatment": ["A", "A"], "f": [0.1, 0.2]})
    with pytest.raises(ActivityInputError, match="p.parquet: treatment 'A' has more than one row"):
        read_profiles(table, "p.parquet")


def test_profiles_matching_no_compound_are_named_with_example_ids() -> None:
    n = 12
    assays = pd.DataFrame({"a": [1.0] * 6 + [0.0] * 6}, index=[f"C{i}" for i in range(n)])
    profiles = pd.DataFrame(
        {"Metadata_Treatment": [f"c{i}" for i in range(n)], "f": np.arange(n * 1.0)}
    )
    with pytest.raises(
        ActivityInputError, match=r"mo.parquet: none of its 12 .*profile \['c0'.*compound \['C0'"
    ):
        load_activity_data(
            _compounds(n), assays, {"mo": profiles}, min_positives=5, sources={"mo": "mo.parquet"}
        )


def test_a_given_profile_file_must_exist_and_the_default_may_be_absent(tmp_path: Path) -> None:
    from kedro.io import DatasetError

    from morphoflow.pipelines.activity.datasets import OptionalProfilesDataset

    # kedro wraps the dataset's error; its message is the user's
    with pytest.raises(DatasetError, match=r"activity.mo_profiles: file not found: .*profile"):
        OptionalProfilesDataset(
            filepath=str(tmp_path / "default.parquet"),
            given=str(tmp_path / "profile.parquet"),
            parameter="activity.mo_profiles",
        ).load()
    absent = OptionalProfilesDataset(
        filepath=str(tmp_path / "default.parquet"), parameter="activity.mo_profiles"
    )
    assert absent.load()["table"] is None


def test_a_folder_with_both_assay_files_is_refused(tmp_path: Path) -> None:
    from morphoflow.activity.inputs import assay_file

    _write(tmp_path / "assays.csv", "Metadata_Treatment,a\nA,1\n")
    assert assay_file(tmp_path) == tmp_path / "assays.csv"
    pd.DataFrame({"Metadata_Treatment": ["A"], "a": [1.0]}).to_parquet(tmp_path / "assays.parquet")
    with pytest.raises(ActivityInputError, match="both assays.parquet and assays.csv"):
        assay_file(tmp_path)


def test_model_defaults_are_declared_once_and_the_yaml_repeats_them() -> None:
    import dataclasses

    import yaml

    from morphoflow.activity.models import ModelConfig
    from tests.conftest import PROJECT_ROOT

    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_activity.yml").read_text())
    declared = {k: v for k, v in dataclasses.asdict(ModelConfig()).items() if k != "seed"}
    listed = dict(params["activity"]["model"])
    listed["hidden"] = tuple(listed["hidden"])
    assert listed == {**declared, "hidden": tuple(declared["hidden"])}
