"""Test-time augmentation (TTA) for segmentation models, model-agnostic.

Predict on the original image and on its dihedral transforms (flips and 90-degree rotations),
undo each transform on the prediction, and merge (Moshkov et al., Sci Rep 2020):

- semantic models (U-Net): the de-augmented probability maps are averaged
  (:func:`merge_semantic`, :func:`predict_semantic_tta`); thresholding and post-processing stay
  the caller's job, exactly as without TTA. :func:`merge_semantic_labels` offers the other
  merges of :data:`SEMANTIC_MERGES` (averaged logits, the instance vote below applied to the
  U-Net's per-view instances, and vote-seeded watershed on the averaged maps);
- instance models (Mask R-CNN): objects from different views are the same object when their
  IoU >= 0.5; an object is kept when found in a majority of views, and its mask is the
  pixel-wise majority vote of its masks (:func:`merge_instances`, :func:`predict_instance_tta`).

Views. Every view acts on the last two axes (..., H, W) of an array. ``rotK`` is
``np.rot90(x, K, axes=(-2, -1))`` (K quarter turns counter-clockwise as displayed),
``flip_lr`` mirrors the columns (``x[..., ::-1]``), and ``flip_lr_rotK`` flips *then* rotates.
The inverse of a view rotates back *then* flips. ``flip_lr_rot180`` is the up-down flip.

View order for :func:`select_views` with an integer n: the first n of :data:`VIEW_ORDER`,

    identity, flip_lr, flip_lr_rot180 (up-down flip), rot180,
    rot90, rot270, flip_lr_rot90, flip_lr_rot270,

so that n = 1, 2, 4 and 8 are subgroups of the dihedral group (the merged prediction is then
exactly invariant under the selected views) and n <= 4 never swaps H and W (no padding of
non-square images).

Non-square images. To send all views to the model in one batch, :func:`augment_batch` pads an
(C, H, W) image with H != W to a square S = max(H, W) (reflect padding at the bottom / right)
when a selected view swaps H and W, and :func:`deaugment_batch` undoes each view then crops the
top-left (H, W) window. Without such a view no padding is needed and the batch stays (H, W).

This module needs only numpy (it also runs inside Triton's python backend; the ``"seeds"`` merge
imports scikit-image's watershed when used); model outputs that
are torch tensors are converted with ``.detach().cpu().numpy()`` without importing torch.

Example:
    >>> import numpy as np
    >>> x = np.arange(6).reshape(2, 3)
    >>> all(np.array_equal(deaugment(augment(x, v), v), x) for v in DIHEDRAL_VIEWS)
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from morphoflow.segmentation.metrics import check_label_image, pair_counts, sequential_indices

DIHEDRAL_VIEWS: tuple[str, ...] = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip_lr",
    "flip_lr_rot90",
    "flip_lr_rot180",
    "flip_lr_rot270",
)
"""The 8 dihedral views: K quarter turns, optionally preceded by a left-right flip."""

VIEW_ORDER: tuple[str, ...] = (
    "identity",
    "flip_lr",
    "flip_lr_rot180",
    "rot180",
    "rot90",
    "rot270",
    "flip_lr_rot90",
    "flip_lr_rot270",
)
"""Order in which :func:`select_views` takes the first n views (1, 2, 4, 8 are subgroups)."""

# view name -> (flip left-right first?, quarter turns counter-clockwise)
_VIEW_PARAMS: dict[str, tuple[bool, int]] = {
    "identity": (False, 0),
    "rot90": (False, 1),
    "rot180": (False, 2),
    "rot270": (False, 3),
    "flip_lr": (True, 0),
    "flip_lr_rot90": (True, 1),
    "flip_lr_rot180": (True, 2),
    "flip_lr_rot270": (True, 3),
}

ViewsArg = int | str | Sequence[str]
"""What view-taking functions accept: a count (first n of VIEW_ORDER), one name, or names."""

SemanticPredictFn = Callable[[np.ndarray], Any]
"""(N, C, H, W) float32 batch -> (N, K, H, W) probabilities (numpy array or torch tensor)."""

InstancePredictFn = Callable[[np.ndarray], Sequence[Any]]
"""(N, C, H, W) float32 batch -> N instance label images of shape (H, W)."""


def select_views(n_or_names: ViewsArg) -> tuple[str, ...]:
    """Resolve a TTA view selection.

    Args:
        n_or_names: An int n in 1..8 (the first n views of :data:`VIEW_ORDER`: 1 = identity,
            2 = + flip_lr, 4 = + up-down flip and rot180, 8 = all), one view name, or a
            sequence of distinct view names (kept in the given order).

    Returns:
        The view names.

    Raises:
        ValueError: n outside 1..8, an unknown or repeated name, or an empty sequence.
    """
    if isinstance(n_or_names, bool):
        raise ValueError(f"n_or_names must be an int in 1..8 or view names, got {n_or_names!r}")
    if isinstance(n_or_names, int | np.integer):
        n = int(n_or_names)
        if not 1 <= n <= len(VIEW_ORDER):
            raise ValueError(f"n_or_names must be in 1..{len(VIEW_ORDER)}, got {n}")
        return VIEW_ORDER[:n]
    names = (n_or_names,) if isinstance(n_or_names, str) else tuple(n_or_names)
    if not names:
        raise ValueError("n_or_names is empty; select at least one view")
    unknown = [v for v in names if v not in _VIEW_PARAMS]
    if unknown:
        raise ValueError(f"n_or_names has unknown views {unknown}; known: {list(DIHEDRAL_VIEWS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"n_or_names repeats a view: {list(names)}")
    return names


def _params(view: str) -> tuple[bool, int]:
    try:
        return _VIEW_PARAMS[view]
    except (KeyError, TypeError):
        raise ValueError(f"view must be one of {list(DIHEDRAL_VIEWS)}, got {view!r}") from None


def _check_2d(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have at least 2 dimensions (..., H, W), got {arr.shape}")
    return arr


def swaps_axes(view: str) -> bool:
    """Whether a view exchanges H and W (an odd number of quarter turns).

    Args:
        view: A view name.

    Returns:
        True for rot90, rot270, flip_lr_rot90 and flip_lr_rot270.

    Raises:
        ValueError: Unknown view.
    """
    return _params(view)[1] % 2 == 1


def augment(x: np.ndarray, view: str) -> np.ndarray:
    """Apply a view to the last two axes of an array: flip left-right (if any), then rotate.

    Args:
        x: Array of shape (..., H, W).
        view: A name from :data:`DIHEDRAL_VIEWS`.

    Returns:
        A contiguous array of shape (..., H, W), or (..., W, H) when the view swaps axes.

    Raises:
        ValueError: ``x`` has fewer than 2 dimensions or ``view`` is unknown.
    """
    flip, k = _params(view)
    arr = _check_2d(x, "x")
    if flip:
        arr = arr[..., ::-1]
    return np.ascontiguousarray(np.rot90(arr, k, axes=(-2, -1)))


def deaugment(y: np.ndarray, view: str) -> np.ndarray:
    """Undo a view on the last two axes: rotate back, then flip left-right (if any).

    ``deaugment(augment(x, v), v)`` equals ``x`` for every view ``v``.

    Args:
        y: Array of shape (..., H', W') in the view's frame (e.g. a model output).
        view: The name the input was augmented with.

    Returns:
        A contiguous array in the original frame.

    Raises:
        ValueError: ``y`` has fewer than 2 dimensions or ``view`` is unknown.
    """
    flip, k = _params(view)
    arr = np.rot90(_check_2d(y, "y"), -k, axes=(-2, -1))
    if flip:
        arr = arr[..., ::-1]
    return np.ascontiguousarray(arr)


def _check_views(views: ViewsArg) -> tuple[str, ...]:
    try:
        return select_views(views)
    except ValueError as err:
        raise ValueError(str(err).replace("n_or_names", "views")) from None


def augment_batch(image: np.ndarray, views: ViewsArg = 8) -> np.ndarray:
    """Stack every view of one image into a single model batch.

    When H != W and a selected view swaps H and W, the image is first padded to a square
    S = max(H, W) with reflect padding at the bottom / right, so that all views share one shape;
    otherwise the views keep the image's (H, W).

    Args:
        image: Array (C, H, W).
        views: Views (see :func:`select_views`); all 8 by default.

    Returns:
        Array (V, C, S, S) (or (V, C, H, W) when no padding is needed), of ``image``'s dtype.

    Raises:
        ValueError: ``image`` is not 3-D or ``views`` is invalid.
    """
    img = np.asarray(image)
    if img.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {img.shape}")
    names = _check_views(views)
    padded = _pad_for(img, names)
    return np.stack([augment(padded, v) for v in names])


def _pad_for(img: np.ndarray, names: Sequence[str]) -> np.ndarray:
    h, w = img.shape[-2:]
    if h == w or not any(swaps_axes(v) for v in names):
        return img
    s = max(h, w)
    pad = [(0, 0)] * (img.ndim - 2) + [(0, s - h), (0, s - w)]
    # Reflect needs at least 2 pixels along an axis; a 1-pixel axis is repeated instead.
    if min(h, w) > 1:
        return np.pad(img, pad, mode="reflect")
    return np.pad(img, pad, mode="edge")


def deaugment_batch(preds: np.ndarray, views: ViewsArg, shape: tuple[int, int]) -> np.ndarray:
    """Undo each view on a batch of predictions and crop back to the image's shape.

    The inverse of :func:`augment_batch` for any per-pixel output (probabilities, logits,
    label images).

    Args:
        preds: Array (V, K, S, S) (or (V, K, H, W)), one prediction per view, in view order.
        views: The views passed to :func:`augment_batch`.
        shape: The original image's (H, W).

    Returns:
        Array (V, K, H, W) in the original frame.

    Raises:
        ValueError: ``preds`` is not 4-D, its length differs from the number of views, or its
            spatial shape is not the one :func:`augment_batch` produces for ``shape``.
    """
    names = _check_views(views)
    arr = _to_numpy(preds)
    if arr.ndim != 4:
        raise ValueError(f"preds must be (V, K, S, S), got shape {arr.shape}")
    if arr.shape[0] != len(names):
        raise ValueError(f"preds has {arr.shape[0]} views, views names {len(names)}")
    h, w = _check_shape(shape)
    padded = _padded_shape(h, w, names)
    out = []
    for v, pred in zip(names, arr, strict=True):
        expected = padded[::-1] if swaps_axes(v) else padded
        if pred.shape[-2:] != expected:
            raise ValueError(
                f"preds for view {v!r} has spatial shape {pred.shape[-2:]}, expected {expected}"
            )
        out.append(deaugment(pred, v)[..., :h, :w])
    return np.stack(out)


def _padded_shape(h: int, w: int, names: Sequence[str]) -> tuple[int, int]:
    if h != w and any(swaps_axes(v) for v in names):
        s = max(h, w)
        return (s, s)
    return (h, w)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (H, W), got {shape!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"shape must be positive, got {shape!r}")
    return h, w


def _to_numpy(x: Any) -> np.ndarray:
    """Numpy view of a model output (numpy array, torch tensor on any device, array-like)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.asarray(x)


SEMANTIC_MERGES: tuple[str, ...] = ("mean", "logit", "seeds", "vote")
"""How the views of a semantic (3-class U-Net) prediction are merged into instances:

- ``"mean"``: average the probability maps, then post-process once (the TTA paper's U-Net
  merge: "average the probability maps, threshold 0.5");
- ``"logit"``: average the per-class log-probabilities (equal to averaging the logits: log-softmax
  differs from the logits by a per-pixel constant), softmax, then post-process once;
- ``"vote"``: post-process every view, then the paper's instance merge
  (:func:`merge_instances`: objects matched at IoU >= 0.5, kept when found in a strict majority
  of views, pixel-wise majority masks);
- ``"seeds"``: the objects of ``"vote"`` are the watershed markers, grown over the averaged maps
  (outlines from the mean probabilities, objects from the majority of views).

With one view every merge gives the objects of that view. Measured on real HeLa frames and on
synthetic validation images: ``benchmarks/segmentation_real.py`` (numbers in the README)."""

DEFAULT_SEMANTIC_MERGE: str = "seeds"
"""The merge :class:`~morphoflow.segmentation.settings.SegmenterSettings` uses unless told: the
best measured on real frames (``benchmarks/segmentation_real.py``, shipped U-Net, 8 views, HeLa
t12-t14: DSB mean 0.679, logit 0.680, vote 0.690, seeds 0.694; one view 0.665; all 15 frames:
mean 0.639, vote 0.655, seeds 0.658). On the synthetic validation set ``"vote"`` is better
(0.886 against 0.883): keep it in mind for images far from real widefield nuclei."""

LOG_FLOOR: float = 1e-6
"""Probabilities are clipped to at least this before the log of the ``"logit"`` merge (a
float32 softmax can return exact zeros)."""

LabelsFn = Callable[[np.ndarray], np.ndarray]
"""(K, H, W) probabilities of one view (or merged) -> (H, W) instance labels (0 = background)."""


def check_merge(merge: str) -> str:
    """Validate a semantic merge name (one of :data:`SEMANTIC_MERGES`).

    Raises:
        ValueError: Unknown merge (the known ones are listed).
    """
    if not isinstance(merge, str) or merge not in SEMANTIC_MERGES:
        raise ValueError(f"merge must be one of {list(SEMANTIC_MERGES)}, got {merge!r}")
    return merge


def merge_semantic(probs: np.ndarray, merge: str = "mean") -> np.ndarray:
    """Merge de-augmented per-pixel class probabilities over the views into one map.

    ``"mean"`` (and ``"seeds"`` / ``"vote"``, whose reported map is the mean) is the arithmetic
    mean over the views; ``"logit"`` is ``softmax(mean_v log max(p_v, LOG_FLOOR))`` over the
    class axis, the softmax of the averaged logits: a normalised geometric mean of the views'
    probabilities, in which a class that one view rules out confidently loses even when the
    other views favour it (an average lets the majority win instead).

    Args:
        probs: Array (V, K, H, W) of de-augmented probability maps (each pixel's K values sum
            to 1 for ``"logit"``).
        merge: One of :data:`SEMANTIC_MERGES`.

    Returns:
        Float32 array (K, H, W).

    Raises:
        ValueError: ``probs`` is not 4-D or has no view, or ``merge`` is unknown.
    """
    check_merge(merge)
    arr = _to_numpy(probs)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ValueError(f"probs must be (V, K, H, W) with V >= 1, got shape {arr.shape}")
    if merge != "logit":
        return arr.mean(axis=0, dtype=np.float64).astype(np.float32)
    logp = np.log(np.clip(arr, LOG_FLOOR, None, dtype=np.float64)).mean(axis=0)
    logp -= logp.max(axis=0, keepdims=True)
    out = np.exp(logp)
    out /= out.sum(axis=0, keepdims=True)
    return out.astype(np.float32)


def merge_semantic_labels(
    probs: np.ndarray,
    to_labels: LabelsFn,
    merge: str = DEFAULT_SEMANTIC_MERGE,
    threshold: float = 0.5,
    iou_threshold: float = 0.5,
    min_views: int | None = None,
) -> np.ndarray:
    """Instances from the de-augmented predictions of several views (see :data:`SEMANTIC_MERGES`).

    Args:
        probs: Array (V, K, H, W) of de-augmented class probabilities; for ``"seeds"`` the
            classes are (background, interior, boundary) as in
            :mod:`morphoflow.segmentation.postprocess`.
        to_labels: The post-processing, (K, H, W) probabilities -> (H, W) labels (e.g.
            ``functools.partial(probabilities_to_labels, threshold=0.5)``).
        merge: One of :data:`SEMANTIC_MERGES`.
        threshold: Foreground threshold of ``"seeds"``: a pixel may join an object when
            ``1 - mean background probability > threshold`` (as in the post-processing).
        iou_threshold: IoU at or above which objects of two views are one object
            (``"vote"``, ``"seeds"``).
        min_views: Views an object must be found in (``"vote"``, ``"seeds"``); None = strict
            majority.

    Returns:
        uint32 instance labels (H, W), numbered 1..n.

    Raises:
        ValueError: Invalid ``probs`` or ``merge``, ``to_labels`` returned a label image of
            another shape, or an argument of :func:`merge_instances` is out of range.
    """
    check_merge(merge)
    arr = _to_numpy(probs)
    if arr.ndim != 4 or arr.shape[0] == 0:
        raise ValueError(f"probs must be (V, K, H, W) with V >= 1, got shape {arr.shape}")
    shape = arr.shape[-2:]
    if merge in ("mean", "logit"):
        return _sequential(_labels_of(to_labels, merge_semantic(arr, merge), shape))
    per_view = [_labels_of(to_labels, view, shape) for view in arr]
    voted, _ = merge_instances(per_view, iou_threshold=iou_threshold, min_views=min_views)
    if merge == "vote":
        return voted
    from skimage.segmentation import watershed  # "seeds" only; Triton's backend has it

    mean = merge_semantic(arr, "mean")
    foreground = (1.0 - mean[0]) > float(threshold)
    grown = watershed(-mean[1], markers=voted.astype(np.int64), mask=foreground | (voted > 0))
    return _sequential(grown)


def _labels_of(to_labels: LabelsFn, probs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    labels = check_label_image(to_labels(probs), "to_labels(probs)")
    if labels.shape != tuple(shape):
        raise ValueError(f"to_labels returned shape {labels.shape}, expected {tuple(shape)}")
    return labels


def _sequential(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 1..n in raster order of each object's first pixel (uint32)."""
    flat = np.asarray(labels).ravel()
    ids, first = np.unique(flat, return_index=True)
    keep = ids > 0
    ids, first = ids[keep], first[keep]
    ranked = ids[np.argsort(first)]
    lut = np.zeros(int(flat.max(initial=0)) + 1, dtype=np.uint32)
    lut[ranked] = np.arange(1, ranked.size + 1, dtype=np.uint32)
    return lut[flat].reshape(np.shape(labels))


def predict_semantic_tta(
    predict_fn: SemanticPredictFn, image: np.ndarray, views: ViewsArg = 8
) -> np.ndarray:
    """Semantic (per-pixel probability) prediction with TTA, all views in one model call.

    Args:
        predict_fn: Maps one float32 batch (N, C, H', W') to (N, K, H', W') probabilities
            (numpy array or torch tensor). Called exactly once, with N = number of views.
        image: Array (C, H, W).
        views: Views (see :func:`select_views`); all 8 by default, 1 = no TTA.

    Returns:
        Float32 array (K, H, W): the mean of the de-augmented probability maps.

    Raises:
        ValueError: Invalid ``image`` or ``views``, or ``predict_fn`` returned an array of the
            wrong shape.
    """
    names = _check_views(views)
    img = np.asarray(image)
    batch = augment_batch(img, names).astype(np.float32, copy=False)
    out = _to_numpy(predict_fn(batch))
    if out.ndim != 4 or out.shape[0] != batch.shape[0] or out.shape[2:] != batch.shape[2:]:
        raise ValueError(
            f"predict_fn returned shape {out.shape} for a batch of shape {batch.shape}; "
            f"expected ({batch.shape[0]}, K, {batch.shape[2]}, {batch.shape[3]})"
        )
    return merge_semantic(deaugment_batch(out, names, (img.shape[-2], img.shape[-1])))


def default_min_views(n_views: int) -> int:
    """Smallest strict majority of ``n_views`` views: floor(V / 2) + 1 (5 of 8, 3 of 4, 1 of 1)."""
    return n_views // 2 + 1


def merge_instances(
    label_images: Sequence[np.ndarray],
    iou_threshold: float = 0.5,
    min_views: int | None = None,
) -> tuple[np.ndarray, dict[int, float]]:
    """Merge instance segmentations of the same image from several (de-augmented) views.

    Algorithm (greedy, in view order):

    1. Clustering. The objects of the first view each start a cluster. For each next view, every
       object is compared with every cluster whose current *reference mask* it overlaps, by IoU
       against that mask (pixels covered by at least half of the cluster's members; for one
       member, the member itself). Pairs with IoU >= ``iou_threshold`` are assigned greedily
       by decreasing IoU, each object to at most one cluster and each cluster to at most one
       object of a view; unassigned objects start new clusters.
    2. Selection. A cluster is kept when found in at least ``min_views`` views; by default a
       strict majority of the V views, ``V // 2 + 1`` (5 of 8 kept, 4 of 8 dropped).
    3. Mask. Pixel-wise majority vote among the views that found the object: a pixel belongs
       to the object when more than half of the cluster's n members cover it
       (votes > n / 2). Views that missed the object say nothing about its shape.
    4. Overlaps. A pixel claimed by several kept objects goes to the one found in more views,
       then to the one with more votes at that pixel, then to the earlier cluster.

    Args:
        label_images: One instance label image per view, already de-augmented into the
            original frame (integer, 0 = background, same shape).
        iou_threshold: IoU at or above which two objects are the same object, in (0, 1].
        min_views: Minimum number of views an object must be found in (1..V); None = strict
            majority.

    Returns:
        ``(labels, agreement)``: uint32 instance labels numbered 1..n in raster order of each
        object's first pixel, and ``agreement[label]`` = fraction of the V views that found
        the object.

    Raises:
        ValueError: No label image, shapes differ, a label image is not a valid instance label
            image, or ``iou_threshold`` / ``min_views`` is out of range.
    """
    images = [check_label_image(im, f"label_images[{i}]") for i, im in enumerate(label_images)]
    if not images:
        raise ValueError("label_images is empty; need at least one view")
    shape = images[0].shape
    for i, im in enumerate(images):
        if im.shape != shape:
            raise ValueError(f"label_images[{i}] has shape {im.shape}, view 0 has {shape}")
    if not 0.0 < float(iou_threshold) <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    n_views = len(images)
    if min_views is None:
        min_views = default_min_views(n_views)
    if isinstance(min_views, bool) or not 1 <= int(min_views) <= n_views:
        raise ValueError(f"min_views must be in 1..{n_views}, got {min_views}")

    # Each view relabelled 1..n_v, whatever its label values.
    flats = [sequential_indices(im)[0] for im in images]
    clusters: list[list[np.ndarray]] = []  # members: sorted flat pixel indices
    references: list[np.ndarray] = []  # each cluster's current reference mask

    for flat in flats:
        _, objects = _objects(flat)
        assigned = _match_view(flat, objects, references, float(iou_threshold))
        changed = []
        for pix, c in zip(objects, assigned, strict=True):
            if c < 0:
                c = len(clusters)
                clusters.append([])
                references.append(pix)
            clusters[c].append(pix)
            changed.append(c)
        for c in changed:
            references[c] = _reference(clusters[c])

    return _render(clusters, int(min_views), n_views, shape)


def _objects(flat: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Labels 1..n of a sequential flat label image and each one's sorted flat pixel indices."""
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return np.zeros(0, dtype=np.int64), []
    order = np.argsort(flat[fg], kind="stable")  # stable: pixel indices stay sorted per label
    counts = np.bincount(flat[fg])[1:]
    return np.arange(1, counts.size + 1), np.split(fg[order], np.cumsum(counts)[:-1])


def _reference(members: list[np.ndarray]) -> np.ndarray:
    """Pixels covered by at least half of a cluster's members (sorted flat indices)."""
    if len(members) == 1:
        return members[0]
    pix, votes = np.unique(np.concatenate(members), return_counts=True)
    return pix[2 * votes >= len(members)]


def _match_view(
    flat: np.ndarray,
    objects: list[np.ndarray],
    references: list[np.ndarray],
    iou_threshold: float,
) -> list[int]:
    """Cluster index for each object of one view (-1 = starts a new cluster).

    Overlaps between the view's objects and the clusters' reference masks come from one
    sparse joint histogram (:func:`~morphoflow.segmentation.metrics.pair_counts`): memory
    O(pixels + overlapping pairs), never objects x clusters.
    """
    assigned = [-1] * len(objects)
    if not objects or not references:
        return assigned
    ref_pixels = np.concatenate(references)
    ref_cluster = np.repeat(
        np.arange(1, len(references) + 1, dtype=np.int64), [r.size for r in references]
    )
    obj, cl, inter = pair_counts(flat[ref_pixels], ref_cluster, len(references))
    if obj.size == 0:
        return assigned
    obj, cl = obj - 1, cl - 1  # object o (sequential label o + 1), cluster c
    obj_size = np.array([pix.size for pix in objects], dtype=np.int64)
    ref_size = np.array([r.size for r in references], dtype=np.int64)
    iou = inter / (obj_size[obj] + ref_size[cl] - inter)
    good = iou >= iou_threshold
    # Decreasing IoU; ties by object then cluster index.
    order = np.lexsort((cl[good], obj[good], -iou[good]))
    used: set[int] = set()
    for o, c in zip(obj[good][order].tolist(), cl[good][order].tolist(), strict=True):
        if assigned[o] < 0 and c not in used:
            assigned[o] = c
            used.add(c)
    return assigned


def _render(
    clusters: list[list[np.ndarray]], min_views: int, n_views: int, shape: tuple[int, ...]
) -> tuple[np.ndarray, dict[int, float]]:
    """Majority-vote masks of the kept clusters painted into one label image."""
    size = math.prod(shape)
    pix_parts: list[np.ndarray] = []
    key_parts: list[np.ndarray] = []
    idx_parts: list[np.ndarray] = []
    agree: list[float] = []
    for members in clusters:
        n = len(members)
        if n < min_views:
            continue
        pix, votes = np.unique(np.concatenate(members), return_counts=True)
        keep = 2 * votes > n  # strict majority of the views that found the object
        if not keep.any():
            continue
        k = len(agree)
        pix_parts.append(pix[keep])
        key_parts.append(n * (n_views + 1) + votes[keep])  # (views found, votes) lexicographic
        idx_parts.append(np.full(int(keep.sum()), k, dtype=np.int64))
        agree.append(n / n_views)
    out = np.zeros(size, dtype=np.uint32)
    if not agree:
        return out.reshape(shape), {}
    pix = np.concatenate(pix_parts)
    key = np.concatenate(key_parts)
    idx = np.concatenate(idx_parts)
    order = np.lexsort((idx, -key, pix))  # per pixel: highest key, then earliest cluster
    pix, idx = pix[order], idx[order]
    first = np.ones(pix.size, dtype=bool)
    first[1:] = pix[1:] != pix[:-1]
    pix, idx = pix[first], idx[first]
    # Number the surviving objects in raster order of their first pixel (pix is sorted).
    survivors, first_pixel = np.unique(idx, return_index=True)
    ranked = survivors[np.argsort(first_pixel)]
    new_label = np.zeros(len(agree), dtype=np.uint32)
    new_label[ranked] = np.arange(1, ranked.size + 1, dtype=np.uint32)
    out[pix] = new_label[idx]
    agreement = {int(new_label[k]): float(agree[k]) for k in ranked.tolist()}
    return out.reshape(shape), agreement


def predict_instance_tta(
    predict_fn: InstancePredictFn,
    image: np.ndarray,
    views: ViewsArg = 8,
    iou_threshold: float = 0.5,
    min_views: int | None = None,
) -> tuple[np.ndarray, dict[int, float]]:
    """Instance prediction with TTA: one model call on all views, de-augment, merge.

    Args:
        predict_fn: Maps one float32 batch (N, C, H', W') to N instance label images of shape
            (H', W') (integer, 0 = background). Called exactly once, with N = number of views.
        image: Array (C, H, W).
        views: Views (see :func:`select_views`); all 8 by default.
        iou_threshold: Passed to :func:`merge_instances`.
        min_views: Passed to :func:`merge_instances` (None = strict majority of the views).

    Returns:
        ``(labels, agreement)`` as returned by :func:`merge_instances`, labels of shape (H, W).

    Raises:
        ValueError: Invalid arguments, or ``predict_fn`` returned the wrong number or shape
            of label images.
    """
    names = _check_views(views)
    img = np.asarray(image)
    batch = augment_batch(img, names).astype(np.float32, copy=False)
    outputs = list(predict_fn(batch))
    if len(outputs) != len(names):
        raise ValueError(
            f"predict_fn returned {len(outputs)} label images for a batch of {len(names)}"
        )
    h, w = img.shape[-2:]
    restored = []
    for i, (v, lab) in enumerate(zip(names, outputs, strict=True)):
        arr = _to_numpy(lab)
        if arr.shape != batch.shape[2:]:
            raise ValueError(
                f"predict_fn returned a label image of shape {arr.shape} for view {i} ({v}); "
                f"expected {batch.shape[2:]}"
            )
        restored.append(deaugment(arr, v)[:h, :w])
    return merge_instances(restored, iou_threshold=iou_threshold, min_views=min_views)
