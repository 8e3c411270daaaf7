"""Registry: signature, lineage and export tags, aliases; register_unet end to end."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from morphoflow.lifecycle.registry import register_onnx_model, register_unet


def test_register_sets_signature_tags_and_aliases(registry: str, unet_onnx) -> None:
    path, report = unet_onnx
    with mlflow.start_run() as run:
        mlflow.set_tag("morphoflow.data_fingerprint", "abc123")
        first = register_onnx_model(
            path,
            "seg",
            {"parity_max_abs_diff": report["parity_max_abs_diff"], "note": "first"},
            scores={"dsb_score": 0.8},
        )
    assert first["version"] == 1 and set(first["aliases"]) == {"challenger", "champion"}
    client = MlflowClient()
    tags = client.get_model_version("seg", "1").tags
    assert tags["model_kind"] == "segmentation" and tags["parity_passed"] == "true"
    assert float(tags["parity_max_abs_diff"]) == report["parity_max_abs_diff"]
    assert tags["onnx_opset"] == "17" and tags["training_run_id"] == run.info.run_id
    assert tags["input_names"] == "image" and tags["output_names"] == "probabilities"
    assert tags["data_fingerprint"] == "abc123" and tags["git_sha"]
    assert tags["score.dsb_score"] == "0.8" and tags["note"] == "first"
    signature = mlflow.models.get_model_info(first["model_uri"]).signature
    (inp,) = signature.inputs.inputs
    (out,) = signature.outputs.inputs
    assert (inp.name, inp.shape) == ("image", (-1, 1, -1, -1))
    assert (out.name, out.shape) == ("probabilities", (-1, 3, -1, -1))

    with mlflow.start_run():
        second = register_onnx_model(path, "seg", {"parity_max_abs_diff": 0.0})
    assert second["version"] == 2 and second["aliases"] == ["challenger"]
    assert int(client.get_model_version_by_alias("seg", "champion").version) == 1
    assert int(client.get_model_version_by_alias("seg", "challenger").version) == 2
    # never stages
    assert all(
        v.current_stage in ("None", None) for v in client.search_model_versions("name='seg'")
    )


def test_without_parity_a_first_version_is_not_champion(registry: str, unet_onnx) -> None:
    with mlflow.start_run():
        result = register_onnx_model(unet_onnx[0], "noparity", {})
        failed = register_onnx_model(unet_onnx[0], "failed", {"parity_max_abs_diff": 0.5})
    assert result["aliases"] == ["challenger"] and result["parity_passed"] is None
    assert "parity_passed" not in MlflowClient().get_model_version("noparity", "1").tags
    assert failed["aliases"] == ["challenger"] and failed["parity_passed"] is False
    with pytest.raises(RuntimeError, match="active MLflow run"):
        register_onnx_model(unet_onnx[0], "seg", {})
    with mlflow.start_run(), pytest.raises(FileNotFoundError, match="onnx_path"):
        register_onnx_model(Path("missing.onnx"), "seg", {})


def test_register_unet_exports_scores_and_registers_in_its_own_run(
    registry: str, seg_heldout, tmp_path: Path
) -> None:
    result = register_unet(heldout=seg_heldout.root)
    assert result["name"] == "nuclei-unet" and result["version"] == 1
    assert set(result["aliases"]) == {"challenger", "champion"}
    client = MlflowClient()
    run = client.get_run(result["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "morphoflow-registry"
    assert run.data.params["source_model"].endswith("nuclei_unet.pt")
    assert run.data.metrics["parity_max_abs_diff"] <= 1e-4
    tags = client.get_model_version("nuclei-unet", "1").tags
    assert tags["training_run_id"] == result["run_id"]
    assert float(tags["score.dsb_score"]) == pytest.approx(result["score"]["dsb_score"])
    assert tags["heldout_sha256"] == seg_heldout.digest
    assert result["score"]["dsb_score"] > 0.5  # the shipped model segments the set well
    with pytest.raises(FileNotFoundError, match="U-Net model file not found"):
        register_unet(tmp_path / "missing.pt")
    assert len(client.search_model_versions("name='nuclei-unet'")) == 1
