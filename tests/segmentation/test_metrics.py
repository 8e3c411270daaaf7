"""Tests of morphoflow.segmentation.metrics (DSB 2018 score), on hand-computed cases."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from morphoflow.segmentation.metrics import (
    DSB_THRESHOLDS,
    dsb_image_score,
    dsb_score,
    iou_matrix,
    object_overlaps,
    pair_counts,
)


def _square(shape: tuple[int, int], r0: int, r1: int, c0: int, c1: int, value: int = 1):
    img = np.zeros(shape, dtype=np.int32)
    img[r0:r1, c0:c1] = value
    return img


def test_thresholds_are_the_dsb_ones() -> None:
    assert DSB_THRESHOLDS == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def test_perfect_prediction_scores_one() -> None:
    truth = _square((20, 20), 5, 15, 5, 15)
    s = dsb_image_score(truth, truth * 7)  # label values do not matter
    assert s.score == 1.0
    assert all(v == 1.0 for v in s.per_threshold.values())
    assert (s.tp, s.fp, s.fn, s.n_true, s.n_pred) == (1, 0, 0, 1, 1)
    assert s.precision_50 == s.recall_50 == 1.0


def test_square_shifted_by_one_column() -> None:
    # 10x10 square vs the same square one column to the right: intersection 10x9 = 90,
    # union 100 + 100 - 90 = 110, IoU = 0.818. Matched for t in {0.50, ..., 0.80} (7 of the
    # 10 thresholds), unmatched for 0.85, 0.90, 0.95 (TP=0, FP=1, FN=1 -> 0).
    truth = _square((20, 20), 5, 15, 5, 15)
    pred = _square((20, 20), 5, 15, 6, 16)
    assert iou_matrix(truth, pred)[0, 0] == pytest.approx(90 / 110)
    s = dsb_image_score(truth, pred)
    assert s.score == pytest.approx(0.7)
    expected = {t: (1.0 if t <= 0.8 else 0.0) for t in DSB_THRESHOLDS}
    assert s.per_threshold == expected


def test_missed_object_and_false_positive() -> None:
    # Truth: A (perfectly predicted) and B (missed). Prediction: A and C (no overlap with any
    # truth). Every threshold: TP=1, FP=1, FN=1 -> 1/3. Precision = recall = 1/2.
    truth = _square((30, 30), 0, 5, 0, 5, 1) + _square((30, 30), 10, 15, 10, 15, 2)
    pred = _square((30, 30), 0, 5, 0, 5, 4) + _square((30, 30), 20, 25, 20, 25, 9)
    s = dsb_image_score(truth, pred)
    assert s.score == pytest.approx(1 / 3)
    assert (s.tp, s.fp, s.fn) == (1, 1, 1)
    assert s.precision_50 == s.recall_50 == 0.5


def test_iou_exactly_half_does_not_match() -> None:
    # Truth 10x10 = 100 px, prediction its left half 10x5 = 50 px inside it:
    # IoU = 50 / 100 = 0.5, not > 0.5 -> TP=0, FP=1, FN=1 at every threshold: score 0.
    truth = _square((12, 12), 0, 10, 0, 10)
    pred = _square((12, 12), 0, 10, 0, 5)
    assert iou_matrix(truth, pred)[0, 0] == 0.5
    s = dsb_image_score(truth, pred)
    assert s.per_threshold[0.5] == 0.0
    assert s.score == 0.0
    assert (s.tp, s.fp, s.fn) == (0, 1, 1)
    # One more pixel: 51 / 100 = 0.51 > 0.5 -> matched at 0.50 only -> score 1/10.
    pred[0, 5] = 1
    s = dsb_image_score(truth, pred)
    assert s.per_threshold[0.5] == 1.0 and s.per_threshold[0.55] == 0.0
    assert s.score == pytest.approx(0.1)


def test_merged_prediction_matches_neither_object() -> None:
    # Two touching 10x10 truths predicted as one 10x20 object: each IoU = 100/200 = 0.5,
    # not a match -> TP=0, FP=1, FN=2 -> 0.
    truth = _square((10, 20), 0, 10, 0, 10, 1) + _square((10, 20), 0, 10, 10, 20, 2)
    pred = np.ones((10, 20), dtype=np.uint16)  # no background pixel at all
    np.testing.assert_allclose(iou_matrix(truth, pred), [[0.5], [0.5]])
    s = dsb_image_score(truth, pred)
    assert (s.score, s.tp, s.fp, s.fn) == (0.0, 0, 1, 2)


def test_empty_image_conventions() -> None:
    empty = np.zeros((8, 8), dtype=np.uint8)
    obj = _square((8, 8), 2, 6, 2, 6)
    both = dsb_image_score(empty, empty)  # nothing to find, nothing wrongly found
    assert both.score == 1.0 and set(both.per_threshold.values()) == {1.0}
    assert both.precision_50 == both.recall_50 == 1.0
    assert iou_matrix(empty, empty).shape == (0, 0)
    only_pred = dsb_image_score(empty, obj)  # TP=0, FP=1, FN=0 -> 0
    assert (only_pred.score, only_pred.fp, only_pred.fn) == (0.0, 1, 0)
    assert only_pred.precision_50 == 0.0 and only_pred.recall_50 == 0.0
    only_truth = dsb_image_score(obj, empty)  # TP=0, FP=0, FN=1 -> 0
    assert (only_truth.score, only_truth.fp, only_truth.fn) == (0.0, 0, 1)
    assert iou_matrix(obj, empty).shape == (1, 0)


def test_dataset_score_is_mean_of_image_scores() -> None:
    truth = _square((20, 20), 5, 15, 5, 15)
    shifted = _square((20, 20), 5, 15, 6, 16)
    empty = np.zeros((20, 20), dtype=np.int32)
    # image scores: 1.0 (perfect), 0.7 (shifted), 0.0 (missed) -> mean 1.7 / 3
    ds = dsb_score([truth, truth, truth], [truth, shifted, empty])
    assert ds.n_images == 3
    assert [im.score for im in ds.images] == pytest.approx([1.0, 0.7, 0.0])
    assert ds.score == pytest.approx(1.7 / 3)
    assert ds.per_threshold[0.5] == pytest.approx(2 / 3)  # (1 + 1 + 0) / 3
    assert ds.per_threshold[0.95] == pytest.approx(1 / 3)  # (1 + 0 + 0) / 3
    assert ds.recall_50 == pytest.approx(2 / 3)
    assert ds.precision_50 == pytest.approx(2 / 3)  # (1 + 1 + 0) / 3, 0 for no prediction
    summary = ds.summary()
    assert summary["dsb_score"] == ds.score and summary["dsb_ap_0.75"] == ds.per_threshold[0.75]
    assert len(summary) == 3 + 10


def test_iou_matrix_matches_brute_force_and_orders_labels() -> None:
    rng = np.random.default_rng(0)
    truth = rng.choice([0, 3, 8, 20], size=(15, 17)).astype(np.int64)
    pred = rng.choice([0, 1, 2, 5, 1000], size=(15, 17)).astype(np.uint32)
    iou = iou_matrix(truth, pred)
    assert iou.shape == (3, 4)
    for i, t in enumerate([3, 8, 20]):
        for j, p in enumerate([1, 2, 5, 1000]):
            a, b = truth == t, pred == p
            assert iou[i, j] == pytest.approx((a & b).sum() / (a | b).sum())


def test_score_invariant_to_label_permutation_and_3d() -> None:
    truth = _square((20, 20), 0, 10, 0, 10, 1) + _square((20, 20), 12, 20, 12, 20, 2)
    pred = _square((20, 20), 0, 10, 1, 10, 2) + _square((20, 20), 12, 20, 12, 19, 1)
    a = dsb_image_score(truth, pred).score
    b = dsb_image_score(truth, np.where(pred > 0, 3 - pred, 0)).score
    assert a == b
    stack = dsb_image_score(truth[None], pred[None]).score  # any number of dimensions
    assert stack == a


@pytest.mark.parametrize(
    ("truth", "pred", "name"),
    [
        (np.zeros((4, 4), int), np.zeros((4, 5), int), "pred"),
        (np.zeros((4, 4), float), np.zeros((4, 4), int), "truth"),
        (np.zeros((4, 4), int), np.zeros((4, 4), bool), "pred"),
        (np.zeros((4, 4), int), -np.ones((4, 4), int), "pred"),
        (-np.ones((4, 4), np.int8), np.zeros((4, 4), int), "truth"),
    ],
)
def test_invalid_inputs_name_the_argument(truth, pred, name) -> None:
    with pytest.raises(ValueError, match=name):
        dsb_image_score(truth, pred)
    with pytest.raises(ValueError, match=name):
        iou_matrix(truth, pred)


def test_dataset_argument_errors() -> None:
    img = np.zeros((4, 4), int)
    with pytest.raises(ValueError, match="truths"):
        dsb_score([], [])
    with pytest.raises(ValueError, match="preds"):
        dsb_score([img, img], [img])
    with pytest.raises(ValueError, match="image 1"):
        dsb_score([img, img], [img, img.astype(float)])
    with pytest.raises(ValueError, match="thresholds"):
        dsb_image_score(img, img, thresholds=[0.3])


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32, np.uint64, np.int64])
def test_any_integer_dtype_and_huge_label_values(dtype) -> None:
    truth = _square((20, 20), 5, 15, 5, 15)
    big = np.iinfo(dtype).max  # e.g. 2**64 - 1: takes the sorting path, not a lookup table
    pred = _square((20, 20), 5, 15, 6, 16).astype(dtype) * dtype(big)
    assert iou_matrix(truth, pred)[0, 0] == pytest.approx(90 / 110)
    assert dsb_image_score(truth, pred).score == pytest.approx(0.7)


# --- memory grows with overlapping pairs, not n_true x n_pred (issue 12, item 2) --------------


def grid_labels(side: int, cell: int = 5) -> np.ndarray:
    """(side, side) int32 labels: one (cell - 1)-px square nucleus per cell, 1-px gaps."""
    yy, xx = np.mgrid[:side, :side]
    labels = ((yy // cell) * (side // cell) + xx // cell + 1).astype(np.int32)
    labels[(yy % cell == cell - 1) | (xx % cell == cell - 1)] = 0
    return labels


def test_67600_nuclei_perfect_prediction_scores_one_in_sparse_memory() -> None:
    truth = grid_labels(1300)  # 260 x 260 = 67,600 nuclei of 16 px
    rng = np.random.default_rng(0)
    pred = np.concatenate([[0], rng.permutation(67_600) + 1])[truth]  # same objects, relabelled
    tracemalloc.start()
    try:
        score = dsb_image_score(truth, pred)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (score.n_true, score.n_pred) == (67_600, 67_600)
    assert score.score == 1.0 and score.tp == 67_600 and score.fp == score.fn == 0
    # A dense IoU table would take 67,600^2 * 8 B = 34 GiB; measured peak here about 50 MiB.
    assert peak < 200 * 2**20, f"peak {peak / 2**20:.0f} MiB"


def test_object_overlaps_is_the_sparse_iou_table() -> None:
    truth = np.array([[1, 1, 0, 2], [1, 1, 0, 2], [0, 0, 0, 0]])
    pred = np.array([[5, 5, 5, 0], [5, 5, 0, 9], [0, 0, 0, 9]])
    overlaps = object_overlaps(truth, pred)
    np.testing.assert_array_equal(overlaps.true_index, [0, 1])
    np.testing.assert_array_equal(overlaps.pred_index, [0, 1])
    np.testing.assert_array_equal(overlaps.intersection, [4, 1])
    np.testing.assert_array_equal(overlaps.area_true, [4, 2])
    np.testing.assert_array_equal(overlaps.area_pred, [5, 2])
    np.testing.assert_allclose(overlaps.iou, [4 / 5, 1 / 3])
    np.testing.assert_allclose(overlaps.dense_iou(), iou_matrix(truth, pred))
    np.testing.assert_allclose(overlaps.dense_iou(), [[4 / 5, 0], [0, 1 / 3]])


def test_pair_counts_ignores_background_and_counts_pairs() -> None:
    ia, ib, count = pair_counts(np.array([0, 1, 1, 2, 2, 2]), np.array([4, 4, 0, 1, 1, 4]), 4)
    np.testing.assert_array_equal(ia, [1, 2, 2])
    np.testing.assert_array_equal(ib, [4, 1, 4])
    np.testing.assert_array_equal(count, [1, 2, 1])
