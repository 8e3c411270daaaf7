"""Robustness of the screen-wide profiling steps (issue: non-finite values, empty and near-empty
wells, degenerate designs): one rule for NaN/inf, every well accounted for, partial scores
instead of lost outputs."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml

from morphoflow.pipelines.profiling.nodes import correct_and_evaluate
from morphoflow.profiling.nonfinite import NonFiniteWarning, drop_nonfinite
from morphoflow.profiling.wells import DEFAULT_MIN_CELLS_PER_WELL, select_wells
from morphoflow.profiling.workflow import (
    EvaluationSettings,
    check_design,
    evaluate_representations,
    replicate_summary,
)
from tests.conftest import PROJECT_ROOT
from tests.profiling.test_workflow import _wells

matplotlib.use("Agg")

BATCH = {
    "lambdas": [1.0, 1e-2],
    "scope": "screen",
    "null_size": 100,
    "top_fraction": 0.01,
    "shuffles": 3,
    "seed": 0,
    "exclude_labels": ["", "inactive"],
    "output_representation": "sphered",
}


def _counted(wells: pd.DataFrame, cells: int = 50) -> pd.DataFrame:
    return wells.assign(Metadata_CellCount=cells)


# ---------------------------------------------------------------- the non-finite rule
def test_one_nan_drops_the_feature_and_an_all_nan_row_drops_the_row_only() -> None:
    frame = pd.DataFrame(
        {
            "Metadata_Well": ["A01", "A02", "A03", "A04"],
            "f1": [1.0, np.nan, 2.0, 3.0],
            "f2": [1.0, np.nan, 5.0, np.inf],
            "f3": [0.0, np.nan, 1.0, 2.0],
        }
    )
    with pytest.warns(NonFiniteWarning, match=r"A02.*f2"):
        clean, report = drop_nonfinite(frame, name="wells")
    assert clean["Metadata_Well"].tolist() == ["A01", "A03", "A04"]  # A02 was all NaN
    assert list(clean.columns) == ["Metadata_Well", "f1", "f3"]  # inf in A04 costs f2 only
    assert report.dropped_features == ["f2"]
    assert report.dropped_rows["Metadata_Well"].tolist() == ["A02"]
    assert report.dropped_rows["Metadata_NonFiniteFraction"].tolist() == [1.0]
    assert report.as_dict()["dropped_rows"][0]["Metadata_Well"] == "A02"


def test_finite_table_passes_unchanged_and_silently() -> None:
    frame = pd.DataFrame({"Metadata_Well": ["A01", "A02"], "f": [1.0, 2.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean, report = drop_nonfinite(frame)
    assert clean is frame and report.empty


def test_nonfinite_refuses_a_table_with_nothing_left_and_names_it() -> None:
    frame = pd.DataFrame({"Metadata_Well": ["A01"], "f": [np.nan]})
    with pytest.raises(ValueError, match="my wells: every one of the 1 rows"):
        drop_nonfinite(frame, name="my wells")
    with pytest.raises(ValueError, match="max_row_fraction"):
        drop_nonfinite(frame, max_row_fraction=1.0)


# ---------------------------------------------------------------- well selection
def test_every_well_is_used_or_excluded_with_its_reason() -> None:
    wells = pd.DataFrame(
        {
            "Metadata_Plate": ["p"] * 4,
            "Metadata_Well": ["A01", "A02", "A03", "A04"],
            "Metadata_CellCount": [40, 0, 1, 30],
            "f1": [1.0, np.nan, 9.0, np.nan],
            "f2": [2.0, np.nan, 9.0, np.nan],
        }
    )
    with pytest.warns(NonFiniteWarning, match="A04"):
        chosen = select_wells(wells, min_cells_per_well=10)
    table = chosen.table(wells)
    assert table["Metadata_Well"].tolist() == ["A01", "A02", "A03", "A04"]
    assert table["Metadata_CellCount"].tolist() == [40, 0, 1, 30]  # 0 included
    assert table["Metadata_Used"].tolist() == [True, False, False, False]
    assert table["Metadata_ExclusionReason"].tolist() == [
        "",
        "no cells",
        "1 cells < min_cells_per_well=10",
        "non-finite profile (100% of features)",
    ]
    assert chosen.as_dict()["n_excluded"] == 3


def test_well_selection_arguments_are_checked() -> None:
    wells = pd.DataFrame({"Metadata_Well": ["A01"], "Metadata_CellCount": [3], "f": [1.0]})
    with pytest.raises(ValueError, match="min_cells_per_well must be >= 0"):
        select_wells(wells, -1)
    with pytest.raises(ValueError, match="none of the 1 wells has >= 5 cells"):
        select_wells(wells, 5)
    with pytest.warns(UserWarning, match="no Metadata_CellCount"):
        select_wells(wells.drop(columns="Metadata_CellCount"), 5)


def test_the_default_floor_is_declared_once_and_the_yaml_repeats_it() -> None:
    params = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters.yml").read_text())
    assert params["wells"]["min_cells_per_well"] == DEFAULT_MIN_CELLS_PER_WELL
    assert EvaluationSettings().min_cells_per_well == DEFAULT_MIN_CELLS_PER_WELL


# ---------------------------------------------------------------- the profiling node end to end
def _evaluate(wells: pd.DataFrame, min_cells: int = 10):
    return correct_and_evaluate(
        wells, BATCH, {"extractor": "classical"}, {"min_cells_per_well": min_cells}
    )


def test_one_nan_and_one_all_nan_well_keep_the_run_and_name_what_was_dropped() -> None:
    wells = _counted(_wells())
    wells.loc[3, "f2"] = np.nan  # one NaN in a treatment well
    wells.loc[5, "f7"] = np.inf
    all_nan = wells.index[wells["Metadata_ControlType"] == ""][10]
    features = [c for c in wells.columns if c.startswith("f")]
    wells.loc[all_nan, features] = np.nan  # one all-NaN well
    with pytest.warns(NonFiniteWarning) as caught:
        final, treatments, report, _, _, figures, table = _evaluate(wells)
    message = " ".join(str(w.message) for w in caught)
    well = wells.loc[all_nan, "Metadata_Well"]
    assert "f2" in message and "f7" in message and well in message
    # only the two features are lost (not all 12), only the all-NaN well
    assert report["n_features"] == len(features) - 2
    assert report["wells"]["dropped_features"] == ["f2", "f7"]
    assert [r["Metadata_Well"] for r in report["wells"]["excluded"]] == [well]
    assert len(final) == len(wells) - 1 and np.isfinite(final[features[:1]]).all().all()
    # the figures that used to raise on NaN are made
    assert {"embedding_raw_by_plate.png", "embedding_final_by_moa.png"} <= set(figures)
    assert int((~table["Metadata_Used"]).sum()) == 1


def test_empty_and_near_empty_wells_are_listed_and_never_define_controls() -> None:
    wells = _counted(_wells())
    features = [c for c in wells.columns if c.startswith("f")]
    controls = wells.index[wells["Metadata_ControlType"] == "negcon"]
    empty, lonely = controls[0], controls[1]
    wells.loc[empty, features] = np.nan
    wells.loc[empty, "Metadata_CellCount"] = 0
    # a one-cell control well with absurd values: used, it would wreck standardisation
    wells.loc[lonely, features] = 1e6
    wells.loc[lonely, "Metadata_CellCount"] = 1
    _, _, report, _, _, _, table = _evaluate(wells)
    reasons = dict(
        zip(
            table["Metadata_Well"] + table["Metadata_Plate"],
            table["Metadata_ExclusionReason"],
            strict=True,
        )
    )
    key = wells.loc[empty, "Metadata_Well"] + wells.loc[empty, "Metadata_Plate"]
    assert reasons[key] == "no cells"
    key = wells.loc[lonely, "Metadata_Well"] + wells.loc[lonely, "Metadata_Plate"]
    assert reasons[key] == "1 cells < min_cells_per_well=10"
    assert len(table) == len(wells)  # every well of the platemap is in the well table
    # scores equal those of the screen without the two wells: they took no part
    clean = evaluate_representations(
        _counted(_wells()).drop(index=[empty, lonely]),
        EvaluationSettings(lambdas=BATCH["lambdas"], null_size=100, shuffles=3),
    )
    assert report["standardized"]["map"] == pytest.approx(clean.metrics["standardized"]["map"])


def test_one_plate_one_well_per_treatment_reports_moa_scores_and_says_why_replicates_are_undefined() -> (
    None
):
    wells = _counted(_wells())
    one_plate = wells[wells["Metadata_Plate"] == "P0"].reset_index(drop=True)
    final, _, report, metrics, per_treatment, _, _ = _evaluate(one_plate)
    assert 0.0 <= report["sphered"]["map"] <= 1.0
    assert report["replicate_reproducibility"]["undefined"] == (
        "no treatment has at least two wells (replicates)"
    )
    assert report["replicate_reproducibility"]["mean_map"] is None
    assert "replicate_map" in per_treatment.columns and per_treatment["replicate_map"].isna().all()
    table, summary = replicate_summary(final.assign(Metadata_ControlType=""), EvaluationSettings())
    assert table.empty and summary["undefined"] == "no negative-control well"


def test_design_is_checked_on_the_image_table_before_anything_runs() -> None:
    wells = _wells()
    check_design(wells, EvaluationSettings())  # the good design passes
    two_per_moa = wells[
        ~wells["Metadata_Treatment"].isin(["T02", "T03", "T12", "T13", "T22", "T23"])
    ]
    with pytest.raises(ValueError, match=r"no MoA has >= 2 treatments.*'MOA0': 2"):
        check_design(two_per_moa, EvaluationSettings())
    one_control = wells[
        (wells["Metadata_ControlType"] != "negcon") | (wells["Metadata_Well"] == "W14")
    ]
    with pytest.raises(ValueError, match="fewer than 2 negative-control wells"):
        check_design(one_control, EvaluationSettings())


def test_a_screen_without_moa_annotation_is_profiled_with_one_given_lambda() -> None:
    wells = _counted(_wells()).assign(Metadata_MoA="")
    with pytest.raises(ValueError, match=r"give one sphering lambda.*lambdas=\[0.01\]"):
        check_design(wells, EvaluationSettings(lambdas=[1.0, 0.01]))
    check_design(wells, EvaluationSettings(lambdas=[0.01]))  # one lambda: nothing to choose
    params = {**BATCH, "lambdas": [0.01]}
    final, treatments, report, metrics, per_treatment, figures, table = correct_and_evaluate(
        wells, params, {"extractor": "classical"}, {"min_cells_per_well": 10}
    )
    assert "MoA retrieval is undefined" in report["moa_retrieval"]["undefined"]
    assert report["lambda"]["chosen"] == 0.01 and report["sphered"] == {}
    assert len(final) == len(wells) and len(treatments) == wells["Metadata_Treatment"].nunique()
    assert report["replicate_reproducibility"]["n_treatments"] > 0  # still defined
    assert "pr_curves.png" not in figures and "embedding_final_by_plate.png" in figures
    assert not any(key.endswith(".map") for key in metrics)
