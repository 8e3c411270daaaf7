"""Nucleus segmentation of one image: normalise -> U-Net (optionally TTA) -> instances.

This is the code path of ``morphoflow segment``, of the profiling pipeline's segmentation step
and of the ``nuclei_tta`` model served by Triton: the TTA building blocks come from
:mod:`morphoflow.segmentation.tta`, the post-processing from
:mod:`morphoflow.segmentation.postprocess`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from morphoflow.segmentation.postprocess import (
    BACKGROUND,
    EMPTY_FIELD_CONTRAST,
    normalize_image,
    probabilities_to_labels,
)
from morphoflow.segmentation.tta import (
    ViewsArg,
    augment_batch,
    deaugment_batch,
    merge_semantic,
    select_views,
)

ProbabilityFn = Callable[[np.ndarray], np.ndarray]
"""(N, 1, H, W) float32 normalised batch -> (N, 3, H, W) probabilities."""


@dataclass
class Segmentation:
    """Result of segmenting one image.

    Attributes:
        labels: Instance labels (H, W), uint32, 0 = background, 1..n objects.
        probabilities: Merged class probabilities (3, H, W): background, interior, boundary.
        agreement: Per object (index = label - 1): mean over its pixels of the fraction of views
            that called the pixel nucleus (1.0 for every object without TTA).
        views: The views used (``("identity",)`` without TTA).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    agreement: np.ndarray
    views: tuple[str, ...]


def segment_probabilities(
    predict: ProbabilityFn,
    image: np.ndarray,
    views: ViewsArg = 8,
    empty_contrast: float | None = EMPTY_FIELD_CONTRAST,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Normalise an image and predict merged probabilities over the views in one batch.

    Args:
        predict: The model as a function of a normalised batch.
        image: 2-D image of any bit depth.
        views: TTA views (1 = no TTA; see :func:`morphoflow.segmentation.tta.select_views`).
        empty_contrast: Empty-field threshold of
            :func:`~morphoflow.segmentation.postprocess.normalize_image` (an empty field is
            normalised to zeros); None = no empty-field test.

    Returns:
        Merged probabilities (3, H, W), per-view foreground fraction (H, W), the views.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    names = select_views(views)
    normalised = normalize_image(image, empty_contrast=empty_contrast)[None]
    batch = augment_batch(normalised, names).astype(np.float32, copy=False)
    per_view = deaugment_batch(np.asarray(predict(batch)), names, image.shape)
    merged = merge_semantic(per_view)
    votes = (per_view[:, BACKGROUND] < 0.5).mean(axis=0, dtype=np.float32)
    return merged, votes, names


def segment_nuclei(
    predict: ProbabilityFn,
    image: np.ndarray,
    views: ViewsArg = 8,
    threshold: float = 0.5,
    min_size: int = 16,
    empty_contrast: float | None = EMPTY_FIELD_CONTRAST,
) -> Segmentation:
    """Segment nuclei in one image with a semantic model, with or without TTA.

    Args:
        predict: The model as a function of a normalised batch (e.g.
            ``functools.partial(unet.predict_probabilities, model)`` or a Triton client).
        image: 2-D image of any bit depth (DNA / Hoechst / DAPI channel).
        views: TTA views; 1 means no TTA.
        threshold: Probability threshold of the post-processing.
        min_size: Smallest object kept, in pixels.
        empty_contrast: Empty-field threshold of the normalisation (see
            :func:`segment_probabilities`); None = no empty-field test.

    Returns:
        The :class:`Segmentation`.
    """
    merged, votes, names = segment_probabilities(predict, image, views, empty_contrast)
    labels = probabilities_to_labels(merged, threshold=threshold, min_size=min_size)
    n = int(labels.max())
    if n:
        agreement = np.asarray(ndi.mean(votes, labels, index=np.arange(1, n + 1)), np.float32)
    else:
        agreement = np.zeros(0, np.float32)
    return Segmentation(labels.astype(np.uint32), merged, agreement, names)


def nuclei_table(labels: np.ndarray, agreement: np.ndarray | None = None) -> pd.DataFrame:
    """One row per nucleus: CellProfiler-named centre, area and TTA agreement.

    Returns:
        DataFrame with ``ObjectNumber``, ``Nuclei_Location_Center_X``,
        ``Nuclei_Location_Center_Y``, ``Nuclei_AreaShape_Area`` and ``Nuclei_TTA_Agreement``.
    """
    n = int(labels.max()) if labels.size else 0
    index = np.arange(1, n + 1)
    if n:
        centres = np.asarray(ndi.center_of_mass(np.ones_like(labels), labels, index)).reshape(n, 2)
        areas = np.bincount(labels.ravel().astype(np.int64), minlength=n + 1)[1:]
    else:
        centres, areas = np.zeros((0, 2)), np.zeros(0, np.int64)
    if agreement is None:
        agreement = np.ones(n, np.float32)
    return pd.DataFrame(
        {
            "ObjectNumber": index.astype(np.int64),
            "Nuclei_Location_Center_X": centres[:, 1],
            "Nuclei_Location_Center_Y": centres[:, 0],
            "Nuclei_AreaShape_Area": areas.astype(np.int64),
            "Nuclei_TTA_Agreement": np.asarray(agreement, np.float32)[:n],
        }
    )
