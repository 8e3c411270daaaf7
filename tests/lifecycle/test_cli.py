"""The lifecycle commands: freeze-heldout, register-unet, promote, rollback (exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from mlflow import MlflowClient
from typer.testing import CliRunner

from morphoflow.cli import app
from morphoflow.segmentation.unet import NucleusUNet, save_unet


def test_register_promote_refuse_and_rollback_from_the_command_line(
    registry: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    heldout = tmp_path / "heldout"
    result = runner.invoke(
        app,
        [
            "freeze-heldout",
            "segmentation",
            "--out",
            str(heldout),
            "--n-images",
            "4",
            "--size",
            "64",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] == 8

    assert runner.invoke(app, ["register-unet"]).exit_code == 0  # v1: champion
    torch.manual_seed(3)
    worse = save_unet(NucleusUNet(), tmp_path / "untrained.pt", {"note": "untrained"})
    result = runner.invoke(app, ["register-unet", "--model", str(worse)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["aliases"] == ["challenger"]

    result = runner.invoke(app, ["promote", "nuclei-unet", "--heldout", str(heldout)])
    assert result.exit_code == 1
    assert result.stderr.startswith("refused:") and result.stderr.count("\n") == 1
    assert "below champion" in result.stderr

    result = runner.invoke(
        app, ["promote", "nuclei-unet", "--heldout", str(heldout), "--margin", "1.0"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["aliases"] == {"champion": 2, "previous-champion": 1}

    result = runner.invoke(app, ["rollback", "nuclei-unet"])
    assert result.exit_code == 0 and json.loads(result.stdout)["aliases"] == {"champion": 1}
    result = runner.invoke(app, ["rollback", "nuclei-unet"])
    assert result.exit_code == 1 and "previous-champion" in result.stderr
    assert MlflowClient().get_model_version("nuclei-unet", "2").tags["rolled_back"] == "true"

    result = runner.invoke(app, ["promote", "missing-model"])
    assert result.exit_code == 2 and "no registered model named 'missing-model'" in result.stderr
    result = runner.invoke(app, ["register-unet", "--model", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2 and "not found" in result.stderr
