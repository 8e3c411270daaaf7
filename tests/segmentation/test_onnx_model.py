"""The ONNX U-Net through onnxruntime gives the torch model's probabilities and nuclei."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from morphoflow.lifecycle.export import export_unet_onnx
from morphoflow.segmentation.onnx_model import OnnxUNet, load_predictor
from morphoflow.segmentation.postprocess import normalize_image
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.segmentation.unet import load_unet, predict_probabilities
from morphoflow.simulate.nuclei import random_nuclei_image


@pytest.fixture(scope="module")
def onnx_unet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx") / "unet.onnx"
    export_unet_onnx(None, path)
    return path


def test_onnx_probabilities_match_torch_with_tiling(onnx_unet: Path) -> None:
    image, _ = random_nuclei_image(np.random.default_rng(4), (150, 170))
    batch = normalize_image(image)[None, None].astype(np.float32)
    torch_model, _ = load_unet()
    expected = predict_probabilities(torch_model, batch, tile=64, overlap=16)
    got = OnnxUNet(onnx_unet, tile=64, overlap=16)(batch)
    assert got.shape == (1, 3, 150, 170)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_load_predictor_picks_the_backend_by_suffix(onnx_unet: Path) -> None:
    image, truth = random_nuclei_image(np.random.default_rng(5), (96, 96))
    onnx_result = segment_nuclei(load_predictor(onnx_unet), image, views=2)
    torch_result = segment_nuclei(load_predictor(None), image, views=2)
    assert isinstance(load_predictor(onnx_unet), OnnxUNet)
    assert onnx_result.labels.max() == torch_result.labels.max() > 0
    assert (onnx_result.labels == torch_result.labels).mean() > 0.999


def test_onnx_unet_rejects_bad_input(onnx_unet: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxUNet(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        OnnxUNet(onnx_unet)(np.zeros((1, 2, 32, 32), np.float32))
