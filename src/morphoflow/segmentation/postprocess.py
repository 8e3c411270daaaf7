"""From U-Net probabilities to nucleus instances, training targets, and input normalisation.

The U-Net predicts per-pixel softmax probabilities of 3 classes, in this order:

    0 background, 1 nucleus interior, 2 nucleus boundary

(the classic DSB 2018 "3-class" approach: the boundary class keeps touching nuclei apart).
:func:`labels_to_classes` makes that target from ground-truth instance masks and
:func:`probabilities_to_labels` turns predicted probabilities back into instances (seeded
watershed); :func:`filter_objects` then applies CellProfiler IdentifyPrimaryObjects' object
filters (typical diameter range, objects touching the image border).
:func:`normalize_image` is the per-image input normalisation.

Only numpy, scipy and scikit-image are needed (this also runs inside Triton's python backend).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as cc_label
from skimage.morphology import h_maxima
from skimage.segmentation import find_boundaries, relabel_sequential, watershed

from morphoflow.segmentation.metrics import check_label_image

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
"""Class indices of the U-Net's 3-class output."""

DISTANCE_SEED_H: float = 2.0
"""Foreground-only input: seeds are the distance-transform maxima at least this high (pixels)
above the saddle separating them from any higher maximum (h-maxima)."""


def labels_to_classes(labels: np.ndarray, boundary_width: int = 2) -> np.ndarray:
    """3-class U-Net training target from an instance label image.

    A pixel of an object is *boundary* when it lies within ``boundary_width`` pixels (4-connected
    steps) of a pixel outside the object: background or another object. Concretely, the inner
    boundary (``skimage.segmentation.find_boundaries(mode="inner")``) is peeled
    ``boundary_width`` times. Two touching objects are thus separated by a band of
    2 * ``boundary_width`` boundary pixels, and no interior pixel of one object is 8-adjacent
    to an interior pixel of another. The image border does not count as background. Objects
    thinner than about 2 * ``boundary_width`` are all boundary.

    Args:
        labels: Instance labels (H, W), integer, 0 = background.
        boundary_width: Boundary thickness in pixels, >= 1 (default 2).

    Returns:
        uint8 array (H, W): 0 background, 1 interior, 2 boundary.

    Raises:
        ValueError: ``labels`` is not a 2-D non-negative integer image, or ``boundary_width``
            is < 1.

    Example:
        >>> lab = np.zeros((5, 5), dtype=np.int32)
        >>> lab[:, :2], lab[:, 2:] = 1, 2
        >>> labels_to_classes(lab, boundary_width=1)[0]
        array([1, 2, 2, 1, 1], dtype=uint8)
    """
    lab = check_label_image(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {lab.shape}")
    if isinstance(boundary_width, bool) or int(boundary_width) < 1:
        raise ValueError(f"boundary_width must be an int >= 1, got {boundary_width!r}")
    inner = lab.copy()
    for _ in range(int(boundary_width)):
        edge = find_boundaries(inner, mode="inner") & (inner > 0)
        if not edge.any():
            break
        inner[edge] = 0
    classes = np.zeros(lab.shape, dtype=np.uint8)
    classes[lab > 0] = BOUNDARY
    classes[inner > 0] = INTERIOR
    return classes


def classes_to_probabilities(classes: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """One-hot float32 probabilities (K, H, W) from a class map (H, W); handy for tests/demos.

    Args:
        classes: Integer class map with values in 0..n_classes-1.
        n_classes: Number of classes K.

    Returns:
        float32 array (K, H, W) with exactly one 1.0 per pixel.

    Raises:
        ValueError: ``classes`` is not integer or holds a value outside 0..n_classes-1.
    """
    cls = np.asarray(classes)
    if not np.issubdtype(cls.dtype, np.integer):
        raise ValueError(f"classes must be integer, got dtype {cls.dtype}")
    if cls.size and (cls.min() < 0 or cls.max() >= n_classes):
        raise ValueError(f"classes must lie in 0..{n_classes - 1}, got {cls.min()}..{cls.max()}")
    return (np.arange(n_classes)[:, None, None] == cls[None]).astype(np.float32)


def probabilities_to_labels(
    probs: np.ndarray,
    threshold: float = 0.5,
    seed_min_size: int = 4,
) -> np.ndarray:
    """Nucleus instances from U-Net probabilities (seeded watershed).

    3-class input (3, H, W) (background, interior, boundary):

    1. seeds: connected components (8-connected) of ``interior > threshold``; components
       smaller than ``seed_min_size`` pixels are discarded;
    2. foreground: ``interior + boundary > threshold`` (i.e. 1 - background > threshold);
    3. every foreground component that holds no seed becomes a seed itself (small nuclei with
       no confident interior are not lost);
    4. watershed of ``-interior`` from the seeds, restricted to the foreground;
    5. labels renumbered 1..n. No object is dropped here: size and border filters are
       :func:`filter_objects` (the segmenter applies them).

    Foreground-only input (H, W) (probability of nucleus): foreground = ``probs > threshold``;
    seeds are the h-maxima (h = :data:`DISTANCE_SEED_H` pixels) of the foreground's Euclidean
    distance transform, and the watershed runs on the negated distance; steps 3 and 5 as above.

    Args:
        probs: Array (3, H, W) of class probabilities, or (H, W) of foreground probability.
        threshold: Probability threshold in (0, 1).
        seed_min_size: Minimum seed area in pixels (>= 0; 3-class input only).

    Returns:
        uint32 instance labels (H, W), 0 = background, objects numbered 1..n.

    Raises:
        ValueError: ``probs`` has another shape or holds non-finite values, or a parameter is
            out of range.
    """
    p = np.asarray(probs)
    if not np.issubdtype(p.dtype, np.number) or np.issubdtype(p.dtype, np.complexfloating):
        raise ValueError(f"probs must be a real numeric array, got dtype {p.dtype}")
    if not (p.ndim == 2 or (p.ndim == 3 and p.shape[0] == 3)):
        raise ValueError(f"probs must be (3, H, W) or (H, W), got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("probs holds NaN or infinite values")
    if not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    if isinstance(seed_min_size, bool) or int(seed_min_size) < 0:
        raise ValueError(f"seed_min_size must be an int >= 0, got {seed_min_size!r}")
    p = p.astype(np.float32, copy=False)

    if p.ndim == 3:
        interior = p[INTERIOR]
        foreground = (p[INTERIOR] + p[BOUNDARY]) > threshold
        seeds = cc_label((interior > threshold) & foreground, connectivity=2)
        seeds = _remove_small(seeds, int(seed_min_size))
        landscape = -interior
    else:
        foreground = p > threshold
        distance = ndi.distance_transform_edt(foreground).astype(np.float32)
        seeds = cc_label(h_maxima(distance, DISTANCE_SEED_H).astype(bool) & foreground)
        landscape = -distance

    seeds = _seed_empty_components(seeds, foreground)
    if seeds.max() == 0:
        return np.zeros(foreground.shape, dtype=np.uint32)
    labels = watershed(landscape, markers=seeds, mask=foreground)
    return relabel_sequential(labels)[0].astype(np.uint32)


def _remove_small(labels: np.ndarray, min_pixels: int) -> np.ndarray:
    """Zero the objects with fewer than ``min_pixels`` pixels (labels not renumbered)."""
    if min_pixels <= 1 or labels.max() == 0:
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_pixels
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def _seed_empty_components(seeds: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Add each foreground component that holds no seed as a seed of its own."""
    comps, n = ndi.label(foreground, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        return seeds
    has_seed = np.zeros(n + 1, dtype=bool)
    has_seed[comps[seeds > 0]] = True
    missing = ~has_seed[comps] & (comps > 0)
    if not missing.any():
        return seeds
    out = seeds.astype(np.int64, copy=True)
    extra, _ = ndi.label(missing, structure=np.ones((3, 3), dtype=bool))
    out[missing] = extra[missing] + out.max()
    return out


MIN_DIAMETER: float = 4.5
"""Default smallest equivalent diameter kept, in pixels: area >= pi * 4.5^2 / 4 = 15.9 px,
i.e. objects of at least 16 pixels (the former ``min_size`` default, unchanged)."""


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameter of each object: the diameter of a circle with its area.

    ``d = sqrt(4 * area / pi)`` in pixels, CellProfiler's ``AreaShape_EquivalentDiameter``
    (the diameter IdentifyPrimaryObjects' "typical diameter" range is compared with).

    Args:
        labels: Instance labels (H, W), non-negative integers, 0 = background.

    Returns:
        float64 array (labels.max(),): entry i is the diameter of label i + 1 (0.0 for a label
        number that holds no pixel).

    Example:
        >>> equivalent_diameters(np.array([[1, 1], [1, 1]])).round(3)
        array([2.257])
    """
    lab = check_label_image(labels, "labels")
    areas = np.bincount(lab.ravel().astype(np.int64), minlength=int(lab.max(initial=0)) + 1)
    return np.sqrt(4.0 * areas[1:] / np.pi)


def filter_objects(
    labels: np.ndarray,
    min_diameter: float = MIN_DIAMETER,
    max_diameter: float | None = None,
    discard_border_objects: bool = False,
) -> np.ndarray:
    """CellProfiler IdentifyPrimaryObjects' object filters, then consecutive relabelling.

    Mirrors IdentifyPrimaryObjects' "Typical diameter of objects, in pixel units (Min,Max)"
    with "Discard objects outside the diameter range?" = Yes, and "Discard objects touching the
    border of the image?":

    1. size: an object is discarded when its equivalent diameter (:func:`equivalent_diameters`,
       ``sqrt(4 * area / pi)``) lies outside [min_diameter, max_diameter] (bounds kept, as in
       CellProfiler, which compares the area with ``pi * d^2 / 4``);
    2. border: when ``discard_border_objects``, every remaining object with at least one pixel
       in the first or last row or column is discarded;
    3. the objects left are renumbered 1..n in the order of their old labels.

    Args:
        labels: Instance labels (H, W), non-negative integers, 0 = background.
        min_diameter: Smallest equivalent diameter kept, in pixels (>= 0; 0 keeps all).
        max_diameter: Largest equivalent diameter kept, in pixels (>= min_diameter), or None
            for no upper bound.
        discard_border_objects: Discard objects touching the image border.

    Returns:
        uint32 labels (H, W), objects numbered 1..n.

    Raises:
        ValueError: ``labels`` is not a 2-D label image, or a diameter is negative, not finite
            or ``max_diameter < min_diameter``.

    Example:
        >>> lab = np.zeros((6, 6), int); lab[0:2, 0:2] = 1; lab[2:5, 2:5] = 2; lab[5, 5] = 3
        >>> filter_objects(lab, min_diameter=1.5, discard_border_objects=True)[3]
        array([0, 0, 1, 1, 1, 0], dtype=uint32)
    """
    lab = check_label_image(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {lab.shape}")
    low, high = check_diameter_range(min_diameter, max_diameter)
    n = int(lab.max(initial=0))
    if n == 0:
        return np.zeros(lab.shape, dtype=np.uint32)
    diameters = np.sqrt(4.0 * np.bincount(lab.ravel().astype(np.int64), minlength=n + 1) / np.pi)
    keep = diameters >= low
    if high is not None:
        keep &= diameters <= high
    if discard_border_objects:
        edge = np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]).astype(np.int64)
        keep[edge] = False
    keep[0] = False
    new = np.zeros(n + 1, dtype=np.uint32)
    new[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return new[lab]


def check_diameter_range(
    min_diameter: float, max_diameter: float | None
) -> tuple[float, float | None]:
    """Validate a typical-diameter range (pixels); returns it as floats.

    Raises:
        ValueError: A bound that is not a finite number >= 0 (named), or max < min.
    """
    bounds = []
    for name, value in (("min_diameter", min_diameter), ("max_diameter", max_diameter)):
        if value is None and name == "max_diameter":
            bounds.append(None)
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"{name} must be a number of pixels >= 0, got {value!r}")
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be a finite number of pixels >= 0, got {value!r}")
        bounds.append(float(value))
    low, high = bounds
    assert low is not None
    if high is not None and high < low:
        raise ValueError(f"max_diameter ({high}) must be >= min_diameter ({low})")
    return low, high


EMPTY_FIELD_CONTRAST: float = 10.0
"""An image is an *empty field* when, after removing a smooth background (a least-squares
quadratic surface: illumination gradients, vignetting), its brightest spot, smoothed by a
Gaussian of :data:`EMPTY_FIELD_SMOOTHING` px, is less than this many noise standard deviations
(of the smoothed noise) above the background. Measured with the shipped model: empty uint16
tiles with a 20 % gradient and shot + read noise score 3.5-5.4; the 48 synthetic validation
images score >= 92 and the real HeLa frames about 3,000."""

EMPTY_FIELD_SMOOTHING: float = 2.0
"""Gaussian sigma (pixels) of the smoothing in :func:`foreground_contrast`."""

EMPTY_FIELD_MIN_SIDE: int = 16
"""Images with a side shorter than this are never called empty (too few pixels to tell), except
strips (:data:`EMPTY_FIELD_STRIP_SIDES`). Nucleus-centred 4-8 px squares score 0-1: the
quadratic background absorbs the nucleus."""

EMPTY_FIELD_STRIP_SIDES: tuple[int, int] = (3, 64)
"""(short, long) minimum sides of a thin strip that is still judged: a strip's long side holds
enough background for the fit. Measured (400 noise images per shape, this statistic): noise strips
of 3-15 x 64-5,000 px (Gaussian, uniform 8-bit, Poisson mean 3, 20 % gradients) score <= 8.8;
3- and 8-px strips through simulated nuclei >= 273, through real HeLa t13 and the DSB 2018
image >= 16.4 (1,700 strips, none below 10). 2-px strips of Poisson noise reach 14."""


def noise_sigma(img: np.ndarray) -> float:
    """Robust standard deviation of the pixel noise of a 2-D image, from neighbour differences.

    Differences of horizontally and vertically adjacent pixels cancel smooth structure
    (background, gradients, the inside of nuclei) and hold sqrt(2) times the noise of white
    noise; their median absolute deviation ignores the few large differences at object edges:
    ``sigma = 1.4826 * MAD(differences) / sqrt(2)``. Images over 2^19 pixels use the
    differences of every k-th row and column (about 2^20 differences). When the MAD is 0 (heavily quantised or
    mostly constant images) the standard deviation of the differences / sqrt(2) is used.

    Args:
        img: 2-D image, any real dtype, finite.

    Returns:
        The noise standard deviation in the image's units (0.0 for a constant image).

    Raises:
        ValueError: ``img`` is not 2-D.
    """
    data = np.asarray(img, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"img must be 2-D (H, W), got shape {data.shape}")
    # Large images: every k-th row (column) of horizontal (vertical) differences, about 2^20
    # differences in all; plenty for a median, and 6x faster on a 2048 x 2048 image.
    k = max(1, data.size // 2**19)
    diffs = np.concatenate(
        [np.diff(data[::k], axis=1).ravel(), np.diff(data[:, ::k], axis=0).ravel()]
    )
    if diffs.size == 0:
        return 0.0
    mad = float(np.median(np.abs(diffs - np.median(diffs))))
    if mad > 0:
        return 1.4826 * mad / np.sqrt(2.0)
    return float(diffs.std()) / np.sqrt(2.0)


def _quadratic_background(data: np.ndarray) -> np.ndarray:
    """Least-squares quadratic surface a + bx + cy + dx^2 + exy + fy^2 (fit on <= ~65k pixels)."""
    h, w = data.shape
    stride = max(1, int(np.sqrt(data.size / 65536.0)))
    y = (np.arange(0, h, stride) / h - 0.5)[:, None]
    x = (np.arange(0, w, stride) / w - 0.5)[None, :]
    ys, xs = np.broadcast_arrays(y, x)
    design = np.stack(
        [
            np.ones(ys.size),
            xs.ravel(),
            ys.ravel(),
            xs.ravel() ** 2,
            (xs * ys).ravel(),
            ys.ravel() ** 2,
        ],
        axis=1,
    )
    coef = np.linalg.lstsq(design, data[::stride, ::stride].ravel(), rcond=None)[0]
    yf = (np.arange(h) / h - 0.5)[:, None]
    xf = (np.arange(w) / w - 0.5)[None, :]
    return (
        coef[0]
        + coef[1] * xf
        + coef[2] * yf
        + coef[3] * xf**2
        + coef[4] * xf * yf
        + coef[5] * yf**2
    )


def _smoothed_noise_factor(sigma: float) -> float:
    """Standard deviation of Gaussian-smoothed white noise of unit variance (L2 norm of the
    discrete kernel that ``ndi.gaussian_filter`` applies)."""
    radius = int(4.0 * sigma + 0.5)
    delta = np.zeros((2 * radius + 1, 2 * radius + 1))
    delta[radius, radius] = 1.0
    return float(np.sqrt((ndi.gaussian_filter(delta, sigma) ** 2).sum()))


def foreground_contrast(img: np.ndarray, smoothing: float = EMPTY_FIELD_SMOOTHING) -> float:
    """How far the brightest spot of an image rises above a smooth background, in noise units.

    ``max(G * (img - B)) / (noise_sigma(img) * ||G||)``: ``B`` is the least-squares quadratic
    surface of the image (it absorbs illumination gradients and vignetting), ``G`` a Gaussian
    of ``smoothing`` px (a nucleus of a few pixels' radius keeps its height, white noise
    shrinks by ``||G||``, the L2 norm of the kernel). Pure noise on any smooth background gives
    about 3.5-5.5 for a 256 x 256 image; images with nuclei give tens to thousands. Isolated
    hot pixels or dust also count as foreground.

    Args:
        img: 2-D image, any real dtype, finite.
        smoothing: Gaussian sigma in pixels (> 0).

    Returns:
        The contrast (``inf`` when the noise estimate is 0 and the image is not flat, 0.0 for a
        flat one).

    Raises:
        ValueError: ``img`` is not 2-D or ``smoothing`` is not > 0.
    """
    data = np.asarray(img, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"img must be 2-D (H, W), got shape {data.shape}")
    if not float(smoothing) > 0:
        raise ValueError(f"smoothing must be > 0, got {smoothing}")
    residual = data - _quadratic_background(data)
    peak = float(ndi.gaussian_filter(residual, float(smoothing)).max())
    sigma = noise_sigma(data)
    if sigma <= 0:
        return float("inf") if peak > 1e-9 * max(1.0, float(np.abs(data).max())) else 0.0
    return peak / (sigma * _smoothed_noise_factor(float(smoothing)))


def normalize_image(
    img: np.ndarray,
    low: float = 1.0,
    high: float = 99.8,
    channel_axis: int | None = None,
    empty_contrast: float | None = EMPTY_FIELD_CONTRAST,
) -> np.ndarray:
    """Robust per-image intensity normalisation to [0, 1], for any bit depth.

    ``(img - p_low) / (p_high - p_low)`` clipped to [0, 1], where ``p_low`` and ``p_high`` are
    the ``low`` and ``high`` percentiles of the image. When they coincide (e.g. a mostly empty
    image with a few bright nuclei) the minimum and maximum are used instead; a constant image
    gives zeros (no division by zero).

    Empty fields. Stretching an image that holds only background and noise to [0, 1] turns an
    illumination gradient or noise into bright "nuclei". A 2-D image (or 2-D slice along
    ``channel_axis``) with both sides >= :data:`EMPTY_FIELD_MIN_SIDE` (or a strip of at least
    :data:`EMPTY_FIELD_STRIP_SIDES`) whose
    :func:`foreground_contrast` is below ``empty_contrast`` is therefore normalised to zeros,
    like a constant image. Images with real nuclei are far above the default threshold and are
    normalised exactly as without this test. This is the one normalisation of training,
    inference, TTA, Mask R-CNN and the Triton ``nuclei_tta`` model.

    Args:
        img: Image of any shape and real or boolean dtype (uint8, uint16, float, ...).
        low: Lower percentile, in [0, 100).
        high: Upper percentile, in (low, 100].
        channel_axis: If given, each slice along this axis is normalised on its own (e.g. 0
            for a (C, H, W) stack); otherwise the whole array shares one pair of percentiles.
        empty_contrast: Empty-field threshold in noise standard deviations (see above); None
            switches the test off (the normalisation before issue 12).

    Returns:
        float32 array of ``img``'s shape with values in [0, 1].

    Raises:
        ValueError: Non-numeric dtype, non-finite values, percentiles out of range, an
            invalid ``channel_axis`` or a negative ``empty_contrast``.

    Example:
        >>> normalize_image(np.array([[0, 100], [200, 255]], dtype=np.uint8), 0, 100).max()
        1.0
    """
    arr = np.asarray(img)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"img must be a real numeric image, got dtype {arr.dtype}")
    if not 0.0 <= float(low) < float(high) <= 100.0:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low}, high={high}")
    if empty_contrast is not None and not float(empty_contrast) >= 0:
        raise ValueError(f"empty_contrast must be >= 0 or None, got {empty_contrast}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError("img holds NaN or infinite values")
    threshold = None if empty_contrast is None else float(empty_contrast)
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not -arr.ndim <= int(channel_axis) < arr.ndim:
            raise ValueError(f"channel_axis {channel_axis!r} is invalid for shape {arr.shape}")
        moved = np.moveaxis(arr, int(channel_axis), 0)
        out = np.stack([_normalize(c, float(low), float(high), threshold) for c in moved])
        return np.moveaxis(out, 0, int(channel_axis))
    return _normalize(arr, float(low), float(high), threshold)


def is_empty_field(img: np.ndarray, empty_contrast: float = EMPTY_FIELD_CONTRAST) -> bool:
    """Whether :func:`normalize_image` treats a 2-D image as an empty field (see there).

    Args:
        img: 2-D image, any real dtype, finite.
        empty_contrast: Threshold in noise standard deviations.

    Returns:
        True when both sides are >= :data:`EMPTY_FIELD_MIN_SIDE`, or the image is a strip at
        least :data:`EMPTY_FIELD_STRIP_SIDES` in size, and the :func:`foreground_contrast` is
        below ``empty_contrast``.

    Raises:
        ValueError: ``img`` is not 2-D.
    """
    arr = np.asarray(img)
    if arr.ndim != 2:
        raise ValueError(f"img must be 2-D (H, W), got shape {arr.shape}")
    short, long = min(arr.shape), max(arr.shape)
    strip_short, strip_long = EMPTY_FIELD_STRIP_SIDES
    if short < EMPTY_FIELD_MIN_SIDE and (short < strip_short or long < strip_long):
        return False
    return foreground_contrast(arr) < float(empty_contrast)


def _normalize(
    arr: np.ndarray, low: float, high: float, empty_contrast: float | None
) -> np.ndarray:
    if arr.size == 0:
        return arr.astype(np.float32)
    data = arr.astype(np.float64, copy=False)
    lo, hi = np.percentile(data, [low, high])
    if hi <= lo:
        lo, hi = float(data.min()), float(data.max())
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.float32)
    if empty_contrast is not None and data.ndim == 2 and is_empty_field(data, empty_contrast):
        return np.zeros(arr.shape, dtype=np.float32)
    out = (data - lo) / (hi - lo)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
