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
from scipy.stats import spearmanr

from morphoflow.profiling._classical_fast import _haralick_dense, _haralick_sparse
from morphoflow.profiling._classical_reference import cp_measure_reference
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


@pytest.mark.parametrize(
    ("feature_set", "gain"),
    [("default", 1), ("extended", 1), ("default", 16)],
    ids=["default-12bit", "extended-12bit", "default-16bit"],
)
def test_every_feature_agrees_with_cp_measure(site, feature_set: str, gain: int) -> None:
    image, nuclei, cells = site
    # gain 16: the 12-bit data spread over the whole uint16 range (all 256 texture levels)
    image = (image.astype(np.uint32) * gain).clip(0, 65535).astype(np.uint16)
    names = feature_names(feature_set)
    table = site_features(image, nuclei, cells, feature_set=feature_set)
    assert list(table.index) == sorted(np.unique(nuclei[nuclei > 0]))
    ours = {n: table[n].to_numpy() for n in names}
    oracle = cp_measure_reference(image, nuclei, cells, names, CHANNELS)
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
    oracle = cp_measure_reference(image, nuclei, cells, names, CHANNELS)
    assert not _disagreements(dict(oracle), oracle)
    # same ranks, not the same numbers: the relative-difference bound catches it ...
    assert len(_disagreements({n: v * 1.01 for n, v in oracle.items()}, oracle)) == len(names)
    # ... and a wrong channel breaks the ranks
    swapped = {n: oracle[names[(i + 1) % len(names)]] for i, n in enumerate(names)}
    assert _disagreements(swapped, oracle)


def test_sparse_and_dense_glcm_paths_agree() -> None:
    rng = np.random.default_rng(3)
    n = 7
    obj = rng.integers(0, n, 5000)
    gi, gj = rng.integers(1, 256, 5000), rng.integers(1, 256, 5000)
    dense = _haralick_dense(obj, gi, gj, n, 256)
    sparse = _haralick_sparse(obj, gi, gj, n)
    for name in dense:
        np.testing.assert_allclose(sparse[name], dense[name], rtol=1e-10, err_msg=name)
