"""Measure every object of one site: cp_measure, and own vectorised code where it is faster.

Private module of :mod:`morphoflow.profiling.classical` (which documents every feature).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np

from morphoflow.profiling._classical_fast import (
    granularity_chain,
    granularity_mean_operator,
    granularity_spectrum,
    radial_features,
    radial_geometry,
    texture_features,
    texture_pairs,
)
from morphoflow.profiling._classical_settings import (
    GROUP_COMPARTMENTS,
    INTENSITY_DEFAULT,
    INTENSITY_EDGE,
    RADIAL_ALL,
    RADIAL_DEFAULT,
    SETTINGS,
    SHAPE_DEFAULT,
    SHAPE_POSITIONAL_PREFIXES,
    TEXTURE_ALL,
    TEXTURE_DEFAULT,
)

_DIRECTIONS_2D = 4


def _cp_core() -> dict[str, Callable]:
    from cp_measure.bulk import get_core_measurements

    # legacy=True: CellProfiler's own quartile convention (position n * q, MAD as the
    # 1/ndim quantile of the absolute deviations) instead of cp_measure's numpy default
    return get_core_measurements(legacy=True, sanitize=False)


def _cp_correlation() -> dict[str, Callable]:
    from cp_measure.bulk import get_correlation_measurements

    return get_correlation_measurements(sanitize=False)


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------


@cache
def _extended_shape_features() -> tuple[str, ...]:
    """Every non-positional MeasureObjectSizeShape feature (2D), Feret and Zernike 0..9."""
    from cp_measure.core.measureobjectsizeshape import get_sizeshape

    probe = np.zeros((9, 9), np.int32)
    probe[2:7, 3:6] = 1
    keys = get_sizeshape(probe, None)
    # normalised moments of order < 2 are undefined (NaN for every object): left out
    undefined = ("NormalizedMoment_0_0", "NormalizedMoment_0_1", "NormalizedMoment_1_0")
    names = [k for k in keys if not k.startswith(SHAPE_POSITIONAL_PREFIXES) and k not in undefined]
    names += ["MinFeretDiameter", "MaxFeretDiameter"]
    names += [
        f"Zernike_{n}_{m}"
        for n in range(SETTINGS.zernike_degree + 1)
        for m in range(n + 1)
        if (n - m) % 2 == 0
    ]
    return tuple(names)


def _texture_suffixes(feature_set: str) -> list[str]:
    s, g = SETTINGS.texture_scale, SETTINGS.texture_gray_levels
    directions = range(1) if feature_set == "default" else range(_DIRECTIONS_2D)
    return [f"{s}_{d:02d}_{g}" for d in directions]


def _granularity_scales(feature_set: str) -> range:
    n = (
        SETTINGS.granularity_default_length
        if feature_set == "default"
        else SETTINGS.granularity_spectrum_length
    )
    return range(1, n + 1)


def _pairs(channels: Sequence[str]) -> list[tuple[int, int]]:
    return [(a, b) for a in range(len(channels)) for b in range(a + 1, len(channels))]


def feature_names(feature_set: str, channels: Sequence[str]) -> list[str]:
    """Column names of a feature set, in output order (see the classical module docstring)."""
    comps = GROUP_COMPARTMENTS[feature_set]
    extended = feature_set == "extended"
    names: list[str] = []
    shape = _extended_shape_features() if extended else SHAPE_DEFAULT
    for comp in comps["AreaShape"]:
        names += [f"{comp}_AreaShape_{f}" for f in shape]
    intensity = INTENSITY_DEFAULT + (INTENSITY_EDGE if extended else ())
    for comp in comps["Intensity"]:
        names += [f"{comp}_Intensity_{f}_{ch}" for f in intensity for ch in channels]
    for comp in comps["Correlation"]:
        for a, b in _pairs(channels):
            ca, cb = channels[a], channels[b]
            names.append(f"{comp}_Correlation_Correlation_{ca}_{cb}")
            if extended:
                names.append(f"{comp}_Correlation_Slope_{ca}_{cb}")
                names += [f"{comp}_Correlation_Manders_{ca}_{cb}"]
                names += [f"{comp}_Correlation_Manders_{cb}_{ca}"]
                names += [f"{comp}_Correlation_RWC_{ca}_{cb}"]
                names += [f"{comp}_Correlation_RWC_{cb}_{ca}"]
    for comp in comps["Granularity"]:
        names += [
            f"{comp}_Granularity_{k}_{ch}"
            for ch in channels
            for k in _granularity_scales(feature_set)
        ]
    radial = RADIAL_ALL if extended else RADIAL_DEFAULT
    bins = SETTINGS.radial_bins
    for comp in comps["RadialDistribution"]:
        names += [
            f"{comp}_RadialDistribution_{f}_{ch}_{k}of{bins}"
            for f in radial
            for ch in channels
            for k in range(1, bins + 1)
        ]
    texture = TEXTURE_ALL if extended else TEXTURE_DEFAULT
    for comp in comps["Texture"]:
        names += [
            f"{comp}_Texture_{f}_{ch}_{suffix}"
            for f in texture
            for ch in channels
            for suffix in _texture_suffixes(feature_set)
        ]
    return names


# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------


class _Compartment:
    """One compartment's labels relabelled to its present objects 1..M, and their rows."""

    def __init__(self, rows_plus_one: np.ndarray, n: int) -> None:
        counts = np.bincount(rows_plus_one.ravel(), minlength=n + 1)[1:]
        self.present = np.flatnonzero(counts)  # rows (0-based) of the objects it has
        self.n = n
        if self.present.size == n:
            self.labels = rows_plus_one
        else:
            lut = np.zeros(n + 1, np.int32)
            lut[self.present + 1] = np.arange(1, self.present.size + 1, dtype=np.int32)
            self.labels = lut[rows_plus_one]

    def scatter(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """(M,) values of the present objects -> (n,) with NaN for the absent ones."""
        out = np.full(self.n, np.nan)
        out[self.present] = np.asarray(values, dtype=np.float64)
        return out


def _pearson(
    pixels: np.ndarray, comp: _Compartment, pairs: list[tuple[int, int]]
) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """Per-object Pearson correlation and OLS slope of every channel pair, vectorised.

    The same numbers as cp_measure's ``get_correlation_pearson`` (``numpy.corrcoef`` and
    ``cov(ddof=1) / var(ddof=1)`` per object): sums of products over the label indices.
    """
    labels = comp.labels
    m = comp.present.size
    inside = labels > 0
    lab = labels[inside]
    count = np.bincount(lab, minlength=m + 1)[1:].astype(np.float64)
    values = pixels[:, inside]  # (C, n_px)
    sums = np.stack([np.bincount(lab, v, minlength=m + 1)[1:] for v in values])
    means = sums / count
    centred = values - means[:, lab - 1]
    out: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    var = np.stack([np.bincount(lab, c * c, minlength=m + 1)[1:] for c in centred])
    with np.errstate(invalid="ignore", divide="ignore"):
        for a, b in pairs:
            cov = np.bincount(lab, centred[a] * centred[b], minlength=m + 1)[1:]
            corr = np.clip(cov / np.sqrt(var[a] * var[b]), -1.0, 1.0)
            slope = cov / var[a]
            out[(a, b)] = (comp.scatter(corr), comp.scatter(slope))
    return out


# cp_measure divides by perimeters, areas and variances that are 0 for tiny objects
@np.errstate(divide="ignore", invalid="ignore", over="ignore")
def measure_site(
    image: np.ndarray,
    nuclei: np.ndarray,
    cells: np.ndarray,
    objects: np.ndarray,
    feature_set: str,
    channels: Sequence[str],
    intensity_scale: float,
    timings: dict[str, float] | None = None,
) -> np.ndarray:
    """(N, F) features of the objects, columns :func:`feature_names`; see the public API.

    ``timings``, when given, receives the seconds spent per feature group (added up).
    A division by zero (e.g. ``FormFactor`` of a 1-2 px object, whose perimeter is 0) gives
    NaN, never ``inf``, and no numpy warning.
    """
    core = _cp_core()
    clock = [time.perf_counter()]

    def tick(group: str) -> None:
        now = time.perf_counter()
        if timings is not None:
            timings[group] = timings.get(group, 0.0) + now - clock[0]
        clock[0] = now

    n = objects.size
    top = int(max(nuclei.max(initial=0), cells.max(initial=0), objects.max(initial=0)))
    lut = np.zeros(top + 1, np.int32)
    lut[objects] = np.arange(1, n + 1, dtype=np.int32)
    nuc_rows = lut[nuclei]
    cell_rows = lut[cells]
    cyto_rows = np.where(nuclei > 0, 0, cell_rows)
    comps = {
        "Nuclei": _Compartment(nuc_rows, n),
        "Cells": _Compartment(cell_rows, n),
        "Cytoplasm": _Compartment(cyto_rows, n),
    }
    divisor = 1.0 / intensity_scale
    if abs(divisor - round(divisor)) < 1e-6:  # value / (2^k - 1), exactly as CellProfiler
        pixels = image.astype(np.float64) / round(divisor)
    else:
        pixels = image.astype(np.float64) * intensity_scale
    # MeasureTexture quantises an image in [0, 1] (skimage.img_as_ubyte): clip to that range
    texture_pixels = np.clip(pixels, 0.0, 1.0)
    groups = GROUP_COMPARTMENTS[feature_set]
    extended = feature_set == "extended"
    tick("Setup")  # relabelling, scaling: no cp_measure counterpart per group
    columns: list[np.ndarray] = []
    nan = np.full(n, np.nan)

    def put(comp: _Compartment, result: dict[str, object], keys: Sequence[str]) -> None:
        for key in keys:
            columns.append(comp.scatter(result[key]) if comp.present.size else nan)

    # AreaShape
    shape = _extended_shape_features() if extended else SHAPE_DEFAULT
    for name in groups["AreaShape"]:
        comp = comps[name]
        if not comp.present.size:
            columns.extend([nan] * len(shape))
            continue
        result = dict(core["sizeshape"](comp.labels, None, calculate_advanced=True))
        result |= core["feret"](comp.labels, None)
        if extended:
            result |= core["zernike"](comp.labels, None, zernike_numbers=SETTINGS.zernike_degree)
        put(comp, result, shape)
    tick("AreaShape")

    # Intensity
    keys = [f"Intensity_{f}" for f in INTENSITY_DEFAULT + (INTENSITY_EDGE if extended else ())]
    for name in groups["Intensity"]:
        comp = comps[name]
        per_channel = [
            core["intensity"](comp.labels, pixels[c], edge_measurements=extended)
            if comp.present.size
            else {}
            for c in range(len(channels))
        ]
        for key in keys:
            for result in per_channel:
                columns.append(comp.scatter(result[key]) if comp.present.size else nan)
    tick("Intensity")

    # Correlation (Pearson: own code; Manders, RWC: cp_measure)
    pairs = _pairs(channels)
    corr = _cp_correlation() if extended else {}
    thr = SETTINGS.correlation_threshold
    for name in groups["Correlation"]:
        comp = comps[name]
        if not comp.present.size:
            columns.extend([nan] * (len(pairs) * (6 if extended else 1)))
            continue
        pearson = _pearson(pixels, comp, pairs)
        for a, b in pairs:
            r, slope = pearson[(a, b)]
            columns.append(r)
            if extended:
                columns.append(slope)
                manders = corr["manders_fold"](pixels[a], pixels[b], comp.labels, thr=thr)
                rwc = corr["rwc"](pixels[a], pixels[b], comp.labels, thr=thr)
                columns += [comp.scatter(manders[f"Correlation_Manders_{k}"]) for k in (1, 2)]
                columns += [comp.scatter(rwc[f"Correlation_RWC_{k}"]) for k in (1, 2)]
    tick("Correlation")

    # Granularity (own orchestration: the image chain once per channel, the per-object
    # operator once per compartment; cp_measure's steps)
    scales = _granularity_scales(feature_set)
    gran_comps = [comps[name] for name in groups["Granularity"]]
    operators = [
        granularity_mean_operator(comp.labels, SETTINGS.granularity_subsample)
        if comp.present.size
        else None
        for comp in gran_comps
    ]
    spectra: list[list[dict]] = [[] for _ in gran_comps]
    if gran_comps:
        for c in range(len(channels)):
            recs = granularity_chain(
                pixels[c],
                SETTINGS.granularity_subsample,
                SETTINGS.granularity_background_subsample,
                SETTINGS.granularity_element_size,
                len(scales),
            )
            for k, comp in enumerate(gran_comps):
                spectra[k].append(
                    granularity_spectrum(pixels[c], comp.labels, recs, operators[k])
                    if comp.present.size
                    else {}
                )
    for k, comp in enumerate(gran_comps):
        for c in range(len(channels)):
            if not comp.present.size:
                columns.extend([nan] * len(scales))
                continue
            put(comp, spectra[k][c], [f"Granularity_{s}" for s in scales])
    tick("Granularity")

    # RadialDistribution (own code: the label geometry once per compartment, not per channel)
    radial = RADIAL_ALL if extended else RADIAL_DEFAULT
    bins = SETTINGS.radial_bins
    for name in groups["RadialDistribution"]:
        comp = comps[name]
        if comp.present.size:
            geometry = radial_geometry(comp.labels, bins)
            per_channel = [radial_features(geometry, pixels[c]) for c in range(len(channels))]
        for f in radial:
            for c in range(len(channels)):
                for k in range(1, bins + 1):
                    key = f"RadialDistribution_{f}_{k}of{bins}"
                    columns.append(comp.scatter(per_channel[c][key]) if comp.present.size else nan)
    tick("RadialDistribution")

    # Texture (default set: own code for direction 00; extended: cp_measure, 13 x 4)
    texture = TEXTURE_ALL if extended else TEXTURE_DEFAULT
    suffixes = _texture_suffixes(feature_set)
    for name in groups["Texture"]:
        comp = comps[name]
        pairs = (
            texture_pairs(comp.labels, SETTINGS.texture_scale)
            if comp.present.size and not extended
            else None
        )
        per_channel = [
            (
                core["texture"](
                    comp.labels,
                    texture_pixels[c],
                    scale=SETTINGS.texture_scale,
                    gray_levels=SETTINGS.texture_gray_levels,
                )
                if extended
                else texture_features(pairs, texture_pixels[c], (0,))
            )
            if comp.present.size
            else {}
            for c in range(len(channels))
        ]
        for f in texture:
            for result in per_channel:
                for suffix in suffixes:
                    columns.append(
                        comp.scatter(result[f"{f}_{suffix}"]) if comp.present.size else nan
                    )
    tick("Texture")

    if not columns:
        return np.zeros((n, 0))
    values = np.stack(columns, axis=1)
    values[~np.isfinite(values)] = np.nan  # undefined values are NaN, as the docs say
    return values
