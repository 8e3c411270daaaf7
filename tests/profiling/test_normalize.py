"""Tests of profiling/normalize.py: standardisation, ZCA sphering, batch correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from morphoflow.profiling.normalize import (
    PlateStandardizer,
    Spherize,
    Standardize,
    batch_correct,
    feature_select,
    select_lambda,
)

SQRT2 = np.sqrt(2.0)


def _correlated(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) * np.linspace(0.1, 5.0, d)
    return rng.normal(size=(n, d)) @ mixing + rng.normal(scale=10.0, size=d)


def _cov(x: np.ndarray) -> np.ndarray:
    return np.cov(x, rowvar=False, ddof=1)


# --------------------------------------------------------------------------- Spherize


def test_spherize_whitens_the_controls_for_small_lambda() -> None:
    x = _correlated(2000, 6)
    assert np.abs(_cov(x) - np.diag(np.diag(_cov(x)))).max() > 1.0  # really correlated
    sph = Spherize(lam=1e-8).fit(x)
    z = sph.transform(x)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-9)
    # Exactly s / (s + lam_) on the controls' own eigenvalues: off by lam_ / s_min (~1e-5 here,
    # the smallest variance is ~1e-3 of the mean one); the sample size does not enter.
    np.testing.assert_allclose(_cov(z), np.eye(6), atol=1e-4)
    w = sph.whitening_matrix_
    np.testing.assert_array_equal(w, w.T)  # ZCA: symmetric
    np.testing.assert_allclose(z, (x - sph.mean_) @ w, atol=1e-9)


def test_spherize_larger_lambda_shrinks_less_towards_identity() -> None:
    x = _correlated(500, 5, seed=1)
    eig = np.linalg.eigvalsh(_cov(x))
    distances = []
    for lam in (1e-8, 1e-2, 1.0):
        sph = Spherize(lam=lam).fit(x)
        assert sph.lam_ == pytest.approx(lam * eig.mean())  # lam is relative to mean variance
        # Eigenvalues of the sphered controls' covariance are s / (s + lam_).
        got = np.linalg.eigvalsh(_cov(sph.transform(x)))
        np.testing.assert_allclose(got, eig / (eig + sph.lam_), rtol=1e-8)
        distances.append(np.abs(_cov(sph.transform(x)) - np.eye(5)).max())
    assert distances[0] < 1e-3 < distances[1] < distances[2]


def test_spherize_lambda_does_not_depend_on_feature_units() -> None:
    x = _correlated(50, 4, seed=2)
    for lam in (1.0, 1e-4):
        np.testing.assert_allclose(
            Spherize(lam=lam).fit(1e3 * x).transform(1e3 * x),
            Spherize(lam=lam).fit(x).transform(x),
            rtol=1e-7,
            atol=1e-9,
        )


def test_spherize_rank_deficient_controls_stay_finite() -> None:
    controls = _correlated(5, 20, seed=3)  # 5 controls, 20 features: rank 4
    others = _correlated(7, 20, seed=4)
    for lam in (1.0, 1e-8):
        sph = Spherize(lam=lam).fit(controls)
        z = sph.transform(others)
        w = sph.whitening_matrix_
        assert np.isfinite(z).all() and np.isfinite(w).all()
        np.testing.assert_allclose(w, w.T)
        np.testing.assert_allclose(z, (others - sph.mean_) @ w, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(sph.transform(controls).mean(axis=0), 0.0, atol=1e-6)


def test_spherize_without_centering_and_input_errors() -> None:
    x = _correlated(40, 3, seed=5)
    sph = Spherize(lam=1e-3, center=False).fit(x)
    np.testing.assert_allclose(sph.transform(x), x @ sph.whitening_matrix_, rtol=1e-9)
    with pytest.raises(ValueError, match="lam"):
        Spherize(lam=0.0).fit(x)
    with pytest.raises(ValueError, match="at least 2"):
        Spherize().fit(x[:1])
    with pytest.raises(ValueError, match="finite"):
        Spherize().fit(np.where(np.eye(40, 3) > 0, np.nan, x))
    with pytest.raises(ValueError, match="identical"):
        Spherize().fit(np.ones((4, 3)))


# --------------------------------------------------------------------------- standardisation


def test_standardize_zero_scale_becomes_one() -> None:
    x = np.array([[2.0, 5.0], [4.0, 5.0], [6.0, 5.0]])
    est = Standardize().fit(x)
    assert est.center_.tolist() == [4.0, 5.0]
    assert est.scale_.tolist() == [2.0, 1.0]
    assert est.zero_scale_.tolist() == [False, True]
    assert est.transform(np.array([[10.0, 7.0]])).tolist() == [[3.0, 2.0]]


def _plates() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Metadata_Source": ["s1"] * 8,
            "Metadata_Plate": ["p1"] * 4 + ["p2"] * 4,
            "Metadata_Well": ["A01", "A02", "A03", "B01"] * 2,
            "Metadata_Treatment": ["DMSO", "untreated", "DMSO", "drugA"] * 2,
            "Metadata_ControlType": ["negcon", "negcon", "negcon", ""] * 2,
            "f": [2.0, 4.0, 6.0, 10.0, 1.0, 1.0, 1.0, 5.0],
            "g": [10.0, 20.0, 30.0, 0.0, 1.0, 2.0, 4.0, 8.0],
        }
    )


def test_plate_standardizer_exact_per_plate() -> None:
    wells = _plates()
    out = PlateStandardizer().fit_transform(wells)
    # p1: f controls 2, 4, 6 -> mean 4, std 2; g controls 10, 20, 30 -> mean 20, std 10.
    # p2: f controls all 1 -> std 0 -> 1 (only centred); g controls 1, 2, 4 -> mean 7/3.
    assert out["f"].tolist() == [-1.0, 0.0, 1.0, 3.0, 0.0, 0.0, 0.0, 4.0]
    assert out["g"].tolist()[:4] == [-1.0, 0.0, 1.0, -2.0]
    g2 = np.array([1.0, 2.0, 4.0])
    np.testing.assert_allclose(
        out["g"].to_numpy()[4:], (np.array([1.0, 2.0, 4.0, 8.0]) - g2.mean()) / g2.std(ddof=1)
    )
    pd.testing.assert_frame_equal(out.drop(columns=["f", "g"]), wells.drop(columns=["f", "g"]))


def test_plate_standardizer_robust_and_unseen_plate() -> None:
    wells = _plates()
    est = PlateStandardizer(method="robust").fit(wells)
    out = est.transform(wells)
    # p2 g controls 1, 2, 4: median 2, MAD 1 -> scale 1.4826 (normal-consistent).
    np.testing.assert_allclose(out["g"].to_numpy()[4:], (np.array([1, 2, 4, 8]) - 2) / 1.482602218)
    with pytest.raises(ValueError, match="plate s1/p9 was not seen"):
        est.transform(wells.assign(Metadata_Plate="p9"))


# --------------------------------------------------------------------------- batch_correct


def _two_sources(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for source, offset in (("s1", 100.0), ("s2", -50.0)):
        n = 30
        frames.append(
            pd.DataFrame(
                {
                    "Metadata_Source": source,
                    "Metadata_Plate": [f"{source}-p{i % 2}" for i in range(n)],
                    "Metadata_ControlType": ["negcon"] * 12 + [""] * (n - 12),
                    "f": rng.normal(offset, 1.0, n),
                    "g": rng.normal(2 * offset, 3.0, n),
                    "h": rng.normal(0.0, 1.0, n),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("method", ["standardize", "robustize", "sphere"])
def test_batch_correct_per_source_centres_each_source(method: str) -> None:
    wells = _two_sources()
    out = batch_correct(wells, method=method, scope="source", lam=1e-6)  # type: ignore[arg-type]
    assert list(out.columns) == list(wells.columns) and out.index.equals(wells.index)
    ctrl = out[out["Metadata_ControlType"] == "negcon"]
    centre = np.median if method == "robustize" else np.mean
    for _, group in ctrl.groupby("Metadata_Source"):
        np.testing.assert_allclose(centre(group[["f", "g", "h"]].to_numpy(), axis=0), 0, atol=1e-9)
    # One fit over the screen leaves the sources far apart.
    screen = batch_correct(wells, method=method, scope="screen", lam=1e-6)  # type: ignore[arg-type]
    means = (
        screen[screen["Metadata_ControlType"] == "negcon"]
        .groupby("Metadata_Source")
        .mean(numeric_only=True)
    )
    assert np.linalg.norm(means.loc["s1"] - means.loc["s2"]) > 1.5


def test_batch_correct_sphere_equals_spherize_on_the_controls() -> None:
    wells = _two_sources(1)
    out = batch_correct(wells, method="sphere", scope="screen", lam=1e-2)
    x = wells[["f", "g", "h"]].to_numpy()
    sph = Spherize(lam=1e-2).fit(x[wells["Metadata_ControlType"].eq("negcon").to_numpy()])
    np.testing.assert_allclose(out[["f", "g", "h"]].to_numpy(), sph.transform(x), rtol=1e-12)


def test_batch_correct_group_without_controls_is_named() -> None:
    wells = _two_sources()
    wells.loc[wells["Metadata_Plate"] == "s2-p1", "Metadata_ControlType"] = ""
    with pytest.raises(ValueError, match=r"scope 'plate': group s2/s2-p1 has 0 control rows"):
        batch_correct(wells, method="sphere", scope="plate")
    batch_correct(wells, method="sphere", scope="source")  # s2 still has controls on p0


def test_batch_correct_validates_arguments() -> None:
    wells = _two_sources()
    assert batch_correct(wells, method="none").equals(wells)
    with pytest.raises(ValueError, match="method"):
        batch_correct(wells, method="zca")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scope"):
        batch_correct(wells, scope="well")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lam"):
        batch_correct(wells, lam=-1.0)
    with pytest.raises(ValueError, match="NaN/inf.*'h'"):
        batch_correct(wells.assign(h=np.where(wells.index == 3, np.inf, wells["h"])))
    with pytest.raises(ValueError, match="the screen has 0 control rows"):
        batch_correct(wells, control_query='Metadata_ControlType == "poscon"')


# --------------------------------------------------------------------------- feature_select


def test_feature_select_drops_constant_nonfinite_and_near_zero_variance() -> None:
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame(
        {
            "Metadata_Well": [f"w{i}" for i in range(n)],
            "good": rng.normal(size=n),
            "constant": np.full(n, 3.0),
            "has_nan": np.r_[np.nan, rng.normal(size=n - 1)],
            "has_inf": np.r_[rng.normal(size=n - 1), np.inf],
            "rare": np.r_[np.ones(n - 1), 0.0],  # second value 1/39 < freq_cut 0.05
            "good2": rng.normal(size=n),
        }
    )
    assert feature_select(df) == ["good", "good2"]
    assert feature_select(df, freq_cut=0.0) == ["good", "rare", "good2"]
    # Variance criteria on the controls only: "rare" is constant on the first 20 rows.
    mask = np.arange(n) < 20
    assert feature_select(df, controls_mask=mask, freq_cut=0.0) == ["good", "good2"]


def test_feature_select_correlation_drops_the_more_correlated_member() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=200)
    df = pd.DataFrame(
        {
            "a": a,
            "a_copy": a + rng.normal(scale=0.01, size=200),
            "a_negated": -a + rng.normal(scale=0.01, size=200),
            "b": rng.normal(size=200),
        }
    )
    assert feature_select(df) == ["a", "a_copy", "a_negated", "b"]
    kept = feature_select(df, correlation_threshold=0.9)
    assert "b" in kept and len(kept) == 2  # one of the three near-copies is left
    with pytest.raises(ValueError, match="correlation_threshold"):
        feature_select(df, correlation_threshold=1.5)
    with pytest.raises(ValueError, match="controls_mask"):
        feature_select(df, controls_mask=[1, 0])


# --------------------------------------------------------------------------- select_lambda


def test_select_lambda_scores_only_the_selection_rows() -> None:
    wells = _two_sources(2)
    lambdas = [1.0, 1e-2, 1e-4, 1e-8]
    selection = (wells["Metadata_ControlType"] == "").to_numpy() & (
        wells["Metadata_Source"] == "s1"
    ).to_numpy()
    target = batch_correct(wells, "sphere", "screen", 1e-2)[selection][["f", "g", "h"]]
    target_norm = float(np.linalg.norm(target.to_numpy()))
    seen: list[pd.Index] = []

    def score(rows: pd.DataFrame) -> float:
        seen.append(rows.index)
        # Best at lam = 1e-2 on the selection rows; any other row would change the norm.
        return -abs(float(np.linalg.norm(rows[["f", "g", "h"]].to_numpy())) - target_norm)

    best, table = select_lambda(wells, lambdas, score, selection)
    assert best == 1e-2
    assert table["lam"].tolist() == lambdas
    assert table["score"].iloc[1] == 0.0 and (table["score"].drop(1) < 0).all()
    assert all(index.equals(wells.index[selection]) for index in seen) and len(seen) == 4


def test_select_lambda_picks_the_best_score_and_breaks_ties_first() -> None:
    wells = _two_sources(3)
    selection = np.ones(len(wells), dtype=bool)
    best, table = select_lambda(wells, [1e-6, 1.0, 1e-3], lambda r: -r["f"].abs().sum(), selection)
    assert best == 1.0  # the most regularised shrinks the output most
    assert table.loc[table["score"].idxmax(), "lam"] == 1.0
    best, _ = select_lambda(wells, [1e-3, 1.0], lambda r: 1.0, selection)
    assert best == 1e-3
    with pytest.raises(ValueError, match="selection_mask"):
        select_lambda(wells, [1.0], lambda r: 1.0, np.zeros(len(wells), dtype=bool))
    with pytest.raises(ValueError, match="lambdas"):
        select_lambda(wells, [0.0], lambda r: 1.0, selection)
