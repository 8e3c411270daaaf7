"""Instance segmentation metrics: the Data Science Bowl 2018 score.

The DSB 2018 score of one image averages, over the IoU thresholds t = 0.50, 0.55, ..., 0.95,

    score(t) = TP(t) / (TP(t) + FP(t) + FN(t)),

where a predicted object matches a ground-truth object when their IoU is *strictly* greater than
t. The dataset score is the mean of the image scores.

Inputs are instance label images: integer arrays, 0 = background, each positive value one object
(labels need not be sequential). Any number of dimensions works (2-D images, 3-D stacks); truth
and prediction must have one shape.

Example:
    >>> import numpy as np
    >>> truth = np.zeros((20, 20), dtype=np.int32)
    >>> truth[5:15, 5:15] = 1
    >>> pred = np.roll(truth, 1, axis=1)  # shifted by one column: IoU = 90 / 110
    >>> dsb_image_score(truth, pred).score  # matched at t = 0.50 ... 0.80: 7 of 10 thresholds
    0.7
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DSB_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
"""IoU thresholds of the DSB 2018 score: 0.50, 0.55, ..., 0.95."""


@dataclass(frozen=True)
class ImageScore:
    """DSB 2018 score of one image.

    Attributes:
        score: Mean of ``per_threshold`` over the thresholds.
        per_threshold: Threshold -> TP / (TP + FP + FN) at that threshold.
        tp: Matched predictions at the first (lowest) threshold, normally 0.5.
        fp: Unmatched predictions at the first threshold.
        fn: Unmatched ground-truth objects at the first threshold.
        precision_50: TP / (TP + FP) at the first threshold.
        recall_50: TP / (TP + FN) at the first threshold.
        n_true: Number of ground-truth objects.
        n_pred: Number of predicted objects.
    """

    score: float
    per_threshold: dict[float, float]
    tp: int
    fp: int
    fn: int
    precision_50: float
    recall_50: float
    n_true: int
    n_pred: int


@dataclass(frozen=True)
class DatasetScore:
    """DSB 2018 score of a set of images.

    Attributes:
        score: Mean of the image scores (the DSB 2018 leaderboard number).
        per_threshold: Threshold -> mean over images of that threshold's score.
        precision_50: Mean over images of the precision at the first threshold.
        recall_50: Mean over images of the recall at the first threshold.
        images: The per-image scores, in input order.
        n_images: Number of images.
    """

    score: float
    per_threshold: dict[float, float]
    precision_50: float
    recall_50: float
    images: tuple[ImageScore, ...]
    n_images: int

    def summary(self) -> dict[str, float]:
        """Flat ``name -> value`` metrics, e.g. for an experiment tracker.

        Returns:
            ``dsb_score``, ``dsb_precision_50``, ``dsb_recall_50`` and one ``dsb_ap_<t>``
            (``t`` with two decimals, e.g. ``dsb_ap_0.75``) per threshold.
        """
        out = {
            "dsb_score": self.score,
            "dsb_precision_50": self.precision_50,
            "dsb_recall_50": self.recall_50,
        }
        for t, value in self.per_threshold.items():
            out[f"dsb_ap_{t:.2f}"] = value
        return out


def check_label_image(labels: np.ndarray, name: str) -> np.ndarray:
    """Validate an instance label image and return it as an ndarray.

    Args:
        labels: Candidate label image.
        name: Argument name used in error messages.

    Returns:
        ``labels`` as a numpy array (no copy when it already is one).

    Raises:
        ValueError: ``labels`` is not of an integer dtype or holds negative labels.
    """
    arr = np.asarray(labels)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"{name} must be an integer instance label image (0 = background), got dtype "
            f"{arr.dtype}"
        )
    if arr.size and np.issubdtype(arr.dtype, np.signedinteger) and arr.min() < 0:
        raise ValueError(f"{name} holds negative labels (min {arr.min()}); labels must be >= 0")
    return arr


def sequential_indices(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Flat sequential relabelling of a label image.

    Args:
        labels: Validated label image (non-negative integers).

    Returns:
        ``(flat, n)``: int64 array of ``labels.size`` values in 0..n, where 0 is background and
        object k (1-based) is the k-th smallest positive label; and n, the number of objects.
    """
    flat = labels.ravel()
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64), 0
    top = int(flat.max())
    if top <= max(flat.size, 1 << 20):
        # Lookup table, O(pixels): much faster than sorting when labels are not huge numbers.
        flat = flat.astype(np.intp, copy=False)  # bincount refuses uint64
        present = np.bincount(flat, minlength=top + 1) > 0
        present[0] = False
        lut = np.cumsum(present, dtype=np.int64)  # label -> rank among present labels
        return lut[flat], int(lut[-1])
    uniq, inverse = np.unique(flat, return_inverse=True)
    if uniq.size and uniq[0] == 0:
        return inverse.astype(np.int64, copy=False), int(uniq.size - 1)
    # No background pixel at all: shift so that object k gets index k + 1.
    return inverse.astype(np.int64, copy=False) + 1, int(uniq.size)


def _check_pair(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = check_label_image(truth, "truth")
    p = check_label_image(pred, "pred")
    if t.shape != p.shape:
        raise ValueError(f"pred has shape {p.shape}, truth has shape {t.shape}; they must match")
    return t, p


def pair_counts(
    a: np.ndarray, b: np.ndarray, n_b: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse joint histogram of two aligned id arrays: how often each (a, b) pair co-occurs.

    Only positions where both ids are positive count (0 = background / no object). Memory is
    O(len(a) + number of distinct pairs), never O(max(a) * n_b): the pairs are found by
    ``np.unique`` on one combined int64 key per position.

    Args:
        a: Non-negative integer ids, any shape.
        b: Non-negative integer ids in 0..``n_b``, same shape as ``a``.
        n_b: Largest id ``b`` may hold.

    Returns:
        ``(ia, ib, count)``: three int64 arrays of the distinct co-occurring pairs (sorted by
        ``ia``, then ``ib``) and the number of positions holding each pair.

    Example:
        >>> pair_counts(np.array([1, 1, 2, 0]), np.array([3, 3, 3, 3]), 3)
        (array([1, 2]), array([3, 3]), array([2, 1]))
    """
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    both = (a > 0) & (b > 0)
    stride = int(n_b) + 1
    keys = a[both].astype(np.int64) * stride + b[both].astype(np.int64)
    uniq, counts = np.unique(keys, return_counts=True)
    return uniq // stride, uniq % stride, counts.astype(np.int64)


@dataclass(frozen=True)
class Overlaps:
    """The overlapping (ground-truth, predicted) object pairs of two label images (sparse).

    Objects are relabelled sequentially: true object ``i`` (0-based) is the ``i``-th smallest
    positive label of the truth, predicted object ``j`` likewise. Pairs that share no pixel are
    not stored: their intersection and IoU are 0.

    Attributes:
        true_index: int64 (k,): row of each overlapping pair.
        pred_index: int64 (k,): column of each overlapping pair.
        intersection: int64 (k,): shared pixels of each pair.
        area_true: int64 (n_true,): pixels of each true object.
        area_pred: int64 (n_pred,): pixels of each predicted object.
    """

    true_index: np.ndarray
    pred_index: np.ndarray
    intersection: np.ndarray
    area_true: np.ndarray
    area_pred: np.ndarray

    @property
    def n_true(self) -> int:
        """Number of ground-truth objects."""
        return int(self.area_true.size)

    @property
    def n_pred(self) -> int:
        """Number of predicted objects."""
        return int(self.area_pred.size)

    @property
    def iou(self) -> np.ndarray:
        """float64 (k,): intersection over union of each overlapping pair."""
        inter = self.intersection.astype(np.float64)
        union = self.area_true[self.true_index] + self.area_pred[self.pred_index] - inter
        return inter / union  # union >= area of a non-empty object > 0

    def dense_iou(self) -> np.ndarray:
        """The full float64 (n_true, n_pred) IoU table (memory 8 * n_true * n_pred bytes)."""
        out = np.zeros((self.n_true, self.n_pred), dtype=np.float64)
        out[self.true_index, self.pred_index] = self.iou
        return out


def _overlaps(truth: np.ndarray, pred: np.ndarray) -> Overlaps:
    """Sparse overlaps of two validated label images (see :func:`object_overlaps`)."""
    t_idx, n_true = sequential_indices(truth)
    p_idx, n_pred = sequential_indices(pred)
    rows, cols, inter = pair_counts(t_idx, p_idx, n_pred)
    area_true = np.bincount(t_idx, minlength=n_true + 1)[1:].astype(np.int64)
    area_pred = np.bincount(p_idx, minlength=n_pred + 1)[1:].astype(np.int64)
    return Overlaps(rows - 1, cols - 1, inter, area_true, area_pred)


def object_overlaps(truth: np.ndarray, pred: np.ndarray) -> Overlaps:
    """Every overlapping (ground-truth, predicted) object pair, with intersections and areas.

    The one place where morphoflow pairs objects of two label images (DSB score, the IoU
    table, scoring of promotion candidates). Memory grows with the number of pixels and of
    overlapping pairs, not with n_true x n_pred: a 1300 x 1300 image of 67,600 nuclei needs
    tens of MB, where a dense IoU table would need 34 GiB.

    Args:
        truth: Ground-truth instance labels (integer, 0 = background).
        pred: Predicted instance labels, same shape as ``truth``.

    Returns:
        The sparse :class:`Overlaps` (objects relabelled sequentially, see there).

    Raises:
        ValueError: Shapes differ, a dtype is not integer, or a label is negative.
    """
    t, p = _check_pair(truth, pred)
    return _overlaps(t, p)


def iou_matrix(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Intersection over union of every (ground-truth, predicted) object pair, as a dense table.

    Built from :func:`object_overlaps` (one sparse joint histogram of the label pairs). The
    table itself takes 8 * n_true * n_pred bytes: for images with many objects use
    :func:`object_overlaps` (no score builds this table).

    Args:
        truth: Ground-truth instance labels (integer, 0 = background).
        pred: Predicted instance labels, same shape as ``truth``.

    Returns:
        Float64 array of shape (n_true, n_pred). Labels are relabelled sequentially: row ``i``
        is the ``i``-th smallest positive label of ``truth``, column ``j`` the ``j``-th smallest
        positive label of ``pred``.

    Raises:
        ValueError: Shapes differ, a dtype is not integer, or a label is negative.
    """
    t, p = _check_pair(truth, pred)
    return _overlaps(t, p).dense_iou()


def _ratio(num: int, den: int, both_empty: bool) -> float:
    if den:
        return num / den
    return 1.0 if both_empty else 0.0


def dsb_image_score(
    truth: np.ndarray,
    pred: np.ndarray,
    thresholds: Sequence[float] = DSB_THRESHOLDS,
) -> ImageScore:
    """DSB 2018 score of one image.

    A prediction matches a ground-truth object at threshold t when IoU > t (strictly).

    Empty-image convention: when the image has no ground-truth object *and* no predicted object,
    every threshold scores 1.0 (nothing to find, nothing wrongly found), and precision and recall
    are 1.0. Otherwise the formula applies: ground truth empty with predictions scores 0
    (TP = FN = 0, FP > 0), predictions empty with ground truth scores 0 (TP = FP = 0, FN > 0).
    A precision or recall whose denominator is 0 in a non-empty image is 0.0.

    Args:
        truth: Ground-truth instance labels (integer, 0 = background).
        pred: Predicted instance labels, same shape as ``truth``.
        thresholds: IoU thresholds, each in [0.5, 1); the DSB 2018 ones by default. The
            ``tp``/``fp``/``fn``/precision/recall fields refer to the first one.

    Returns:
        The image's :class:`ImageScore`.

    Raises:
        ValueError: Shapes differ, a dtype is not integer, a label is negative, or
            ``thresholds`` is empty or holds a value outside [0.5, 1).
    """
    ts = _check_thresholds(thresholds)
    t, p = _check_pair(truth, pred)
    overlaps = _overlaps(t, p)
    iou = overlaps.iou  # overlapping pairs only: the others have IoU 0 and match nothing
    n_true, n_pred = overlaps.n_true, overlaps.n_pred
    both_empty = n_true == 0 and n_pred == 0
    per_threshold: dict[float, float] = {}
    counts: list[tuple[int, int, int]] = []
    for thr in ts:
        # With IoU > t >= 0.5 matches are unique: B overlaps A on more than half of A's area
        # (|A n B| > |A u B| / 2 >= |A| / 2), and two disjoint predictions cannot both cover
        # more than half of A (and vice versa). So counting IoU entries above t counts a
        # one-to-one matching; no assignment problem needs solving. Memory: O(pixels +
        # overlapping pairs), whatever n_true x n_pred.
        tp = int(np.count_nonzero(iou > thr))
        fp = n_pred - tp
        fn = n_true - tp
        counts.append((tp, fp, fn))
        per_threshold[thr] = _ratio(tp, tp + fp + fn, both_empty)
    tp0, fp0, fn0 = counts[0]
    return ImageScore(
        score=float(np.mean(list(per_threshold.values()))),
        per_threshold=per_threshold,
        tp=tp0,
        fp=fp0,
        fn=fn0,
        precision_50=_ratio(tp0, tp0 + fp0, both_empty),
        recall_50=_ratio(tp0, tp0 + fn0, both_empty),
        n_true=n_true,
        n_pred=n_pred,
    )


def dsb_score(
    truths: Sequence[np.ndarray],
    preds: Sequence[np.ndarray],
    thresholds: Sequence[float] = DSB_THRESHOLDS,
) -> DatasetScore:
    """DSB 2018 score of a set of images: the mean of the image scores.

    See :func:`dsb_image_score` for the per-image score and the empty-image convention.

    Args:
        truths: Ground-truth label images.
        preds: Predicted label images, one per ground-truth image, in the same order.
        thresholds: IoU thresholds (DSB 2018 ones by default).

    Returns:
        The :class:`DatasetScore`.

    Raises:
        ValueError: No images, different numbers of truths and predictions, or any problem
            :func:`dsb_image_score` raises for (the message names the image index).
    """
    truths = list(truths)
    preds = list(preds)
    if not truths:
        raise ValueError("truths is empty; need at least one image")
    if len(preds) != len(truths):
        raise ValueError(f"preds has {len(preds)} images, truths has {len(truths)}")
    images = []
    for i, (t, p) in enumerate(zip(truths, preds, strict=True)):
        try:
            images.append(dsb_image_score(t, p, thresholds))
        except ValueError as err:
            raise ValueError(f"image {i}: {err}") from err
    ts = list(images[0].per_threshold)
    return DatasetScore(
        score=float(np.mean([im.score for im in images])),
        per_threshold={t: float(np.mean([im.per_threshold[t] for im in images])) for t in ts},
        precision_50=float(np.mean([im.precision_50 for im in images])),
        recall_50=float(np.mean([im.recall_50 for im in images])),
        images=tuple(images),
        n_images=len(images),
    )


def _check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    ts = tuple(float(t) for t in thresholds)
    if not ts:
        raise ValueError("thresholds is empty")
    bad = [t for t in ts if not 0.5 <= t < 1.0]
    if bad:
        # Below 0.5 matches are no longer unique and counting IoU entries would be wrong.
        raise ValueError(f"thresholds must lie in [0.5, 1), got {bad}")
    return ts
