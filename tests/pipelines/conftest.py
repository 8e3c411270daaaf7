"""Run Kedro pipelines of the real project in an isolated copy (own data/, conf/, MLflow)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT


@pytest.fixture
def kedro_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the project's conf/ and pyproject.toml in tmp_path, as the working directory.

    MLflow writes to a sqlite store inside it, so tests never touch the developer's mlflow.db.
    """
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(PROJECT_ROOT / "conf" / "base", project / "conf" / "base")
    shutil.copy(PROJECT_ROOT / "conf" / "logging.yml", project / "conf" / "logging.yml")
    (project / "conf" / "local").mkdir()
    # the tiny simulated screens below hold 4-8 cells per well, under the default floor
    (project / "conf" / "local" / "parameters.yml").write_text("wells:\n  min_cells_per_well: 2\n")
    (project / "src").mkdir()  # the package itself is installed; kedro only wants the folder
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
    monkeypatch.chdir(project)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    # this process's MLflow client too: an earlier test's set_tracking_uri would win over
    # the environment variable (test order decided whether a test read its own registry)
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "true")
    # `make test` exports KEDRO_LOGGING_CONFIG; point it at this copy's file
    monkeypatch.setenv("KEDRO_LOGGING_CONFIG", str(project / "conf" / "logging.yml"))
    bootstrap_project(project)
    try:
        yield project
    finally:
        mlflow.set_tracking_uri(previous)


@pytest.fixture
def run_pipeline(kedro_project: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``kedro run --pipeline=NAME --params ...`` in the project copy, as a user does.

    A separate process per run: kedro-mlflow's hooks keep state between sessions of one process.
    """

    def _run(
        name: str, params: dict[str, Any] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        command = [str(Path(sys.executable).with_name("kedro")), "run", f"--pipelines={name}"]
        if params:
            command += ["--params", ",".join(f"{k}={v}" for k, v in params.items())]
        result = subprocess.run(
            command, cwd=kedro_project, capture_output=True, text=True, timeout=600
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    return _run


def simulate_tiny_screen(out: Path, seed: int = 3, **overrides: Any) -> Path:
    """A small simulated screen with ground-truth masks (2 sources x 2 plates, 128 px sites,
    2 MoAs x 4 treatments by default; ``overrides`` change ScreenPreset fields)."""
    from morphoflow.simulate import ScreenPreset, simulate_screen

    settings: dict[str, Any] = {
        "n_sources": 2,
        "plates_per_source": 2,
        "n_moas": 2,
        "treatments_per_moa": 4,
        "n_null_treatments": 1,
        "n_source_specific": 0,
        "n_dmso_wells": 2,
        "n_untreated_wells": 1,
        "sites_per_well": 1,
        "site_size": 128,
        "cells_per_site": (4, 8),
    }
    simulate_screen(out, preset=ScreenPreset(**{**settings, **overrides}), seed=seed)
    return out


@pytest.fixture(scope="session")
def tiny_simulated_screen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default tiny screen, shared by the pipeline tests."""
    return simulate_tiny_screen(tmp_path_factory.mktemp("sim") / "screen")
