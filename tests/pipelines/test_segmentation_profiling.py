"""The segmentation and profiling pipelines run through `kedro run` on a simulated screen."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.segmentation import clear_border

from morphoflow.segmentation.metrics import dsb_score


def _latest_run(project: Path) -> mlflow.entities.Run:
    """The latest pipeline run (not a run nested in it, such as a model registration)."""
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    runs = mlflow.search_runs(
        experiment_names=["morphoflow"], output_format="list", order_by=["start_time DESC"]
    )
    return next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)


@pytest.mark.slow
def test_profiling_segments_every_site(
    kedro_project: Path,
    run_pipeline,
    tiny_simulated_screen: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_pipeline("profiling", {"screen.root": tiny_simulated_screen})

    table = pd.read_parquet(kedro_project / "data/03_primary/image_table.parquet")
    manifest = pd.read_csv(kedro_project / "data/08_reporting/profiling/plates.csv")
    assert sorted(manifest["Metadata_Plate"]) == sorted(table["Metadata_Plate"].unique())
    partitions = {
        row["Metadata_Plate"]: kedro_project / "data/04_feature/plates" / row["partition"]
        for row in manifest.to_dict("records")
    }
    nuclei = pd.concat(pd.read_parquet(p / "nuclei.parquet") for p in partitions.values())
    keys = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    assert nuclei.groupby(keys).ngroups == len(table)
    assert {"Nuclei_Location_Center_X", "Nuclei_Location_Center_Y"} <= set(nuclei.columns)
    assert manifest["n_nuclei"].sum() == len(nuclei)

    # the label images agree with the simulator's ground truth
    truths, preds = [], []
    for _, site in table.iterrows():
        truth = tifffile.imread(tiny_simulated_screen / site["Path_NucleiTruth"])
        # the pipeline discards nuclei touching the site border: so does the reference
        truths.append(clear_border(truth.astype(np.int64)))
        relative = nuclei.loc[(nuclei[keys] == site[keys]).all(axis=1), "Path_NucleiLabels"].iloc[0]
        labels = partitions[site["Metadata_Plate"]] / "labels" / relative
        preds.append(tifffile.imread(labels).astype(np.int64))
    assert dsb_score(truths, preds).score > 0.85

    # profiles at every level, pycytominer-style columns
    wells = pd.read_parquet(kedro_project / "data/07_model_output/profiles_well.parquet")
    treatments = pd.read_parquet(kedro_project / "data/07_model_output/profiles_treatment.parquet")
    listed = pd.read_csv(
        kedro_project / "data/08_reporting/profiling/wells.csv", keep_default_na=False
    )
    # every well is listed; the corrected table holds the used ones (the pipeline discards
    # border nuclei, so a 128-px site can keep a single cell, under min_cells_per_well=2)
    assert len(listed) == table.groupby(["Metadata_Plate", "Metadata_Well"]).ngroups
    assert len(wells) == listed["Metadata_Used"].astype(str).eq("True").sum() >= len(listed) - 2
    assert {"Metadata_CellCount", "Metadata_Treatment", "Metadata_MoA"} <= set(wells.columns)
    assert set(treatments["Metadata_Treatment"]) == set(table["Metadata_Treatment"])
    features = [c for c in wells.columns if not c.startswith("Metadata_")]
    assert features and all(c.startswith(("Nuclei_", "Cells_", "Cytoplasm_")) for c in features)
    cells = pd.concat(
        pd.read_parquet(p / "single_cell" / f"{plate}.parquet") for plate, p in partitions.items()
    )
    index = pd.read_parquet(kedro_project / "data/05_model_input/crop_index.parquet")
    assert len(cells) == len(index) == manifest["n_cells"].sum()

    report = json.loads((kedro_project / "data/08_reporting/profiling/metrics.json").read_text())
    for representation in ("raw", "standardized", "sphered"):
        assert 0.0 <= report[representation]["map"] <= 1.0
        assert "folds_of_enrichment" in report[representation]
        assert "shuffled_map" in report[representation]
    assert (
        report["lambda"]["chosen"] in report["lambda"]["sweep"]
        or str(report["lambda"]["chosen"]) in report["lambda"]["sweep"]
    )
    figures = {p.name for p in (kedro_project / "data/08_reporting/profiling/figures").iterdir()}
    assert {"pr_curves.png", "lambda_sweep.png", "embedding_final_by_moa.png"} <= figures

    run = _latest_run(kedro_project)
    assert run.info.status == "FINISHED"
    assert "profiling.classical.sphered.map" in run.data.metrics
    assert run.data.tags["morphoflow.data_validation"] == "passed"

    # the notebook a user opens first reads these outputs and this MLflow run
    from tests.notebooks import run_notebook

    monkeypatch.setenv("MORPHOFLOW_PROJECT", str(kedro_project))
    text = run_notebook("01_profiling_run.ipynb")
    assert "wells used" in text and "lambda chosen" in text
    assert "FINISHED" in text


@pytest.mark.slow
def test_segmentation_pipeline_trains_evaluates_and_logs(
    kedro_project: Path, run_pipeline, tiny_simulated_screen: Path
) -> None:
    run_pipeline(
        "segmentation",
        {
            "screen.root": tiny_simulated_screen,
            "segmentation.train.epochs": 2,
            "segmentation.train.steps_per_epoch": 2,
            "segmentation.train.batch_size": 2,
            "segmentation.evaluation.max_sites": 4,
        },
    )
    assert (kedro_project / "data/06_models/nuclei_unet.pt").is_file()
    scores = pd.read_csv(kedro_project / "data/08_reporting/segmentation/unet_scores.csv")
    assert set(scores["views"]) == {1, 8}
    assert set(scores["Metadata_Plate"]) == {"S1_P02", "S2_P02"}  # held-out plates only
    assert (kedro_project / "data/08_reporting/segmentation/tta_overlay.png").is_file()

    run = _latest_run(kedro_project)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    for views in (1, 8):
        assert 0.0 <= metrics[f"segmentation.unet.views{views}.dsb_score"] <= 1.0
        assert f"segmentation.unet.views{views}.dsb_ap_0.95" in metrics
    history = mlflow.MlflowClient().get_metric_history(
        run.info.run_id, "segmentation.unet.train_loss"
    )
    assert [m.step for m in history] == [1, 2]
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "segmentation")
    }
    assert {"segmentation/tta_overlay.png", "segmentation/unet_scores.csv"} <= artifacts

    # the trained U-Net is registered (ONNX, parity-checked) with its held-out scores as tags
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("nuclei-unet", "challenger")
    assert client.get_model_version_by_alias("nuclei-unet", "champion").version == version.version
    assert version.tags["parity_passed"] == "true"
    assert float(version.tags["eval.unet.views8.dsb_score"]) == pytest.approx(
        metrics["segmentation.unet.views8.dsb_score"], abs=1e-6
    )


@pytest.mark.slow
def test_a_second_screen_never_mixes_with_the_first_and_an_empty_well_is_listed(
    kedro_project: Path, run_pipeline, tiny_simulated_screen: Path, tmp_path: Path
) -> None:
    from tests.pipelines.conftest import simulate_tiny_screen

    run_pipeline("profiling", {"screen.root": tiny_simulated_screen})
    manifest = kedro_project / "data/08_reporting/profiling/plates.csv"
    first = pd.read_csv(manifest)

    # a second, smaller screen (one plate per source, named like the first screen's plates)
    # with one well whose DNA is only noise
    second = simulate_tiny_screen(tmp_path / "second", seed=5, plates_per_source=1)
    table = pd.read_csv(second / "load_data.csv")
    platemap = pd.read_csv(second / "platemap.csv", keep_default_na=False)
    treated = platemap[platemap["Metadata_ControlType"] != "negcon"].iloc[0]
    rows = table[table["Metadata_Well"] == treated["Metadata_Well"]]
    if "Metadata_Plate" in platemap.columns:
        rows = rows[rows["Metadata_Plate"] == treated["Metadata_Plate"]]
    rng = np.random.default_rng(0)
    for _, row in rows.iterrows():
        path = second / row["PathName_OrigDNA"] / row["FileName_OrigDNA"]
        dna = tifffile.imread(path)
        noise = rng.normal(float(np.median(dna)), 0.05 * float(np.median(dna)) + 1.0, dna.shape)
        tifffile.imwrite(path, np.clip(noise, 0, 65535).astype(dna.dtype))
    run_pipeline("profiling", {"screen.root": second})

    # the second screen's plates live under its own key, beside the first screen's; the
    # screen-wide tables are the second screen's only
    plates = set(table["Metadata_Plate"])
    assert plates <= set(first["Metadata_Plate"])  # same plate names as the first screen
    latest = pd.read_csv(manifest)
    assert set(latest["Metadata_Plate"]) == plates and set(latest["status"]) == {"computed"}
    assert latest["screen_key"].nunique() == 1
    assert latest["screen_key"].iloc[0] != first["screen_key"].iloc[0]
    store = kedro_project / "data/04_feature/plates"
    assert {p.name for p in store.iterdir()} == {
        first["screen_key"].iloc[0],
        latest["screen_key"].iloc[0],
    }
    record = json.loads((store / latest["partition"].iloc[0] / "_partition.json").read_text())
    assert record["screen_root"] == str(second)
    raw = pd.read_parquet(kedro_project / "data/04_feature/profiles_well_raw.parquet")
    assert set(raw["Metadata_Plate"]) == plates
    assert len(raw) == table.groupby(["Metadata_Plate", "Metadata_Well"]).ngroups

    # every well of the platemap is in the well table, the noise well excluded with its reason
    wells = pd.read_csv(
        kedro_project / "data/08_reporting/profiling/wells.csv", keep_default_na=False
    )
    assert len(wells) == table.groupby(["Metadata_Plate", "Metadata_Well"]).ngroups
    noise = wells[wells["Metadata_Well"] == treated["Metadata_Well"]].iloc[0]
    assert noise["Metadata_CellCount"] <= 1
    assert not noise["Metadata_Used"]
    assert noise["Metadata_ExclusionReason"] in ("no cells", "1 cells < min_cells_per_well=2")
    report = json.loads((kedro_project / "data/08_reporting/profiling/metrics.json").read_text())
    excluded = {r["Metadata_Well"] for r in report["wells"]["excluded"]}
    assert treated["Metadata_Well"] in excluded

    # a third run (the first screen again) that fails at its last step restores the second's
    # outputs: nothing of the failed run stays beside them (the validation report is the one
    # exception by design: it describes the latest attempt, failed or not)
    before = {
        p.relative_to(kedro_project): p.read_bytes()
        for p in (kedro_project / "data").rglob("*")
        if p.is_file() and "mlruns" not in p.parts and "data_validation" not in p.parts
    }
    failed = run_pipeline(
        "profiling",
        {"screen.root": tiny_simulated_screen, "wells.min_cells_per_well": 100000},
        check=False,
    )
    assert failed.returncode != 0
    assert "none of the" in failed.stdout + failed.stderr
    after = {
        p.relative_to(kedro_project): p.read_bytes()
        for p in (kedro_project / "data").rglob("*")
        if p.is_file() and "mlruns" not in p.parts and "data_validation" not in p.parts
    }
    assert after == before
