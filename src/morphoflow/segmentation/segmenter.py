"""Nucleus segmentation of one image: normalise -> U-Net (optionally TTA) -> instances.

This is the code path of ``morphoflow segment``, of the profiling pipeline's segmentation step
and of the ``nuclei_tta`` model served by Triton: the TTA building blocks come from
:mod:`morphoflow.segmentation.tta`, the post-processing from
:mod:`morphoflow.segmentation.postprocess`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from morphoflow.segmentation.postprocess import (
    BACKGROUND,
    EMPTY_FIELD_CONTRAST,
    MIN_DIAMETER,
    check_diameter_range,
    filter_objects,
    normalize_image,
    probabilities_to_labels,
)
from morphoflow.segmentation.tta import (
    DEFAULT_SEMANTIC_MERGE,
    ViewsArg,
    augment_batch,
    check_merge,
    deaugment_batch,
    merge_semantic,
    merge_semantic_labels,
    select_views,
)

ProbabilityFn = Callable[[np.ndarray], np.ndarray]
"""(N, 1, H, W) float32 normalised batch -> (N, 3, H, W) probabilities."""

MODEL_DIAMETER: float = 22.0
"""Nucleus diameter (pixels) that ``diameter`` rescaling brings nuclei to. The shipped U-Net
was trained on synthetic nuclei of 4-30 px radius (8-60 px diameter, log-uniform,
:mod:`morphoflow.simulate.nuclei`) and simulated screen sites of 6-16 px radius; 22 px is the
geometric centre of 8-60 px. Images whose nuclei lie in 8-60 px need no rescaling."""

MAX_RESCALED_SIDE: int = 16384
"""Longest side (pixels) an image may reach after ``diameter`` rescaling."""


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


def predict_views(
    predict: ProbabilityFn,
    image: np.ndarray,
    views: ViewsArg = 8,
    empty_contrast: float | None = EMPTY_FIELD_CONTRAST,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Normalise an image and predict every view in one batch, de-augmented.

    Returns:
        float32 (V, 3, H, W) per-view probabilities in the image's frame, and the views.

    Raises:
        ValueError: ``image`` is not 2-D, or ``views`` is invalid.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    names = select_views(views)
    normalised = normalize_image(image, empty_contrast=empty_contrast)[None]
    batch = augment_batch(normalised, names).astype(np.float32, copy=False)
    return deaugment_batch(np.asarray(predict(batch)), names, image.shape), names


def segment_probabilities(
    predict: ProbabilityFn,
    image: np.ndarray,
    views: ViewsArg = 8,
    empty_contrast: float | None = EMPTY_FIELD_CONTRAST,
    merge: str = "mean",
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Normalise an image and predict merged probabilities over the views in one batch.

    Args:
        predict: The model as a function of a normalised batch.
        image: 2-D image of any bit depth.
        views: TTA views (1 = no TTA; see :func:`morphoflow.segmentation.tta.select_views`).
        empty_contrast: Empty-field threshold of
            :func:`~morphoflow.segmentation.postprocess.normalize_image` (an empty field is
            normalised to zeros); None = no empty-field test.
        merge: How the maps are merged (:func:`morphoflow.segmentation.tta.merge_semantic`).

    Returns:
        Merged probabilities (3, H, W), per-view foreground fraction (H, W), the views.
    """
    per_view, names = predict_views(predict, image, views, empty_contrast)
    merged = merge_semantic(per_view, merge)
    votes = (per_view[:, BACKGROUND] < 0.5).mean(axis=0, dtype=np.float32)
    return merged, votes, names


def segment_nuclei(
    predict: ProbabilityFn,
    image: np.ndarray,
    views: ViewsArg = 8,
    threshold: float = 0.5,
    min_diameter: float = MIN_DIAMETER,
    max_diameter: float | None = None,
    discard_border_objects: bool = False,
    diameter: float | None = None,
    empty_contrast: float | None = EMPTY_FIELD_CONTRAST,
    merge: str = DEFAULT_SEMANTIC_MERGE,
) -> Segmentation:
    """Segment nuclei in one image with a semantic model, with or without TTA.

    Steps: (optional) rescale so that nuclei of ``diameter`` px become :data:`MODEL_DIAMETER`
    px; normalise, predict and merge the views (:func:`segment_probabilities`); resize the
    merged probabilities back to the image's shape (bilinear); instances
    (:func:`~morphoflow.segmentation.postprocess.probabilities_to_labels`); object filters
    (:func:`~morphoflow.segmentation.postprocess.filter_objects`, CellProfiler
    IdentifyPrimaryObjects' diameter range and border filter, in the image's own pixels);
    objects renumbered 1..n.

    Args:
        predict: The model as a function of a normalised batch (e.g.
            ``functools.partial(unet.predict_probabilities, model)`` or a Triton client).
        image: 2-D image of any bit depth (DNA / Hoechst / DAPI channel).
        views: TTA views; 1 means no TTA.
        threshold: Probability threshold of the post-processing.
        min_diameter: Smallest equivalent diameter kept, in pixels of ``image``.
        max_diameter: Largest equivalent diameter kept, in pixels; None = no upper bound.
        discard_border_objects: Discard objects touching the image border.
        diameter: Typical nucleus diameter in ``image``, in pixels (> 0): the image is
            resized by ``MODEL_DIAMETER / diameter`` before the model and the probabilities
            resized back; None = the image as it is.
        empty_contrast: Empty-field threshold of the normalisation (see
            :func:`segment_probabilities`); None = no empty-field test.
        merge: How the TTA views become instances, one of
            :data:`morphoflow.segmentation.tta.SEMANTIC_MERGES` (see
            :func:`~morphoflow.segmentation.tta.merge_semantic_labels`); irrelevant with one
            view.

    Returns:
        The :class:`Segmentation` (labels and probabilities at the image's shape).

    Raises:
        ValueError: ``image`` is not 2-D, or a filter or ``diameter`` is out of range (named).
    """
    check_diameter_range(min_diameter, max_diameter)
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    check_merge(merge)
    if diameter is None:
        per_view, names = predict_views(predict, image, views, empty_contrast)
    else:
        scaled = rescale_for_diameter(image, diameter)
        per_view, names = predict_views(predict, scaled, views, empty_contrast)
        per_view = _resize(per_view, image.shape)
    merged = merge_semantic(per_view, merge)
    votes = (per_view[:, BACKGROUND] < 0.5).mean(axis=0, dtype=np.float32)
    labels = merge_semantic_labels(
        per_view, partial(probabilities_to_labels, threshold=threshold), merge, threshold
    )
    labels = filter_objects(labels, min_diameter, max_diameter, bool(discard_border_objects))
    n = int(labels.max())
    if n:
        agreement = np.asarray(ndi.mean(votes, labels, index=np.arange(1, n + 1)), np.float32)
    else:
        agreement = np.zeros(0, np.float32)
    return Segmentation(labels.astype(np.uint32), merged, agreement, names)


def rescale_for_diameter(image: np.ndarray, diameter: float) -> np.ndarray:
    """Resize a 2-D image so that nuclei of ``diameter`` px become :data:`MODEL_DIAMETER` px.

    Bilinear interpolation (``skimage.transform.resize``, order 1, range preserved, Gaussian
    anti-aliasing when shrinking); each side becomes ``round(side * MODEL_DIAMETER /
    diameter)``, at least 1.

    Args:
        image: 2-D image (H, W), any real dtype.
        diameter: Typical nucleus diameter in the image, in pixels (finite, > 0).

    Returns:
        float32 image of the new shape (the input unchanged, as float32, when the scale is 1).

    Raises:
        ValueError: ``diameter`` is not a finite number > 0, or the resized image would have
            a side over :data:`MAX_RESCALED_SIDE`.
    """
    if isinstance(diameter, bool) or not isinstance(
        diameter, int | float | np.integer | np.floating
    ):
        raise ValueError(f"diameter must be a number of pixels > 0, got {diameter!r}")
    if not (np.isfinite(diameter) and diameter > 0):
        raise ValueError(f"diameter must be a finite number of pixels > 0, got {diameter!r}")
    scale = MODEL_DIAMETER / float(diameter)
    shape = tuple(max(1, round(side * scale)) for side in image.shape)
    if max(shape) > MAX_RESCALED_SIDE:
        raise ValueError(
            f"diameter {diameter} rescales an image of shape {image.shape} to {shape}, over "
            f"{MAX_RESCALED_SIDE} px; give a larger diameter or crop the image"
        )
    data = np.asarray(image, dtype=np.float32)
    if shape == image.shape:
        return data
    return _resize(data, shape)


def _resize(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Bilinear resize of the last two axes of a (..., h, w) array to ``shape`` (H, W)."""
    from skimage.transform import resize

    target = (*array.shape[:-2], *shape[-2:])
    if tuple(array.shape) == target:
        return array
    shrink = target[-1] < array.shape[-1] or target[-2] < array.shape[-2]
    out = resize(
        array.astype(np.float32, copy=False),
        target,
        order=1,
        mode="edge",
        preserve_range=True,
        anti_aliasing=shrink,
    )
    return out.astype(np.float32, copy=False)


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
