"""ONNX exports of morphoflow's models, each checked against torch before it is written.

- :func:`export_unet_onnx`: the nucleus U-Net as ``image`` (N, 1, H, W) float32, normalised
  (:func:`morphoflow.segmentation.postprocess.normalize_image`), dynamic N, H, W (H and W
  multiples of the model's ``multiple``) -> ``probabilities`` (N, 3, H, W), softmax included:
  a drop-in for :func:`morphoflow.segmentation.unet.predict_probabilities` on an untiled batch
  (:class:`morphoflow.segmentation.onnx_model.OnnxUNet` adds the padding and tiling).
- :func:`export_imagenet_featurizer_onnx`: the ImageNet baseline of
  :mod:`morphoflow.profiling.cnn` as ``crops`` (N, 5, S, S) scaled like
  :func:`~morphoflow.backbone.scale_crops` -> ``features`` (N, 5 x 672); the graph is
  :class:`morphoflow.backbone.efficientnet.ImageNetBlock6a`, the module the profiling step runs.
- The WSL featurizer is exported by :func:`morphoflow.learning.model.export_featurizer_onnx`.

All go through :func:`morphoflow.onnx_export.export_onnx_with_parity` (one exporter): a
difference above the tolerance raises and leaves no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from morphoflow.onnx_export import DEFAULT_TOLERANCE, export_onnx_with_parity

UNET_INPUT = "image"
UNET_OUTPUT = "probabilities"
FEATURIZER_INPUT = "crops"
FEATURIZER_OUTPUT = "features"

#: ONNX metadata keys written by the exporters (``multiple`` is what
#: :class:`morphoflow.segmentation.onnx_model.OnnxUNet` and the Triton repository read).
META_KIND = "model_kind"
META_MULTIPLE = "multiple"


class UNetProbabilities(nn.Module):
    """A nucleus U-Net followed by the softmax over classes: logits -> probabilities."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.unet(image), dim=1)


def unet_parity_inputs(
    shapes: tuple[tuple[int, int, int], ...] = ((1, 96, 96), (3, 48, 80)), seed: int = 7
) -> list[np.ndarray]:
    """Normalised synthetic nucleus images, one batch (N, 1, H, W) per ``(N, H, W)``.

    Real-looking inputs (:mod:`morphoflow.simulate.nuclei` draws, normalised as
    the segmenter does) make the parity check meaningful: the U-Net's activations stay in the
    range it sees in production.
    """
    from morphoflow.segmentation.postprocess import normalize_image
    from morphoflow.simulate.nuclei import random_nuclei_image

    rng = np.random.default_rng(seed)
    batches = []
    for n, h, w in shapes:
        images = [normalize_image(random_nuclei_image(rng, (h, w))[0]) for _ in range(n)]
        batches.append(np.stack(images)[:, None].astype(np.float32))
    return batches


def _load_unet(model_or_path: nn.Module | str | Path | None) -> tuple[nn.Module, str]:
    from morphoflow.segmentation.unet import DEFAULT_MODEL_PATH, NucleusUNet, load_unet

    if isinstance(model_or_path, NucleusUNet):
        return model_or_path, "in-memory model"
    if isinstance(model_or_path, nn.Module):
        raise ValueError(
            f"model_or_path must be a NucleusUNet or a U-Net file, got {type(model_or_path)}"
        )
    path = Path(model_or_path) if model_or_path is not None else DEFAULT_MODEL_PATH
    model, _ = load_unet(path)
    return model, str(path)


def export_unet_onnx(
    model_or_path: nn.Module | str | Path | None,
    path: str | Path,
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = 17,
) -> dict[str, Any]:
    """Export the nucleus U-Net (softmax included) to ONNX, parity-checked.

    The check runs normalised synthetic nucleus images at two sizes and two batch sizes
    (:func:`unet_parity_inputs`), none equal to the tracing example, so the dynamic N, H, W
    axes are exercised.

    Args:
        model_or_path: A :class:`~morphoflow.segmentation.unet.NucleusUNet`, a U-Net file
            (:func:`~morphoflow.segmentation.unet.save_unet`), or None for the shipped model.
        path: Destination ``.onnx`` file (written atomically, only when parity holds).
        tolerance: Largest absolute probability difference allowed.
        opset: ONNX opset.

    Returns:
        ``{"path", "source", "model_kind": "segmentation", "parity_max_abs_diff",
        "parity_tolerance", "opset", "input", "output", "input_shape", "output_shape",
        "multiple"}``.

    Raises:
        FileNotFoundError: The U-Net file does not exist.
        ValueError: Not a U-Net, or parity fails (no file written).
    """
    unet, source = _load_unet(model_or_path)
    multiple = int(unet.multiple)
    channels = int(unet.config.in_channels)
    if channels != 1:
        raise ValueError(f"model_or_path: expected a 1-channel nucleus U-Net, got {channels}")
    side = 4 * multiple
    example = torch.from_numpy(unet_parity_inputs(((2, side, side),), seed=1)[0])
    checks = unet_parity_inputs(
        ((1, 6 * multiple, 6 * multiple), (3, 3 * multiple, 5 * multiple)), seed=7
    )
    diff = export_onnx_with_parity(
        UNetProbabilities(unet),
        example,
        path,
        input_names=[UNET_INPUT],
        output_names=[UNET_OUTPUT],
        dynamic_axes={
            UNET_INPUT: {0: "batch", 2: "height", 3: "width"},
            UNET_OUTPUT: {0: "batch", 2: "height", 3: "width"},
        },
        check_inputs=checks,
        tolerance=tolerance,
        opset=opset,
        model_name=f"nucleus U-Net ({source})",
        metadata={META_KIND: "segmentation", META_MULTIPLE: multiple},
    )
    return {
        "path": str(path),
        "source": source,
        "model_kind": "segmentation",
        "parity_max_abs_diff": diff,
        "parity_tolerance": float(tolerance),
        "opset": int(opset),
        "input": UNET_INPUT,
        "output": UNET_OUTPUT,
        "input_shape": ["N", 1, "H", "W"],
        "output_shape": ["N", int(unet.config.n_classes), "H", "W"],
        "multiple": multiple,
    }


def _calibrate_batchnorm(module: nn.Module, batches: list[torch.Tensor]) -> None:
    """Set BatchNorm running statistics from real-looking inputs (random-init models only).

    A randomly initialised EfficientNet's default statistics shrink block6a activations to
    ~1e-10, which would make any parity check vacuous.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    module.train()
    with torch.no_grad():
        for batch in batches:
            module(batch)
    module.eval()


def export_imagenet_featurizer_onnx(
    weights_path: str | Path | None,
    path: str | Path,
    crop_size: int = 128,
    image_size: int = 224,
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = 17,
) -> dict[str, Any]:
    """Export the ImageNet baseline featurizer (5 x 672 block6a features) to ONNX.

    Args:
        weights_path: Local torchvision EfficientNet-B0 ImageNet state dict, or None for a
            random initialisation (tests; its BatchNorm statistics are set from cell-like
            inputs so that the parity check compares activations of a realistic scale).
        path: Destination ``.onnx`` file (written atomically, only when parity holds).
        crop_size: Crop side S of the graph input (fixed; the batch axis is dynamic).
        image_size: Side crops are resized to inside the graph (224 for ImageNet).
        tolerance: Largest absolute feature difference allowed.
        opset: ONNX opset.

    Returns:
        ``{"path", "source", "model_kind": "featurizer", "parity_max_abs_diff",
        "parity_tolerance", "opset", "input", "output", "input_shape", "output_shape"}``.

    Raises:
        FileNotFoundError: ``weights_path`` does not exist.
        ValueError: Not an EfficientNet-B0 state dict, or parity fails (no file written).
    """
    from morphoflow.backbone import BLOCK6A_CHANNELS
    from morphoflow.backbone.efficientnet import ImageNetBlock6a, efficientnet_b0
    from morphoflow.learning.model import parity_inputs
    from morphoflow.screen.constants import CHANNELS

    if int(crop_size) < 32:
        raise ValueError(f"crop_size must be >= 32, got {crop_size!r}")
    channels = len(CHANNELS)
    module = ImageNetBlock6a(efficientnet_b0(weights_path), image_size)
    if weights_path is None:
        calibration = parity_inputs(n=4, size=crop_size, channels=channels, seed=11)
        _calibrate_batchnorm(module, [torch.from_numpy(calibration)])
    example = torch.from_numpy(parity_inputs(n=2, size=crop_size, channels=channels, seed=1))
    checks = [parity_inputs(n=3, size=crop_size, channels=channels, seed=0)]
    diff = export_onnx_with_parity(
        module,
        example,
        path,
        input_names=[FEATURIZER_INPUT],
        output_names=[FEATURIZER_OUTPUT],
        dynamic_axes={FEATURIZER_INPUT: {0: "batch"}, FEATURIZER_OUTPUT: {0: "batch"}},
        check_inputs=checks,
        tolerance=tolerance,
        opset=opset,
        model_name="ImageNet EfficientNet-B0 featurizer",
        metadata={META_KIND: "featurizer"},
    )
    return {
        "path": str(path),
        "source": str(weights_path) if weights_path is not None else "random init",
        "model_kind": "featurizer",
        "parity_max_abs_diff": diff,
        "parity_tolerance": float(tolerance),
        "opset": int(opset),
        "input": FEATURIZER_INPUT,
        "output": FEATURIZER_OUTPUT,
        "input_shape": ["N", channels, int(crop_size), int(crop_size)],
        "output_shape": ["N", channels * BLOCK6A_CHANNELS],
    }
