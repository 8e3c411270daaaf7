"""ONNX exports: parity with torch, drop-in behaviour, and failed checks that write nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from morphoflow.backbone import scale_crops
from morphoflow.backbone.efficientnet import ImageNetBlock6a, efficientnet_b0
from morphoflow.learning.model import parity_inputs
from morphoflow.lifecycle.export import (
    _calibrate_batchnorm,
    export_imagenet_featurizer_onnx,
    unet_parity_inputs,
)
from morphoflow.onnx_export import export_onnx_with_parity
from morphoflow.profiling.cnn import ImageNetFeaturizer
from morphoflow.segmentation.onnx_model import OnnxUNet
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.segmentation.unet import load_unet, predict_probabilities


def test_unet_export_is_a_drop_in_for_predict_probabilities(unet_onnx) -> None:
    path, report = unet_onnx
    assert report["parity_max_abs_diff"] <= 1e-4
    assert (report["input"], report["output"], report["opset"]) == ("image", "probabilities", 17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    assert session.get_modelmeta().custom_metadata_map["multiple"] == "16"
    # dynamic N, H, W: a size and batch that neither the example nor the checks used
    batch = unet_parity_inputs(((2, 64, 112),), seed=3)[0]
    probs = session.run(["probabilities"], {"image": batch})[0]
    assert probs.shape == (2, 3, 64, 112)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # softmax is in the graph
    model, _ = load_unet()
    np.testing.assert_allclose(probs, predict_probabilities(model, batch), atol=1e-4)
    # and through the segmenter (odd size: padding), the same nuclei as the torch model
    image = (batch[0, 0, :50, :70] * 4000).astype(np.uint16)
    onnx_labels = segment_nuclei(OnnxUNet(path), image, views=8).labels
    torch_labels = segment_nuclei(lambda b: predict_probabilities(model, b), image, views=8).labels
    assert onnx_labels.max() > 0 and (onnx_labels == torch_labels).mean() > 0.999


class ShapeFrozen(torch.nn.Module):
    """Python control flow on the batch size: tracing freezes the branch of the example."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 2:
            return x * 2.0
        return x + 1.0


def test_broken_export_raises_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    example = torch.ones(2, 3)
    check = np.full((4, 3), 5.0, np.float32)  # torch: 10, the traced graph: 6
    with pytest.raises(ValueError, match=r"frozen-branch.*max abs diff 4"):
        export_onnx_with_parity(
            ShapeFrozen(),
            example,
            path,
            ["x"],
            ["y"],
            {"x": {0: "n"}, "y": {0: "n"}},
            [check],
            model_name="frozen-branch",
        )
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary one
    # a looser tolerance that the difference still exceeds fails the same way
    with pytest.raises(ValueError, match=r"max abs diff 4 \(> tolerance 1\)"):
        export_onnx_with_parity(
            ShapeFrozen(),
            example,
            path,
            ["x"],
            ["y"],
            {"x": {0: "n"}, "y": {0: "n"}},
            [check],
            tolerance=1.0,
        )
    assert list(tmp_path.iterdir()) == []
    # and a negative tolerance is bad input
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        export_onnx_with_parity(
            ShapeFrozen(), example, path, ["x"], ["y"], {}, [check], tolerance=-1.0
        )
    # the good case on the same module: within tolerance -> the file appears
    diff = export_onnx_with_parity(
        ShapeFrozen(),
        example,
        path,
        ["x"],
        ["y"],
        {"x": {0: "n"}, "y": {0: "n"}},
        [np.full((1, 3), 5.0, np.float32)],
    )
    assert diff == 0.0 and [p.name for p in tmp_path.iterdir()] == ["broken.onnx"]


def test_imagenet_featurizer_export_matches_the_profiling_extractor(tmp_path: Path) -> None:
    # a B0 with BatchNorm statistics of cell-like inputs, saved as a "weights file"
    torch.manual_seed(0)
    network = efficientnet_b0(None)
    _calibrate_batchnorm(
        ImageNetBlock6a(network, 64), [torch.from_numpy(parity_inputs(n=4, size=48, seed=9))]
    )
    weights = tmp_path / "b0.pt"
    torch.save(network.state_dict(), weights)
    path = tmp_path / "imagenet.onnx"
    report = export_imagenet_featurizer_onnx(weights, path, crop_size=48, image_size=64)
    assert report["parity_max_abs_diff"] <= 1e-4
    assert report["output_shape"] == ["N", 3360] and not list(tmp_path.glob(".*"))
    # cell-like crops (blobs on noise; on pure noise block6a activations explode, ~1e2-1e3,
    # and even torch alone differs by ~1e-3 relative between batch sizes)
    raw = parity_inputs(n=3, size=48, seed=4) * 500.0 + 1000.0
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_features = session.run(["features"], {"crops": scale_crops(raw)})[0]
    table = ImageNetFeaturizer(weights, batch_size=2, image_size=64)(raw)
    assert table.shape == (3, 3360) and table.columns[672] == "ImageNet_ER_0"
    assert 1e-3 < float(np.abs(onnx_features).mean()) < 1e3  # a non-vacuous comparison
    np.testing.assert_allclose(onnx_features, table.to_numpy(), atol=1e-4)


def test_imagenet_export_without_weights_and_bad_weights(tmp_path: Path) -> None:
    report = export_imagenet_featurizer_onnx(None, tmp_path / "r.onnx", crop_size=32, image_size=32)
    assert report["source"] == "random init" and report["input_shape"] == ["N", 5, 32, 32]
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        export_imagenet_featurizer_onnx(tmp_path / "missing.pt", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_exporter_and_science_packages_do_not_import_mlflow_or_kedro() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import morphoflow.onnx_export, morphoflow.learning.model, morphoflow.backbone.efficientnet\n"
        "import morphoflow.profiling.cnn, morphoflow.segmentation.onnx_model\n"
        "import morphoflow.lifecycle.export, morphoflow.lifecycle.heldout\n"
        "print(sorted(m for m in ('mlflow', 'kedro', 'tritonclient') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
