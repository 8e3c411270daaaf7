"""evaluation pipeline through `kedro run`: gated promotion of the registered U-Net."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow import MlflowClient

from morphoflow.lifecycle.registry import register_unet
from morphoflow.segmentation.unet import NucleusUNet, save_unet

SMALL_SET = {
    "evaluation.model": "nuclei-unet",
    "evaluation.freeze_if_missing.n_images": 4,
    "evaluation.freeze_if_missing.size": 64,
}


def _aliases() -> dict[str, int]:
    model = MlflowClient().get_registered_model("nuclei-unet")
    return {k: int(v) for k, v in model.aliases.items()}


@pytest.mark.slow
def test_evaluation_promotes_an_equal_challenger_and_refuses_a_worse_one(
    kedro_project: Path, run_pipeline
) -> None:
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    register_unet()  # v1: champion
    register_unet()  # v2: the same weights, challenger
    run_pipeline("evaluation", SMALL_SET)
    decision_file = kedro_project / "data/08_reporting/evaluation/decision.json"
    decision = json.loads(decision_file.read_text())
    assert decision["decision"] == "promoted" and decision["candidate_version"] == 2
    assert decision["candidate_score"] == pytest.approx(decision["champion_score"])
    assert _aliases() == {"champion": 2, "previous-champion": 1}
    manifest = kedro_project / "data/05_model_input/heldout/segmentation/manifest.json"
    assert json.loads(manifest.read_text())["source"]["n_images"] == 4  # frozen on first use

    torch.manual_seed(0)
    worse = save_unet(NucleusUNet(), kedro_project / "untrained.pt")
    register_unet(worse)  # v3: challenger, untrained
    run_pipeline("evaluation", SMALL_SET)  # a refusal is a result: the run succeeds
    decision = json.loads(decision_file.read_text())
    assert decision["decision"] == "refused" and decision["candidate_version"] == 3
    assert decision["heldout_digest"] and "below champion" in decision["reason"]
    assert _aliases() == {"champion": 2, "previous-champion": 1, "challenger": 3}

    # as a CI/CD gate the same refusal fails the run, after recording the decision
    decision_file.unlink()
    failed = run_pipeline(
        "evaluation", {**SMALL_SET, "evaluation.fail_on_refusal": True}, check=False
    )
    assert failed.returncode != 0
    assert "refused" in failed.stdout + failed.stderr
    assert json.loads(decision_file.read_text())["decision"] == "refused"
    assert _aliases() == {"champion": 2, "previous-champion": 1, "challenger": 3}
