"""Evaluation metrics: hand-computed cases, copairs agreement, enrichment, replicate QC, plots."""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

import copairs.map as copairs_map
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from morphoflow.profiling.evaluation import (
    average_precision,
    cosine_similarity_matrix,
    feature_columns,
    folds_of_enrichment,
    interpolated_map,
    interpolated_precision,
    mean_average_precision,
    plot_embedding,
    plot_pr_curves,
    replicate_reproducibility,
    retrieval_ap,
)
from morphoflow.profiling.evaluation import retrieval as ev

EXCLUDED = ("", "inactive")


# ------------------------------------------------------------------------------------------
# Builders
# ------------------------------------------------------------------------------------------
def _at_angles(rows: list[tuple[str, str, float]], radius: float = 1.0) -> pd.DataFrame:
    """Profiles on a circle: (treatment, MoA, angle in degrees) -> 2 features.

    Cosine similarity is cos(angle difference), so the ranking of every query is read off the
    angles. Radii vary to check that only directions matter.
    """
    angles = np.deg2rad([angle for _, _, angle in rows])
    radii = radius * (1.0 + np.arange(len(rows)) % 3)
    return pd.DataFrame(
        {
            "Metadata_Treatment": [t for t, _, _ in rows],
            "Metadata_MoA": [m for _, m, _ in rows],
            "f_x": radii * np.cos(angles),
            "f_y": radii * np.sin(angles),
        }
    )


# q's ranking: p1 (10), n1 (25), p2 (45), n2 (70) -> [1, 0, 1, 0]
FIVE = [("q", "A", 0.0), ("p1", "A", 10.0), ("n1", "B", 25.0), ("p2", "A", 45.0), ("n2", "B", 70.0)]
# Hand-computed rankings (angle differences) of every query of FIVE:
#   q  [p1 10, n1 25, p2 45, n2 70] -> [1, 0, 1, 0] -> (1/1 + 2/3) / 2 = 5/6
#   p1 [q 10, n1 15, p2 35, n2 60]  -> [1, 0, 1, 0] -> 5/6
#   n1 [p1 15, p2 20, q 25, n2 45]  -> [0, 0, 0, 1] -> 1/4
#   p2 [n1 20, n2 25, p1 35, q 45]  -> [0, 0, 1, 1] -> (1/3 + 2/4) / 2 = 5/12
#   n2 [p2 25, n1 45, p1 60, q 70]  -> [0, 1, 0, 0] -> 1/2
FIVE_AP = {"q": 5 / 6, "p1": 5 / 6, "n1": 1 / 4, "p2": 5 / 12, "n2": 1 / 2}


def _random_profiles(seed: int, n: int = 70, n_features: int = 16) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    moas = rng.choice(
        ["m1", "m2", "m3", "m4", "m5", "solo", "", "inactive"],
        size=n,
        p=[0.2, 0.15, 0.15, 0.1, 0.1, 0.0, 0.15, 0.15],
    )
    moas[0] = "solo"  # a label held by one profile: never a query
    codes = pd.factorize(moas)[0]
    centers = rng.normal(size=(codes.max() + 1, n_features))
    features = rng.normal(size=(n, n_features)) + 0.6 * centers[codes]
    table = pd.DataFrame(features, columns=[f"feature_{i:02d}" for i in range(n_features)])
    table.insert(0, "Metadata_MoA", moas)
    table.insert(0, "Metadata_Treatment", [f"trt_{i:03d}" for i in range(n)])
    return table


def _copairs_ap(profiles: pd.DataFrame, label_col: str, exclude_labels) -> pd.DataFrame:
    """copairs.map.average_precision on the same retrieval problem as ``retrieval_ap``.

    copairs has no label that is "negative only": each excluded profile gets a label of its own,
    so it has no positive pair (AP NaN, dropped: never a query) but differs from every other
    label (a negative of every query).
    """
    meta = profiles[[c for c in profiles.columns if c.startswith("Metadata_")]].copy()
    labels = meta[label_col].astype(object)
    excluded = (labels.isna() | labels.isin(list(exclude_labels))).to_numpy()
    meta["pair_label"] = np.where(
        excluded, [f"__excluded_{i}" for i in range(len(meta))], labels.astype(str)
    )
    feats = profiles[feature_columns(profiles)].to_numpy(np.float64)
    result = copairs_map.average_precision(
        meta,
        feats,
        pos_sameby=["pair_label"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["pair_label"],
        progress_bar=False,
    )
    return result.dropna(subset=["average_precision"])


def _copairs_map(ap_scores: pd.DataFrame, sameby: list[str], null_size: int, seed: int):
    with tempfile.TemporaryDirectory() as cache_dir:  # copairs caches nulls under ~/.copairs
        return copairs_map.mean_average_precision(
            ap_scores,
            sameby=sameby,
            null_size=null_size,
            threshold=0.05,
            seed=seed,
            progress_bar=False,
            cache_dir=cache_dir,
        )


# ------------------------------------------------------------------------------------------
# Primitives
# ------------------------------------------------------------------------------------------
def test_feature_columns_are_the_non_metadata_columns() -> None:
    df = pd.DataFrame(
        {"Metadata_Well": ["A01"], "Cells_Area": [1.0], "Metadata_MoA": ["x"], "Nuclei_Area": [2.0]}
    )
    assert feature_columns(df) == ["Cells_Area", "Nuclei_Area"]
    with pytest.raises(ValueError, match="df has no feature columns"):
        feature_columns(df[["Metadata_Well", "Metadata_MoA"]])


def test_cosine_similarity_matrix_handles_zero_rows() -> None:
    sims = cosine_similarity_matrix(np.array([[1.0, 0.0], [2.0, 2.0], [0.0, 0.0], [-3.0, 0.0]]))
    expected = np.array(
        [
            [1.0, np.sqrt(0.5), 0.0, -1.0],
            [np.sqrt(0.5), 1.0, 0.0, -np.sqrt(0.5)],
            [0.0, 0.0, 0.0, 0.0],
            [-1.0, -np.sqrt(0.5), 0.0, 1.0],
        ]
    )
    np.testing.assert_allclose(sims, expected, atol=1e-15)
    assert not np.isnan(sims).any()
    with pytest.raises(ValueError, match="X must be two-dimensional"):
        cosine_similarity_matrix(np.ones(3))


@pytest.mark.parametrize(
    ("ranked", "expected"),
    [
        ([1, 0, 1, 0], (1 / 1 + 2 / 3) / 2),
        ([0, 0, 1, 1], (1 / 3 + 2 / 4) / 2),
        ([1, 1, 0], 1.0),
        ([0, 1], 0.5),
        ([True, False, False, True, True], (1 / 1 + 2 / 4 + 3 / 5) / 3),
    ],
)
def test_average_precision_hand_cases(ranked: list[int], expected: float) -> None:
    assert average_precision(np.array(ranked)) == pytest.approx(expected, abs=1e-15)


def test_average_precision_rejects_lists_without_positive() -> None:
    with pytest.raises(ValueError, match="ranked_is_positive has no positive"):
        average_precision([0, 0, 0])
    with pytest.raises(ValueError, match="ranked_is_positive must be one-dimensional"):
        average_precision(np.ones((2, 2)))


def test_interpolated_precision_hand_cases() -> None:
    # [1, 0, 1, 0]: precision 1 at recall 0.5, 2/3 at recall 1
    curve = interpolated_precision([1, 0, 1, 0], 11)
    np.testing.assert_allclose(curve, [1.0] * 6 + [2 / 3] * 5, atol=1e-15)
    # a later, better point lifts earlier recalls: [0, 0, 1, 1] -> max(1/3, 2/4) everywhere
    np.testing.assert_allclose(interpolated_precision([0, 0, 1, 1], [0.0, 0.5, 1.0]), [0.5] * 3)
    # recall 0.3 with 10 positives needs 3 of them (not 4: 0.3 * 10 > 3 in floating point)
    ranked = [1, 1, 1, 0, 0, 0, 0] + [1] * 7
    assert interpolated_precision(ranked, [0.3])[0] == 1.0
    assert interpolated_precision(ranked, [0.4])[0] == pytest.approx(10 / 14)


# ------------------------------------------------------------------------------------------
# Retrieval AP
# ------------------------------------------------------------------------------------------
def test_retrieval_ap_hand_computed_and_query_not_ranked() -> None:
    profiles = _at_angles(FIVE)
    table = retrieval_ap(profiles)
    assert list(table.columns) == ["Metadata_Treatment", "Metadata_MoA", "ap", "n_pos", "n_total"]
    assert table.index.tolist() == [0, 1, 2, 3, 4]  # the profiles' index is kept
    assert dict(zip(table.Metadata_Treatment, table.ap, strict=True)) == pytest.approx(
        FIVE_AP, abs=1e-15
    )
    # the query itself is not a candidate: 4 candidates, and q's AP is not the 1.0 of a list
    # that would start with q itself
    assert table.n_total.tolist() == [4, 4, 4, 4, 4]
    assert table.n_pos.tolist() == [2, 2, 1, 2, 1]


def test_excluded_labels_are_negatives_but_never_queries() -> None:
    rows = [
        *FIVE,
        ("dmso", "", 5.0),
        ("null_cpd", "inactive", 12.0),
        ("unknown", None, 80.0),
        ("lonely", "C", 60.0),
    ]
    table = retrieval_ap(_at_angles(rows))
    # excluded labels and the single-member label C are not queries
    assert table.Metadata_Treatment.tolist() == ["q", "p1", "n1", "p2", "n2"]
    assert (table.n_total == 8).all()
    q = table.set_index("Metadata_Treatment").loc["q"]
    # q ranks: dmso 5, p1 10, null_cpd 12, n1 25, p2 45, ... -> [0, 1, 0, 0, 1, ...]
    assert q.ap == pytest.approx((1 / 2 + 2 / 5) / 2, abs=1e-15)
    assert q.n_pos == 2
    # nothing is excluded: "" and "inactive" become ordinary labels with 1 member (no query)
    unexcluded = retrieval_ap(_at_angles(rows), exclude_labels=())
    assert unexcluded.Metadata_Treatment.tolist() == ["q", "p1", "n1", "p2", "n2"]


def test_query_mask_restricts_queries_only() -> None:
    profiles = _at_angles(FIVE)
    table = retrieval_ap(profiles, query_mask=profiles.Metadata_MoA == "A")
    assert table.Metadata_Treatment.tolist() == ["q", "p1", "p2"]
    assert table.ap.tolist() == pytest.approx([5 / 6, 5 / 6, 5 / 12], abs=1e-15)
    with pytest.raises(ValueError, match="query_mask must have one entry per profile"):
        retrieval_ap(profiles, query_mask=[True, False])


def test_ties_stable_by_row_order_or_positives_first_like_copairs() -> None:
    # n and p have the same direction: a tie for q
    profiles = _at_angles([("q", "A", 0.0), ("n", "B", 10.0), ("p", "A", 10.0), ("m", "B", 50.0)])
    exact = retrieval_ap(profiles).set_index("Metadata_Treatment")
    assert exact.loc["q", "ap"] == 0.5  # stable: n (row 1) before p (row 2) -> [0, 1, 0]
    as_copairs = retrieval_ap(profiles, mode="copairs").set_index("Metadata_Treatment")
    assert as_copairs.loc["q", "ap"] == 1.0  # copairs: positives first -> [1, 0, 0]
    theirs = _copairs_ap(profiles, "Metadata_MoA", EXCLUDED).set_index("Metadata_Treatment")
    np.testing.assert_allclose(as_copairs.ap, theirs.loc[as_copairs.index, "average_precision"])


def test_retrieval_ap_equals_copairs_on_random_profiles() -> None:
    profiles = _random_profiles(seed=3)
    ours = retrieval_ap(profiles)
    theirs = _copairs_ap(profiles, "Metadata_MoA", EXCLUDED)
    assert len(ours) > 30
    assert ours.index.tolist() == theirs.index.tolist()
    np.testing.assert_allclose(ours.ap, theirs.average_precision, rtol=0, atol=1e-9)
    assert (ours.n_pos.to_numpy() == theirs.n_pos_pairs.to_numpy()).all()
    assert (ours.n_total.to_numpy() == theirs.n_total_pairs.to_numpy()).all()
    copairs_mode = retrieval_ap(profiles, mode="copairs")
    np.testing.assert_allclose(copairs_mode.ap, theirs.average_precision, rtol=0, atol=1e-12)


def test_mean_average_precision_equals_copairs() -> None:
    profiles = _random_profiles(seed=5)
    ours = retrieval_ap(profiles)
    theirs = _copairs_ap(profiles, "Metadata_MoA", EXCLUDED)
    null_size, seed = 1000, 11

    # one test per query (copairs: sameby a column unique per query)
    summary, per_query = mean_average_precision(ours, null_size=null_size, seed=seed)
    their_queries = _copairs_map(theirs, ["Metadata_Treatment"], null_size, seed)
    merged = per_query.merge(their_queries, on="Metadata_Treatment", suffixes=("", "_copairs"))
    assert len(merged) == len(ours)
    assert summary["map"] == pytest.approx(theirs.average_precision.mean(), abs=1e-12)
    np.testing.assert_allclose(merged.ap, merged.mean_average_precision, atol=1e-9)
    # Same null draws. copairs counts null APs strictly greater (float32), we count >=, so the
    # two differ only for a query whose AP is exactly reached by a null sample.
    nulls, conf_of_row = ev._null_distributions(
        ours.n_pos.to_numpy(), ours.n_total.to_numpy(), null_size, seed
    )
    tied = np.array(
        [
            np.isclose(nulls[c], ap, rtol=0, atol=1e-6).any()
            for c, ap in zip(conf_of_row, ours.ap, strict=True)
        ]
    )
    assert tied.mean() < 0.2
    np.testing.assert_array_equal(merged.p_value[~tied], merged.p_value_copairs[~tied])
    assert (merged.p_value[tied] >= merged.p_value_copairs[tied]).all()
    if not tied.any():
        np.testing.assert_allclose(merged.corrected_p_value, merged.corrected_p_value_copairs)

    # grouped by MoA (copairs: sameby=[label])
    _, per_moa = mean_average_precision(
        ours, null_size=null_size, seed=seed, group_by=["Metadata_MoA"]
    )
    their_moas = _copairs_map(theirs, ["Metadata_MoA"], null_size, seed)
    assert per_moa.Metadata_MoA.tolist() == their_moas.Metadata_MoA.tolist()
    np.testing.assert_allclose(per_moa["map"], their_moas.mean_average_precision, atol=1e-9)
    np.testing.assert_allclose(per_moa.p_value, their_moas.p_value, rtol=0, atol=0)
    np.testing.assert_allclose(per_moa.corrected_p_value, their_moas.corrected_p_value)
    assert per_moa.below_corrected_p.tolist() == their_moas.below_corrected_p.tolist()


def test_perfect_separation_gives_small_p_values() -> None:
    rng = np.random.default_rng(0)
    directions = np.eye(6)[:4] * 5.0
    features = np.repeat(directions, 5, axis=0) + rng.normal(scale=0.05, size=(20, 6))
    profiles = pd.DataFrame(features, columns=[f"f{i}" for i in range(6)])
    profiles.insert(0, "Metadata_MoA", np.repeat(["a", "b", "c", "d"], 5))
    summary, table = mean_average_precision(retrieval_ap(profiles), null_size=1000, seed=0)
    assert summary["map"] == 1.0
    assert summary["fraction_retrieved"] == 1.0
    # null: 4 positives among 19 candidates reach AP 1 with probability 1 / C(19, 4)
    assert (table.p_value <= 3 / 1001).all()
    assert table.below_corrected_p.all()
    assert summary["null_map"] == pytest.approx(table.null_mean_ap.mean())


def test_random_features_give_map_near_the_null() -> None:
    rng = np.random.default_rng(1)
    profiles = pd.DataFrame(rng.normal(size=(48, 10)), columns=[f"f{i}" for i in range(10)])
    profiles.insert(0, "Metadata_MoA", np.repeat([f"m{i}" for i in range(6)], 8))
    summary, table = mean_average_precision(retrieval_ap(profiles), null_size=1000, seed=0)
    assert summary["n_queries"] == 48
    assert abs(summary["map"] - summary["null_map"]) < 0.05
    assert summary["fraction_retrieved"] <= 0.05
    assert (table.p_value > 0.01).mean() > 0.9


# ------------------------------------------------------------------------------------------
# Interpolated mAP and folds of enrichment
# ------------------------------------------------------------------------------------------
def test_interpolated_map_hand_case() -> None:
    summary, per_query, curve = interpolated_map(_at_angles(FIVE), recall_levels=11)
    # per query (rankings in FIVE): q, p1 [1,0,1,0] -> 28/33; n1 [0,0,0,1] -> 1/4;
    # p2 [0,0,1,1] -> 1/2 at every level; n2 [0,1,0,0] -> 1/2
    expected = {"q": 28 / 33, "p1": 28 / 33, "n1": 1 / 4, "p2": 1 / 2, "n2": 1 / 2}
    got = dict(zip(per_query.Metadata_Treatment, per_query.interpolated_ap, strict=True))
    assert got == pytest.approx(expected, abs=1e-15)
    assert summary["interpolated_map"] == pytest.approx((56 / 33 + 1.25) / 5, abs=1e-15)
    assert summary == {
        "interpolated_map": summary["interpolated_map"],
        "n_queries": 5,
        "n_recall_levels": 11,
    }
    np.testing.assert_allclose(curve.recall, np.linspace(0, 1, 11))
    assert curve.precision.iloc[0] == pytest.approx((1 + 1 + 0.25 + 0.5 + 0.5) / 5)
    assert curve.precision.iloc[-1] == pytest.approx((2 / 3 + 2 / 3 + 0.25 + 0.5 + 0.5) / 5)
    # default axis: as many evenly spaced recall levels as profiles (DeepProfilerExperiments)
    summary5, per_query5, curve5 = interpolated_map(_at_angles(FIVE))
    np.testing.assert_allclose(curve5.recall, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert per_query5.interpolated_ap.iloc[0] == pytest.approx((3 + 4 / 3) / 5)


def _enrichment_profiles() -> pd.DataFrame:
    # q at 0 degrees; its 20 candidates by angle: A 1, B 2, A 3, B 4, 15 fillers, A 90
    fillers = [(f"f{i}", ["B", "C", "inactive"][i % 3], 10.0 + 5 * i) for i in range(15)]
    rows = [
        ("q", "A", 0.0),
        ("a1", "A", 1.0),
        ("b1", "B", 2.0),
        ("a2", "A", 3.0),
        ("b2", "B", 4.0),
        *fillers,
        ("a3", "A", 90.0),
    ]
    return _at_angles(rows)


def test_folds_of_enrichment_hand_case() -> None:
    summary, per_query = folds_of_enrichment(_enrichment_profiles(), top_fraction=0.2)
    assert summary["top_k"] == 4  # round(0.2 * 20 candidates)
    q = per_query.set_index("Metadata_Treatment").loc["q"]
    # top 4 of q: a1, b1, a2, b2 -> [[2, 2], [1, 15]]
    assert (q.a, q.b, q.c, q.d) == (2, 2, 1, 15)
    assert q.odds_ratio == 2 * 15 / (2 * 1)
    # one-sided Fisher = hypergeometric tail: P(X >= 2), 3 positives among 20, 4 drawn
    hand_p = (3 * 136 + 17) / 4845
    odds, p_value = stats.fisher_exact([[2, 2], [1, 15]], alternative="greater")
    assert q.p_value == pytest.approx(hand_p, rel=1e-12)
    assert q.p_value == pytest.approx(p_value, rel=1e-12)
    assert q.odds_ratio == pytest.approx(odds)
    # every per-query row agrees with scipy's fisher_exact on its own table
    for row in per_query.itertuples():
        table = [[row.a, row.b], [row.c, row.d]]
        scipy_odds, scipy_p = stats.fisher_exact(table, alternative="greater")
        assert row.p_value == pytest.approx(scipy_p, rel=1e-9)
        if np.isfinite(scipy_odds):
            assert row.odds_ratio == pytest.approx(scipy_odds)
    assert summary["folds_of_enrichment"] == pytest.approx(per_query.odds_ratio.mean())
    assert summary["fraction_significant"] == pytest.approx((per_query.p_value < 0.05).mean())


def test_infinite_odds_ratio_becomes_d_like_deepprofiler() -> None:
    summary, per_query = folds_of_enrichment(_at_angles(FIVE), top_fraction=0.25)
    assert summary["top_k"] == 1
    rows = per_query.set_index("Metadata_Treatment")
    # q: top 1 = p1 -> [[1, 0], [1, 2]]: odds 1*2/(0*1) = inf -> d = 2; P(X >= 1) = 2/4
    assert tuple(rows.loc["q", ["a", "b", "c", "d"]]) == (1, 0, 1, 2)
    assert np.isinf(stats.fisher_exact([[1, 0], [1, 2]], alternative="greater")[0])
    assert rows.loc["q", "odds_ratio"] == 2.0
    assert rows.loc["q", "p_value"] == pytest.approx(0.5)
    # p2: top 1 = n1 -> [[0, 1], [2, 1]]: odds 0, p = 1
    assert rows.loc["p2", "odds_ratio"] == 0.0
    assert rows.loc["p2", "p_value"] == pytest.approx(1.0)
    assert summary["folds_of_enrichment"] == pytest.approx((2 + 2 + 0 + 0 + 0) / 5)
    assert summary["fraction_significant"] == 0.0


# ------------------------------------------------------------------------------------------
# Replicate reproducibility
# ------------------------------------------------------------------------------------------
def _wells(seed: int, strong: bool) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_treatments, replicates, n_controls, dims = 6, 4, 12, 8
    treatment = np.repeat([f"cpd_{i}" for i in range(n_treatments)], replicates)
    features = rng.normal(size=(treatment.size + n_controls, dims))
    if strong:
        directions = rng.normal(size=(n_treatments, dims)) * 4.0
        features[: treatment.size] = np.repeat(directions, replicates, axis=0) + rng.normal(
            scale=0.2, size=(treatment.size, dims)
        )
    table = pd.DataFrame(features, columns=[f"f{i}" for i in range(dims)])
    table.insert(0, "Metadata_ControlType", [""] * treatment.size + ["negcon"] * n_controls)
    table.insert(0, "Metadata_Treatment", [*treatment, *(["DMSO"] * n_controls)])
    table.insert(0, "Metadata_Well", [f"W{i:02d}" for i in range(len(table))])
    return table


def test_replicate_reproducibility_strong_and_random() -> None:
    strong = replicate_reproducibility(_wells(0, strong=True), null_size=1000)
    assert strong.columns.tolist() == [
        "Metadata_Treatment",
        "n_wells",
        "map",
        "p_value",
        "corrected_p_value",
        "below_p",
        "below_corrected_p",
    ]
    assert strong.Metadata_Treatment.tolist() == [f"cpd_{i}" for i in range(6)]
    assert (strong.n_wells == 4).all()
    assert (strong["map"] == 1.0).all()
    assert strong.below_corrected_p.all()

    random = replicate_reproducibility(_wells(1, strong=False), null_size=1000)
    assert random["map"].mean() < 0.5
    assert not random.below_corrected_p.any()


def test_replicate_reproducibility_equals_copairs_phenotypic_activity() -> None:
    wells = _wells(2, strong=False)
    wells.loc[wells.Metadata_Treatment == "cpd_0", ["f0", "f1"]] += 3.0  # one active compound
    ours = replicate_reproducibility(wells, null_size=500, seed=4)
    meta = wells[["Metadata_Well", "Metadata_Treatment", "Metadata_ControlType"]].copy()
    meta["is_negcon"] = meta.Metadata_ControlType == "negcon"
    meta["reference"] = np.where(meta.is_negcon, np.arange(len(meta)), -1)
    ap_scores = copairs_map.average_precision(
        meta,
        wells[feature_columns(wells)].to_numpy(np.float64),
        pos_sameby=["Metadata_Treatment", "reference"],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=["is_negcon", "reference"],
        progress_bar=False,
    )
    theirs = _copairs_map(ap_scores, ["Metadata_Treatment"], 500, 4)
    assert ours.Metadata_Treatment.tolist() == theirs.Metadata_Treatment.tolist()
    np.testing.assert_allclose(ours["map"], theirs.mean_average_precision, atol=1e-9)
    np.testing.assert_allclose(ours.p_value, theirs.p_value, rtol=0, atol=0)
    assert ours.below_corrected_p.tolist() == theirs.below_corrected_p.tolist()
    assert ours.set_index("Metadata_Treatment").loc["cpd_0", "below_corrected_p"]


# ------------------------------------------------------------------------------------------
# Errors
# ------------------------------------------------------------------------------------------
def test_errors_name_the_argument() -> None:
    profiles = _at_angles(FIVE)
    with pytest.raises(ValueError, match="profiles has no feature columns"):
        retrieval_ap(profiles[["Metadata_Treatment", "Metadata_MoA"]])
    with pytest.raises(ValueError, match="label_col='Metadata_Target' is not a column"):
        retrieval_ap(profiles, label_col="Metadata_Target")
    with pytest.raises(ValueError, match="label_col='Metadata_Target'"):
        folds_of_enrichment(profiles, label_col="Metadata_Target")
    with pytest.raises(ValueError, match="profiles has non-numeric feature columns"):
        retrieval_ap(profiles.assign(Plate="P1"))
    with pytest.raises(ValueError, match="profiles has NaN"):
        retrieval_ap(profiles.assign(f_x=np.nan))
    with pytest.raises(ValueError, match="exclude_labels must be a collection"):
        retrieval_ap(profiles, exclude_labels="inactive")
    with pytest.raises(ValueError, match="mode must be"):
        retrieval_ap(profiles, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ap_table lacks columns"):
        mean_average_precision(profiles)
    with pytest.raises(ValueError, match="null_size must be a positive integer"):
        mean_average_precision(retrieval_ap(profiles), null_size=0)
    with pytest.raises(ValueError, match="top_fraction must be in"):
        folds_of_enrichment(profiles, top_fraction=0.0)
    with pytest.raises(ValueError, match="recall_levels must lie in"):
        interpolated_map(profiles, recall_levels=[0.0, 1.5])
    with pytest.raises(ValueError, match="profiles has no query"):
        interpolated_map(profiles.assign(Metadata_MoA="inactive"))
    wells = _wells(0, strong=False)
    with pytest.raises(ValueError, match="well_profiles has no control well"):
        replicate_reproducibility(wells.assign(Metadata_ControlType=""))
    with pytest.raises(ValueError, match="control_col='Metadata_Kind' is not a column"):
        replicate_reproducibility(wells, control_col="Metadata_Kind")


# ------------------------------------------------------------------------------------------
# Plots and layering
# ------------------------------------------------------------------------------------------
def test_plot_pr_curves_and_embedding(tmp_path: Path) -> None:
    _, _, curve = interpolated_map(_at_angles(FIVE), recall_levels=11)
    figure = plot_pr_curves({"cosine": curve, "baseline": ([0.0, 1.0], [0.4, 0.4])})
    axes = figure.axes[0]
    assert [line.get_label() for line in axes.get_lines()] == ["cosine", "baseline"]
    figure.savefig(tmp_path / "pr.png")
    assert (tmp_path / "pr.png").stat().st_size > 0

    profiles = _random_profiles(seed=2, n=30)
    for method in ("pca", "tsne"):
        embedded = plot_embedding(profiles, color_by="Metadata_MoA", method=method)
        legend = embedded.axes[0].get_legend()
        assert legend.get_title().get_text() == "Metadata_MoA"
        expected = [m or "(empty)" for m in dict.fromkeys(profiles.Metadata_MoA)]
        assert [t.get_text() for t in legend.get_texts()] == expected
        assert "(empty)" in expected
    with pytest.raises(ValueError, match="method must be"):
        plot_embedding(profiles, color_by="Metadata_MoA", method="umap")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="color_by='Metadata_Dose'"):
        plot_embedding(profiles, color_by="Metadata_Dose")


def test_module_imports_no_platform_packages() -> None:
    tree = ast.parse(Path(ev.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"kedro", "mlflow", "great_expectations", "tritonclient", "torch"}
