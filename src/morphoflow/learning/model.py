"""The WSL model: a 5-channel EfficientNet-B0 treatment classifier and its block6a featurizer.

- :func:`build_efficientnet_b0`: torchvision's EfficientNet-B0 (``weights=None``; nothing is
  downloaded) with a 5-channel first convolution and an ``n_classes`` head (torchvision's
  dropout 0.2 kept). Optional ImageNet init from a *local* torchvision state-dict file.
- :class:`Block6aFeatures`: the features of the Cell Painting CNN: the spatial mean of the
  block6a expansion activation (``features[6][0].block[0]``, 672 channels for B0), computed
  without running the rest of the network.
- :func:`export_featurizer_onnx`: ONNX featurizer with input ``crops`` (N, 5, S, S) float32
  already scaled to [-1, 1] per crop channel (:func:`morphoflow.profiling.cnn.scale_crops`,
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

from morphoflow.onnx_export import DEFAULT_TOLERANCE, export_onnx_with_parity
from morphoflow.profiling.cnn import BLOCK6A_CHANNELS, scale_crops
from morphoflow.torch_files import load_payload, save_payload

WSL_FORMAT = "morphoflow-wsl/1"
ARCHITECTURE = "efficientnet_b0"
PARITY_TOLERANCE = DEFAULT_TOLERANCE


def _load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file not found: {path} (save torchvision's EfficientNet-B0 ImageNet state "
            "dict there; morphoflow never downloads weights)"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"weights_path {path} is not a readable torch file: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights_path {path} does not hold a state dict")
    return state


def build_efficientnet_b0(
    n_classes: int, in_channels: int = 5, weights_path: str | Path | None = None
) -> torchvision.models.EfficientNet:
    """EfficientNet-B0 for ``in_channels``-channel crops and ``n_classes`` classes.

    With ``weights_path`` (a torchvision ``efficientnet_b0`` ImageNet state dict, optionally
    wrapped as ``{"state_dict": ...}``) every layer but the classifier's last ``Linear`` is
    initialised from it. The first convolution's RGB filters ``W`` (32, 3, 3, 3) are averaged
    over RGB and replicated to every input channel, times ``3 / in_channels``: an image whose
    ``in_channels`` channels all equal a grey image ``g`` then gives exactly the response of the
    ImageNet model to RGB ``(g, g, g)``, so activations keep the scale that the pretrained
    BatchNorm statistics expect (without the factor they would be 5/3 larger). The head is a new
    ``Linear(1280, n_classes)`` (PyTorch's default weight init, zero bias).

    Args:
        n_classes: Number of classes (>= 2).
        in_channels: Image channels (5 for Cell Painting).
        weights_path: Local ImageNet state-dict file, or None for random init.

    Returns:
        The model (train mode, CPU).

    Raises:
        ValueError: Bad ``n_classes``/``in_channels``, or a file that is not an
            EfficientNet-B0 state dict.
        FileNotFoundError: ``weights_path`` does not exist.
    """
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes!r}")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
    model = torchvision.models.efficientnet_b0(weights=None)
    if weights_path is not None:
        path = Path(weights_path)
        state = _load_state_dict(path)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, KeyError) as exc:
            raise ValueError(
                f"weights_path {path} is not a torchvision EfficientNet-B0 state dict: {exc}"
            ) from exc
    old = model.features[0][0]
    conv = nn.Conv2d(
        int(in_channels),
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=False,
    )
    if weights_path is None:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out")  # torchvision's EfficientNet init
    else:
        with torch.no_grad():
            mean = old.weight.mean(dim=1, keepdim=True) * (3.0 / int(in_channels))
            conv.weight.copy_(mean.expand(-1, int(in_channels), -1, -1))
    model.features[0][0] = conv
    head = model.classifier[1]
    model.classifier[1] = nn.Linear(head.in_features, int(n_classes))
    # nn.Linear's default init (bound ~ 1/sqrt(1280)), not torchvision's 1/sqrt(n_classes):
    # meant for 1000 classes, the latter gives logits of std ~6 and an initial loss of ~5 with
    # a few classes.
    nn.init.zeros_(model.classifier[1].bias)
    return model


class Block6aFeatures(nn.Module):
    """Spatial mean of the block6a expansion activation: (N, C, S, S) -> (N, 672).

    Runs ``features[0:6]`` then ``features[6][0].block[0]`` (1x1 expansion conv + BN + SiLU)
    only. Shares (does not copy) the modules of ``model``; use it in eval mode.

    Args:
        model: A torchvision EfficientNet-B0 (e.g. from :func:`build_efficientnet_b0`).

    Raises:
        ValueError: ``model`` is not an EfficientNet-B0 (block6a expansion != 672 channels).
    """

    def __init__(self, model: torchvision.models.EfficientNet) -> None:
        super().__init__()
        try:
            expand = model.features[6][0].block[0]
            channels = expand[0].out_channels
        except (AttributeError, IndexError, TypeError) as exc:
            raise ValueError(f"model is not a torchvision EfficientNet: {exc}") from exc
        if channels != BLOCK6A_CHANNELS:
            raise ValueError(
                f"model's block6a expansion has {channels} channels, EfficientNet-B0 has "
                f"{BLOCK6A_CHANNELS}"
            )
        self.stages = model.features[:6]
        self.expand = expand

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.expand(self.stages(crops)).mean(dim=(2, 3))


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
