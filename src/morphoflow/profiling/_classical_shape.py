"""AreaShape features of one binary object (for :mod:`morphoflow.profiling.classical`).

Private module: the public names are re-exported by :mod:`morphoflow.profiling.classical`,
whose docstring specifies every feature.
"""

from __future__ import annotations

from math import factorial

import numpy as np
from scipy.spatial import ConvexHull
from skimage.measure import grid_points_in_poly, moments_hu

#: Highest degree of the Zernike moments.
ZERNIKE_DEGREE = 5

_ZERNIKE_NM: tuple[tuple[int, int], ...] = tuple(
    (n, m) for n in range(ZERNIKE_DEGREE + 1) for m in range(n + 1) if (n - m) % 2 == 0
)

#: AreaShape feature names (per object).
SHAPE_FEATURES: tuple[str, ...] = (
    "Area",
    "Perimeter",
    "FormFactor",
    "Compactness",
    "Eccentricity",
    "Solidity",
    "Extent",
    "MajorAxisLength",
    "MinorAxisLength",
    "EquivalentDiameter",
    "MaxFeretDiameter",
    "MinFeretDiameter",
    *(f"HuMoment_{k}" for k in range(7)),
    *(f"Zernike_{n}_{m}" for n, m in _ZERNIKE_NM),
)
_N_SHAPE = len(SHAPE_FEATURES)

_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2.0)
_PERIMETER_WEIGHTS[[13, 23]] = (1.0 + np.sqrt(2.0)) / 2.0

_DIAMOND = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, -0.5], [0.0, 0.5]])


def _zernike_coefficients() -> np.ndarray:
    """Coefficients of rho^0..rho^D of the radial polynomials R_nm, one row per (n, m)."""
    coef = np.zeros((len(_ZERNIKE_NM), ZERNIKE_DEGREE + 1))
    for row, (n, m) in enumerate(_ZERNIKE_NM):
        for k in range((n - m) // 2 + 1):
            coef[row, n - 2 * k] = (
                (-1) ** k
                * factorial(n - k)
                / (factorial(k) * factorial((n + m) // 2 - k) * factorial((n - m) // 2 - k))
            )
    return coef


_ZERNIKE_COEF = _zernike_coefficients()
_ZERNIKE_N = np.array([n for n, _ in _ZERNIKE_NM])
_ZERNIKE_M = np.array([m for _, m in _ZERNIKE_NM])


def _shape_features(binary: np.ndarray) -> np.ndarray:
    """AreaShape features of one binary object (any position inside ``binary``)."""
    out = np.zeros(_N_SHAPE)
    ys, xs = np.nonzero(binary)
    area = ys.size
    if area == 0:
        return out
    # Tight box of this object, padded by one pixel of background.
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    padded = np.zeros((y1 - y0 + 2, x1 - x0 + 2), dtype=bool)
    padded[1:-1, 1:-1] = binary[y0:y1, x0:x1]
    core = padded[1:-1, 1:-1]
    interior = core & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    border = core & ~interior

    # Perimeter exactly as skimage.measure.perimeter(image, neighborhood=4).
    b = np.zeros(padded.shape, dtype=np.int64)
    b[1:-1, 1:-1] = border
    conv = (
        b[1:-1, 1:-1]
        + 2 * (b[:-2, 1:-1] + b[2:, 1:-1] + b[1:-1, :-2] + b[1:-1, 2:])
        + 10 * (b[:-2, :-2] + b[:-2, 2:] + b[2:, :-2] + b[2:, 2:])
    )
    perimeter = float(np.bincount(conv[border], minlength=50)[:50] @ _PERIMETER_WEIGHTS)

    yf = ys.astype(np.float64)
    xf = xs.astype(np.float64)
    dy = yf - yf.mean()
    dx = xf - xf.mean()
    dy2, dx2 = dy * dy, dx * dx
    mu20, mu02, mu11 = dy2.sum(), dx2.sum(), (dy * dx).sum()
    a, c, bb = mu20 / area, mu02 / area, mu11 / area
    root = np.sqrt(((a - c) / 2.0) ** 2 + bb**2)
    l1 = (a + c) / 2.0 + root
    l2 = max((a + c) / 2.0 - root, 0.0)
    eccentricity = np.sqrt(1.0 - l2 / l1) if l1 > 0 else 0.0

    # Convex hull of the boundary pixels' edge midpoints (as skimage.morphology.convex_hull_image).
    by, bx = np.nonzero(border)
    points = (np.stack([by, bx], axis=1)[:, None, :] + _DIAMOND).reshape(-1, 2)
    hull = ConvexHull(points)
    vertices = points[hull.vertices]
    convex_area = np.count_nonzero(grid_points_in_poly(core.shape, vertices, binarize=False) >= 1)
    diff = vertices[:, None, :] - vertices[None, :, :]
    max_feret = float(np.sqrt((diff**2).sum(axis=2).max()))
    edges = np.roll(vertices, -1, axis=0) - vertices
    lengths = np.hypot(edges[:, 0], edges[:, 1])
    rel = vertices[None, :, :] - vertices[:, None, :]  # rel[k, j] = v_j - v_k
    cross = np.abs(edges[:, None, 0] * rel[:, :, 1] - edges[:, None, 1] * rel[:, :, 0])
    widths = cross.max(axis=1) / np.where(lengths > 0, lengths, np.inf)
    min_feret = float(widths[lengths > 0].min()) if np.any(lengths > 0) else 0.0

    # Hu moments from normalised central moments (skimage's [row-power, col-power] layout).
    nu = np.zeros((4, 4))
    nu[2, 0], nu[0, 2], nu[1, 1] = mu20 / area**2, mu02 / area**2, mu11 / area**2
    norm3 = area**2.5
    nu[3, 0] = (dy2 * dy).sum() / norm3
    nu[2, 1] = (dy2 * dx).sum() / norm3
    nu[1, 2] = (dy * dx2).sum() / norm3
    nu[0, 3] = (dx2 * dx).sum() / norm3
    hu = moments_hu(nu)

    # Zernike magnitudes of the binary mask.
    dist = np.sqrt(dy2 + dx2)
    radius = dist.max() + 0.5
    rho = dist / radius
    safe = np.where(dist > 0, dist, 1.0)
    unit = (dx - 1j * dy) / safe
    unit[dist == 0] = 1.0
    powers = np.empty((ZERNIKE_DEGREE + 1, area))
    phases = np.empty((ZERNIKE_DEGREE + 1, area), dtype=np.complex128)
    powers[0], phases[0] = 1.0, 1.0
    for k in range(1, ZERNIKE_DEGREE + 1):
        powers[k] = powers[k - 1] * rho
        phases[k] = phases[k - 1] * unit
    radial = _ZERNIKE_COEF @ powers
    zsum = (radial * phases[_ZERNIKE_M]).sum(axis=1)
    zernike = (_ZERNIKE_N + 1) / (np.pi * radius**2) * np.abs(zsum)

    out[:12] = (
        area,
        perimeter,
        4.0 * np.pi * area / perimeter**2 if perimeter > 0 else 0.0,
        2.0 * np.pi * (dy2.sum() + dx2.sum()) / area / area,
        eccentricity,
        area / convex_area if convex_area > 0 else 0.0,
        area / float((y1 - y0) * (x1 - x0)),
        4.0 * np.sqrt(l1),
        4.0 * np.sqrt(l2),
        np.sqrt(4.0 * area / np.pi),
        max_feret,
        min_feret,
    )
    out[12:19] = hu
    out[19:] = zernike
    return out
