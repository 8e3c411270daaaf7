"""Texture (Haralick) features of one cell's compartments.

Private module of :mod:`morphoflow.profiling.classical` (which re-exports the public names and
specifies the quantisation, offsets and features in its docstring).
"""

from __future__ import annotations

import numpy as np

from morphoflow.profiling._classical_intensity import _quantile_sorted

#: Grey levels of the texture co-occurrence matrices.
TEXTURE_LEVELS = 16

#: Texture quantisation range: these percentiles of the compartment's intensities.
TEXTURE_PERCENTILES: tuple[float, float] = (1.0, 99.0)

#: Texture (Haralick) feature names (per compartment, channel and distance).
TEXTURE_FEATURES: tuple[str, ...] = (
    "Contrast",
    "Correlation",
    "AngularSecondMoment",
    "InverseDifferenceMoment",
    "Entropy",
)

_LEVELS = TEXTURE_LEVELS
_I, _J = np.meshgrid(
    np.arange(_LEVELS, dtype=np.float64), np.arange(_LEVELS, dtype=np.float64), indexing="ij"
)
_DIFF2 = (_I - _J) ** 2
_IDM_WEIGHT = 1.0 / (1.0 + _DIFF2)


def _texture_offsets(distance: int) -> tuple[tuple[int, int], ...]:
    """GLCM offsets (row, col) at 0, 45, 90 and 135 degrees (CellProfiler's)."""
    return ((0, distance), (distance, distance), (distance, 0), (distance, -distance))


def _quantise(values: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Quantise (C, n) values to 0.._LEVELS-1 between their 1st and 99th percentiles."""
    lo = _quantile_sorted(sorted_values, TEXTURE_PERCENTILES[0] / 100.0)[:, None]
    hi = _quantile_sorted(sorted_values, TEXTURE_PERCENTILES[1] / 100.0)[:, None]
    span = hi - lo
    scaled = (values - lo) / np.where(span > 0, span, 1.0) * _LEVELS
    levels = np.clip(np.floor(scaled), 0, _LEVELS - 1).astype(np.int64)
    return np.where(span > 0, levels, 0)


def _glcm_counts(
    levels: np.ndarray, compartment: np.ndarray, n_comp: int, offset: tuple[int, int]
) -> np.ndarray:
    """Symmetric co-occurrence counts (n_comp, C, L, L) of one offset.

    ``levels`` is (C, h, w) grey levels, ``compartment`` (h, w) compartment index, -1 outside.
    A pair counts when both pixels are in the same compartment.
    """
    n_ch, h, w = levels.shape
    dy, dx = offset
    counts = np.zeros((n_comp, n_ch, _LEVELS, _LEVELS))
    if dy >= h or abs(dx) >= w:
        return counts
    if dx >= 0:
        a_sl, b_sl = (slice(0, h - dy), slice(0, w - dx)), (slice(dy, h), slice(dx, w))
    else:
        a_sl, b_sl = (slice(0, h - dy), slice(-dx, w)), (slice(dy, h), slice(0, w + dx))
    comp_a = compartment[a_sl]
    valid = (comp_a >= 0) & (comp_a == compartment[b_sl])
    if not valid.any():
        return counts
    la = levels[:, a_sl[0], a_sl[1]][:, valid]
    lb = levels[:, b_sl[0], b_sl[1]][:, valid]
    base = comp_a[valid][None, :] * n_ch + np.arange(n_ch)[:, None]
    codes = (base * _LEVELS + la) * _LEVELS + lb
    flat = np.bincount(codes.ravel(), minlength=n_comp * n_ch * _LEVELS * _LEVELS)
    counts = flat.reshape(n_comp, n_ch, _LEVELS, _LEVELS).astype(np.float64)
    return counts + counts.swapaxes(-1, -2)


def _haralick(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Haralick features (5, ...) of co-occurrence counts (..., L, L) and the pair totals."""
    total = counts.sum(axis=(-2, -1))
    p = counts / np.where(total > 0, total, 1.0)[..., None, None]
    contrast = (p * _DIFF2).sum(axis=(-2, -1))
    asm = (p * p).sum(axis=(-2, -1))
    idm = (p * _IDM_WEIGHT).sum(axis=(-2, -1))
    logp = np.log2(p, where=p > 0, out=np.zeros_like(p))
    entropy = -(p * logp).sum(axis=(-2, -1))
    mu = (p * _I).sum(axis=(-2, -1))
    var = (p * _I * _I).sum(axis=(-2, -1)) - mu**2
    cov = (p * _I * _J).sum(axis=(-2, -1)) - mu**2
    flat = var < 1e-12
    correlation = np.where(flat, 1.0, cov / np.where(flat, 1.0, var))
    return np.stack([contrast, correlation, asm, idm, entropy]), total


def _texture(
    image: np.ndarray,
    labels: np.ndarray,
    sorted_parts: tuple[np.ndarray, np.ndarray],
    selectors: tuple[np.ndarray, np.ndarray],
    cell: np.ndarray,
    distances: tuple[int, ...],
) -> np.ndarray:
    """(2 compartments, 5 features, C, D) Haralick features of Nuclei and Cytoplasm."""
    n_ch = image.shape[0]
    levels = np.zeros(image.shape, dtype=np.int64)
    cell_levels = np.zeros((n_ch, int(cell.sum())), dtype=np.int64)
    values = image[:, cell]
    for sorted_values, selector in zip(sorted_parts, selectors, strict=True):
        if sorted_values.shape[1]:
            cell_levels[:, selector] = _quantise(values[:, selector], sorted_values)
    levels[:, cell] = cell_levels
    compartment = np.full(labels.shape, -1, dtype=np.int64)
    compartment[labels == 1] = 0
    compartment[labels == 2] = 1
    out = np.zeros((2, len(TEXTURE_FEATURES), n_ch, len(distances)))
    for k, distance in enumerate(distances):
        counts = np.stack(
            [_glcm_counts(levels, compartment, 2, off) for off in _texture_offsets(distance)]
        )  # (angles, 2, C, L, L)
        feats, total = _haralick(counts)  # (5, angles, 2, C), (angles, 2, C)
        used = (total > 0).astype(np.float64)
        n_used = used.sum(axis=0)
        mean = (feats * used).sum(axis=1) / np.where(n_used > 0, n_used, 1.0)
        out[:, :, :, k] = np.where(n_used > 0, mean, 0.0).transpose(1, 0, 2)
    return out
