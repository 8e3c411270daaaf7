"""Classical (CellProfiler-like) single-cell features from crops and compartment masks.

:func:`classical_features` turns single-cell crops into one row of hand-crafted features per
cell, named with pycytominer/CellProfiler conventions ``<Compartment>_<Group>_<Feature>[_<Ch>]``
(e.g. ``Nuclei_AreaShape_Area``, ``Cells_Intensity_MeanIntensity_ER``,
``Cytoplasm_Texture_Contrast_Mito_3_00``). :func:`feature_names` gives the exact, stable column
list, so tables from different sites, plates and runs concatenate.

Input contract
--------------
* ``crops``: ``(N, C, H, W)`` real array (normally float32, ``C = 5`` channels in
  :data:`~morphoflow.screen.constants.CHANNELS` order, ``H = W = 128``), illumination-corrected
  intensities, not normalised per crop.
* ``masks``: ``(N, H, W)`` integer array: 0 = not this cell (background, a neighbour, or the
  zero padding of a crop cut by the image edge), 1 = this cell's nucleus, 2 = its cytoplasm.
  The compartments (:data:`CLASSICAL_COMPARTMENTS`) are ``Nuclei`` (mask == 1), ``Cells``
  (mask > 0) and ``Cytoplasm`` (mask == 2). Masks are taken as they are: an object in several
  pieces is measured as one object.

Every feature of a cell depends only on the cell's own pixels and their relative positions, so
features do not change when the cell moves inside its crop (no absolute position, no absolute
orientation, no neighbour measurements: a crop does not know the other cells).

Empty compartments and degenerate cases (never NaN or inf)
----------------------------------------------------------
* An empty compartment (e.g. a cell whose mask is never 2: no cytoplasm) gets **0 for every
  feature of that compartment** (AreaShape, Intensity, Texture). A cell with an empty mask gets
  0 everywhere. Downstream, ``Cytoplasm_Intensity_*`` = 0 together with zero ``Cells`` minus
  ``Nuclei`` area identifies such cells.
* A ratio whose denominator is 0 is 0 (FormFactor with a zero perimeter, a correlation with a
  constant channel, intensity fractions of a cell with no positive intensity, ...), except the
  Texture ``Correlation`` of a perfectly uniform compartment, which is 1 (scikit-image's
  ``graycoprops`` convention).
* A nucleus missing from the mask makes RadialDistribution measure from the crop centre
  ``(H // 2, W // 2)``, where the crop contract puts the nucleus centre.

Feature groups (column order = this order; ``<Ch>`` runs over the channels in order)
------------------------------------------------------------------------------------
**AreaShape** -- ``{Nuclei,Cells}_AreaShape_<F>`` (31 per object), from the object's binary
mask (pixel coordinates; same definitions as ``skimage.measure.regionprops`` where it has one):

* ``Area``: pixel count. ``Perimeter``: scikit-image's 4-neighbourhood perimeter (boundary
  pixels weighted 1, sqrt(2) or (1 + sqrt(2)) / 2 by their local configuration).
* ``FormFactor`` = 4 pi Area / Perimeter^2 (1 for a disc, less for irregular shapes).
* ``Compactness`` = 2 pi (mean squared distance of the pixels from the centroid) / Area (1 for a
  filled disc, > 1 for elongated or irregular objects; CellProfiler's definition).
* ``Eccentricity``, ``MajorAxisLength``, ``MinorAxisLength``: of the ellipse with the same
  second central moments (4 sqrt(eigenvalue) of the covariance of the pixel coordinates).
* ``Solidity`` = Area / convex area, the convex area counted in pixels exactly as
  ``regionprops`` does (hull of the pixel-edge midpoints, pixels whose centre lies inside or on
  it; so a digital disc scores a little below 1: 0.93 for radius 10, 0.97 for radius 25).
  ``Extent`` = Area / area of the object's axis-aligned bounding box.
* ``EquivalentDiameter`` = sqrt(4 Area / pi).
* ``MaxFeretDiameter``, ``MinFeretDiameter``: largest and smallest caliper width of the same
  convex hull (rotating calipers over the hull vertices).
* ``HuMoment_0`` ... ``HuMoment_6``: Hu's rotation-invariant moments of the binary mask
  (``HuMoment_6`` changes sign under mirroring, as in CellProfiler).
* ``Zernike_<n>_<m>`` for n <= 5, m <= n, n - m even (12 values): magnitudes of the Zernike
  moments of the binary mask on the disc centred at the centroid, radius R = the largest
  centroid-to-pixel-centre distance + 0.5; ``|Z_nm| = (n + 1) / (pi R^2) |sum V*_nm(rho, theta)|``
  (so ``Zernike_0_0`` = Area / (pi R^2)). Magnitudes are rotation invariant.

**Intensity** -- ``{Nuclei,Cells,Cytoplasm}_Intensity_<F>_<Ch>`` (9 per compartment and
channel) over the compartment's pixels, vectorised over channels: ``MeanIntensity``,
``StdIntensity`` (population, ddof = 0), ``MedianIntensity``, ``MADIntensity`` (median absolute
deviation from the median, unscaled), ``MinIntensity``, ``MaxIntensity``,
``UpperQuartileIntensity``, ``LowerQuartileIntensity`` (quantiles with numpy's default linear
interpolation), ``IntegratedIntensity`` (sum). Then ``Cells_Intensity_MassDisplacement_<Ch>``:
distance in pixels between the cell's binary centroid and its intensity-weighted centroid
(weights = max(intensity, 0)).

**Correlation** -- ``Cells_Correlation_Correlation_<ChA>_<ChB>`` for every pair of channels
(10 for 5 channels, pairs in channel order: DNA_ER, DNA_RNA, ..., AGP_Mito): Pearson
correlation of the two channels over the cell's pixels.

**Granularity** -- ``Cells_Granularity_<scale>_<Ch>`` (one per scale and channel), a
CellProfiler MeasureGranularity-like spectrum: the fraction of the cell's intensity (clipped at
0) removed by a grey opening of scale ``s`` beyond what the previous scale removed,
``(sum(open_prev) - sum(open_s)) / sum(image)`` over the cell's pixels, ``open_0`` = the image.
The opening of scale ``s`` is ``s`` erosions then ``s`` dilations by the 3x3 cross, i.e. an
opening by the digital disc of radius ``s`` in the city-block metric (CellProfiler likewise
iterates ``disk(1)`` erosions); it is restricted to the cell (pixels outside the cell never
enter a minimum or maximum), so the cell outline itself is not counted as granularity. This
makes the openings decrease with scale: every spectrum value is in [0, 1] and a flat cell
scores 0. (CellProfiler also subtracts a background and reconstructs; neither is done here.)

**RadialDistribution** -- ``Cells_RadialDistribution_{FracAtD,MeanFrac}_<Ch>_<k>of4``
(CellProfiler MeasureObjectIntensityDistribution-like, 4 bins). Each cell pixel's normalised
distance is ``r = d_center / (d_center + d_edge)``, ``d_center`` the Euclidean distance to the
nucleus centroid, ``d_edge`` the Euclidean distance transform of the cell mask (distance to the
nearest pixel outside the cell); bin ``k = min(floor(4 r), 3) + 1``. ``FracAtD`` = fraction of
the cell's intensity (clipped at 0) in the bin (sums to 1 over the bins when the cell has
positive intensity); ``MeanFrac`` = ``FracAtD`` / fraction of the cell's pixels in the bin
(1 = as bright as the cell's average; 0 for an empty bin).

**Texture** -- ``{Nuclei,Cytoplasm}_Texture_<F>_<Ch>_<d>_00`` for each distance ``d`` of
``texture_distances``: Haralick features of the symmetric grey-level co-occurrence matrix
(GLCM) of the compartment, ``Contrast``, ``Correlation``, ``AngularSecondMoment`` (ASM, =
scikit-image's energy squared), ``InverseDifferenceMoment`` (= scikit-image's homogeneity,
sum P / (1 + (i - j)^2)) and ``Entropy`` (-sum P log2 P). Intensities are quantised to 16 levels
**per cell, channel and compartment** between the compartment's 1st and 99th percentiles
(values outside are clipped to the end levels; a compartment with equal percentiles is one
level). CellProfiler rescales per image instead; per-cell quantisation makes texture
independent of the cell's brightness, which the Intensity group already measures. Only pairs of
pixels that are both in the compartment count (pixels outside are never quantised: the
"outside level" trick). Offsets at distance d are (0, d), (d, d), (d, 0), (d, -d) (0, 45, 90
and 135 degrees; CellProfiler's offsets); the suffix ``00`` marks the **mean over the 4
directions** (angles with no pair in the compartment are left out of the mean; CellProfiler
reports the directions separately as 00..03). A compartment with no pair at any angle gets 0.

Feature count for 5 channels, ``texture_distances=(3,)``, ``granularity_scales=(1, 2, 3)``:
62 AreaShape + 140 Intensity + 10 Correlation + 15 Granularity + 40 RadialDistribution + 50
Texture = 317.

Code: this module holds the public API and the per-cell assembly; the feature groups live in
private modules, ``_classical_shape`` (AreaShape), ``_classical_intensity`` (Intensity,
Correlation, Granularity, RadialDistribution) and ``_classical_texture`` (Texture).

Performance: each cell is measured on the bounding box of its mask, channels vectorised with
numpy (no per-channel ``regionprops``): about 3 ms per 128x128 simulated cell on one core
(~330 cells/s; ~1,500-pixel cells).

Example:
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64] - 32
    >>> masks = np.where(yy**2 + xx**2 <= 20**2, 2, 0).astype(np.uint8)
    >>> masks[yy**2 + xx**2 <= 8**2] = 1
    >>> crops = np.ones((1, 5, 64, 64), dtype=np.float32)
    >>> table = classical_features(crops, masks[None])
    >>> list(table.columns) == feature_names()
    True
    >>> float(table.loc[0, "Nuclei_AreaShape_Area"]) == float(np.count_nonzero(masks == 1))
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from morphoflow.profiling._classical_intensity import (
    _RADIAL_FEATURES,
    INTENSITY_FEATURES,
    RADIAL_BINS,
    _channel_correlations,
    _granularity,
    _intensity_stats,
    _mass_displacement,
    _radial_distribution,
)
from morphoflow.profiling._classical_shape import (
    _N_SHAPE,
    SHAPE_FEATURES,
    ZERNIKE_DEGREE,
    _shape_features,
)
from morphoflow.profiling._classical_texture import (
    TEXTURE_FEATURES,
    TEXTURE_LEVELS,
    TEXTURE_PERCENTILES,
    _texture,
)
from morphoflow.screen.constants import CHANNELS

__all__ = [
    "CLASSICAL_COMPARTMENTS",
    "INTENSITY_FEATURES",
    "RADIAL_BINS",
    "SHAPE_FEATURES",
    "SHAPE_OBJECTS",
    "TEXTURE_COMPARTMENTS",
    "TEXTURE_FEATURES",
    "TEXTURE_LEVELS",
    "TEXTURE_PERCENTILES",
    "ZERNIKE_DEGREE",
    "classical_features",
    "feature_names",
]

#: Compartments measured by :func:`classical_features` (CellProfiler object names).
CLASSICAL_COMPARTMENTS: tuple[str, ...] = ("Nuclei", "Cells", "Cytoplasm")

#: Objects with AreaShape features.
SHAPE_OBJECTS: tuple[str, ...] = ("Nuclei", "Cells")

#: Compartments with Texture features.
TEXTURE_COMPARTMENTS: tuple[str, ...] = ("Nuclei", "Cytoplasm")


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def feature_names(
    texture_distances: Sequence[int] = (3,),
    granularity_scales: Sequence[int] = (1, 2, 3),
    *,
    channels: Sequence[str] = CHANNELS,
) -> list[str]:
    """Return the exact column list of :func:`classical_features` for these arguments.

    The order is fixed (AreaShape, Intensity, Correlation, Granularity, RadialDistribution,
    Texture; see the module docstring) and depends only on the arguments.

    Args:
        texture_distances: GLCM distances in pixels (distinct positive ints).
        granularity_scales: Opening radii in pixels (strictly increasing positive ints).
        channels: Channel names, in the order of the crops' channel axis.

    Returns:
        Feature column names.

    Raises:
        ValueError: An argument is invalid (its name is in the message).
    """
    distances = _check_distances(texture_distances)
    scales = _check_scales(granularity_scales)
    chans = _check_channels(channels)
    names: list[str] = []
    for obj in SHAPE_OBJECTS:
        names += [f"{obj}_AreaShape_{f}" for f in SHAPE_FEATURES]
    for comp in CLASSICAL_COMPARTMENTS:
        for f in INTENSITY_FEATURES:
            names += [f"{comp}_Intensity_{f}_{ch}" for ch in chans]
    names += [f"Cells_Intensity_MassDisplacement_{ch}" for ch in chans]
    for a in range(len(chans)):
        for b in range(a + 1, len(chans)):
            names.append(f"Cells_Correlation_Correlation_{chans[a]}_{chans[b]}")
    for ch in chans:
        names += [f"Cells_Granularity_{s}_{ch}" for s in scales]
    for f in _RADIAL_FEATURES:
        for ch in chans:
            names += [
                f"Cells_RadialDistribution_{f}_{ch}_{k}of{RADIAL_BINS}"
                for k in range(1, RADIAL_BINS + 1)
            ]
    for comp in TEXTURE_COMPARTMENTS:
        for f in TEXTURE_FEATURES:
            for ch in chans:
                names += [f"{comp}_Texture_{f}_{ch}_{d}_00" for d in distances]
    return names


def classical_features(
    crops: np.ndarray,
    masks: np.ndarray,
    texture_distances: Sequence[int] = (3,),
    granularity_scales: Sequence[int] = (1, 2, 3),
    *,
    channels: Sequence[str] = CHANNELS,
) -> pd.DataFrame:
    """Measure CellProfiler-like features of single-cell crops.

    Args:
        crops: ``(N, C, H, W)`` real array of intensities, channels in ``channels`` order.
        masks: ``(N, H, W)`` integer array: 0 = not this cell, 1 = nucleus, 2 = cytoplasm.
        texture_distances: GLCM distances in pixels (distinct positive ints).
        granularity_scales: Opening radii in pixels (strictly increasing positive ints).
        channels: Channel names, in the order of the crops' channel axis.

    Returns:
        Float64 DataFrame, one row per cell in input order (index ``0..N-1``), columns
        :func:`feature_names` (feature columns only, no ``Metadata_``). Never NaN or inf.

    Raises:
        ValueError: ``crops``, ``masks`` or another argument has a bad shape, type or value
            (non-finite intensities inside a cell included); the message names it.
    """
    distances = _check_distances(texture_distances)
    scales = _check_scales(granularity_scales)
    chans = _check_channels(channels)
    crops_arr, masks_arr = _check_inputs(crops, masks, len(chans))
    names = feature_names(distances, scales, channels=chans)
    out = np.zeros((crops_arr.shape[0], len(names)), dtype=np.float64)
    centre = (crops_arr.shape[2] // 2, crops_arr.shape[3] // 2)
    for i in range(crops_arr.shape[0]):
        out[i] = _cell_features(i, crops_arr[i], masks_arr[i], distances, scales, centre)
    return pd.DataFrame(out, columns=names)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_int_sequence(values: Sequence[int], name: str) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(f"{name} must be a sequence of positive ints, got {values!r}")
    result = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"{name} must be a sequence of positive ints, got {values!r}")
        result.append(int(v))
    if not result:
        raise ValueError(f"{name} must not be empty")
    return tuple(result)


def _check_distances(values: Sequence[int]) -> tuple[int, ...]:
    distances = _check_int_sequence(values, "texture_distances")
    if len(set(distances)) != len(distances):
        raise ValueError(f"texture_distances must be distinct, got {values!r}")
    return distances


def _check_scales(values: Sequence[int]) -> tuple[int, ...]:
    scales = _check_int_sequence(values, "granularity_scales")
    if any(b <= a for a, b in zip(scales, scales[1:], strict=False)):
        raise ValueError(f"granularity_scales must be strictly increasing, got {values!r}")
    return scales


def _check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(channels, str) or not all(isinstance(c, str) and c for c in channels):
        raise ValueError(f"channels must be a sequence of non-empty names, got {channels!r}")
    chans = tuple(channels)
    if not chans or len(set(chans)) != len(chans):
        raise ValueError(f"channels must be distinct and not empty, got {channels!r}")
    return chans


def _check_inputs(
    crops: np.ndarray, masks: np.ndarray, n_channels: int
) -> tuple[np.ndarray, np.ndarray]:
    crops_arr = np.asarray(crops)
    masks_arr = np.asarray(masks)
    if crops_arr.ndim != 4 or crops_arr.shape[1] != n_channels:
        raise ValueError(
            f"crops must have shape (N, {n_channels}, H, W) (one plane per channel), "
            f"got {crops_arr.shape}"
        )
    if not (
        np.issubdtype(crops_arr.dtype, np.floating) or np.issubdtype(crops_arr.dtype, np.integer)
    ):
        raise ValueError(f"crops must hold real numbers, got dtype {crops_arr.dtype}")
    if min(crops_arr.shape[2:]) < 1:
        raise ValueError(f"crops must have non-empty planes, got {crops_arr.shape}")
    expected = (crops_arr.shape[0], *crops_arr.shape[2:])
    if masks_arr.shape != expected:
        raise ValueError(f"masks must have shape {expected} to match crops, got {masks_arr.shape}")
    if masks_arr.dtype == bool or not np.issubdtype(masks_arr.dtype, np.integer):
        raise ValueError(f"masks must be integer (0, 1, 2), got dtype {masks_arr.dtype}")
    if masks_arr.size and (masks_arr.min() < 0 or masks_arr.max() > 2):
        raise ValueError(
            "masks values must be 0 (not this cell), 1 (nucleus) or 2 (cytoplasm), "
            f"got values in [{masks_arr.min()}, {masks_arr.max()}]"
        )
    return crops_arr, masks_arr


# --------------------------------------------------------------------------------------------
# One cell
# --------------------------------------------------------------------------------------------


def _cell_features(
    index: int,
    crop: np.ndarray,
    mask: np.ndarray,
    distances: tuple[int, ...],
    scales: tuple[int, ...],
    centre: tuple[int, int],
) -> np.ndarray:
    """All features of one cell, in :func:`feature_names` order."""
    n_ch = crop.shape[0]
    cell_full = mask > 0
    rows = np.flatnonzero(cell_full.any(axis=1))
    cols = np.flatnonzero(cell_full.any(axis=0))
    n_pairs = n_ch * (n_ch - 1) // 2
    sizes = (
        2 * _N_SHAPE,
        3 * len(INTENSITY_FEATURES) * n_ch + n_ch,
        n_pairs,
        n_ch * len(scales),
        2 * n_ch * RADIAL_BINS,
        2 * len(TEXTURE_FEATURES) * n_ch * len(distances),
    )
    if rows.size == 0:
        return np.zeros(sum(sizes))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    labels = mask[r0:r1, c0:c1]
    image = crop[:, r0:r1, c0:c1].astype(np.float64)
    cell = labels > 0
    nucleus = labels == 1

    values = image[:, cell]  # (C, n) in row-major pixel order
    if not np.isfinite(values).all():
        raise ValueError(f"crops[{index}] has non-finite intensities inside the cell")
    ys, xs = np.nonzero(cell)
    ys = ys.astype(np.float64)
    xs = xs.astype(np.float64)
    in_nucleus = labels[cell] == 1

    parts: list[np.ndarray] = [
        _shape_features(nucleus),
        _shape_features(cell),
    ]

    # Intensity: Nuclei, Cells, Cytoplasm (+ MassDisplacement of Cells).
    nuc_sorted = np.sort(values[:, in_nucleus], axis=1)
    cyto_sorted = np.sort(values[:, ~in_nucleus], axis=1)
    cell_sorted = np.sort(values, axis=1)
    parts += [
        _intensity_stats(nuc_sorted),
        _intensity_stats(cell_sorted),
        _intensity_stats(cyto_sorted),
    ]
    positive = np.maximum(values, 0.0)
    parts.append(_mass_displacement(positive, ys, xs))

    parts.append(_channel_correlations(values))
    parts.append(_granularity(np.maximum(image, 0.0), cell, scales))

    if in_nucleus.any():
        cy, cx = ys[in_nucleus].mean(), xs[in_nucleus].mean()
    else:
        cy, cx = centre[0] - r0, centre[1] - c0
    parts.append(_radial_distribution(positive, cell, ys, xs, (cy, cx)))

    parts.append(
        _texture(
            image, labels, (nuc_sorted, cyto_sorted), (in_nucleus, ~in_nucleus), cell, distances
        )
    )
    result = np.concatenate([p.ravel() for p in parts])
    return np.nan_to_num(result, nan=0.0, posinf=0.0, neginf=0.0)
