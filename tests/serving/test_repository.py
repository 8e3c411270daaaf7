"""Model repository: configs for both targets parse and line up with the ONNX files."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from morphoflow.serving.repository import (
    RegistryModel,
    ServingSettings,
    add_onnx_version,
    build_repository,
    inspect_onnx,
    parse_config,
    registry_onnx,
    served_versions,
)


def _models(onnx_models: dict[str, Path]) -> tuple[RegistryModel, RegistryModel]:
    return (
        RegistryModel("nuclei-unet", 4, onnx_models["unet"]),
        RegistryModel("cellpainting-cnn", 7, onnx_models["featurizer_v1"]),
    )


def test_cpu_repository_layout_and_configs(tmp_path: Path, onnx_models: dict[str, Path]) -> None:
    seg, feat = _models(onnx_models)
    served = build_repository(tmp_path / "repo", seg, feat)
    assert served == {"nuclei_unet": 4, "featurizer": 7, "nuclei_tta": 1}
    repo = tmp_path / "repo"
    for name, version in served.items():
        config = parse_config((repo / name / "config.pbtxt").read_text())
        assert config.name == name
        assert config.backend == "python"
        assert (repo / name / str(version) / "model.py").is_file()
    unet = parse_config((repo / "nuclei_unet" / "config.pbtxt").read_text())
    assert [(i.name, list(i.dims)) for i in unet.input] == [("image", [1, -1, -1])]
    assert [(o.name, list(o.dims)) for o in unet.output] == [("probabilities", [3, -1, -1])]
    assert list(unet.version_policy.specific.versions) == [4]
    assert unet.max_batch_size >= 8  # the 8 TTA views go as one batch
    feat_config = parse_config((repo / "featurizer" / "config.pbtxt").read_text())
    assert [(i.name, list(i.dims)) for i in feat_config.input] == [("crops", [5, 128, 128])]
    assert [(o.name, list(o.dims)) for o in feat_config.output] == [("features", [672])]
    assert feat_config.HasField("dynamic_batching")
    assert (repo / "featurizer" / "7" / "model.onnx").read_bytes() == onnx_models[
        "featurizer_v1"
    ].read_bytes()
    tta = parse_config((repo / "nuclei_tta" / "config.pbtxt").read_text())
    assert tta.parameters["segmentation_model"].string_value == "nuclei_unet"
    assert tta.parameters["multiple"].string_value == "16"  # from the U-Net's ONNX metadata
    assert {i.name: i.optional for i in tta.input} == {
        "image": False,
        "views": True,
        "threshold": True,
        "min_diameter": True,
        "max_diameter": True,
        "discard_border_objects": True,
        "diameter": True,
        "merge": True,
    }


def test_gpu_repository_uses_onnxruntime_on_gpu(
    tmp_path: Path, onnx_models: dict[str, Path]
) -> None:
    seg, feat = _models(onnx_models)
    build_repository(tmp_path / "repo", seg, feat, ServingSettings(target="gpu", tensorrt=True))
    for name in ("nuclei_unet", "featurizer"):
        config = parse_config((tmp_path / "repo" / name / "config.pbtxt").read_text())
        assert config.backend == "onnxruntime"
        assert config.default_model_filename == "model.onnx"
        assert config.instance_group[0].kind == config.instance_group[0].KIND_GPU
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accelerator.name == "tensorrt"
        assert not list((tmp_path / "repo" / name).glob("*/model.py"))
    tta = parse_config((tmp_path / "repo" / "nuclei_tta" / "config.pbtxt").read_text())
    assert tta.backend == "python"  # BLS runs on the CPU next to the GPU model


def test_failed_build_leaves_the_existing_repository(
    tmp_path: Path, onnx_models: dict[str, Path]
) -> None:
    seg, feat = _models(onnx_models)
    build_repository(tmp_path / "repo", seg, feat)
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "repo").rglob("*"))
    swapped = RegistryModel("cellpainting-cnn", 8, onnx_models["unet"])  # not a featuriser
    with pytest.raises(ValueError, match="segmentation, not a featurizer"):
        build_repository(tmp_path / "repo", seg, swapped)
    after = sorted(p.relative_to(tmp_path) for p in (tmp_path / "repo").rglob("*"))
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no staging folder left


def test_new_version_must_fit_the_served_inputs(
    tmp_path: Path, onnx_models: dict[str, Path]
) -> None:
    seg, feat = _models(onnx_models)
    build_repository(tmp_path / "repo", seg, feat)
    with pytest.raises(ValueError, match="differ from"):
        add_onnx_version(tmp_path / "repo", "featurizer", onnx_models["unet"], 8)
    assert served_versions(tmp_path / "repo" / "featurizer") == [7]
    add_onnx_version(tmp_path / "repo", "featurizer", onnx_models["featurizer_v2"], 8)
    assert served_versions(tmp_path / "repo" / "featurizer") == [8]
    assert (tmp_path / "repo" / "featurizer" / "7" / "model.onnx").exists()  # kept for rollback


def test_inspect_rejects_foreign_graphs(tmp_path: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    model = helper.make_model(
        helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    )
    onnx.save(model, str(tmp_path / "other.onnx"))
    with pytest.raises(ValueError, match="neither a segmentation model"):
        inspect_onnx(tmp_path / "other.onnx")
    with pytest.raises(FileNotFoundError):
        inspect_onnx(tmp_path / "missing.onnx")


def test_registry_aliases_resolve_to_versions(registry: str) -> None:
    assert registry_onnx("cellpainting-cnn", "champion").version == 1
    assert registry_onnx("cellpainting-cnn", "challenger").version == 2
    assert registry_onnx("cellpainting-cnn", None, version=2).onnx_path.suffix == ".onnx"
    with pytest.raises(ValueError, match="no alias 'nope'"):
        registry_onnx("cellpainting-cnn", "nope")
    with pytest.raises(ValueError, match="nuclei-missing"):
        registry_onnx("nuclei-missing", "champion")
