"""``morphoflow triton build-repo`` + ``serve``: the commands a user runs, as processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from morphoflow.serving.client import TritonClient
from morphoflow.serving.repository import parse_config
from morphoflow.serving.server import free_port
from tests.serving.conftest import real_looking_dna, stubs_gone

pytestmark = pytest.mark.triton
EXE = str(Path(sys.executable).with_name("morphoflow"))


def test_build_repo_then_serve_until_sigterm(registry: str, tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry}
    repo = tmp_path / "repo"
    built = subprocess.run(
        [EXE, "triton", "build-repo", "--out", str(repo), "--alias", "champion"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=True,
    )
    assert json.loads(built.stdout)["models"] == {
        "nuclei_unet": 1,
        "featurizer": 1,
        "nuclei_tta": 1,
    }
    assert parse_config((repo / "featurizer" / "config.pbtxt").read_text()).backend == "python"

    ports = [free_port() for _ in range(3)]
    serve = subprocess.Popen(
        [
            EXE,
            "triton",
            "serve",
            "--repo",
            str(repo),
            "--http-port",
            str(ports[0]),
            "--grpc-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        first = json.loads(serve.stdout.readline())
        assert first["grpc"] == f"127.0.0.1:{ports[1]}"
        assert sorted(first["models"]) == ["featurizer", "nuclei_tta", "nuclei_unet"]
        with TritonClient(f"http://127.0.0.1:{ports[0]}") as client:
            assert client.segment(real_looking_dna((64, 64)), views=4).labels.shape == (64, 64)
        serve.send_signal(signal.SIGTERM)
        out, err = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert serve.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"stopped": True, "exit_code": 0}
    assert stubs_gone(str(repo)) == []
    assert not list(Path("/dev/shm").glob(f"morphoflow_triton_{serve.pid}_*"))  # its regions


def test_build_repo_names_a_missing_model(registry: str, tmp_path: Path) -> None:
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry}
    result = subprocess.run(
        [
            EXE,
            "triton",
            "build-repo",
            "--out",
            str(tmp_path / "repo"),
            "--featurizer-model",
            "no-such-model",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert result.returncode == 1
    assert "no-such-model" in result.stderr
    assert not (tmp_path / "repo").exists()
