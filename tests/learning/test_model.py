"""WSL model: 5-channel EfficientNet-B0, block6a features, ImageNet init, ONNX, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torchvision

from morphoflow.learning.model import (
    Block6aFeatures,
    build_efficientnet_b0,
    export_featurizer_onnx,
    load_wsl_model,
    parity_inputs,
    save_wsl_model,
)
from morphoflow.profiling.cnn import OnnxFeaturizer


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A B0 with BatchNorm statistics of real inputs (random-init statistics shrink block6a
    activations to ~1e-10, which would make any parity check vacuous)."""
    torch.manual_seed(0)
    model = build_efficientnet_b0(4)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average
    with torch.no_grad():
        model.train()(torch.from_numpy(parity_inputs(n=8, size=64, seed=5)))
    return model.eval()


def test_five_channel_model_gives_logits_and_block6a_features(model: torch.nn.Module) -> None:
    x = torch.from_numpy(parity_inputs(n=2, size=128))
    with torch.no_grad():
        logits = model(x)
        features = Block6aFeatures(model).eval()(x)
    assert logits.shape == (2, 4)
    assert features.shape == (2, 672) and torch.isfinite(features).all()
    assert 1e-2 < float(features.abs().mean()) < 1e2  # realistic activation scale
    assert model.features[0][0].in_channels == 5
    # the featurizer is the mean of the block6a expansion activation of the full model
    captured = {}
    hook = (
        model.features[6][0]
        .block[0]
        .register_forward_hook(lambda _m, _i, out: captured.setdefault("a", out))
    )
    with torch.no_grad():
        model(x)
    hook.remove()
    torch.testing.assert_close(features, captured["a"].mean(dim=(2, 3)))


def test_block6a_features_reject_other_models() -> None:
    with pytest.raises(ValueError, match="model"):
        Block6aFeatures(torchvision.models.efficientnet_b2(weights=None))


def test_imagenet_weights_file_initialises_the_replicated_mean(tmp_path: Path) -> None:
    torch.manual_seed(1)
    imagenet = torchvision.models.efficientnet_b0(weights=None)
    path = tmp_path / "b0.pt"
    torch.save(imagenet.state_dict(), path)
    model = build_efficientnet_b0(3, in_channels=5, weights_path=path)
    rgb = imagenet.features[0][0].weight
    expected = rgb.mean(dim=1, keepdim=True).expand(-1, 5, -1, -1) * 3 / 5
    torch.testing.assert_close(model.features[0][0].weight, expected)
    torch.testing.assert_close(
        model.features[6][0].block[0][0].weight, imagenet.features[6][0].block[0][0].weight
    )
    assert model.classifier[1].out_features == 3
    # grey input: 5 equal channels give the ImageNet model's response to RGB (g, g, g)
    grey = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model.features[0][0](grey.expand(-1, 5, -1, -1)),
            imagenet.features[0][0](grey.expand(-1, 3, -1, -1)),
        )
    (tmp_path / "bad.pt").write_bytes(b"nope")
    with pytest.raises(ValueError, match=r"bad.pt is not a readable weights_path \(torchvision"):
        build_efficientnet_b0(3, weights_path=tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        build_efficientnet_b0(3, weights_path=tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="n_classes"):
        build_efficientnet_b0(1)


def test_onnx_export_matches_torch(model: torch.nn.Module, tmp_path: Path) -> None:
    path = tmp_path / "wsl.onnx"
    diff = export_featurizer_onnx(model, path, crop_size=64)
    assert diff <= 1e-4 and path.is_file()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["crops"]
    assert [o.name for o in session.get_outputs()] == ["features"]
    # the profiling featurizer runs it on raw crops (it scales them itself); batch size is free
    raw = np.random.default_rng(0).normal(500, 50, (3, 5, 64, 64)).astype(np.float32)
    table = OnnxFeaturizer(path, batch_size=2)(raw)
    assert table.shape == (3, 672)


def test_save_load_round_trip(model: torch.nn.Module, tmp_path: Path) -> None:
    path = save_wsl_model(
        model, ["a", "b", "c", "d"], tmp_path / "m" / "wsl.pt", {"seed": 0, "path": tmp_path}
    )
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "morphoflow-wsl/1"
    loaded, classes, metadata = load_wsl_model(path)
    assert classes == ["a", "b", "c", "d"] and metadata == {"seed": 0, "path": str(tmp_path)}
    x = torch.from_numpy(parity_inputs(n=2, size=64))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert not list(path.parent.glob(".*"))  # no temporary files left behind
    with pytest.raises(ValueError, match="classes"):
        save_wsl_model(model, ["a"], tmp_path / "x.pt")
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="path"):
        load_wsl_model(tmp_path / "other.pt")
