"""Classical single-cell features with CellProfiler's names *and* CellProfiler's definitions.

Every column is named ``<Compartment>_<Group>_<Feature>[_<Ch>...]`` exactly as CellProfiler 4
names it (pycytominer convention), and means what CellProfiler computes under that name: the
values come from `cp_measure <https://github.com/afermg/cp_measure>`_ 0.3.0 (the Carpenter-Singh
lab's library of CellProfiler's measurement modules) with CellProfiler's module defaults, except
where morphoflow's own vectorised code is faster and verified equal to cp_measure
(:data:`OWN_CODE_FEATURES`: Pearson correlation and slope, RadialDistribution, the default
set's Texture, and Granularity's image chain shared by the compartments;
``tests/profiling/test_classical_cellprofiler.py``, ``benchmarks/classical_cellprofiler.py``).

Sources (CellProfiler 4 module, setting): AreaShape = MeasureObjectSizeShape ("Calculate the
Zernike features?" Yes, "Calculate the advanced features?" Yes); Intensity =
MeasureObjectIntensity; Correlation = MeasureColocalization (Correlation, Slope, Manders, RWC;
threshold 15 %); Granularity = MeasureGranularity; RadialDistribution =
MeasureObjectIntensityDistribution (no centre objects, scaled bins); Texture = MeasureTexture
(Haralick features of mahotas, as CellProfiler).

Objects are measured **whole, in the site's labels and pixels** (:func:`site_features`): a cell
larger than a CNN crop is measured in full. :func:`classical_features` keeps the crop interface
for stored crops (each crop is measured as its own small site, so an object cut by its crop is
measured as cut; the profiling pipeline measures sites).

Compartments (:data:`CLASSICAL_COMPARTMENTS`)
---------------------------------------------
``Nuclei`` = the nucleus labels; ``Cells`` = the cell labels (cell k carries the label of
nucleus k); ``Cytoplasm`` = the cell minus every nucleus pixel (IdentifyTertiaryObjects with
"Shrink smaller object prior to subtraction" = No). A compartment an object lacks (e.g. no
cytoplasm) gets NaN for its features, as CellProfiler writes them.

Pixel scaling
-------------
CellProfiler reads an integer image as ``value / max of its dtype`` (NamesAndTypes' default:
uint16 / 65535, uint8 / 255) and measures in [0, 1]; morphoflow does the same
(``intensity_scale``; the pipeline passes ``1 / 65535`` for 16-bit screens and ``1 / 255`` after
8-bit compression). **12-bit data stored as uint16** (most cameras, morphoflow's simulator) thus
spans [0, 4095 / 65535 = 0.0625]: intensities are 16x smaller than the camera's full scale and
MeasureTexture's 256 grey levels of [0, 1] leave only 16 levels to such an image, exactly as in
CellProfiler with its default settings. Texture clips pixels to [0, 1] before quantising
(illumination-corrected values can exceed 1).

Settings (:data:`SETTINGS`; CellProfiler 4 module defaults unless stated)
-----------------------------------------------------------------------
MeasureTexture scale 3, 256 grey levels; MeasureGranularity subsampling 0.25, background
subsampling 0.25, element radius 10, spectrum length 16 (the default set keeps the first 3
values, identical to the first 3 of 16); MeasureObjectIntensityDistribution 4 scaled bins,
centred on each object's point farthest from its edge (no centre objects); MeasureColocalization
threshold 15 % of the maximum (Manders, RWC); Zernike degree 9; MeasureObjectIntensity quartiles
with CellProfiler's ``n * q`` position convention (cp_measure ``legacy=True``).

Feature sets (``features.set``; :func:`feature_names`)
------------------------------------------------------
**default** (315 columns for 5 channels; the earlier set had 317):

* ``{Nuclei,Cells}_AreaShape_<F>`` (MeasureObjectSizeShape, 25 per object): Area, Perimeter,
  FormFactor (4 pi Area / Perimeter^2), Compactness (Perimeter^2 / (4 pi Area), CellProfiler
  4), Eccentricity, Solidity, Extent, Major/MinorAxisLength, EquivalentDiameter, ConvexArea,
  BoundingBoxArea, EulerNumber, Maximum/Mean/MedianRadius, Min/MaxFeretDiameter,
  HuMoment_0..6.
* ``{Nuclei,Cells,Cytoplasm}_Intensity_<F>_<Ch>`` (MeasureObjectIntensity, 10 per compartment
  and channel): Integrated, Mean, Std, Min, Max, LowerQuartile, Median, UpperQuartile, MAD
  intensity and MassDisplacement (pixels).
* ``Cells_Correlation_Correlation_<ChA>_<ChB>`` (MeasureColocalization, Pearson; own code).
* ``Cells_Granularity_<1..3>_<Ch>`` (MeasureGranularity, percent of the starting mean).
* ``Cells_RadialDistribution_{FracAtD,MeanFrac}_<Ch>_<k>of4``
  (MeasureObjectIntensityDistribution).
* ``{Nuclei,Cytoplasm}_Texture_<F>_<Ch>_3_00_256`` (MeasureTexture, direction 00 = horizontal
  pairs): AngularSecondMoment, Contrast, Correlation, InverseDifferenceMoment, Entropy.

**extended** (opt-in, 1,848 columns for 5 channels): every compartment for AreaShape
(all non-positional MeasureObjectSizeShape features incl. moments, inertia tensor, Zernike up to
degree 9), Intensity (+ the 5 edge features), Correlation (Correlation, Slope, Manders and RWC
both ways), Granularity (the 16-value spectrum) and Texture (13 Haralick features x 4
directions); RadialDistribution (+ RadialCV) on Nuclei and Cells.

Left out of both: position features (Location_*, Center_*, BoundingBox minimum/maximum,
MaxIntensity location), Costes colocalisation (slow, and its thresholds depend on the image's
bit depth), radial Zernike moments, neighbour measurements (MeasureObjectNeighbors) and
image-level measurements.

Every table made with these features records ``Metadata_FeatureSet`` =
``"<FEATURE_SET_VERSION>:<set>"`` (e.g. ``"cp4-v2:default"``); the earlier crop-based
definitions (16 per-object grey levels, own granularity, nucleus-centred radial bins, crop-cut
areas) were version 1 and are not comparable.

Example:
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64] - 32
    >>> cells = (yy**2 + xx**2 <= 20**2).astype(np.int32)
    >>> nuclei = (yy**2 + xx**2 <= 8**2).astype(np.int32)
    >>> image = np.full((5, 64, 64), 1000, dtype=np.float32)
    >>> table = site_features(image, nuclei, cells)
    >>> list(table.columns) == feature_names()
    True
    >>> int(table.loc[1, "Cells_AreaShape_Area"]) == int(cells.sum())
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from morphoflow.profiling import _classical_site
from morphoflow.profiling._classical_settings import (
    COMPARTMENTS,
    FEATURE_SET_VERSION,
    FEATURE_SETS,
    SETTINGS,
    CellProfilerSettings,
)
from morphoflow.screen.constants import CHANNELS

__all__ = [
    "CLASSICAL_COMPARTMENTS",
    "FEATURE_SETS",
    "FEATURE_SET_COLUMN",
    "FEATURE_SET_VERSION",
    "OWN_CODE_FEATURES",
    "SETTINGS",
    "CellProfilerSettings",
    "ClassicalExtractor",
    "classical_extractor",
    "classical_features",
    "feature_names",
    "feature_set_id",
    "intensity_scale_for",
    "site_features",
]

#: Compartments measured (CellProfiler object names).
CLASSICAL_COMPARTMENTS: tuple[str, ...] = COMPARTMENTS

#: (group, feature) pairs that morphoflow computes with its own code (every other feature is
#: cp_measure's); each is verified equal to cp_measure in tests/profiling/.
OWN_CODE_FEATURES: frozenset[tuple[str, str]] = frozenset(
    {("Correlation", "Correlation"), ("Correlation", "Slope")}
    | {
        # cp_measure's steps, the image chain shared by the compartments
        ("Granularity", str(k))
        for k in range(1, 17)
    }
    | {
        ("RadialDistribution", "FracAtD"),
        ("RadialDistribution", "MeanFrac"),
        ("RadialDistribution", "RadialCV"),
        # default set only (direction 00); the extended set's Texture is cp_measure's
        ("Texture", "AngularSecondMoment"),
        ("Texture", "Contrast"),
        ("Texture", "Correlation"),
        ("Texture", "InverseDifferenceMoment"),
        ("Texture", "Entropy"),
    }
)

#: Metadata column that records the feature set of a table.
FEATURE_SET_COLUMN = "Metadata_FeatureSet"


def feature_set_id(feature_set: str = "default") -> str:
    """The ``Metadata_FeatureSet`` value of a set, e.g. ``"cp4-v2:default"``.

    Raises:
        ValueError: ``feature_set`` is not one of :data:`FEATURE_SETS`.
    """
    return f"{FEATURE_SET_VERSION}:{_check_set(feature_set)}"


def intensity_scale_for(dtype: np.dtype | type) -> float:
    """CellProfiler's scale for an image stored with ``dtype``: 1 / max for integers, 1 for
    floats (NamesAndTypes' default rescaling).

    Example:
        >>> intensity_scale_for(np.uint16) == 1 / 65535
        True
    """
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        return 1.0 / float(np.iinfo(dt).max)
    return 1.0


def feature_names(feature_set: str = "default", *, channels: Sequence[str] = CHANNELS) -> list[str]:
    """The exact, ordered column list of a feature set (see the module docstring).

    Args:
        feature_set: ``"default"`` or ``"extended"``.
        channels: Channel names in the order of the image's channel axis.

    Returns:
        Feature column names (no ``Metadata_``).

    Raises:
        ValueError: ``feature_set`` or ``channels`` is invalid (named in the message).
    """
    return _classical_site.feature_names(_check_set(feature_set), _check_channels(channels))


def site_features(
    image: np.ndarray,
    nuclei: np.ndarray,
    cells: np.ndarray,
    objects: Sequence[int] | np.ndarray | None = None,
    *,
    feature_set: str = "default",
    channels: Sequence[str] = CHANNELS,
    intensity_scale: float = 1.0 / 65535.0,
) -> pd.DataFrame:
    """Measure the classical features of every object of one site, whole.

    Args:
        image: ``(C, H, W)`` real intensities (raw counts or illumination-corrected), channels
            in ``channels`` order.
        nuclei: ``(H, W)`` integer nucleus labels, 0 = background.
        cells: ``(H, W)`` integer cell labels; cell k carries the label of its nucleus k.
        objects: Labels to measure, in output row order; default = every nucleus label.
        feature_set: ``"default"`` or ``"extended"``.
        channels: Channel names.
        intensity_scale: Multiplies the intensities first (CellProfiler's scaling: 1 / 65535
            for uint16 data; see :func:`intensity_scale_for` and the module docstring).

    Returns:
        Float64 DataFrame indexed by the object labels (index name ``ObjectNumber``), columns
        :func:`feature_names`. A feature CellProfiler leaves undefined (an absent compartment,
        texture of an object with no pixel pair at scale 3, a correlation within a one-pixel
        object) is NaN; a correlation with a channel that is flat in the object is 0 up to
        rounding (CellProfiler's ``numpy.corrcoef`` gives the same).

    Raises:
        ValueError: A bad shape, dtype or value; the message names the argument.
    """
    fs = _check_set(feature_set)
    chans = _check_channels(channels)
    img, nuc, cel, objs = _check_site(image, nuclei, cells, objects, len(chans))
    if not (np.isfinite(intensity_scale) and intensity_scale > 0):
        raise ValueError(f"intensity_scale must be a positive number, got {intensity_scale!r}")
    names = _classical_site.feature_names(fs, chans)
    if objs.size == 0:
        values = np.zeros((0, len(names)))
    else:
        inside = (nuc > 0) | (cel > 0)
        finite = np.isfinite(img[:, inside]).all(axis=1)
        if not finite.all():
            bad = [chans[c] for c in np.flatnonzero(~finite)]
            raise ValueError(
                f"image has non-finite intensities inside an object in channel(s) {bad}"
            )
        values = _classical_site.measure_site(
            np.where(np.isfinite(img), img, 0.0), nuc, cel, objs, fs, chans, float(intensity_scale)
        )
    index = pd.Index(objs, name="ObjectNumber")
    return pd.DataFrame(values, index=index, columns=names, dtype=np.float64)


class ClassicalExtractor:
    """The ``classical`` feature extractor of the profiling pipeline.

    Two entry points, the same definitions:

    * :meth:`site_features` (``profile_sites`` calls it when present): whole objects in the
      site's labels.
    * ``__call__(crops, masks)``: the crop interface of ``Extractor`` (stored crops). The crops
      are tiled into one mosaic and each is measured as its own object (mask 1 = nucleus,
      > 0 = cell); an object cut by its crop is measured as cut.

    Attributes:
        feature_set: ``"default"`` or ``"extended"``.
        feature_set_id: The ``Metadata_FeatureSet`` value of its tables.
    """

    def __init__(self, feature_set: str = "default", *, channels: Sequence[str] = CHANNELS):
        self.feature_set = _check_set(feature_set)
        self.channels = _check_channels(channels)
        self.feature_set_id = feature_set_id(self.feature_set)

    def __repr__(self) -> str:
        return f"ClassicalExtractor(feature_set={self.feature_set!r})"

    def feature_names(self) -> list[str]:
        """Column names of this extractor's tables."""
        return feature_names(self.feature_set, channels=self.channels)

    def site_features(
        self,
        image: np.ndarray,
        nuclei: np.ndarray,
        cells: np.ndarray,
        objects: Sequence[int] | np.ndarray | None = None,
        *,
        intensity_scale: float = 1.0 / 65535.0,
    ) -> pd.DataFrame:
        """:func:`site_features` with this extractor's set and channels (same arguments)."""
        return site_features(
            image,
            nuclei,
            cells,
            objects,
            feature_set=self.feature_set,
            channels=self.channels,
            intensity_scale=intensity_scale,
        )

    def __call__(
        self, crops: np.ndarray, masks: np.ndarray, *, intensity_scale: float = 1.0 / 65535.0
    ) -> pd.DataFrame:
        """Features of single-cell crops, one row per crop (index ``0..N-1``).

        Args:
            crops: ``(N, C, S, S)`` real intensities.
            masks: ``(N, S, S)`` integers: 0 = not this cell, 1 = its nucleus, 2 = its cytoplasm.
            intensity_scale: As in :func:`site_features`.

        Raises:
            ValueError: ``crops`` or ``masks`` has a bad shape, dtype or values.
        """
        crops_arr, masks_arr = _check_crops(crops, masks, len(self.channels))
        n = crops_arr.shape[0]
        names = self.feature_names()
        if n == 0:
            return pd.DataFrame(np.zeros((0, len(names))), columns=names)
        for i in range(n):
            if not np.isfinite(crops_arr[i][:, masks_arr[i] > 0]).all():
                raise ValueError(f"crops[{i}] has non-finite intensities inside the cell")
        side = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / side))
        _, c, h, w = crops_arr.shape
        image = np.zeros((c, rows * h, side * w), np.float64)
        nuclei = np.zeros((rows * h, side * w), np.int32)
        cells = np.zeros_like(nuclei)
        for i in range(n):
            r, q = divmod(i, side)
            sl = (slice(r * h, (r + 1) * h), slice(q * w, (q + 1) * w))
            image[(slice(None), *sl)] = np.where(np.isfinite(crops_arr[i]), crops_arr[i], 0.0)
            nuclei[sl] = np.where(masks_arr[i] == 1, i + 1, 0)
            cells[sl] = np.where(masks_arr[i] > 0, i + 1, 0)
        table = self.site_features(
            image, nuclei, cells, np.arange(1, n + 1), intensity_scale=intensity_scale
        )
        return table.reset_index(drop=True)


def classical_extractor(feature_set: str = "default") -> ClassicalExtractor:
    """The classical extractor of a feature set (what ``features.set`` selects).

    Raises:
        ValueError: ``feature_set`` is not one of :data:`FEATURE_SETS`.
    """
    return ClassicalExtractor(feature_set)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_set(feature_set: str) -> str:
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature_set must be one of {FEATURE_SETS}, got {feature_set!r}")
    return str(feature_set)


def _check_channels(channels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(channels, str) or not all(isinstance(c, str) and c for c in channels):
        raise ValueError(f"channels must be a sequence of non-empty names, got {channels!r}")
    chans = tuple(channels)
    if not chans or len(set(chans)) != len(chans):
        raise ValueError(f"channels must be distinct and not empty, got {channels!r}")
    bad = [c for c in chans if "_" in c or any(ch.isspace() for ch in c)]
    if bad:
        raise ValueError(
            f"channels must not contain '_' or spaces (feature names split on '_'): {bad}"
        )
    return chans


#: The largest label accepted (cp_measure and scikit-image work on int32 labels).
_LABEL_MAX = int(np.iinfo(np.int32).max)


def _check_labels(labels: np.ndarray, name: str, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer label image, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (the image's H, W), got {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name} must not hold negative labels (min {arr.min()})")
    if arr.size and arr.max() > _LABEL_MAX:
        raise ValueError(f"{name} holds label {arr.max()}, above the int32 maximum {_LABEL_MAX}")
    return arr.astype(np.int64, copy=False)


def _check_site(
    image: np.ndarray,
    nuclei: np.ndarray,
    cells: np.ndarray,
    objects: Sequence[int] | np.ndarray | None,
    n_channels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[0] != n_channels:
        raise ValueError(
            f"image must have shape ({n_channels}, H, W) (one plane per channel), got {img.shape}"
        )
    if not (np.issubdtype(img.dtype, np.floating) or np.issubdtype(img.dtype, np.integer)):
        raise ValueError(f"image must hold real numbers, got dtype {img.dtype}")
    nuc = _check_labels(nuclei, "nuclei", img.shape[1:])
    cel = _check_labels(cells, "cells", img.shape[1:])
    if objects is None:
        objs = np.flatnonzero(np.bincount(nuc.ravel()))
        objs = objs[objs > 0]
    else:
        objs = np.asarray(objects)
        if objs.ndim != 1 or (objs.size and not np.issubdtype(objs.dtype, np.integer)):
            raise ValueError(f"objects must be a 1-D sequence of labels, got {objects!r}")
        if objs.size and (objs.min() < 1 or len(np.unique(objs)) != objs.size):
            raise ValueError("objects must be distinct positive labels")
    return img, nuc, cel, objs.astype(np.int64)


def _check_crops(
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


#: The default-set extractor (crop interface and :meth:`~ClassicalExtractor.site_features`).
classical_features = ClassicalExtractor("default")
