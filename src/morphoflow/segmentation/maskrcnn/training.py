"""Training of the nucleus Mask R-CNN: targets from label images and the training loop.

Box convention. Ground-truth boxes are pixel edges, ``[x_min, y_min, x_max + 1, y_max + 1]``
in (x, y) order, as COCO boxes of pixel masks: a one-pixel object has a 1 x 1 box.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from morphoflow.segmentation.maskrcnn.model import MaskRCNNConfig, NucleusMaskRCNN, build_maskrcnn
from morphoflow.segmentation.metrics import check_label_image
from morphoflow.segmentation.postprocess import normalize_image
from morphoflow.segmentation.tta import DIHEDRAL_VIEWS, augment

Sample = tuple[np.ndarray, np.ndarray]
"""A training sample: (image (H, W) of any bit depth, instance labels (H, W))."""


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
