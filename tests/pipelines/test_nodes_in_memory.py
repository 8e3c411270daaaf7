"""Node functions run by kedro's SequentialRunner over an in-memory DataCatalog (the style of
Kedro's starters): fast checks of the pipelines' wiring and nodes, no subprocess, no files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from morphoflow.pipelines.profiling.pipeline import create_pipeline as profiling_pipeline
from morphoflow.profiling.aggregate import well_profiles
from tests.conftest import PROJECT_ROOT
from tests.profiling.test_workflow import _wells


def _params(*files: str) -> dict:
    merged: dict = {}
    for name in files:
        merged.update(yaml.safe_load((PROJECT_ROOT / "conf/base" / name).read_text()))
    return merged


def _sites() -> pd.DataFrame:
    """Two sites per well of the workflow test's wells (site values around the well's)."""
    wells = _wells().assign(Metadata_CellCount=20)
    rng = np.random.default_rng(3)
    features = [c for c in wells.columns if not c.startswith("Metadata_")]
    sites = []
    for site in (1, 2):
        frame = wells.copy()
        frame["Metadata_Site"] = site
        frame[features] = frame[features] + rng.normal(0, 0.1, frame[features].shape)
        sites.append(frame)
    return pd.concat(sites, ignore_index=True)


def test_profiling_tail_runs_in_memory_and_lists_an_empty_well() -> None:
    params = _params("parameters.yml", "parameters_profiling.yml")
    params["batch_correction"].update(null_size=100, shuffles=3, lambdas=[1.0, 0.01])
    pipeline = profiling_pipeline().from_nodes("correct_and_evaluate")
    sites = _sites()
    empty = sites["Metadata_Well"].eq("W00") & sites["Metadata_Plate"].eq("P1")
    features = [c for c in sites.columns if not c.startswith("Metadata_")]
    sites.loc[empty, features] = np.nan
    sites.loc[empty, "Metadata_CellCount"] = 0
    catalog = DataCatalog(
        {
            "profiles_well_raw": MemoryDataset(well_profiles(sites)),
            **{f"params:{k}": MemoryDataset(v) for k, v in params.items()},
        }
    )
    SequentialRunner().run(pipeline, catalog)
    wells_table = catalog.load("profiling_wells")
    report = catalog.load("profiling_report")
    row = wells_table[
        (wells_table["Metadata_Plate"] == "P1") & (wells_table["Metadata_Well"] == "W00")
    ]
    assert row["Metadata_CellCount"].tolist() == [0]
    assert row["Metadata_ExclusionReason"].tolist() == ["no cells"]
    assert len(wells_table) == 60 and int(wells_table["Metadata_Used"].sum()) == 59
    assert report["replicate_reproducibility"]["n_treatments"] > 0
    assert 0.0 <= report["sphered"]["map"] <= 1.0
    assert len(catalog.load("profiles_well")) == 59
    metrics = catalog.load("profiling_metrics")
    assert metrics["classical.wells_excluded"] == {"value": 1.0, "step": 0}


def test_design_check_node_refuses_a_screen_before_segmentation() -> None:
    params = _params("parameters.yml", "parameters_profiling.yml")
    table = _wells()
    table = table[~table["Metadata_Treatment"].str.match(r"T\d[23]")]  # 2 treatments per MoA
    pipeline = profiling_pipeline().only_nodes("check_evaluation_design")
    catalog = DataCatalog(
        {
            "validated_image_table": MemoryDataset(table),
            **{f"params:{k}": MemoryDataset(v) for k, v in params.items()},
        }
    )
    with pytest.raises(ValueError, match="no MoA has >= 2 treatments"):
        SequentialRunner().run(pipeline, catalog)


def test_a_missing_feature_model_is_refused_before_segmentation(tmp_path) -> None:
    params = _params("parameters.yml", "parameters_profiling.yml")
    params["features"].update(extractor="cnn", model=str(tmp_path / "nope.onnx"))
    pipeline = profiling_pipeline().only_nodes("check_evaluation_design")
    catalog = DataCatalog(
        {
            "validated_image_table": MemoryDataset(_wells()),
            **{f"params:{k}": MemoryDataset(v) for k, v in params.items()},
        }
    )
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        SequentialRunner().run(pipeline, catalog)
