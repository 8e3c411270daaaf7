"""The WSL model: a 5-channel EfficientNet-B0 treatment classifier and its block6a featurizer.

- :func:`~morphoflow.backbone.efficientnet.build_efficientnet_b0` and
  :class:`~morphoflow.backbone.efficientnet.Block6aFeatures` (the classifier and its block6a
  features) live in :mod:`morphoflow.backbone`, shared with profiling; re-exported here.
- :func:`export_featurizer_onnx`: ONNX featurizer with input ``crops`` (N, 5, S, S) float32
  already scaled to [-1, 1] per crop channel (:func:`morphoflow.backbone.scale_crops`,
  exactly what :class:`~morphoflow.profiling.cnn.OnnxFeaturizer` feeds it) and output
  ``features`` (N, 672), checked against torch with onnxruntime.
- :func:`save_wsl_model` / :func:`load_wsl_model`: one torch file (format ``morphoflow-wsl/1``)
  loadable with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn

from morphoflow.backbone import scale_crops
from morphoflow.backbone.efficientnet import Block6aFeatures, build_efficientnet_b0
from morphoflow.onnx_export import DEFAULT_TOLERANCE, export_onnx_with_parity
from morphoflow.torch_files import load_payload, save_payload

__all__ = [
    "ARCHITECTURE",
    "Block6aFeatures",
    "PARITY_TOLERANCE",
    "WSL_FORMAT",
    "build_efficientnet_b0",
    "export_featurizer_onnx",
    "load_wsl_model",
    "parity_inputs",
    "save_wsl_model",
]

WSL_FORMAT = "morphoflow-wsl/1"
ARCHITECTURE = "efficientnet_b0"
PARITY_TOLERANCE = DEFAULT_TOLERANCE


def parity_inputs(n: int = 8, size: int = 128, channels: int = 5, seed: int = 0) -> np.ndarray:
    """Cell-like test inputs: blobs on noise, scaled with ``scale_crops`` (float32)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    out = rng.normal(100.0, 5.0, (n, channels, size, size)).astype(np.float32)
    for i in range(n):
        for c in range(channels):
            for _ in range(3):
                cy, cx = rng.uniform(0.2 * size, 0.8 * size, 2)
                radius = rng.uniform(0.05, 0.2) * size
                out[i, c] += rng.uniform(200, 2000) * np.exp(
                    -((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2)
                )
    return scale_crops(out)


def export_featurizer_onnx(
    model: nn.Module,
    path: str | Path,
    crop_size: int = 128,
    opset: int = 17,
    sample: np.ndarray | None = None,
    in_channels: int = 5,
) -> float:
    """Export the block6a featurizer to ONNX and check it against torch.

    The graph is ``crops`` (N, C, S, S) float32, dynamic N, scaled per crop channel to
    [-1, 1] by the caller -> ``features`` (N, 672) float32. Exported and checked by
    :func:`morphoflow.onnx_export.export_onnx_with_parity` (torch's TorchScript exporter,
    ``dynamo=False``: fast, honours ``opset``; the ``torch.export`` exporter, which needs
    onnxscript and emits opset >= 18, is the fallback when the former is unavailable).
    Written atomically.

    Args:
        model: An EfficientNet-B0 classifier or a :class:`Block6aFeatures` (not modified: a CPU
            copy in eval mode is exported).
        path: Destination ``.onnx`` file.
        crop_size: Side S of the example and check inputs.
        opset: ONNX opset.
        sample: Scaled crops (N, C, S, S) for the check; default: :func:`parity_inputs`.
        in_channels: C.

    Returns:
        The maximum absolute difference between onnxruntime and torch on the check inputs
        (including a batch of a size different from the export example).

    Raises:
        ValueError: The difference exceeds 1e-4 (the file is not written), or a bad model.
    """
    if isinstance(model, Block6aFeatures):
        featurizer = model
    else:
        featurizer = Block6aFeatures(model)
    if sample is None:
        sample = parity_inputs(n=5, size=crop_size, channels=in_channels)
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    example = torch.from_numpy(parity_inputs(n=2, size=crop_size, channels=in_channels, seed=1))
    return export_onnx_with_parity(
        featurizer,
        example,
        path,
        input_names=["crops"],
        output_names=["features"],
        dynamic_axes={"crops": {0: "batch"}, "features": {0: "batch"}},
        check_inputs=[sample],
        tolerance=PARITY_TOLERANCE,
        opset=opset,
        model_name="WSL block6a featurizer",
        metadata={"morphoflow.model_kind": "featurizer"},
    )


def save_wsl_model(
    model: torchvision.models.EfficientNet,
    classes: list[Any],
    path: str | Path,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save a WSL model (config, float32 weights, classes, metadata) to one file, atomically.

    Args:
        model: The classifier (from :func:`build_efficientnet_b0`).
        classes: Class names in label order (``len(classes)`` = logits).
        path: Destination ``.pt`` file.
        metadata: JSON-like facts (lineage, scores, training config); stored after a JSON
            round trip (non-JSON values become strings) so the file loads with
            ``weights_only=True``.

    Returns:
        The written path.

    Raises:
        ValueError: ``classes`` does not match the model's head.
    """
    n_out = model.classifier[-1].out_features
    if len(classes) != n_out:
        raise ValueError(f"classes has {len(classes)} names, the model has {n_out} outputs")
    path = Path(path)
    payload = {
        "format": WSL_FORMAT,
        "config": {
            "architecture": ARCHITECTURE,
            "n_classes": int(n_out),
            "in_channels": int(model.features[0][0].in_channels),
        },
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "classes": json.loads(json.dumps(list(classes), default=str)),
        "metadata": json.loads(json.dumps(dict(metadata or {}), default=str)),
    }
    return save_payload(path, payload)


def load_wsl_model(
    path: str | Path,
) -> tuple[torchvision.models.EfficientNet, list[Any], dict[str, Any]]:
    """Load a model written by :func:`save_wsl_model`.

    Returns:
        The classifier (eval mode, CPU), its classes and its metadata.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: Not a ``morphoflow-wsl/1`` file.
    """
    payload = load_payload(path, WSL_FORMAT, "WSL model")
    config = payload["config"]
    if config.get("architecture") != ARCHITECTURE:
        raise ValueError(f"path {path}: unsupported architecture {config.get('architecture')!r}")
    model = build_efficientnet_b0(config["n_classes"], in_channels=config["in_channels"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), list(payload["classes"]), dict(payload.get("metadata", {}))
