"""The nucleus Mask R-CNN: config, network, local weights, and its file format.

torchvision's Mask R-CNN with a ResNet-FPN backbone (ResNet-50 by default: the architecture of
``torchvision.models.detection.maskrcnn_resnet50_fpn``, same state-dict keys), set up for
microscopy (single-channel input replicated to 3, native resolution, small anchors, up to 300
detections; see :mod:`morphoflow.segmentation.maskrcnn`). Weights are never downloaded: a
model is built with random weights or from a local state-dict file (:func:`load_weights`).
Models are saved as one file (format ``morphoflow-maskrcnn/1``) holding config, weights and
metadata (:func:`save_maskrcnn`, :func:`load_maskrcnn`), as :mod:`morphoflow.segmentation.unet`
does for the U-Net.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops.misc import FrozenBatchNorm2d

from morphoflow.torch_files import load_payload, safe_torch_load, save_payload

logger = logging.getLogger(__name__)

_FORMAT = "morphoflow-maskrcnn/1"

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101")
"""Backbones :func:`build_maskrcnn` accepts (ResNet + FPN); only resnet50 has COCO weights."""

# Fields that define the network's tensors (a saved file must match them).
_ARCHITECTURE_FIELDS = (
    "num_classes",
    "backbone",
    "anchor_sizes",
    "aspect_ratios",
    "frozen_batchnorm",
)


@dataclass(frozen=True)
class MaskRCNNConfig:
    """Architecture and inference settings of the nucleus Mask R-CNN.

    Attributes:
        num_classes: Classes including background (2: background + nucleus). Every non-background
            class counts as a nucleus in :func:`predict_labels`.
        backbone: ResNet of the ResNet-FPN backbone, one of :data:`BACKBONES` ("resnet50" is
            ``maskrcnn_resnet50_fpn``; smaller ones are faster on CPU, without COCO weights).
        min_size: None (default): images keep their native resolution. An int: torchvision's
            resizing (shorter side scaled to ``min_size`` unless the longer side would exceed
            ``max_size``; predictions are mapped back to the input size).
        max_size: Must be None when ``min_size`` is None, and an int >= ``min_size`` otherwise.
        anchor_sizes: Anchor size in pixels for each of the 5 FPN levels (strides 4-64).
        aspect_ratios: Anchor aspect ratios (height / width) at every level; 3 keeps the RPN
            head compatible with COCO checkpoints.
        box_detections_per_img: Maximum detections per image (crowded fields need many).
        score_threshold: Detections with a score below this are discarded, in [0, 1].
        mask_threshold: A pixel belongs to a detection when its mask probability is above this,
            in [0, 1).
        min_object_size: Objects left with fewer pixels than this after overlaps are resolved
            are dropped (>= 0).
        trainable_backbone_layers: Backbone stages trained, counted from the last, 0-5
            (5 = all, for training from scratch; 3 is torchvision's choice with pretrained
            weights).
        frozen_batchnorm: Use frozen batch norm (fixed statistics and affine parameters) in the
            backbone, as torchvision does for pretrained weights; recommended when fine-tuning
            COCO / ImageNet weights with small batches. False: ordinary batch norm (from scratch).
        inference_batch_size: Images per forward pass in :func:`predict_labels` (memory grows
            with images x detections: about 0.9 GB per 300 detections of 256 x 256 on CPU).
        box_batch_size_per_image: Training only: proposals sampled per image to train the box
            and mask heads (at most 1/4 positive); torchvision's 512 by default. The mask head
            dominates a CPU training step, so a smaller value (e.g. 64) trains much faster.
    """

    num_classes: int = 2
    backbone: str = "resnet50"
    min_size: int | None = None
    max_size: int | None = None
    anchor_sizes: tuple[int, ...] = (8, 16, 32, 64, 128)
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    box_detections_per_img: int = 300
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    min_object_size: int = 16
    trainable_backbone_layers: int = 5
    frozen_batchnorm: bool = False
    inference_batch_size: int = 4
    box_batch_size_per_image: int = 512

    def __post_init__(self) -> None:
        def positive_int(name: str, low: int = 1) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"MaskRCNNConfig.{name} must be an int >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))

        positive_int("num_classes", 2)
        positive_int("box_detections_per_img")
        positive_int("min_object_size", 0)
        positive_int("inference_batch_size")
        positive_int("box_batch_size_per_image")
        positive_int("trainable_backbone_layers", 0)
        if self.trainable_backbone_layers > 5:
            raise ValueError(
                "MaskRCNNConfig.trainable_backbone_layers must be in 0..5, "
                f"got {self.trainable_backbone_layers}"
            )
        if self.backbone not in BACKBONES:
            raise ValueError(
                f"MaskRCNNConfig.backbone must be one of {BACKBONES}, got {self.backbone!r}"
            )
        if self.min_size is None:
            if self.max_size is not None:
                raise ValueError("MaskRCNNConfig.max_size must be None when min_size is None")
        else:
            positive_int("min_size")
            if self.max_size is None:
                raise ValueError("MaskRCNNConfig.max_size is required when min_size is set")
            positive_int("max_size", self.min_size)
        try:
            sizes = tuple(int(s) for s in self.anchor_sizes)
            ratios = tuple(float(r) for r in self.aspect_ratios)
        except (TypeError, ValueError):
            raise ValueError(
                "MaskRCNNConfig.anchor_sizes / aspect_ratios must be numbers"
            ) from None
        if len(sizes) != 5 or min(sizes) < 1:
            raise ValueError(
                f"MaskRCNNConfig.anchor_sizes needs 5 positive sizes (one per FPN level), "
                f"got {sizes}"
            )
        if not ratios or min(ratios) <= 0 or not all(math.isfinite(r) for r in ratios):
            raise ValueError(f"MaskRCNNConfig.aspect_ratios must be positive, got {ratios}")
        object.__setattr__(self, "anchor_sizes", sizes)
        object.__setattr__(self, "aspect_ratios", ratios)
        for name, top_open in (("score_threshold", False), ("mask_threshold", True)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"MaskRCNNConfig.{name} must be a number, got {value!r}")
            if not (0.0 <= value < 1.0 if top_open else 0.0 <= value <= 1.0):
                raise ValueError(f"MaskRCNNConfig.{name} out of range, got {value!r}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "frozen_batchnorm", bool(self.frozen_batchnorm))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for saving and logging)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> MaskRCNNConfig:
        """Config from a dict (e.g. YAML parameters or a saved file).

        Raises:
            ValueError: Unknown keys or invalid values.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"values has unknown MaskRCNNConfig keys {unknown}")
        return cls(**dict(values))


class _MicroscopyTransform(GeneralizedRCNNTransform):
    """torchvision's transform, optionally without any resizing (native resolution)."""

    def __init__(self, config: MaskRCNNConfig, image_mean: list[float], image_std: list[float]):
        native = config.min_size is None
        super().__init__(
            min_size=1 if native else int(config.min_size),  # type: ignore[arg-type]
            max_size=1 if native else int(config.max_size),  # type: ignore[arg-type]
            image_mean=image_mean,
            image_std=image_std,
        )
        self.native = native

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if self.native:
            return image, target
        return super().resize(image, target)


class NucleusMaskRCNN(MaskRCNN):
    """torchvision ``MaskRCNN`` taking single-channel images (replicated to 3 channels).

    ``forward`` accepts a list of (C, H, W) tensors or an (N, C, H, W) tensor with C = 1 (the
    channel is replicated to 3 without copying) or C = 3; everything else (targets in training,
    outputs in eval) is torchvision's. The state-dict keys are those of
    ``maskrcnn_resnet50_fpn`` (for the resnet50 backbone).

    Attributes:
        config: The config it was built from.
    """

    def __init__(self, backbone: nn.Module, config: MaskRCNNConfig) -> None:
        sizes = tuple((s,) for s in config.anchor_sizes)
        anchors = AnchorGenerator(sizes, (config.aspect_ratios,) * len(sizes))
        super().__init__(
            backbone,
            num_classes=config.num_classes,
            rpn_anchor_generator=anchors,
            box_detections_per_img=config.box_detections_per_img,
            box_score_thresh=config.score_threshold,
            box_batch_size_per_image=config.box_batch_size_per_image,
        )
        self.transform = _MicroscopyTransform(
            config, self.transform.image_mean, self.transform.image_std
        )
        self.config = config

    def forward(self, images: Any, targets: Any = None) -> Any:  # noqa: D102 (torchvision's)
        rgb = []
        for index, img in enumerate(images):
            if img.ndim != 3 or img.shape[0] not in (1, 3):
                raise ValueError(
                    f"images[{index}] must be (1, H, W) or (3, H, W), got {tuple(img.shape)}"
                )
            rgb.append(img.expand(3, -1, -1) if img.shape[0] == 1 else img)
        return super().forward(rgb, targets)


@dataclass(frozen=True)
class WeightsReport:
    """What :func:`load_weights` did with a state-dict file.

    Attributes:
        path: The file.
        loaded: Model keys taken from the file.
        skipped: File keys present in the model with another shape (e.g. COCO's 91-class
            predictors), left at their initial values.
        missing: Model keys absent from the file (left at their initial values).
        unexpected: File keys the model does not have (ignored).
    """

    path: Path
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]


def build_maskrcnn(
    config: MaskRCNNConfig | None = None, weights_path: str | Path | None = None
) -> NucleusMaskRCNN:
    """Build the nucleus Mask R-CNN, with random weights or from a local state-dict file.

    Nothing is downloaded. With ``weights_path``, the file is loaded with :func:`load_weights`
    (non-strict; tensors of another shape are skipped and logged at WARNING level). Accepted
    files: a state dict of ``maskrcnn_resnet50_fpn`` (e.g. the COCO checkpoint
    ``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``), a plain ResNet state dict (ImageNet; loaded
    into the backbone body), or a file saved by :func:`save_maskrcnn`.

    Args:
        config: Architecture and inference settings (default :class:`MaskRCNNConfig()`).
        weights_path: Optional local weights file.

    Returns:
        The model, in training mode, on CPU.

    Raises:
        ValueError: ``config`` is not a MaskRCNNConfig, or the file matches no model tensor.
        FileNotFoundError: ``weights_path`` does not exist.
    """
    config = MaskRCNNConfig() if config is None else config
    if not isinstance(config, MaskRCNNConfig):
        raise ValueError(f"config must be a MaskRCNNConfig, got {type(config).__name__}")
    if weights_path is not None and not Path(weights_path).is_file():
        raise FileNotFoundError(f"Mask R-CNN weights file not found: {weights_path}")
    norm_layer = FrozenBatchNorm2d if config.frozen_batchnorm else nn.BatchNorm2d
    backbone = resnet_fpn_backbone(
        backbone_name=config.backbone,
        weights=None,
        norm_layer=norm_layer,
        trainable_layers=config.trainable_backbone_layers,
    )
    model = NucleusMaskRCNN(backbone, config)
    if weights_path is not None:
        report = load_weights(model, weights_path)
        logger.info("Loaded %d tensors from %s", len(report.loaded), report.path)
        if report.skipped:
            logger.warning(
                "Skipped tensors of another shape in %s: %s", report.path, ", ".join(report.skipped)
            )
        if report.missing:
            logger.warning(
                "Tensors not in %s (left random): %s", report.path, ", ".join(report.missing)
            )
    return model


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    payload = safe_torch_load(path, "Mask R-CNN weights")
    if isinstance(payload, dict):
        if payload.get("format") == _FORMAT or isinstance(payload.get("state_dict"), dict):
            payload = payload["state_dict"]
        elif isinstance(payload.get("model"), dict):
            payload = payload["model"]
    if not isinstance(payload, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload.items()
    ):
        raise ValueError(f"{path} does not hold a state dict (str -> tensor)")
    return payload


def load_weights(model: nn.Module, weights_path: str | Path) -> WeightsReport:
    """Load a local state-dict file into a model, skipping tensors whose shapes differ.

    A file whose keys match none of the model's but match its backbone body once prefixed
    with ``backbone.body.`` (a plain ResNet checkpoint) is loaded into the backbone body.
    Batch-norm ``num_batches_tracked`` counters are ignored in the report.

    Args:
        model: The model (e.g. from :func:`build_maskrcnn`), modified in place.
        weights_path: Local file read with ``torch.load(weights_only=True)``.

    Returns:
        A :class:`WeightsReport`.

    Raises:
        FileNotFoundError: ``weights_path`` does not exist.
        ValueError: Unreadable file, not a state dict, or no tensor matches the model.
    """
    path = Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"Mask R-CNN weights file not found: {path}")
    state = _read_state_dict(path)
    own = model.state_dict()
    if not set(state) & set(own):
        prefixed = {f"backbone.body.{k}": v for k, v in state.items()}
        if set(prefixed) & set(own):
            state = prefixed
    loadable = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    if not loadable:
        raise ValueError(f"weights_path {path} has no tensor matching the model")
    model.load_state_dict(loadable, strict=False)

    def counted(keys: Any) -> tuple[str, ...]:
        return tuple(sorted(k for k in keys if not k.endswith("num_batches_tracked")))

    return WeightsReport(
        path=path,
        loaded=counted(loadable),
        skipped=counted(k for k, v in state.items() if k in own and v.shape != own[k].shape),
        missing=counted(k for k in own if k not in state),
        unexpected=counted(k for k in state if k not in own),
    )


def save_maskrcnn(
    model: NucleusMaskRCNN,
    config: MaskRCNNConfig,
    path: str | Path,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Save config, weights and metadata to one file (atomically: temporary file + rename).

    Args:
        model: The model.
        config: Its config; the inference settings (thresholds, ...) may differ from the ones
            the model was built with, the architecture may not.
        path: Destination file (``.pt``); parent folders are created.
        metadata: JSON-like facts to keep with the weights (training data, scores, ...).
        half: Store floating-point tensors as float16 (half the size, about 88 MB instead of
            176 MB for resnet50; predictions then differ slightly). Default: exact float32.

    Returns:
        The written path.

    Raises:
        ValueError: ``config`` is not a MaskRCNNConfig or its architecture differs from the
            model's.
    """
    if not isinstance(config, MaskRCNNConfig):
        raise ValueError(f"config must be a MaskRCNNConfig, got {type(config).__name__}")
    built = getattr(model, "config", None)
    if isinstance(built, MaskRCNNConfig):
        differ = [f for f in _ARCHITECTURE_FIELDS if getattr(built, f) != getattr(config, f)]
        if differ:
            raise ValueError(f"config differs from the model's architecture in {differ}")
    path = Path(path)
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu().clone()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": _FORMAT,
        "config": config.to_dict(),
        "state_dict": state,
        "metadata": dict(metadata or {}),
    }
    return save_payload(path, payload)


def load_maskrcnn(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[NucleusMaskRCNN, MaskRCNNConfig, dict[str, Any]]:
    """Load a model saved by :func:`save_maskrcnn`.

    Args:
        path: The file.
        device: Where to put the model.

    Returns:
        The model (eval mode, float32), its config and its metadata.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not a morphoflow Mask R-CNN file.
    """
    payload = load_payload(path, _FORMAT, "Mask R-CNN")
    config = MaskRCNNConfig.from_dict(payload["config"])
    model = build_maskrcnn(config)
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    )
    model.eval().to(device)
    return model, config, dict(payload.get("metadata", {}))
