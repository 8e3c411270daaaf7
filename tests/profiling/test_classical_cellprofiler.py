"""The classical extractor against cp_measure (CellProfiler's measurements) on a simulated site.

Every feature named like a CellProfiler measurement must agree with cp_measure 0.3.0 run
directly on the same labels and pixels: Spearman >= 0.99 and median relative difference
<= 1e-3 over the objects (absolute agreement within 1e-6 for a feature constant on them).
The oracle calls below name cp_measure's functions and CellProfiler's settings themselves, so
a wrong mapping (compartment, channel, direction, scaling, object order) fails here.
"""

from __future__ import annotations

import numpy as np
import pytest
from cp_measure.bulk import get_core_measurements, get_correlation_measurements
from scipy.stats import spearmanr

from morphoflow.profiling.cells import segment_cells
from morphoflow.profiling.classical import OWN_CODE_FEATURES, feature_names, site_features
from morphoflow.screen.constants import CHANNELS
from morphoflow.simulate.render import render_site

MIN_SPEARMAN = 0.99
MAX_MEDIAN_RELATIVE = 1e-3
CONSTANT_ATOL = 1e-6


@pytest.fixture(scope="module")
def site() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image, nuclei = render_site(11, size=256, n_cells=18)
    cells = segment_cells(image.astype(np.float32), nuclei.astype(np.int32))
    return image, nuclei.astype(np.int32), cells


def _oracle(image: np.ndarray, nuclei: np.ndarray, cells: np.ndarray, names: list[str]) -> dict:
    """cp_measure's value of every named feature, per nucleus label (sorted)."""
    core = get_core_measurements(legacy=True)  # sanitize=True: any labels
    corr = get_correlation_measurements()
    objects = np.unique(nuclei[nuclei > 0])
    masks = {
        "Nuclei": nuclei,
        "Cells": cells,
        "Cytoplasm": np.where(nuclei > 0, 0, cells),
    }
    pixels = image.astype(np.float64) / 65535.0  # CellProfiler reads uint16 as [0, 1]
    cache: dict[tuple, dict] = {}

    def run(comp: str, group: str, *channels: str) -> tuple[dict, np.ndarray]:
        key = (comp, group, *channels)
        labels = masks[comp]
        present = np.unique(labels[labels > 0])
        if key not in cache:
            px = [pixels[CHANNELS.index(ch)] for ch in channels]
            if group == "AreaShape":
                result = core["sizeshape"](labels, None) | core["feret"](labels, None)
                result |= core["zernike"](labels, None)
            elif group == "Intensity":
                result = core["intensity"](labels, px[0])
            elif group == "Granularity":
                result = core["granularity"](labels, px[0])  # 16 scales, subsampling 0.25
            elif group == "RadialDistribution":
                result = core["radial_distribution"](labels, px[0])  # 4 bins
            elif group == "Texture":
                result = core["texture"](labels, np.clip(px[0], 0, 1))  # scale 3, 256 levels
            elif group == "Correlation":
                result = corr["pearson"](px[0], px[1], labels)
                result |= corr["manders_fold"](px[0], px[1], labels)
                result |= corr["rwc"](px[0], px[1], labels)
            cache[key] = result
        return cache[key], present

    values = {}
    for name in names:
        comp, group, rest = name.split("_", 2)
        parts = rest.split("_")
        if group == "AreaShape":
            result, present = run(comp, group)
            key = rest
        elif group == "Intensity":
            result, present = run(comp, group, parts[-1])
            key = f"Intensity_{parts[0]}"
        elif group == "Granularity":
            result, present = run(comp, group, parts[1])
            key = f"Granularity_{parts[0]}"
        elif group == "RadialDistribution":
            result, present = run(comp, group, parts[1])
            key = f"RadialDistribution_{parts[0]}_{parts[2]}"
        elif group == "Texture":
            result, present = run(comp, group, parts[1])
            key = f"{parts[0]}_{'_'.join(parts[2:])}"
        elif group == "Correlation":
            feature, a, b = parts
            first, second = sorted((a, b), key=CHANNELS.index)
            result, present = run(comp, group, first, second)
            which = "1" if a == first else "2"
            key = {
                "Correlation": "Correlation_Pearson",
                "Slope": "Correlation_Slope",
                "Manders": f"Correlation_Manders_{which}",
                "RWC": f"Correlation_RWC_{which}",
            }[feature]
        out = np.full(objects.size, np.nan)
        out[np.searchsorted(objects, present)] = np.asarray(result[key], dtype=np.float64)
        values[name] = out
    return values


def _disagreements(ours: dict, oracle: dict) -> list[str]:
    bad = []
    for name, expected in oracle.items():
        got = ours[name]
        if not np.array_equal(np.isnan(got), np.isnan(expected)):
            bad.append(f"{name}: NaN in different objects")
            continue
        ok = ~np.isnan(expected)
        g, e = got[ok], expected[ok]
        if e.size == 0:
            continue
        if np.ptp(e) == 0 or np.ptp(g) == 0:
            if np.max(np.abs(g - e)) > CONSTANT_ATOL:
                bad.append(
                    f"{name}: constant {e[0]:.6g}, got up to {np.max(np.abs(g - e)):.3g} off"
                )
            continue
        rho = spearmanr(g, e).statistic
        rel = np.median(np.abs(g - e) / np.maximum(np.abs(e), 1e-12))
        if not (rho >= MIN_SPEARMAN and rel <= MAX_MEDIAN_RELATIVE):
            bad.append(f"{name}: Spearman {rho:.4f}, median relative difference {rel:.2e}")
    return bad


@pytest.mark.parametrize("feature_set", ["default", "extended"])
def test_every_feature_agrees_with_cp_measure(site, feature_set: str) -> None:
    image, nuclei, cells = site
    names = feature_names(feature_set)
    table = site_features(image, nuclei, cells, feature_set=feature_set)
    assert list(table.index) == sorted(np.unique(nuclei[nuclei > 0]))
    ours = {n: table[n].to_numpy() for n in names}
    oracle = _oracle(image, nuclei, cells, names)
    assert set(oracle) == set(names)
    bad = _disagreements(ours, oracle)
    assert not bad, f"{len(bad)} of {len(names)} features disagree: {bad[:10]}"
    # the features morphoflow computes with its own code are among those compared
    own = [n for n in names if tuple(n.split("_")[1:3]) in OWN_CODE_FEATURES]
    assert own, "no own-code feature was compared"


def test_the_comparison_can_fail(site) -> None:
    """The criterion catches a 1 % scaling error and a swapped channel."""
    image, nuclei, cells = site
    names = [f"Cells_Intensity_MeanIntensity_{ch}" for ch in CHANNELS]
    oracle = _oracle(image, nuclei, cells, names)
    assert not _disagreements(dict(oracle), oracle)
    # same ranks, not the same numbers: the relative-difference bound catches it ...
    assert len(_disagreements({n: v * 1.01 for n, v in oracle.items()}, oracle)) == len(names)
    # ... and a wrong channel breaks the ranks
    swapped = {n: oracle[names[(i + 1) % len(names)]] for i, n in enumerate(names)}
    assert _disagreements(swapped, oracle)
