"""Tests of morphoflow.segmentation.postprocess: 3-class targets, instances, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from morphoflow.segmentation.metrics import dsb_image_score, iou_matrix
from morphoflow.segmentation.postprocess import (
    BOUNDARY,
    EMPTY_FIELD_CONTRAST,
    INTERIOR,
    classes_to_probabilities,
    equivalent_diameters,
    filter_objects,
    foreground_contrast,
    is_empty_field,
    labels_to_classes,
    noise_sigma,
    normalize_image,
    probabilities_to_labels,
)
from morphoflow.simulate import render_site
from morphoflow.simulate.nuclei import empty_field


def _two_touching_discs(shape=(64, 64)) -> np.ndarray:
    lab = np.zeros(shape, dtype=np.int32)
    lab[disk((32, 22), 10, shape=shape)] = 1
    lab[disk((32, 40), 10, shape=shape)] = 2  # centres 18 apart, radius 10: they overlap/touch
    return lab


# ----------------------------------------------------------------------------- targets


def test_labels_to_classes_hand_built() -> None:
    # A 7x7 square in a 9x9 image. Width 1: its outer ring (24 px) is boundary, the inner 5x5
    # interior. Width 2: two rings (24 + 16 = 40 px) boundary, the central 3x3 interior.
    lab = np.zeros((9, 9), dtype=np.uint16)
    lab[1:8, 1:8] = 4
    one = labels_to_classes(lab, boundary_width=1)
    assert one.dtype == np.uint8
    assert (one == BOUNDARY).sum() == 24 and (one == INTERIOR).sum() == 25
    two = labels_to_classes(lab)  # default width 2
    assert (two == BOUNDARY).sum() == 40 and (two == INTERIOR).sum() == 9
    assert (two[2:7, 2:7] > 0).all() and (two[4, 4] == INTERIOR)
    assert (two[lab == 0] == 0).all()


def test_labels_to_classes_separates_touching_objects() -> None:
    # Two objects sharing an edge: the contact is boundary on both sides; the image border is
    # not background.
    lab = np.zeros((4, 6), dtype=np.int32)
    lab[:, :3], lab[:, 3:] = 1, 2
    np.testing.assert_array_equal(labels_to_classes(lab, boundary_width=1)[1], [1, 1, 2, 2, 1, 1])
    cls = labels_to_classes(_two_touching_discs())
    interior_a = (cls == INTERIOR) & (_two_touching_discs() == 1)
    interior_b = (cls == INTERIOR) & (_two_touching_discs() == 2)
    grown = np.zeros_like(interior_a)  # 8-neighbourhood of A's interior
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            grown |= np.roll(interior_a, (dr, dc), axis=(0, 1))
    assert not (grown & interior_b).any()


def test_labels_to_classes_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="labels"):
        labels_to_classes(np.zeros((4, 4), float))
    with pytest.raises(ValueError, match="labels"):
        labels_to_classes(np.zeros((2, 4, 4), int))
    with pytest.raises(ValueError, match="boundary_width"):
        labels_to_classes(np.zeros((4, 4), int), boundary_width=0)


# ----------------------------------------------------------------------------- instances


def test_touching_discs_are_split() -> None:
    truth = _two_touching_discs()
    probs = classes_to_probabilities(labels_to_classes(truth))
    labels = probabilities_to_labels(probs)
    assert labels.dtype == np.uint32 and labels.max() == 2
    iou = iou_matrix(truth, labels.astype(np.int64))
    assert (iou.max(axis=1) > 0.8).all()


def test_single_disc_stays_one_object() -> None:
    truth = np.zeros((40, 40), dtype=np.int32)
    truth[disk((20, 20), 12)] = 1
    # Soft, realistic probabilities: interior fades towards the edge, boundary takes over.
    cls = labels_to_classes(truth, boundary_width=2)
    probs = 0.8 * classes_to_probabilities(cls) + 0.2 / 3
    labels = probabilities_to_labels(probs)
    assert labels.max() == 1
    assert iou_matrix(truth, labels.astype(np.int64))[0, 0] > 0.95


def test_empty_map_gives_no_object() -> None:
    probs = np.zeros((3, 16, 16), dtype=np.float32)
    probs[0] = 1.0
    labels = probabilities_to_labels(probs)
    assert labels.dtype == np.uint32 and labels.shape == (16, 16) and labels.max() == 0
    assert probabilities_to_labels(np.zeros((16, 16))).max() == 0


def test_seedless_and_small_components() -> None:
    # A 5x5 object that is all boundary (no confident interior) is still found; a 2x2 blob
    # too (size filters are filter_objects'), and a minimum diameter of 4.5 px drops it.
    probs = np.zeros((3, 20, 20), dtype=np.float32)
    probs[0] = 1.0
    probs[:, 2:7, 2:7] = np.array([0.1, 0.3, 0.6])[:, None, None]
    probs[:, 15:17, 15:17] = np.array([0.0, 1.0, 0.0])[:, None, None]
    labels = probabilities_to_labels(probs)
    assert labels.max() == 2 and (labels[15:17, 15:17] == 1).all() and (labels[2:7, 2:7] == 2).all()
    filtered = filter_objects(labels, min_diameter=4.5)
    assert filtered.max() == 1 and (filtered[2:7, 2:7] == 1).all() and filtered.sum() == 25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_round_trip_random_ellipses(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (96, 96)
    truth = np.zeros(shape, dtype=np.int32)
    n = 0
    for _ in range(60):
        r, c = rng.uniform(8, 88, size=2)
        ry, rx = rng.uniform(4, 10, size=2)
        rr, cc = ellipse(r, c, ry, rx, shape=shape, rotation=rng.uniform(0, np.pi))
        if (truth[rr, cc] > 0).any():
            continue  # non-overlapping (touching allowed)
        n += 1
        truth[rr, cc] = n
    assert n >= 8
    probs = classes_to_probabilities(labels_to_classes(truth))
    labels = filter_objects(
        probabilities_to_labels(probs), min_diameter=3.19
    )  # area >= 8 (pi 3.19^2 / 4 = 7.99)
    assert dsb_image_score(truth, labels.astype(np.int64)).score >= 0.9


# ----------------------------------------------------------------------------- object filters


def _filter_scene() -> np.ndarray:
    """(20, 20) labels: 1 touches the top border (4x4), 2 is small (2x2 = area 4, d 2.26),
    3 is mid (5x5 = 25, d 5.64), 4 is large (8x8 = 64, d 9.03), 5 touches the right border
    (3x3), 6 is a single pixel in the bottom-left corner. Non-consecutive on purpose: 7 unused."""
    lab = np.zeros((20, 20), dtype=np.int32)
    lab[0:4, 2:6] = 1
    lab[6:8, 1:3] = 2
    lab[6:11, 6:11] = 3
    lab[11:19, 11:19] = 4
    lab[2:5, 17:20] = 5
    lab[19, 0] = 6
    return lab


def test_equivalent_diameters_are_cellprofilers() -> None:
    d = equivalent_diameters(_filter_scene())
    expected = np.sqrt(4 * np.array([16, 4, 25, 64, 9, 1]) / np.pi)
    np.testing.assert_allclose(d, expected)
    assert d[2] == pytest.approx(5.6419, abs=1e-4)


@pytest.mark.parametrize(
    ("min_d", "max_d", "border", "kept"),
    [
        (0.0, None, False, [1, 2, 3, 4, 5, 6]),
        (0.0, None, True, [2, 3, 4]),  # 1 (top), 5 (right), 6 (corner) touch the border
        (2.3, None, False, [1, 3, 4, 5]),  # d < 2.3: 2 (2.26) and 6 (1.13)
        (2.2, 9.0, False, [1, 2, 3, 5]),  # d > 9.0: 4 (9.03)
        (2.2, 9.0, True, [2, 3]),
        (np.sqrt(4 * 25 / np.pi), np.sqrt(4 * 25 / np.pi), False, [3]),  # bounds inclusive
    ],
)
def test_filter_objects_removes_exactly_what_is_asked(
    min_d: float, max_d: float | None, border: bool, kept: list[int]
) -> None:
    lab = _filter_scene()
    out = filter_objects(lab, min_diameter=min_d, max_diameter=max_d, discard_border_objects=border)
    assert out.dtype == np.uint32
    # survivors renumbered 1..n in the order of their old labels, pixels unchanged
    expected = np.zeros_like(lab)
    for new, old in enumerate(kept, start=1):
        expected[lab == old] = new
    np.testing.assert_array_equal(out, expected)


def test_filter_objects_refuses_bad_ranges() -> None:
    lab = _filter_scene()
    with pytest.raises(ValueError, match=r"max_diameter \(3.0\) must be >= min_diameter"):
        filter_objects(lab, min_diameter=4.0, max_diameter=3.0)
    with pytest.raises(ValueError, match="min_diameter must be a finite number"):
        filter_objects(lab, min_diameter=-1.0)
    with pytest.raises(ValueError, match="labels"):
        filter_objects(lab.astype(float) - 1.0)
    assert filter_objects(np.zeros((4, 4), int)).max() == 0


def test_foreground_only_map_splits_with_distance_seeds() -> None:
    truth = _two_touching_discs()
    fg = (truth > 0).astype(np.float32)
    labels = probabilities_to_labels(fg)
    assert labels.max() == 2
    assert (iou_matrix(truth, labels.astype(np.int64)).max(axis=1) > 0.8).all()
    single = np.zeros((40, 40), dtype=np.float32)
    single[ellipse(20, 20, 8, 15)] = 0.9  # elongated: still one object
    assert probabilities_to_labels(single).max() == 1


def test_probabilities_to_labels_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="probs"):
        probabilities_to_labels(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="probs"):
        probabilities_to_labels(np.full((8, 8), np.nan))
    with pytest.raises(ValueError, match="threshold"):
        probabilities_to_labels(np.zeros((8, 8)), threshold=1.0)
    with pytest.raises(ValueError, match="seed_min_size"):
        probabilities_to_labels(np.zeros((8, 8)), seed_min_size=-1)


# ----------------------------------------------------------------------------- normalisation


def _blobs(top: float, size: int = 32, seed: int = 0) -> np.ndarray:
    """Noise plus a few bright discs (not an empty field), values in [0, top)."""
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 0.2 * top, size=(size, size))
    for centre in ((8, 8), (20, 24), (25, 6)):
        img[disk(centre, 4, shape=img.shape)] += 0.75 * top
    return img


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.float32, np.float64])
def test_normalize_image_any_dtype(dtype) -> None:
    img = _blobs(200 if dtype == np.uint8 else 4000).astype(dtype)
    out = normalize_image(img)
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() == 0.0 and out.max() == 1.0
    lo, hi = np.percentile(img.astype(np.float64), [1, 99.8])
    np.testing.assert_allclose(out, np.clip((img - lo) / (hi - lo), 0, 1), rtol=1e-5, atol=1e-6)


def test_normalize_image_scale_invariant_across_bit_depths() -> None:
    img8 = _blobs(255, seed=1).astype(np.uint8)
    img16 = img8.astype(np.uint16) * 257  # the same picture stored as 16-bit
    np.testing.assert_allclose(normalize_image(img8), normalize_image(img16), atol=1e-6)


def test_normalize_image_constant_and_sparse() -> None:
    for value in (0, 7, 65535):
        out = normalize_image(np.full((10, 10), value, dtype=np.uint16))
        assert out.dtype == np.float32 and not out.any()
    # 2 bright pixels out of 10 000: both percentiles are the background; fall back to min/max
    # rather than erasing the nuclei.
    sparse = np.full((100, 100), 10, dtype=np.uint16)
    sparse[5, 5] = sparse[50, 50] = 1000
    out = normalize_image(sparse)
    assert out[5, 5] == 1.0 and out[0, 0] == 0.0
    assert normalize_image(np.zeros((4, 4), bool)).max() == 0.0


def test_normalize_image_per_channel_and_errors() -> None:
    img = np.stack([np.arange(16.0).reshape(4, 4), 1000 * np.arange(16.0).reshape(4, 4)])
    out = normalize_image(img, 0, 100, channel_axis=0)
    np.testing.assert_allclose(out[0], out[1])
    np.testing.assert_allclose(out[0], np.arange(16).reshape(4, 4) / 15, rtol=1e-6)
    with pytest.raises(ValueError, match="img"):
        normalize_image(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="img"):
        normalize_image(np.array([["a"]]))
    with pytest.raises(ValueError, match="low"):
        normalize_image(img, 50, 10)
    with pytest.raises(ValueError, match="channel_axis"):
        normalize_image(img, channel_axis=3)


# --- empty fields (issue 12, item 7) ----------------------------------------------------------


@pytest.mark.parametrize("background", [30.0, 400.0, 2000.0, 10000.0, 40000.0])
def test_empty_gradient_field_normalises_to_zeros(background: float) -> None:
    image = empty_field(np.random.default_rng(0), (256, 256), background=background)
    # The old normalisation stretched the 20 % gradient and the noise over [0, 1].
    old = normalize_image(image, empty_contrast=None)
    assert old.max() == 1.0 and old[:, -32:].mean() > old[:, :32].mean() + 0.05
    assert foreground_contrast(image) < 6.0  # pure noise: about 3.5-5.5
    assert is_empty_field(image)
    out = normalize_image(image)
    assert out.dtype == np.float32 and out.shape == image.shape and not out.any()


def test_dim_nuclei_are_not_an_empty_field() -> None:
    # Discs only 2 noise standard deviations above a gradient background: contrast ~ 14 > 10,
    # normalised exactly as before (percentile stretch).
    rng = np.random.default_rng(2)
    image = empty_field(rng, (128, 128), background=400.0).astype(np.float64)
    sigma = noise_sigma(image)
    for centre in ((30, 30), (64, 90), (100, 40)):
        image[disk(centre, 6, shape=image.shape)] += 2.0 * sigma
    assert 10.0 < foreground_contrast(image) < 40.0
    assert not is_empty_field(image)
    np.testing.assert_array_equal(
        normalize_image(image), normalize_image(image, empty_contrast=None)
    )


def test_noise_sigma_is_robust_to_gradients_and_objects() -> None:
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:200, :300]
    image = 50.0 * xx / 300 + 20.0 * yy / 200 + rng.normal(0, 7.0, (200, 300))
    image[disk((100, 150), 30, shape=image.shape)] += 500.0
    assert noise_sigma(image) == pytest.approx(7.0, rel=0.05)
    assert noise_sigma(np.full((8, 8), 3.0)) == 0.0


def test_empty_field_test_settings_and_errors() -> None:
    assert EMPTY_FIELD_CONTRAST == 10.0
    flat = np.full((64, 64), 7, np.uint16)
    assert foreground_contrast(flat) == 0.0 and not normalize_image(flat).any()
    tiny = empty_field(np.random.default_rng(0), (8, 8))
    assert not is_empty_field(tiny)  # too small to tell: normalised as before
    # thin strips are judged when long enough: noise is empty, a strip through nuclei is not
    rng = np.random.default_rng(3)
    for shape in ((3, 256), (256, 8), (5000, 3)):
        assert is_empty_field(rng.normal(1000, 30, shape)), shape
    assert not is_empty_field(rng.normal(1000, 30, (2, 256)))  # 2 px: too thin to tell
    assert not is_empty_field(rng.normal(1000, 30, (3, 63)))  # too short
    sites, labels = render_site(3, size=256, n_cells=10)
    row = int(np.argmax((labels > 0).sum(axis=1)))
    assert not is_empty_field(sites[0][row - 1 : row + 2])  # 3 px through nuclei
    np.testing.assert_array_equal(normalize_image(tiny), normalize_image(tiny, empty_contrast=None))
    stack = np.stack([empty_field(np.random.default_rng(0), (64, 64)), _blobs(4000, 64)])
    per_channel = normalize_image(stack, channel_axis=0)
    assert not per_channel[0].any() and per_channel[1].max() == 1.0
    with pytest.raises(ValueError, match="empty_contrast"):
        normalize_image(flat, empty_contrast=-1.0)
    with pytest.raises(ValueError, match="img must be 2-D"):
        foreground_contrast(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="smoothing"):
        foreground_contrast(flat, smoothing=0.0)
