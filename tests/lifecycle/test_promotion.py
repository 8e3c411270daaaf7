"""Gated promotion and rollback on a real sqlite registry with real ONNX models."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from morphoflow.lifecycle.promotion import (
    PROMOTION_EXPERIMENT,
    PromotionRefused,
    RollbackImpossible,
    promote,
    rollback,
)
from morphoflow.lifecycle.registry import register_onnx_model


def _register(name: str, onnx: tuple[Path, dict], parity: bool = True, champion: bool = True):
    tags = {"parity_max_abs_diff": onnx[1]["parity_max_abs_diff"]} if parity else {}
    with mlflow.start_run():
        return register_onnx_model(onnx[0], name, tags, set_champion_if_none=champion)


def _aliases(name: str) -> dict[str, int]:
    return {k: int(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}


def _decision_runs(name: str) -> list:
    client = MlflowClient()
    experiment = client.get_experiment_by_name(PROMOTION_EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], f"tags.`morphoflow.model` = '{name}'")
    return sorted(runs, key=lambda r: r.info.start_time)


def test_first_version_is_promoted_after_the_parity_gate(registry, unet_onnx, seg_heldout) -> None:
    _register("m", unet_onnx, champion=False)
    assert _aliases("m") == {"challenger": 1}
    decision = promote("m", heldout=seg_heldout.root)
    assert decision.decision == "promoted" and decision.champion_version is None
    assert decision.candidate_score > 0.5 and decision.champion_score is None
    assert _aliases("m") == {"champion": 1}  # challenger consumed
    assert decision.heldout_digest == seg_heldout.digest


def test_equal_challenger_is_promoted_and_old_champion_kept(
    registry, unet_onnx, seg_heldout
) -> None:
    _register("m", unet_onnx)
    _register("m", unet_onnx)
    decision = promote("m", margin=0.0, heldout=seg_heldout.root)
    assert decision.decision == "promoted" and decision.promoted
    assert (decision.candidate_version, decision.champion_version) == (2, 1)
    assert decision.candidate_score == pytest.approx(decision.champion_score)
    assert _aliases("m") == {"champion": 2, "previous-champion": 1}
    tags = MlflowClient().get_model_version("m", "2").tags
    assert tags["promotion.decision"] == "promoted"
    assert float(tags["promotion.score"]) == pytest.approx(decision.candidate_score)
    assert float(tags["promotion.champion_score"]) == pytest.approx(decision.champion_score)
    assert tags["promotion.run_id"] == decision.run_id
    assert MlflowClient().get_model_version("m", "1").tags["promotion.replaced_by"] == "2"
    (run,) = _decision_runs("m")
    assert run.data.params["decision"] == "promoted" and run.data.params["margin"] == "0.0"
    assert run.data.metrics["score_difference"] == pytest.approx(0.0)
    text = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/decision.txt")
    assert text.count("\n") == 1 and "m v2: promoted" in text

    # rollback restores v1 and marks v2
    back = rollback("m")
    assert back.decision == "rollback" and (back.candidate_version, back.champion_version) == (1, 2)
    assert _aliases("m") == {"champion": 1}
    tags = MlflowClient().get_model_version("m", "2").tags
    assert tags["rolled_back"] == "true" and tags["rolled_back_to"] == "1"
    assert MlflowClient().get_model_version("m", "1").tags["promotion.decision"] == "rollback"
    assert [r.data.params["decision"] for r in _decision_runs("m")] == ["promoted", "rollback"]
    with pytest.raises(RollbackImpossible, match="previous-champion"):
        rollback("m")


def test_worse_challenger_is_refused_and_aliases_stay(
    registry, unet_onnx, random_unet_onnx, seg_heldout
) -> None:
    _register("m", unet_onnx)
    _register("m", random_unet_onnx)  # untrained weights, parity fine
    before = _aliases("m")
    with pytest.raises(PromotionRefused, match="below champion") as info:
        promote("m", margin=0.05, heldout=seg_heldout.root)
    decision = info.value.decision
    assert decision.decision == "refused" and not decision.promoted
    assert decision.champion_score - decision.candidate_score > 0.05
    assert _aliases("m") == before == {"champion": 1, "challenger": 2}
    tags = MlflowClient().get_model_version("m", "2").tags
    assert tags["promotion.decision"] == "refused" and "margin 0.05" in tags["promotion.reason"]
    assert [r.data.params["decision"] for r in _decision_runs("m")] == ["refused"]
    # a wide enough margin lets it through: the gate is the margin, not the model
    assert promote("m", margin=1.0, heldout=seg_heldout.root).decision == "promoted"


def test_missing_or_failed_parity_is_refused(registry, unet_onnx, seg_heldout) -> None:
    _register("m", unet_onnx)
    _register("m", unet_onnx, parity=False)
    with pytest.raises(PromotionRefused, match="no parity check"):
        promote("m", heldout=seg_heldout.root)
    with mlflow.start_run():
        register_onnx_model(unet_onnx[0], "m", {"parity_max_abs_diff": 3e-3})
    with pytest.raises(PromotionRefused, match="parity check failed"):
        promote("m", version=3, heldout=seg_heldout.root)
    assert _aliases("m") == {"champion": 1, "challenger": 3}
    with pytest.raises(ValueError, match="no version 9"):
        promote("m", version=9)
    with pytest.raises(ValueError, match="no registered model named 'nope'"):
        promote("nope")


def test_tampered_heldout_is_refused(registry, unet_onnx, seg_heldout, tmp_path: Path) -> None:
    _register("m", unet_onnx)
    _register("m", unet_onnx)
    copy = tmp_path / "heldout"
    shutil.copytree(seg_heldout.root, copy)
    mask = copy / "masks" / "002.tif"
    data = bytearray(mask.read_bytes())
    data[-1] ^= 0xFF
    mask.write_bytes(bytes(data))
    with pytest.raises(PromotionRefused, match=r"masks/002.tif changed"):
        promote("m", heldout=copy)
    (copy / "images" / "001.tif").unlink()
    with pytest.raises(PromotionRefused, match=r"images/001.tif .* missing"):
        promote("m", heldout=copy)
    assert _aliases("m") == {"champion": 1, "challenger": 2}
    assert promote("m", heldout=seg_heldout.root).decision == "promoted"  # the intact set


def test_candidate_that_already_is_champion_is_unchanged(registry, unet_onnx, seg_heldout) -> None:
    _register("m", unet_onnx)
    decision = promote("m", heldout=seg_heldout.root)
    assert decision.decision == "unchanged" and _aliases("m") == {"champion": 1, "challenger": 1}


def test_featurizer_promotion_is_gated_on_moa_map(registry, tmp_path: Path) -> None:
    from morphoflow.lifecycle.heldout import freeze_featurizer_heldout
    from tests.lifecycle.conftest import Blind, MeanPool, export_featurizer, write_crop_store

    crops_dir, index = write_crop_store(tmp_path / "store")
    held = freeze_featurizer_heldout(crops_dir, index, tmp_path / "heldout", plates=["P1", "P2"])
    for module, name in ((MeanPool(), "seeing"), (Blind(), "blind")):
        path = export_featurizer(module, tmp_path / f"{name}.onnx")
        with mlflow.start_run():
            register_onnx_model(path, "f", {"parity_max_abs_diff": 0.0})
    with pytest.raises(PromotionRefused, match="moa_map") as info:
        promote("f", heldout=held.root)
    assert info.value.decision.champion_score == pytest.approx(1.0)
    assert _aliases("f") == {"champion": 1, "challenger": 2}
    assert MlflowClient().get_model_version("f", "2").tags["model_kind"] == "featurizer"


def test_a_kind_without_a_heldout_folder_is_never_promoted_over_a_champion_unscored(
    registry, unet_onnx, monkeypatch: pytest.MonkeyPatch
) -> None:
    from morphoflow.lifecycle import heldout

    _register("m", unet_onnx)
    _register("m", unet_onnx)
    # a model kind that has no default held-out folder (as a new kind would)
    monkeypatch.delitem(heldout.DEFAULT_HELDOUT_DIRS, "segmentation")
    with pytest.raises(PromotionRefused) as info:
        promote("m")
    assert "no held-out set for segmentation models" in info.value.decision.reason
    assert _aliases("m") == {"champion": 1, "challenger": 2}
