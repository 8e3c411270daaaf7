"""Mask R-CNN for nucleus instance segmentation (torchvision), with training, TTA and files.

The model is torchvision's Mask R-CNN with a ResNet-FPN backbone (ResNet-50 by default: the
architecture of ``torchvision.models.detection.maskrcnn_resnet50_fpn``, same state-dict keys),
set up for microscopy rather than COCO photographs:

- **Input.** A batch (N, 1, H, W) of single-channel images normalised to [0, 1] with
  :func:`~morphoflow.segmentation.postprocess.normalize_image` (exactly as for the U-Net).
  :class:`NucleusMaskRCNN` replicates the channel to 3 inside the module, so that the
  3-channel stem (and COCO / ImageNet weights) can be used unchanged; the internal transform
  then standardises with torchvision's ImageNet mean and std, as for COCO weights.
- **Scale.** By default (``min_size=None``) images are processed at their native resolution:
  no up- or down-scaling (they are only zero-padded to a multiple of 32 inside the batch).
  Setting ``min_size``/``max_size`` restores torchvision's resizing.
- **Anchors.** One size per FPN level, 8-128 px by default (torchvision: 32-512), for nuclei of
  about 8-60 px; 3 aspect ratios per location as in torchvision, so the RPN head keeps the
  shape of COCO checkpoints.
- **Crowded fields.** Up to 300 detections per image (torchvision: 100).
- **Weights.** Never downloaded: a model is built with random weights, or from a local
  state-dict file (e.g. COCO weights the user downloaded); tensors whose shapes differ (the
  91-class box and mask predictors of COCO) are skipped and reported (:func:`load_weights`).

Instances are made from the detections by :func:`predict_labels` (score and mask thresholds,
highest score wins overlaps, small remnants dropped) and merged over the dihedral TTA views by
:func:`segment_instances` (one batched model call per image; see
:mod:`morphoflow.segmentation.tta`). Models are saved as one file (format
``morphoflow-maskrcnn/1``) holding config, weights and metadata.

Box convention. Ground-truth boxes are pixel edges, ``[x_min, y_min, x_max + 1, y_max + 1]``
in (x, y) order, as COCO boxes of pixel masks: a one-pixel object has a 1 x 1 box.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
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

from morphoflow.segmentation.metrics import check_label_image
from morphoflow.segmentation.postprocess import normalize_image
from morphoflow.segmentation.tta import DIHEDRAL_VIEWS, ViewsArg, augment, predict_instance_tta
from morphoflow.torch_files import load_payload, save_payload

logger = logging.getLogger(__name__)

_FORMAT = "morphoflow-maskrcnn/1"

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101")
"""Backbones :func:`build_maskrcnn` accepts (ResNet + FPN); only resnet50 has COCO weights."""

Sample = tuple[np.ndarray, np.ndarray]
"""A training sample: (image (H, W) of any bit depth, instance labels (H, W))."""

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
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable torch weights file: {exc}") from exc
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


def labels_to_targets(labels: np.ndarray) -> dict[str, torch.Tensor]:
    """torchvision Mask R-CNN training target from an instance label image.

    Objects are taken in increasing label order. Boxes are pixel edges
    ``[x_min, y_min, x_max + 1, y_max + 1]`` (see the module docstring), so every object with
    at least one pixel has a box of positive width and height; labels that are absent (gaps in
    the numbering) produce nothing, so no degenerate box is ever made.

    Args:
        labels: Instance labels (H, W), integer, 0 = background.

    Returns:
        ``{"boxes": float32 (N, 4), "labels": int64 (N,) all ones, "masks": uint8 (N, H, W)}``;
        N = 0 gives boxes of shape (0, 4) and masks of shape (0, H, W).

    Raises:
        ValueError: ``labels`` is not a 2-D non-negative integer image.

    Example:
        >>> lab = np.zeros((4, 5), dtype=np.uint8)
        >>> lab[1:3, 2:4] = 7
        >>> labels_to_targets(lab)["boxes"].tolist()
        [[2.0, 1.0, 4.0, 3.0]]
    """
    lab = check_label_image(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {lab.shape}")
    h, w = lab.shape
    ids = np.unique(lab)
    ids = ids[ids > 0]
    boxes = np.zeros((ids.size, 4), dtype=np.float32)
    masks = np.zeros((ids.size, h, w), dtype=np.uint8)
    for i, obj in enumerate(ids.tolist()):
        mask = lab == obj
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        masks[i] = mask
    return {
        "boxes": torch.from_numpy(boxes),
        "labels": torch.ones(ids.size, dtype=torch.int64),
        "masks": torch.from_numpy(masks),
    }


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def train_maskrcnn(
    samples_iterator: Iterator[Sample],
    config: MaskRCNNConfig,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str | torch.device = "cpu",
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    model: NucleusMaskRCNN | None = None,
) -> tuple[NucleusMaskRCNN, list[dict[str, float]]]:
    """Train (or fine-tune) the nucleus Mask R-CNN.

    Each sample is normalised exactly as at inference (``normalize_image``), then transformed
    by a random dihedral view (``tta.augment``, the same view on image and labels) and turned
    into a target with :func:`labels_to_targets`. Images without any object are kept as
    negative examples (torchvision handles empty targets: its losses then only teach
    background), so no batch has to be skipped. Images of different sizes may share a batch.

    Optimiser: AdamW (weight decay 1e-4, fused kernel), chosen over torchvision's SGD recipe
    because it trains the randomly initialised model stably without a tuned learning rate; the
    learning rate warms up linearly over the first ``min(100, steps // 10)`` steps, then follows a
    cosine decay to 5 % of ``lr``. Gradients are clipped to a global norm of 10. The loss is
    the sum of torchvision's five losses.

    Deterministic for a given seed on CPU (weights init, views, and torchvision's box
    sampling all draw from generators seeded here; the global torch seed is set).

    Args:
        samples_iterator: Iterator of (image (H, W), labels (H, W)) samples, at least
            ``steps * batch_size`` long.
        config: Architecture (used when ``model`` is None).
        steps: Optimiser steps (>= 1).
        batch_size: Samples per step (>= 1).
        lr: Peak learning rate (> 0; 1e-4 is a good start from scratch or from COCO).
        seed: Random seed.
        device: Where to train ("cpu", "cuda", ...).
        on_step: Called after each step with (step, metrics).
        model: Model to fine-tune (e.g. ``build_maskrcnn(config, coco_path)``); default a new
            randomly initialised one built from ``config`` after seeding.

    Returns:
        The model (eval mode, on CPU) and the per-step history: dicts with ``step``, ``loss``
        (total), the five torchvision losses (``loss_classifier``, ``loss_box_reg``,
        ``loss_mask``, ``loss_objectness``, ``loss_rpn_box_reg``), ``n_objects``, ``lr`` and
        ``seconds``.

    Raises:
        ValueError: Invalid ``steps``, ``batch_size`` or ``lr``, a bad sample, or the iterator
            ran out.
    """
    steps = _check_positive(steps, "steps")
    batch_size = _check_positive(batch_size, "batch_size")
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    if not isinstance(config, MaskRCNNConfig):
        raise ValueError(f"config must be a MaskRCNNConfig, got {type(config).__name__}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    model = (model if model is not None else build_maskrcnn(config)).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=float(lr), weight_decay=1e-4, fused=True)
    warmup = min(100, steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        progress = (step - warmup) / max(1, steps - warmup)
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, factor)
    model.train()
    history: list[dict[str, float]] = []
    for step in range(1, steps + 1):
        started = time.perf_counter()
        images, targets = [], []
        for _ in range(batch_size):
            try:
                image, labels = next(samples_iterator)
            except StopIteration:
                raise ValueError(
                    f"samples_iterator ran out at step {step} (needs {steps * batch_size} samples)"
                ) from None
            image, labels = _training_pair(image, labels, rng)
            images.append(torch.from_numpy(image)[None].to(dev))
            targets.append({k: v.to(dev) for k, v in labels_to_targets(labels).items()})
        losses = model(images, targets)
        loss = sum(losses.values())
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[union-attr]
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        current_lr = float(schedule.get_last_lr()[0])
        optimiser.step()
        schedule.step()
        metrics = {
            "step": float(step),
            "loss": float(loss.detach()),  # type: ignore[union-attr]
            **{k: float(v.detach()) for k, v in losses.items()},
            "n_objects": float(sum(int(t["boxes"].shape[0]) for t in targets)),
            "lr": current_lr,
            "seconds": time.perf_counter() - started,
        }
        history.append(metrics)
        if on_step is not None:
            on_step(step, metrics)
    model.eval().cpu()
    return model, history


def _training_pair(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    lab = check_label_image(labels, "labels")
    if img.ndim != 2 or img.shape != lab.shape:
        raise ValueError(
            f"each sample must be (image (H, W), labels (H, W)); got {img.shape} and {lab.shape}"
        )
    view = DIHEDRAL_VIEWS[int(rng.integers(0, len(DIHEDRAL_VIEWS)))]
    return augment(normalize_image(img), view), augment(lab, view)


@contextlib.contextmanager
def _inference_settings(model: MaskRCNN, config: MaskRCNNConfig) -> Iterator[None]:
    """Apply the config's score threshold and detection cap to the ROI heads, then restore."""
    heads = model.roi_heads
    saved = heads.score_thresh, heads.detections_per_img
    # torchvision keeps scores > score_thresh; one float32 step below gives scores >= threshold.
    heads.score_thresh = float(np.nextafter(np.float32(config.score_threshold), np.float32(-1)))
    heads.detections_per_img = config.box_detections_per_img
    try:
        yield
    finally:
        heads.score_thresh, heads.detections_per_img = saved


def _check_batch(batch: Any) -> torch.Tensor:
    if isinstance(batch, torch.Tensor):
        x = batch.detach()
    else:
        arr = np.asarray(batch)
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"batch must be numeric, got dtype {arr.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"batch must be (N, 1, H, W), got shape {tuple(x.shape)}")
    return x.float()


def _paint(
    output: dict[str, torch.Tensor], shape: tuple[int, int], config: MaskRCNNConfig
) -> np.ndarray:
    """One image's detections -> uint32 labels, 1 = highest-scoring surviving object."""
    scores = output["scores"].float()
    keep = scores >= config.score_threshold
    scores = scores[keep]
    out = np.zeros(shape, dtype=np.uint32)
    if scores.numel() == 0:
        return out
    masks = (output["masks"][keep, 0] > config.mask_threshold).cpu().numpy()
    order = np.argsort(scores.cpu().numpy(), kind="stable")  # ascending: best painted last
    painted = np.zeros(shape, dtype=np.int64)
    for rank, index in enumerate(order.tolist(), start=1):
        painted[masks[index]] = rank
    counts = np.bincount(painted.ravel(), minlength=order.size + 1)
    ranks = np.flatnonzero(counts >= max(1, config.min_object_size))
    ranks = ranks[ranks > 0][::-1]  # surviving ranks, highest score first
    lut = np.zeros(order.size + 1, dtype=np.uint32)
    lut[ranks] = np.arange(1, ranks.size + 1, dtype=np.uint32)
    return lut[painted]


def predict_labels(
    model: MaskRCNN, batch: np.ndarray | torch.Tensor, config: MaskRCNNConfig
) -> list[np.ndarray]:
    """Instance label images from a batch of normalised single-channel images.

    Per image: detections with score >= ``config.score_threshold`` are kept (at most
    ``config.box_detections_per_img``), their masks binarised (probability >
    ``config.mask_threshold``) and painted in ascending score order, so the highest-scoring
    object wins overlapping pixels; objects left with fewer than ``config.min_object_size``
    pixels are dropped and the rest numbered 1..n by decreasing score. Runs under
    ``torch.inference_mode`` on the model's device, ``config.inference_batch_size`` images per
    forward pass; the model is put in eval mode.

    Args:
        model: A model from :func:`build_maskrcnn`, :func:`train_maskrcnn` or
            :func:`load_maskrcnn`.
        batch: Float array or tensor (N, 1, H, W), normalised with ``normalize_image``.
        config: Inference settings (thresholds, minimum object size, batch size).

    Returns:
        N uint32 arrays (H, W), 0 = background, objects 1..n.

    Raises:
        ValueError: ``batch`` is not (N, 1, H, W) or ``config`` is not a MaskRCNNConfig.
    """
    if not isinstance(config, MaskRCNNConfig):
        raise ValueError(f"config must be a MaskRCNNConfig, got {type(config).__name__}")
    x = _check_batch(batch)
    shape = (int(x.shape[2]), int(x.shape[3]))
    device = next(model.parameters()).device
    model.eval()
    results: list[np.ndarray] = []
    with _inference_settings(model, config), torch.inference_mode():
        for start in range(0, x.shape[0], config.inference_batch_size):
            chunk = x[start : start + config.inference_batch_size].to(device)
            for output in model(list(chunk)):
                results.append(_paint(output, shape, config))
    return results


def segment_instances(
    model: MaskRCNN,
    image2d: np.ndarray,
    config: MaskRCNNConfig,
    views: ViewsArg = 8,
) -> tuple[np.ndarray, dict[int, float]]:
    """Segment the nuclei of one image with Mask R-CNN, with test-time augmentation.

    The image is normalised (``normalize_image``), its views are predicted in one call of
    :func:`predict_labels` (``config.inference_batch_size`` views per forward pass), and the
    de-augmented instances are merged by :func:`~morphoflow.segmentation.tta.merge_instances`
    (same object when IoU >= 0.5, kept when found in a majority of views, pixel-wise majority
    mask).

    Args:
        model: The Mask R-CNN.
        image2d: Image (H, W) of any bit depth (the DNA channel).
        config: Inference settings.
        views: TTA views (see ``tta.select_views``): 8 = all dihedral views, 1 = no TTA (every
            object then has agreement 1.0).

    Returns:
        ``(labels, agreement)``: uint32 labels (H, W) numbered 1..n, and for each label the
        fraction of views that found the object.

    Raises:
        ValueError: ``image2d`` is not 2-D, or invalid ``views`` / ``config``.
    """
    img = np.asarray(image2d)
    if img.ndim != 2 or min(img.shape) < 1:
        raise ValueError(f"image2d must be a non-empty 2-D image (H, W), got shape {img.shape}")
    normalised = normalize_image(img)[None]
    return predict_instance_tta(
        lambda batch: predict_labels(model, batch, config), normalised, views=views
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


__all__ = [
    "BACKBONES",
    "MaskRCNNConfig",
    "NucleusMaskRCNN",
    "Sample",
    "WeightsReport",
    "build_maskrcnn",
    "labels_to_targets",
    "load_maskrcnn",
    "load_weights",
    "predict_labels",
    "save_maskrcnn",
    "segment_instances",
    "train_maskrcnn",
]
