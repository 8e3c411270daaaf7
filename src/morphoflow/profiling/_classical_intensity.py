"""Intensity, correlation, granularity and radial distribution features of one cell.

Private module of :mod:`morphoflow.profiling.classical` (which re-exports the public names and
specifies every feature in its docstring).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Intensity feature names (per compartment and channel).
INTENSITY_FEATURES: tuple[str, ...] = (
    "MeanIntensity",
    "StdIntensity",
    "MedianIntensity",
    "MADIntensity",
    "MinIntensity",
    "MaxIntensity",
    "UpperQuartileIntensity",
    "LowerQuartileIntensity",
    "IntegratedIntensity",
)

#: Number of RadialDistribution bins.
RADIAL_BINS = 4

_RADIAL_FEATURES: tuple[str, ...] = ("FracAtD", "MeanFrac")


# --------------------------------------------------------------------------------------------
# Intensity, correlation
# --------------------------------------------------------------------------------------------


def _quantile_sorted(sorted_values: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of each row of a row-sorted (C, n) array (numpy's linear method)."""
    n = sorted_values.shape[1]
    h = (n - 1) * q
    lo = int(np.floor(h))
    hi = min(lo + 1, n - 1)
    frac = h - lo
    return sorted_values[:, lo] + frac * (sorted_values[:, hi] - sorted_values[:, lo])


def _intensity_stats(sorted_values: np.ndarray) -> np.ndarray:
    """(9, C) intensity statistics of row-sorted pixel values; zeros when there are none."""
    n_ch, n = sorted_values.shape
    if n == 0:
        return np.zeros((len(INTENSITY_FEATURES), n_ch))
    mean = sorted_values.mean(axis=1)
    median = _quantile_sorted(sorted_values, 0.5)
    mad = np.median(np.abs(sorted_values - median[:, None]), axis=1)
    return np.stack(
        [
            mean,
            sorted_values.std(axis=1),
            median,
            mad,
            sorted_values[:, 0],
            sorted_values[:, -1],
            _quantile_sorted(sorted_values, 0.75),
            _quantile_sorted(sorted_values, 0.25),
            sorted_values.sum(axis=1),
        ]
    )


def _mass_displacement(weights: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Distance between the binary and the intensity-weighted centroid, per channel."""
    total = weights.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    wy = weights @ ys / safe
    wx = weights @ xs / safe
    disp = np.hypot(wy - ys.mean(), wx - xs.mean())
    return np.where(total > 0, disp, 0.0)


def _channel_correlations(values: np.ndarray) -> np.ndarray:
    """Pearson correlation of every channel pair (upper triangle, row-major)."""
    centred = values - values.mean(axis=1, keepdims=True)
    cov = centred @ centred.T
    sd = np.sqrt(np.diag(cov))
    denom = np.outer(sd, sd)
    corr = np.where(denom > 0, cov / np.where(denom > 0, denom, 1.0), 0.0)
    iu = np.triu_indices(values.shape[0], 1)
    return np.clip(corr[iu], -1.0, 1.0)


# --------------------------------------------------------------------------------------------
# Granularity, radial distribution
# --------------------------------------------------------------------------------------------


def _cross_filter(values: np.ndarray, inside: np.ndarray, fill: float, op: np.ufunc) -> np.ndarray:
    """One erosion (op=minimum) or dilation (op=maximum) by the 3x3 cross, restricted to
    ``inside``: ``values`` is (C, h + 2, w + 2) holding ``fill`` outside; so is the result."""
    core = op(values[:, 1:-1, 1:-1], values[:, :-2, 1:-1])
    core = op(core, values[:, 2:, 1:-1])
    core = op(core, values[:, 1:-1, :-2])
    core = op(core, values[:, 1:-1, 2:])
    result = np.full_like(values, fill)
    result[:, 1:-1, 1:-1] = np.where(inside[1:-1, 1:-1], core, fill)
    return result


def _granularity(image: np.ndarray, cell: np.ndarray, scales: tuple[int, ...]) -> np.ndarray:
    """(C, S) granularity spectrum of a non-negative (C, h, w) image inside ``cell``."""
    n_ch = image.shape[0]
    out = np.zeros((n_ch, len(scales)))
    inside = np.pad(cell, 1)
    total = image[:, cell].sum(axis=1)
    if not np.any(total > 0):
        return out
    eroded = np.full((n_ch, *inside.shape), np.inf)
    eroded[:, 1:-1, 1:-1] = np.where(cell, image, np.inf)
    previous = total
    done = 0
    for j, scale in enumerate(scales):
        for _ in range(scale - done):
            eroded = _cross_filter(eroded, inside, np.inf, np.minimum)
        done = scale
        opened = np.where(inside, eroded, -np.inf)
        for _ in range(scale):
            opened = _cross_filter(opened, inside, -np.inf, np.maximum)
        current = opened[:, inside].sum(axis=1)
        out[:, j] = previous - current
        previous = current
    safe = np.where(total > 0, total, 1.0)
    return np.where(total[:, None] > 0, np.clip(out / safe[:, None], 0.0, 1.0), 0.0)


def _radial_distribution(
    weights: np.ndarray,
    cell: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    centre: tuple[float, float],
) -> np.ndarray:
    """(2, C, bins): FracAtD and MeanFrac of non-negative (C, n) pixel weights."""
    n_ch, n = weights.shape
    d_edge = ndimage.distance_transform_edt(np.pad(cell, 1))[1:-1, 1:-1][cell]
    d_centre = np.hypot(ys - centre[0], xs - centre[1])
    norm = d_centre / (d_centre + d_edge)
    bins = np.minimum((norm * RADIAL_BINS).astype(np.int64), RADIAL_BINS - 1)
    onehot = (bins[None, :] == np.arange(RADIAL_BINS)[:, None]).astype(np.float64)
    sums = weights @ onehot.T  # (C, bins)
    total = weights.sum(axis=1, keepdims=True)
    frac = np.where(total > 0, sums / np.where(total > 0, total, 1.0), 0.0)
    pixel_frac = onehot.sum(axis=1) / n
    mean_frac = np.where(pixel_frac > 0, frac / np.where(pixel_frac > 0, pixel_frac, 1.0), 0.0)
    return np.stack([frac, mean_frac])
