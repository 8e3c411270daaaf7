"""The activity pipeline end to end (real kedro run, RDKit, Chemprop, MLflow; tiny settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from morphoflow.simulate.compounds import simulate_compound_library

FAST = {
    "activity.folds": "[0]",
    "activity.n_folds": 3,
    "activity.min_compounds": 50,
    "activity.model.epochs": 5,
    "activity.model.mpnn_epochs": 2,
    "activity.model.mpnn_hidden": 32,
    "activity.model.mpnn_ffn_hidden": 32,
}


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("activity_pipeline") / "library"
    simulate_compound_library(out, n_compounds=120, seed=2, unlabelled_fraction=0.1)
    return out


def test_activity_pipeline_on_a_library(run_pipeline, kedro_project: Path, library: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    run_pipeline(
        "activity",
        {
            "activity.root": library,
            "activity.mo_profiles": library / "profiles_mo_latent.parquet",
            "activity.ge_profiles": library / "profiles_ge_latent.parquet",
            **FAST,
        },
    )
    report = kedro_project / "data" / "08_reporting" / "activity"
    auroc = pd.read_csv(report / "auroc.csv")
    assert list(auroc.columns[:6]) == ["assay", "modality", "split", "fold", "auroc", "ap"]
    assert set(auroc["split"]) == {"scaffold", "kmeans_mo", "kmeans_ge"}
    assert {"cs", "mo", "ge", "cell_count", "early_cs_mo", "early_cs_ge"} <= set(auroc["modality"])
    assert {"late_max_cs_mo", "late_mean_cs_mo", "late_max_all"} <= set(auroc["modality"])
    summary = json.loads((report / "summary.json").read_text())
    assert summary["auroc_meaningful"] is True
    assert len(summary["splits_hash"]) == 16
    scaffold = summary["splits"]["scaffold"]
    assert "count_gt_0.9" in scaffold["modalities"]["mo"]
    assert "retrospective_union" in scaffold and "overlap_0.9" in scaffold
    assert (report / "figures" / "upset_scaffold.png").is_file()

    truth = pd.read_csv(library / "truth.csv")
    predictions = pd.read_parquet(
        kedro_project / "data" / "07_model_output" / "activity_predictions.parquet"
    )
    assert set(predictions["Metadata_Treatment"]) == set(
        truth.loc[truth["unlabelled"], "Metadata_Treatment"]
    )
    assert {"cs", "mo", "late_max_all"} <= set(predictions["modality"])
    assert predictions["probability"].between(0, 1).all()

    registration = json.loads((report / "registration.json").read_text())
    assert registration["parity_passed"] is True
    assert registration["model_kind"] == "activity"
    client = MlflowClient()
    version = client.get_model_version_by_alias("activity-mo", "champion")
    assert float(version.tags["score.cv_median_auroc"]) == pytest.approx(
        summary["splits"]["scaffold"]["modalities"]["mo"]["median_auroc"]
    )
    run = mlflow.get_run(version.run_id)
    assert "activity.scaffold.mo.median_auroc" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "activity")}
    assert {"activity/auroc.csv", "activity/summary.json"} <= artifacts

    # no held-out compound evaluation exists yet: gated promotion refuses activity models
    from morphoflow.lifecycle.promotion import PromotionRefused, promote

    with pytest.raises(PromotionRefused, match="model_kind tag is 'activity'"):
        promote("activity-mo")


def test_structure_only_folder_too_small_for_auroc(
    run_pipeline, kedro_project: Path, tmp_path: Path
) -> None:
    """No profiles: CS runs alone; 60 compounds: the report says AUROC is not meaningful."""
    folder = tmp_path / "small"
    simulate_compound_library(folder, n_compounds=60, seed=3, unlabelled_fraction=0.0)
    for name in ("profiles_mo_latent.parquet", "profiles_ge_latent.parquet"):
        (folder / name).unlink()
    run_pipeline(
        "activity",
        {
            "activity.root": folder,
            **{k: v for k, v in FAST.items() if k != "activity.min_compounds"},
        },
    )
    report = kedro_project / "data" / "08_reporting" / "activity"
    summary = json.loads((report / "summary.json").read_text())
    assert summary["auroc_meaningful"] is False
    assert "not meaningful" in summary["note"] and "splits" not in summary
    assert summary["modalities"] == ["cs"]
    assert set(pd.read_csv(report / "auroc.csv")["split"]) == {"scaffold"}
    registration = json.loads((report / "registration.json").read_text())
    assert registration == {"registered": False, "reason": "no mo profiles"}


def test_bad_smiles_fails_with_file_and_line_and_writes_nothing(
    run_pipeline, kedro_project: Path, library: Path, tmp_path: Path
) -> None:
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(library, folder)
    compounds = pd.read_csv(folder / "compounds.csv")
    compounds.loc[4, "Metadata_SMILES"] = "C1CC(N"
    compounds.to_csv(folder / "compounds.csv", index=False)
    result = run_pipeline("activity", {"activity.root": folder}, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "compounds.csv line 6: RDKit cannot parse the SMILES 'C1CC(N'" in output
    assert not (kedro_project / "data" / "08_reporting" / "activity").exists()
    assert not (kedro_project / "data" / "05_model_input" / "activity_splits.parquet").exists()
