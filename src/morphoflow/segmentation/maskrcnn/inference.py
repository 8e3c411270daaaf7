"""Inference of the nucleus Mask R-CNN: instance labels per image, merged over TTA views.

Instances are made from the detections by :func:`predict_labels` (score and mask thresholds,
highest score wins overlaps, small remnants dropped) and merged over the dihedral TTA views by
:func:`segment_instances` (one batched model call per image; see
:mod:`morphoflow.segmentation.tta`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torchvision.models.detection import MaskRCNN

from morphoflow.segmentation.maskrcnn.model import MaskRCNNConfig
from morphoflow.segmentation.postprocess import normalize_image
from morphoflow.segmentation.tta import ViewsArg, predict_instance_tta


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
