"""Tests of morphoflow.segmentation.tta: views, batching, semantic and instance merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage as ndi

from morphoflow.segmentation.metrics import dsb_image_score
from morphoflow.segmentation.tta import (
    DIHEDRAL_VIEWS,
    VIEW_ORDER,
    augment,
    augment_batch,
    deaugment,
    deaugment_batch,
    merge_instances,
    merge_semantic,
    predict_instance_tta,
    predict_semantic_tta,
    select_views,
    swaps_axes,
)

# ----------------------------------------------------------------------------- views


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(
        np.int16,
        hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=6),
        elements=st.integers(-100, 100),
    )
)
def test_deaugment_inverts_augment_for_every_view(x: np.ndarray) -> None:
    for view in DIHEDRAL_VIEWS:
        y = augment(x, view)
        expected = x.shape[:-2] + (
            x.shape[-1:] + x.shape[-2:-1] if swaps_axes(view) else x.shape[-2:]
        )
        assert y.shape == expected
        np.testing.assert_array_equal(deaugment(y, view), x)


def test_view_definitions() -> None:
    x = np.arange(12).reshape(3, 4)
    np.testing.assert_array_equal(augment(x, "identity"), x)
    np.testing.assert_array_equal(augment(x, "rot90"), np.rot90(x))  # counter-clockwise
    np.testing.assert_array_equal(augment(x, "flip_lr"), x[:, ::-1])
    np.testing.assert_array_equal(augment(x, "flip_lr_rot90"), np.rot90(x[:, ::-1]))
    np.testing.assert_array_equal(augment(x, "rot180"), x[::-1, ::-1])
    np.testing.assert_array_equal(augment(x, "rot270"), np.rot90(x, 3))  # clockwise
    np.testing.assert_array_equal(augment(x, "flip_lr_rot180"), x[::-1])  # up-down flip
    np.testing.assert_array_equal(augment(x, "flip_lr_rot270"), np.rot90(x[:, ::-1], 3))
    np.testing.assert_array_equal(augment(x, "flip_lr_rot90"), x.T)  # transpose
    # The 8 views of an asymmetric image are 8 different images: the full dihedral group.
    assert len({augment(x, v).tobytes() + bytes(augment(x, v).shape) for v in DIHEDRAL_VIEWS}) == 8


def test_select_views() -> None:
    assert select_views(1) == ("identity",)
    assert select_views(2) == ("identity", "flip_lr")
    four = select_views(4)
    assert set(four) == {"identity", "flip_lr", "flip_lr_rot180", "rot180"}
    assert not any(swaps_axes(v) for v in four)  # no padding needed for <= 4 views
    assert set(select_views(8)) == set(DIHEDRAL_VIEWS) and select_views(8) == VIEW_ORDER
    assert select_views(["rot90", "identity"]) == ("rot90", "identity")
    assert select_views("rot270") == ("rot270",)
    for bad in (0, 9, True, [], ["identity", "identity"], ["rot45"], "flip_ud"):
        with pytest.raises(ValueError, match="n_or_names"):
            select_views(bad)
    with pytest.raises(ValueError, match="view"):
        augment(np.zeros((2, 2)), "rot45")
    with pytest.raises(ValueError, match="x"):
        augment(np.zeros(3), "identity")


@pytest.mark.parametrize("n", [1, 2, 4])
def test_views_subgroups_are_closed(n: int) -> None:
    # Composing two selected views gives a selected view (so the TTA mean is invariant).
    x = np.arange(16).reshape(4, 4)
    names = select_views(n)
    images = {augment(x, v).tobytes() for v in names}
    for a in names:
        for b in names:
            assert augment(augment(x, a), b).tobytes() in images


# ----------------------------------------------------------------------------- batching


def test_augment_batch_pads_non_square_with_reflection() -> None:
    img = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5)
    batch = augment_batch(img, 8)
    assert batch.shape == (8, 2, 5, 5)
    identity = batch[VIEW_ORDER.index("identity")]
    np.testing.assert_array_equal(identity[:, :3], img)
    np.testing.assert_array_equal(identity[:, 3], img[:, 1])  # reflect: rows 0 1 2 | 1 0
    np.testing.assert_array_equal(identity[:, 4], img[:, 0])
    # Views that keep H and W need no padding.
    assert augment_batch(img, 4).shape == (4, 2, 3, 5)
    assert augment_batch(np.zeros((1, 1, 4)), 8).shape == (8, 1, 4, 4)  # 1-pixel axis: edge
    with pytest.raises(ValueError, match="image"):
        augment_batch(np.zeros((3, 5)), 8)


@pytest.mark.parametrize("shape", [(6, 6), (5, 8), (9, 4)])
@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_deaugment_batch_inverts_augment_batch(shape: tuple[int, int], n: int) -> None:
    img = np.random.default_rng(1).random((3, *shape)).astype(np.float32)
    restored = deaugment_batch(augment_batch(img, n), n, shape)
    assert restored.shape == (n, 3, *shape)
    for view_result in restored:
        np.testing.assert_array_equal(view_result, img)


def test_deaugment_batch_rejects_wrong_shapes() -> None:
    batch = augment_batch(np.zeros((1, 4, 6)), 8)
    with pytest.raises(ValueError, match="preds"):
        deaugment_batch(batch[:3], 8, (4, 6))
    with pytest.raises(ValueError, match="preds"):
        deaugment_batch(batch[:, :, :5], 8, (4, 6))
    with pytest.raises(ValueError, match="preds"):
        deaugment_batch(batch[0], 8, (4, 6))
    with pytest.raises(ValueError, match="shape"):
        deaugment_batch(batch, 8, (4,))


# ----------------------------------------------------------------------------- semantic


class CountingModel:
    """Fake model recording its calls; output = fn(batch)."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.batches: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray):
        self.batches.append(batch)
        return self.fn(batch)


def test_all_views_go_in_one_call() -> None:
    model = CountingModel(lambda b: 1 / (1 + np.exp(-b)))
    img = np.random.default_rng(2).normal(size=(2, 7, 5))
    out = predict_semantic_tta(model, img, 8)
    assert len(model.batches) == 1
    assert model.batches[0].shape == (8, 2, 7, 7) and model.batches[0].dtype == np.float32
    # A pointwise (hence equivariant) model: TTA changes nothing, padding is cropped away.
    assert out.shape == (2, 7, 5) and out.dtype == np.float32
    np.testing.assert_allclose(out, 1 / (1 + np.exp(-img.astype(np.float32))), rtol=1e-6)


def test_merge_semantic_is_the_view_mean() -> None:
    probs = np.stack([np.zeros((2, 3, 3)), np.ones((2, 3, 3)), np.full((2, 3, 3), 0.5)])
    merged = merge_semantic(probs)
    assert merged.dtype == np.float32 and merged.shape == (2, 3, 3)
    np.testing.assert_allclose(merged, 0.5)
    with pytest.raises(ValueError, match="probs"):
        merge_semantic(np.zeros((2, 3, 3)))


def _column_ramp(batch: np.ndarray) -> np.ndarray:
    """Fake model, not rotation-equivariant: its output rises left to right in its own frame."""
    n, _, h, w = batch.shape
    ramp = np.broadcast_to(np.arange(w) / (w - 1), (h, w))
    return np.broadcast_to(ramp, (n, 1, h, w)).copy()


def test_non_equivariant_model_is_averaged() -> None:
    img = np.zeros((1, 5, 5))
    # Identity only: the ramp itself.
    np.testing.assert_allclose(predict_semantic_tta(_column_ramp, img, 1)[0, 0], np.arange(5) / 4)
    # identity + flip_lr: ramp and reversed ramp, mean 0.5 everywhere.
    np.testing.assert_allclose(predict_semantic_tta(_column_ramp, img, 2), 0.5)
    # All 8: de-augmented ramps point right, left, up, down (twice each): mean 0.5.
    np.testing.assert_allclose(predict_semantic_tta(_column_ramp, img, 8), 0.5, atol=1e-6)
    # rot90 only: the model's ramp, rotated back clockwise, rises from top to bottom
    # (np.rot90 turns the image counter-clockwise, so the model's columns are our rows).
    out = predict_semantic_tta(_column_ramp, img, ["rot90"])[0]
    np.testing.assert_allclose(out, np.broadcast_to((np.arange(5) / 4)[:, None], (5, 5)))
    # A model times x: merged = x * mean of de-augmented ramps = 0.5 x (views 1, 2, 4, 8 of a
    # square image all average the ramp to 0.5 except identity alone).
    x = np.random.default_rng(3).random((1, 5, 5))
    out = predict_semantic_tta(lambda b: b * _column_ramp(b), x, 8)
    np.testing.assert_allclose(out, 0.5 * x, atol=1e-6)


def test_batched_tta_equals_view_by_view_on_non_square_image() -> None:
    # A position-dependent model on a padded non-square image: the batched path must equal
    # running the model on each view separately and undoing it by hand.
    rng = np.random.default_rng(4)
    img = rng.random((2, 6, 9)).astype(np.float32)
    weights = rng.random((9, 9)).astype(np.float32)

    def model(b: np.ndarray) -> np.ndarray:
        return (b.sum(axis=1, keepdims=True) * weights).astype(np.float32)

    padded = np.pad(img, [(0, 0), (0, 3), (0, 0)], mode="reflect")
    expected = np.mean(
        [deaugment(model(augment(padded, v)[None])[0], v)[:, :6, :9] for v in DIHEDRAL_VIEWS],
        axis=0,
    )
    np.testing.assert_allclose(predict_semantic_tta(model, img, 8), expected, rtol=1e-5)


def test_semantic_tta_rejects_wrong_model_output() -> None:
    with pytest.raises(ValueError, match="predict_fn"):
        predict_semantic_tta(lambda b: b[:1], np.zeros((1, 4, 4)), 2)


def test_torch_like_outputs_are_converted() -> None:
    class FakeTensor:
        def __init__(self, a: np.ndarray) -> None:
            self.a = a

        def detach(self) -> FakeTensor:
            return self

        def cpu(self) -> FakeTensor:
            return self

        def numpy(self) -> np.ndarray:
            return self.a

    out = predict_semantic_tta(lambda b: FakeTensor(b), np.ones((1, 3, 3)), 8)
    np.testing.assert_allclose(out, 1.0)


# ----------------------------------------------------------------------------- instances


def _box(r0: int, r1: int, c0: int, c1: int, shape=(20, 20), value: int = 1) -> np.ndarray:
    img = np.zeros(shape, dtype=np.int32)
    img[r0:r1, c0:c1] = value
    return img


def test_object_in_5_of_8_views_kept_3_of_8_dropped() -> None:
    a = _box(2, 8, 2, 8, value=1)
    b = _box(12, 18, 12, 18, value=2)
    views = [a + b] * 3 + [a] * 2 + [np.zeros_like(a)] * 3  # A in 5 views, B in 3
    labels, agreement = merge_instances(views)
    assert labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, a)  # B dropped; A exact, numbered 1
    assert agreement == {1: 5 / 8}


def test_four_of_eight_is_dropped_unless_min_views_says_otherwise() -> None:
    a = _box(2, 8, 2, 8, value=3)
    views = [a] * 4 + [np.zeros_like(a)] * 4
    labels, agreement = merge_instances(views)
    assert labels.max() == 0 and agreement == {}
    labels, agreement = merge_instances(views, min_views=4)
    np.testing.assert_array_equal(labels, a > 0)
    assert agreement == {1: 0.5}
    with pytest.raises(ValueError, match="min_views"):
        merge_instances(views, min_views=9)
    with pytest.raises(ValueError, match="min_views"):
        merge_instances(views, min_views=0)


def test_majority_vote_mask_hand_built() -> None:
    # Three views of one object: rows 0-9, columns [0, 10), [1, 11), [2, 12).
    # IoUs 90/110 and 80/120 >= 0.5: one cluster found in 3 of 3 views.
    # Column votes: col 0: 1, col 1: 2, cols 2-9: 3, col 10: 2, col 11: 1.
    # Majority (> 3/2, i.e. >= 2 votes): columns 1..10.
    views = [_box(0, 10, c, c + 10, shape=(12, 14), value=5 + c) for c in range(3)]
    labels, agreement = merge_instances(views)
    np.testing.assert_array_equal(labels, _box(0, 10, 1, 11, shape=(12, 14)))
    assert agreement == {1: 1.0}


def test_majority_is_over_the_views_that_found_the_object() -> None:
    # 8 views; the object is found in 5. Three of those 5 see it 12 columns wide, two see it
    # 10 wide. Columns 10-11 get 3 of 5 member votes: kept (3 > 5/2), although 3 is not a
    # majority of all 8 views.
    wide = _box(0, 10, 0, 12, shape=(12, 14))
    narrow = _box(0, 10, 0, 10, shape=(12, 14))
    empty = np.zeros_like(wide)
    labels, agreement = merge_instances([wide] * 3 + [narrow] * 2 + [empty] * 3)
    np.testing.assert_array_equal(labels, wide)
    assert agreement == {1: 5 / 8}
    # Two wide, three narrow: columns 10-11 get 2 of 5 votes -> dropped.
    labels, _ = merge_instances([wide] * 2 + [narrow] * 3 + [empty] * 3)
    np.testing.assert_array_equal(labels, narrow)


def test_separate_and_touching_objects_stay_separate() -> None:
    view = _box(0, 6, 0, 6, value=1) + _box(0, 6, 6, 12, value=2) + _box(10, 16, 10, 16, value=7)
    views = [view, np.where(view > 0, 10 - view, 0), view]  # label values differ per view
    labels, agreement = merge_instances(views)
    assert labels.max() == 3
    assert dsb_image_score(view, labels.astype(np.int64)).score == 1.0
    assert agreement == {1: 1.0, 2: 1.0, 3: 1.0}
    # Raster order of the first pixel: (0,0) -> 1, (0,6) -> 2, (10,10) -> 3.
    assert labels[0, 0] == 1 and labels[0, 6] == 2 and labels[10, 10] == 3


def test_overlaps_go_to_the_object_found_in_more_views() -> None:
    # V = 5, min_views = 2. A (columns 0-9) in views 0-2, B (columns 7-16) in views 3-4.
    # IoU(A, B) = 30 / 170 < 0.5: two objects. Columns 7-9 are claimed by both: A wins (3 > 2).
    a = _box(0, 10, 0, 10)
    b = _box(0, 10, 7, 17)
    labels, agreement = merge_instances([a, a, a, b, b], min_views=2)
    expected = a + 2 * (b * (a == 0))
    np.testing.assert_array_equal(labels, expected)
    assert agreement == {1: 0.6, 2: 0.4}


def test_one_object_per_view_and_cluster() -> None:
    # View 1 splits A into two halves; each half has IoU 0.5 with A (exactly the threshold),
    # but a cluster takes at most one object of a view: the other half starts its own cluster.
    whole = _box(0, 10, 0, 10, shape=(10, 10))
    split = _box(0, 10, 0, 5, shape=(10, 10), value=1) + _box(0, 10, 5, 10, shape=(10, 10), value=2)
    labels, agreement = merge_instances([whole, split, whole], min_views=2)
    # Cluster 1 = {whole (view 0), left half (view 1, wins the tie by object order), whole
    # (view 2)}: left columns 3 votes, right columns 2 of 3 -> the whole square, 3 of 3 views.
    # Cluster 2 = {right half} is found in 1 view < min_views: dropped.
    np.testing.assert_array_equal(labels, whole)
    assert agreement == {1: 1.0}


def test_merge_instances_edge_cases() -> None:
    empty = np.zeros((5, 5), dtype=np.uint16)
    labels, agreement = merge_instances([empty] * 4)
    assert labels.shape == (5, 5) and labels.max() == 0 and agreement == {}
    single = _box(1, 4, 1, 4, shape=(5, 5), value=65535).astype(np.uint16)
    labels, agreement = merge_instances([single])
    np.testing.assert_array_equal(labels, single > 0)
    assert agreement == {1: 1.0}
    with pytest.raises(ValueError, match="label_images"):
        merge_instances([])
    with pytest.raises(ValueError, match=r"label_images\[1\]"):
        merge_instances([empty, np.zeros((5, 6), np.uint16)])
    with pytest.raises(ValueError, match=r"label_images\[0\]"):
        merge_instances([empty.astype(float)])
    with pytest.raises(ValueError, match="iou_threshold"):
        merge_instances([empty], iou_threshold=0)


def _blobs() -> np.ndarray:
    img = np.zeros((1, 24, 30), dtype=np.float32)
    img[0, 2:8, 3:9] = 1  # top-left
    img[0, 15:22, 20:30] = 1  # touches the right border
    img[0, 10:13, 10:20] = 1  # elongated
    return img


def test_predict_instance_tta_equivariant_model() -> None:
    model = CountingModel(lambda b: [ndi.label(x[0] > 0.5)[0] for x in b])
    img = _blobs()
    labels, agreement = predict_instance_tta(model, img, 8)
    assert len(model.batches) == 1 and model.batches[0].shape == (8, 1, 30, 30)
    truth = ndi.label(img[0] > 0.5)[0]
    assert labels.shape == (24, 30)
    assert dsb_image_score(truth, labels.astype(np.int64)).score == 1.0
    assert agreement == {1: 1.0, 2: 1.0, 3: 1.0}


def test_predict_instance_tta_non_equivariant_model() -> None:
    # The fake model misses every object whose centre lies in the bottom-right quadrant of its
    # input frame. The top-left object lands there in 2 of the 8 views (rot180 and
    # flip_lr_rot270), so it is found in 6 of 8 views and kept with agreement 0.75.
    def model(batch: np.ndarray) -> list[np.ndarray]:
        out = []
        for x in batch:
            lab = ndi.label(x[0] > 0.5)[0]
            h, w = lab.shape
            for i, (r, c) in enumerate(ndi.center_of_mass(lab > 0, lab, range(1, lab.max() + 1))):
                if r > h / 2 and c > w / 2:
                    lab[lab == i + 1] = 0
            out.append(lab)
        return out

    img = np.zeros((1, 20, 20), dtype=np.float32)
    img[0, 2:7, 3:8] = 1
    labels, agreement = predict_instance_tta(model, img, 8)
    np.testing.assert_array_equal(labels, img[0] > 0)
    assert agreement == {1: 0.75}
    with pytest.raises(ValueError, match="predict_fn"):
        predict_instance_tta(lambda b: model(b)[:-1], img, 8)
    with pytest.raises(ValueError, match="predict_fn"):
        predict_instance_tta(lambda b: [m[:-1] for m in model(b)], img, 8)


def test_merge_instances_memory_grows_with_overlaps_not_objects_squared() -> None:
    # Issue 12, item 2: 6,400 objects per view; a dense objects x clusters IoU table would take
    # 6,400^2 * 8 B = 312 MiB per view. Overlaps come from one sparse joint histogram instead.
    import tracemalloc

    yy, xx = np.mgrid[:400, :400]
    labels = ((yy // 5) * 80 + xx // 5 + 1).astype(np.int32)
    labels[(yy % 5 == 4) | (xx % 5 == 4)] = 0
    relabelled = np.concatenate([[0], np.random.default_rng(1).permutation(6400) + 1])[labels]
    tracemalloc.start()
    try:
        merged, agreement = merge_instances([labels, relabelled, labels])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert merged.max() == 6400 and set(agreement.values()) == {1.0}
    np.testing.assert_array_equal(merged > 0, labels > 0)
    assert len(np.unique(np.stack([merged.ravel(), labels.ravel()]), axis=1).T) == 6401
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.0f} MiB"


# ------------------------------------------------------------------ semantic merges (issue 13)


def _soft_classes(classes: np.ndarray, confidence: float = 0.9) -> np.ndarray:
    """(3, H, W) probabilities: ``confidence`` on the given class, the rest split evenly."""
    probs = np.full((3, *classes.shape), (1 - confidence) / 2, dtype=np.float32)
    for k in range(3):
        probs[k][classes == k] = confidence
    return probs


def _two_touching_nuclei() -> np.ndarray:
    """(3, 40, 40) probabilities of two discs that touch, with a boundary class between them."""
    from morphoflow.segmentation.postprocess import labels_to_classes

    yy, xx = np.mgrid[:40, :40]
    labels = np.zeros((40, 40), np.int32)
    labels[(yy - 20) ** 2 + (xx - 12) ** 2 < 64] = 1
    labels[(yy - 20) ** 2 + (xx - 27) ** 2 < 64] = 2
    labels[(yy - 6) ** 2 + (xx - 33) ** 2 < 9] = 3  # small nucleus near a corner
    return _soft_classes(labels_to_classes(labels, boundary_width=1))


def _to_labels(probs: np.ndarray) -> np.ndarray:
    from morphoflow.segmentation.postprocess import probabilities_to_labels

    return probabilities_to_labels(probs, threshold=0.5)


@pytest.mark.parametrize("merge", ["mean", "logit", "seeds", "vote"])
def test_identical_views_give_the_objects_of_one_view(merge: str) -> None:
    from morphoflow.segmentation.tta import merge_semantic_labels

    probs = _two_touching_nuclei()
    one = merge_semantic_labels(probs[None], _to_labels, merge)
    eight = merge_semantic_labels(np.stack([probs] * 8), _to_labels, merge)
    reference = _to_labels(probs)
    assert one.dtype == np.uint32 and reference.max() == 3
    for labels in (one, eight):
        assert dsb_image_score(reference, labels).score == 1.0  # same objects, same pixels
        # numbered 1..n in raster order of each object's first pixel
        firsts = [np.flatnonzero(labels.ravel() == k)[0] for k in range(1, labels.max() + 1)]
        assert firsts == sorted(firsts)


def test_vote_keeps_objects_of_a_strict_majority_of_views() -> None:
    from morphoflow.segmentation.postprocess import labels_to_classes
    from morphoflow.segmentation.tta import merge_semantic_labels

    yy, xx = np.mgrid[:32, :32]
    a = ((yy - 10) ** 2 + (xx - 10) ** 2 < 25).astype(np.int32)
    b = np.where((yy - 22) ** 2 + (xx - 22) ** 2 < 25, 2, a).astype(np.int32)
    with_b = _soft_classes(labels_to_classes(b, 1))
    without_b = _soft_classes(labels_to_classes(a, 1))
    for n_with, kept in ((3, False), (4, False), (5, True)):
        views = np.stack([with_b] * n_with + [without_b] * (8 - n_with))
        for merge in ("vote", "seeds"):
            labels = merge_semantic_labels(views, _to_labels, merge)
            assert labels.max() == 1 + kept, (merge, n_with)
            assert bool(labels[22, 22]) == kept and labels[10, 10] == 1
        # the mean of the maps keeps B once its averaged foreground (interior + boundary:
        # 0.95 where B is, 0.1 elsewhere) passes 0.5: already with 4 of 8 views
        mean = merge_semantic_labels(views, _to_labels, "mean")
        assert bool(mean[22, 22]) == (n_with >= 4)


def test_seeds_outline_comes_from_the_averaged_maps_and_vote_from_the_majority() -> None:
    from morphoflow.segmentation.tta import merge_semantic_labels

    # One object in 3 views; a 1-px ring around it is foreground in view 0 only (0.9) and
    # below threshold in the others (0.45): mean foreground (0.9 + 2 * 0.45) / 3 = 0.6 > 0.5,
    # while only 1 of 3 views puts the ring in the object.
    yy, xx = np.mgrid[:24, :24]
    r2 = (yy - 12) ** 2 + (xx - 12) ** 2
    core, ring = r2 < 25, (r2 >= 25) & (r2 < 49)
    views = np.zeros((3, 3, 24, 24), np.float32)
    views[:, 0] = 1.0
    views[:, 0][:, core] = 0.05
    views[:, 1][:, core] = 0.9
    views[:, 2][:, core] = 0.05
    for k, (first, others) in enumerate(((0.1, 0.55), (0.1, 0.05), (0.8, 0.4))):
        views[0, k][ring] = first  # (background, interior, boundary) = (0.1, 0.1, 0.8)
        views[1:, k][:, ring] = others  # (0.55, 0.05, 0.4)
    vote = merge_semantic_labels(views, _to_labels, "vote")
    seeds = merge_semantic_labels(views, _to_labels, "seeds")
    np.testing.assert_array_equal(vote > 0, core)
    np.testing.assert_array_equal(seeds > 0, core | ring)
    assert vote.max() == seeds.max() == 1


def test_logit_merge_is_the_softmax_of_the_averaged_logits() -> None:
    rng = np.random.default_rng(3)
    logits = np.clip(rng.normal(0, 2, size=(8, 3, 5, 6)), -5, 5)  # p > LOG_FLOOR
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.exp(logits.mean(0)) / np.exp(logits.mean(0)).sum(axis=0, keepdims=True)
    merged = merge_semantic(probs, "logit")
    assert merged.dtype == np.float32 and merged.shape == (3, 5, 6)
    np.testing.assert_allclose(merged, expected, atol=1e-5)
    assert np.abs(merge_semantic(probs, "mean") - expected).max() > 0.05  # not the mean
    # a geometric mean: one view that rules class 0 out (0.02) outweighs two that favour it
    p = np.array([[0.02, 0.49, 0.49], [0.6, 0.2, 0.2], [0.6, 0.2, 0.2]])[:, :, None, None]
    assert merge_semantic(p, "mean")[:, 0, 0].argmax() == 0
    assert merge_semantic(p, "logit")[:, 0, 0].argmax() == 1


def test_merges_are_validated() -> None:
    from morphoflow.segmentation.settings import SegmenterSettings
    from morphoflow.segmentation.tta import (
        DEFAULT_SEMANTIC_MERGE,
        SEMANTIC_MERGES,
        merge_semantic_labels,
    )

    assert DEFAULT_SEMANTIC_MERGE in SEMANTIC_MERGES
    assert SegmenterSettings().merge == DEFAULT_SEMANTIC_MERGE
    assert SegmenterSettings.from_params({"merge": "logit"}).merge == "logit"
    with pytest.raises(ValueError, match="merge must be one of"):
        SegmenterSettings(merge="average")
    with pytest.raises(ValueError, match="merge must be one of"):
        merge_semantic(np.zeros((1, 3, 2, 2)), "median")
    with pytest.raises(ValueError, match="to_labels returned shape"):
        merge_semantic_labels(np.zeros((2, 3, 4, 4)), lambda p: np.zeros((3, 3), int), "vote")
