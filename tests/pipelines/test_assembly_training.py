"""dataset_assembly -> training -> profiling with the registered CNN, through `kedro run`."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest


@pytest.mark.slow
def test_assemble_train_register_and_profile_with_the_cnn(
    kedro_project: Path, run_pipeline, tiny_simulated_screen: Path
) -> None:
    screen = {"screen.root": tiny_simulated_screen}
    run_pipeline("profiling", {**screen, "crops.store": "true", "crops.size": 64})
    index = pd.read_parquet(kedro_project / "data/05_model_input/crop_index.parquet")
    assert (index["Path_Crops"] != "").all()
    assert (kedro_project / "data/04_feature/plates" / index["Path_Crops"].iloc[0]).is_file()

    run_pipeline("dataset_assembly")
    manifest = json.loads(
        (kedro_project / "data/05_model_input/combined_manifest.json").read_text()
    )
    combined = pd.read_parquet(kedro_project / "data/05_model_input/combined_index.parquet")
    assert manifest["n_cells"] == len(combined) > 0
    assert {"DMSO", "untreated"} <= set(
        combined["Metadata_Label"]
    )  # both control kinds are classes
    strength = pd.read_csv(
        kedro_project / "data/08_reporting/dataset_assembly/treatment_strength.csv"
    )
    assert {"Metadata_Source", "Metadata_Treatment", "is_strong"} <= set(strength.columns)

    run_pipeline("training", {"training.config.epochs": 1, "training.config.batch_size": 8})
    registration = json.loads(
        (kedro_project / "data/08_reporting/training/registration.json").read_text()
    )
    assert registration["name"] == "cellpainting-cnn" and registration["version"] == 1
    assert set(registration["aliases"]) == {"challenger", "champion"}
    assert registration["parity_max_abs_diff"] <= 1e-4
    mlflow.set_tracking_uri(f"sqlite:///{kedro_project / 'mlflow.db'}")
    version = mlflow.MlflowClient().get_model_version_by_alias("cellpainting-cnn", "champion")
    assert int(version.version) == 1 and float(version.tags["parity_max_abs_diff"]) <= 1e-4

    run_pipeline(
        "profiling",
        {
            **screen,
            "features.extractor": "cnn",
            "features.model": "models:/cellpainting-cnn@champion",
            "crops.size": 64,
        },
    )
    wells = pd.read_parquet(kedro_project / "data/07_model_output/profiles_well.parquet")
    features = [c for c in wells.columns if not c.startswith("Metadata_")]
    assert features and all(c.startswith("CNN_") for c in features)
    report = json.loads((kedro_project / "data/08_reporting/profiling/metrics.json").read_text())
    assert report["extractor"] == "cnn"
