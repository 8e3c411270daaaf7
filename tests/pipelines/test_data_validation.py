"""The data_validation pipeline run through Kedro, with MLflow tracking, on a real screen folder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
from kedro.framework.project import pipelines

from tests.conftest import write_tiny_screen


def _runs(project: Path) -> list[mlflow.entities.Run]:
    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    return mlflow.search_runs(experiment_names=["morphoflow"], output_format="list")


def test_pipelines_are_registered(kedro_project: Path) -> None:
    assert {"data_validation", "profiling"} <= set(pipelines.keys())


def test_valid_screen_is_validated_and_tracked(
    kedro_project: Path, run_pipeline, tmp_path: Path
) -> None:
    screen = write_tiny_screen(tmp_path / "screen")
    run_pipeline("data_validation", {"screen.root": screen})

    assert (kedro_project / "data/03_primary/image_table.parquet").is_file()
    summary = json.loads(
        (kedro_project / "data/08_reporting/data_validation/summary.json").read_text()
    )
    assert summary["success"] and summary["n_sites"] == 6
    assert (kedro_project / "data/08_reporting/data_validation/data_docs/index.html").is_file()

    (run,) = _runs(kedro_project)
    assert run.info.status == "FINISHED"
    assert run.data.params["screen.root"] == str(screen)
    assert run.data.metrics["data_validation.n_sites"] == 6
    assert run.data.tags["morphoflow.data_fingerprint"] == summary["data_fingerprint"]
    assert run.data.tags["morphoflow.data_validation"] == "passed"
    assert "morphoflow.git_sha" in run.data.tags
    artifacts = {
        a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "data_validation")
    }
    assert "data_validation/summary.json" in artifacts


def test_bad_screen_stops_the_run_before_anything_downstream(
    kedro_project: Path, run_pipeline, tmp_path: Path
) -> None:
    screen = write_tiny_screen(tmp_path / "screen")
    (screen / "images/P2/P2_B01_s1_DNA.tif").write_bytes(b"truncated")
    result = run_pipeline("profiling", {"screen.root": screen}, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "DataValidationError" in output
    assert re.search(r"QC_Readable.*\n.*P2_B01_s1_DNA\.tif", output)

    assert not (kedro_project / "data/03_primary/image_table.parquet").exists()
    summary = json.loads(
        (kedro_project / "data/08_reporting/data_validation/summary.json").read_text()
    )
    assert summary["success"] is False
    (run,) = _runs(kedro_project)
    assert run.info.status == "FAILED"
    assert run.data.tags["morphoflow.data_validation"] == "failed"


def test_a_mistyped_parameter_stops_the_run_naming_the_closest_one(
    kedro_project: Path, run_pipeline, tmp_path: Path
) -> None:
    screen = write_tiny_screen(tmp_path / "screen")
    result = run_pipeline(
        "data_validation", {"screen.root": screen, "wells.min_cell_per_well": 3}, check=False
    )
    assert result.returncode != 0
    assert "wells.min_cell_per_well (did you mean wells.min_cells_per_well?)" in (
        result.stdout + result.stderr
    )
    assert not (kedro_project / "data/02_intermediate/image_table.parquet").exists()


def test_a_run_stopped_by_sigterm_fails_cleanly(kedro_project: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    screen = write_tiny_screen(tmp_path / "screen")
    command = [
        str(Path(sys.executable).with_name("kedro")),
        "run",
        "--pipelines=profiling",
        "--params",
        f"screen.root={screen},batch_correction.lambdas=[0.01]",
    ]
    process = subprocess.Popen(
        command, cwd=kedro_project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    written = kedro_project / "data/03_primary/image_table.parquet"
    deadline = time.monotonic() + 300
    while not written.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be stopped"
    process.send_signal(signal.SIGTERM)  # what a scheduler or `timeout` sends
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "run stopped by SIGTERM" in output
    # what the stopped run had written is gone, and no backup is left behind
    leftovers = [
        p
        for p in (kedro_project / "data").rglob("*")
        if p.is_file() and "data_validation" not in p.parts
    ]
    assert leftovers == []
    (run,) = _runs(kedro_project)
    assert run.info.status == "FAILED"
