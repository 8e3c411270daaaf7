"""Tests of assembly/strength.py: phenotype strength against a control-to-control null."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from morphoflow.assembly.strength import (
    NULL_COLUMNS,
    STRENGTH_COLUMNS,
    control_null,
    phenotype_strength,
)
from tests.assembly import FEATURES, STRONG, screen_wells


def _one_plate(features: dict[str, list[float]], n_controls: int) -> pd.DataFrame:
    """One source, one plate: the first ``n_controls`` rows are DMSO, the others ``drug``."""
    n = len(next(iter(features.values())))
    return pd.DataFrame(
        {
            "Metadata_Source": ["s"] * n,
            "Metadata_Plate": ["p"] * n,
            "Metadata_Well": [f"A{i + 1:02d}" for i in range(n)],
            "Metadata_Treatment": ["DMSO"] * n_controls + ["drug"] * (n - n_controls),
            "Metadata_MoA": [""] * n_controls + ["tubulin"] * (n - n_controls),
            "Metadata_ControlType": ["negcon"] * n_controls + [""] * (n - n_controls),
            **features,
        }
    )


# --------------------------------------------------------------------------- exact values


def test_distance_and_held_out_null_threshold_are_exact() -> None:
    # Controls 1..5 (mean 3, sd sqrt(2.5)); drug at 8: z = 5 / sqrt(2.5) = sqrt(10).
    # Null, one well: each control standardised by the other four: |1 - 3.5| / sd(2,3,4,5)
    # = 2.5 / sqrt(5/3) = sqrt(3.75) for wells 1 and 5 (2 of 5 draws), so the 95th percentile
    # of 1000 draws is exactly sqrt(3.75).
    wells = _one_plate({"f": [1.0, 2.0, 3.0, 4.0, 5.0, 8.0]}, n_controls=5)
    table = phenotype_strength(wells, min_replicates=1)
    assert list(table.columns) == list(STRENGTH_COLUMNS)
    row = table.iloc[0]
    assert (row["Metadata_Source"], row["Metadata_Treatment"], row["Metadata_MoA"]) == (
        "s",
        "drug",
        "tubulin",
    )
    assert row["n_replicates"] == 1
    assert row["distance"] == pytest.approx(np.sqrt(10.0), rel=1e-12)
    assert row["threshold"] == pytest.approx(np.sqrt(3.75), rel=1e-12)
    assert row["strength"] == pytest.approx(np.sqrt(10.0 / 3.75), rel=1e-12)
    assert bool(row["is_strong"])
    assert row["p_value"] == pytest.approx(1 / 1001)  # no null draw reaches sqrt(10)
    assert (row["n_control_wells"], row["n_components"]) == (5, 1)

    null = control_null(wells)
    assert list(null.columns) == list(NULL_COLUMNS)
    assert null[["n_replicates", "subset_size", "n_control_wells", "n_plates"]].iloc[
        0
    ].tolist() == [1, 1, 5, 1]
    assert null["threshold"].iloc[0] == pytest.approx(np.sqrt(3.75), rel=1e-12)
    # The null takes only the 5 leave-one-out values; here its median is the middle one.
    values = sorted(abs(x - np.mean(r)) / np.std(r, ddof=1) for x, r in _leave_one_out())
    assert null["null_median"].iloc[0] == pytest.approx(values[2], rel=1e-12)


def _leave_one_out() -> list[tuple[float, list[float]]]:
    xs = [1.0, 2.0, 3.0, 4.0, 5.0]
    return [(x, xs[:i] + xs[i + 1 :]) for i, x in enumerate(xs)]


def test_pca_keeps_the_requested_components() -> None:
    # 12 controls, 3 copies of (-2, -2), (2, 2), (1, -1), (-1, 1): variance 30/11, covariance
    # 18/11, so after standardisation PC1 = (1, 1) keeps 0.8 of the variance and
    # PC2 = (1, -1) 0.2 (every 2/3 of the controls, a null fold's fit, has rank 2 too).
    # The drug (3, -3) lies on PC2 only.
    f0 = [-2.0, 2.0, 1.0, -1.0] * 3 + [3.0]
    f1 = [-2.0, 2.0, -1.0, 1.0] * 3 + [-3.0]
    wells = _one_plate({"f0": f0, "f1": f1}, n_controls=12)
    on_pc2 = 3.0 * np.sqrt(2.0) / np.sqrt(30 / 11)  # |(3, -3)| / sd
    for n_components, k, distance in (
        (0.75, 1, 0.0),
        (0.9, 2, on_pc2),
        (1, 1, 0.0),
        (5, 2, on_pc2),
    ):
        row = phenotype_strength(wells, n_components=n_components, min_replicates=1).iloc[0]
        assert row["n_components"] == k
        assert row["distance"] == pytest.approx(distance, abs=1e-12)
    null = control_null(wells, n_components=0.75)
    assert null["explained_variance"].iloc[0] == pytest.approx(0.8, rel=1e-12)
    assert null["n_components"].iloc[0] == 1


# --------------------------------------------------------------------------- constructed screen


def test_strong_treatments_are_found_and_nulls_are_not() -> None:
    table = phenotype_strength(screen_wells(seed=0), seed=0)
    called = set(
        table.loc[table["is_strong"], ["Metadata_Source", "Metadata_Treatment"]].itertuples(
            index=False, name=None
        )
    )
    assert called == STRONG
    nulls = table[table["Metadata_Treatment"].str.startswith("null")]
    assert len(nulls) == 6 and not nulls["is_strong"].any()
    assert (nulls["strength"] < 1).all()
    # One row per non-control (source, treatment), sorted; controls never appear.
    assert table[["Metadata_Source", "Metadata_Treatment"]].values.tolist() == [
        ["S1", "cpd_strong"], ["S1", "null_a"], ["S1", "null_b"], ["S1", "null_c"],
        ["S1", "s1_strong"], ["S1", "single"], ["S2", "cpd_strong"], ["S2", "null_a"],
        ["S2", "null_b"], ["S2", "null_c"], ["S2", "s2_strong"],
    ]  # fmt: skip
    assert table["n_control_wells"].tolist() == [24] * 11  # DMSO + untreated, 2 plates
    assert table["Metadata_MoA"].iloc[0] == "tubulin"


def test_min_replicates_is_respected() -> None:
    wells = screen_wells(seed=0)
    table = phenotype_strength(wells).set_index(["Metadata_Source", "Metadata_Treatment"])
    single = table.loc[("S1", "single")]
    assert single["n_replicates"] == 1
    assert single["distance"] > single["threshold"]  # far from the controls ...
    assert not single["is_strong"]  # ... but a single well is not enough
    relaxed = phenotype_strength(wells, min_replicates=1).set_index(
        ["Metadata_Source", "Metadata_Treatment"]
    )
    assert relaxed.loc[("S1", "single"), "is_strong"]
    strict = phenotype_strength(wells, min_replicates=3)
    assert not strict["is_strong"].any()  # every treatment has at most 2 wells


def test_source_shift_and_scale_change_nothing() -> None:
    wells = screen_wells(seed=0)
    shifted = wells.copy()
    in_s2 = shifted["Metadata_Source"] == "S2"
    shifted.loc[in_s2, list(FEATURES)] = shifted.loc[in_s2, list(FEATURES)] * 7.0 - 1000.0
    in_p1 = (shifted["Metadata_Source"] == "S1") & (shifted["Metadata_Plate"] == "P1")
    shifted.loc[in_p1, "f0"] += 25.0  # a plate effect too
    a, b = phenotype_strength(wells), phenotype_strength(shifted)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)
    # S2 was built as 3 * x + 50 (a big source effect): its nulls still are not strong.
    s2 = a[a["Metadata_Source"] == "S2"]
    assert not s2.loc[s2["Metadata_Treatment"].str.startswith("null"), "is_strong"].any()


def test_sources_are_independent_and_row_order_does_not_matter() -> None:
    wells = screen_wells(seed=0)
    full = phenotype_strength(wells)
    alone = phenotype_strength(wells[wells["Metadata_Source"] == "S1"])
    pd.testing.assert_frame_equal(alone, full[full["Metadata_Source"] == "S1"])
    shuffled = wells.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(phenotype_strength(shuffled), full)
    again = phenotype_strength(wells)
    pd.testing.assert_frame_equal(again, full)
    other_seed = phenotype_strength(wells, seed=1)
    assert not np.array_equal(other_seed["threshold"], full["threshold"])
    pd.testing.assert_series_equal(other_seed["distance"], full["distance"])


def test_null_table_describes_the_thresholds_used() -> None:
    wells = screen_wells(seed=0)
    table = phenotype_strength(wells)
    null = control_null(wells)
    assert null[["Metadata_Source", "n_replicates"]].values.tolist() == [
        ["S1", 1], ["S1", 2], ["S2", 2],
    ]  # fmt: skip
    assert null["n_samples"].tolist() == [1000] * 3
    assert null["n_control_wells"].tolist() == [24] * 3
    assert null["n_plates"].tolist() == [2] * 3
    merged = table.merge(null, on=["Metadata_Source", "n_replicates"], suffixes=("", "_null"))
    np.testing.assert_array_equal(merged["threshold"], merged["threshold_null"])
    assert (null["null_median"] < null["threshold"]).all()
    # Replicate counts can be asked for; a draw comes from one of 3 cross-fitting folds
    # (24 controls dealt round-robin: 4 wells per plate and fold), so n is capped at 8.
    asked = control_null(wells, replicates=[2, 4, 100])
    assert asked["subset_size"].tolist() == [2, 4, 8, 2, 4, 8]
    s1 = asked[asked["Metadata_Source"] == "S1"]
    assert s1["threshold"].iloc[1] < s1["threshold"].iloc[0]  # more replicates, tighter null
    pd.testing.assert_frame_equal(  # the same draws as for the treatments' own counts
        asked.iloc[[0, 3]].reset_index(drop=True), null.iloc[[1, 2]].reset_index(drop=True)
    )


def test_screen_scope_pools_the_controls_of_all_sources() -> None:
    table = phenotype_strength(screen_wells(seed=0), scope="screen")
    assert table["n_control_wells"].tolist() == [48] * 11
    called = set(
        table.loc[table["is_strong"], ["Metadata_Source", "Metadata_Treatment"]].itertuples(
            index=False, name=None
        )
    )
    assert called == STRONG
    null = control_null(screen_wells(seed=0), scope="screen")
    assert null["Metadata_Source"].isna().all()
    assert null["n_replicates"].tolist() == [1, 2]
    assert table.attrs["parameters"]["scope"] == "screen"


def test_parameters_are_recorded() -> None:
    table = phenotype_strength(screen_wells(seed=0), n_components=3, percentile=99.0, seed=4)
    assert table.attrs["parameters"] == {
        "n_components": 3,
        "percentile": 99.0,
        "min_replicates": 2,
        "scope": "source",
        "n_null": 1000,
        "seed": 4,
    }
    assert table["n_components"].tolist() == [3] * 11


def _null_screen(
    seed: int, plates: int = 4, controls: int = 24, treatments: int = 60
) -> pd.DataFrame:
    """Many features (150 > 96 controls), treatments drawn like the controls, plate offsets."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(plates):
        for i in range(controls):
            kind = "DMSO" if i % 2 else "untreated"
            rows.append((f"P{p}", f"C{i:02d}", kind, "", "negcon"))
        for t in range(treatments):
            rows.append((f"P{p}", f"T{t:02d}", f"t{t:02d}", "moa", ""))
    meta = pd.DataFrame(
        rows,
        columns=[
            "Metadata_Plate",
            "Metadata_Well",
            "Metadata_Treatment",
            "Metadata_MoA",
            "Metadata_ControlType",
        ],
    )
    meta.insert(0, "Metadata_Source", "s")
    offsets = np.repeat(rng.normal(0, 3, (plates, 150)), controls + treatments, axis=0)
    values = rng.normal(size=(len(meta), 150)) + offsets
    return pd.concat(
        [meta, pd.DataFrame(values, columns=[f"x{j:03d}" for j in range(150)])], axis=1
    )


def test_the_null_matches_control_like_treatments() -> None:
    # Treatments indistinguishable from the controls: their distances must look like the
    # null's. An in-sample null misses either way (measured on this screen): in-sample
    # standardisation makes it too narrow (28 % "strong", distance ratio 1.10), an in-sample
    # PCA too wide (ratio 0.65, nothing strong).
    wells = _null_screen(seed=0)
    table = phenotype_strength(wells)
    null = control_null(wells)
    assert table["n_replicates"].unique().tolist() == [4]
    ratio = table["distance"].median() / null["null_median"].iloc[0]
    assert 0.95 < ratio < 1.05
    assert table["is_strong"].mean() <= 0.15  # nominal 0.05, 60 treatments
    assert 0.3 < table["p_value"].median() < 0.7


# --------------------------------------------------------------------------- errors


def test_missing_columns_are_named() -> None:
    wells = screen_wells(seed=0)
    with pytest.raises(ValueError, match=r"wells lacks the columns \['Metadata_Plate'\]"):
        phenotype_strength(wells.drop(columns=["Metadata_Plate"]))
    with pytest.raises(ValueError, match="Metadata_ControlType"):
        control_null(wells.drop(columns=["Metadata_ControlType"]))
    with pytest.raises(ValueError, match="no feature columns"):
        phenotype_strength(wells.drop(columns=list(FEATURES)))


def test_sources_without_controls_are_named() -> None:
    wells = screen_wells(seed=0)
    extra = wells[(wells["Metadata_Source"] == "S1") & (wells["Metadata_ControlType"] == "")]
    extra = extra.assign(Metadata_Source="S3")
    with pytest.raises(ValueError, match=r"sources without negative-control wells.*\['S3'\]"):
        phenotype_strength(pd.concat([wells, extra], ignore_index=True))


def test_plates_with_too_few_controls_are_named() -> None:
    wells = screen_wells(seed=0, controls_per_kind=1)  # 2 controls per plate: no null
    with pytest.raises(ValueError, match="source 'S1' needs a plate with at least 3 control"):
        phenotype_strength(wells)
    one = wells.drop(
        index=wells.index[
            (wells["Metadata_Plate"] == "P2")
            & (wells["Metadata_Source"] == "S2")
            & (wells["Metadata_Treatment"] == "DMSO")
        ]
    )
    with pytest.raises(ValueError, match="S2/P2 has 1 control rows"):
        phenotype_strength(one)


def test_bad_inputs_are_rejected() -> None:
    wells = screen_wells(seed=0)
    for kwargs, name in (
        ({"n_components": 0.0}, "n_components"),
        ({"n_components": 1.5}, "n_components"),
        ({"n_components": True}, "n_components"),
        ({"percentile": 100.0}, "percentile"),
        ({"min_replicates": 0}, "min_replicates"),
        ({"scope": "plate"}, "scope"),
        ({"n_null": 0}, "n_null"),
        ({"seed": -1}, "seed"),
    ):
        with pytest.raises(ValueError, match=name):
            phenotype_strength(wells, **kwargs)
    nan = wells.copy()
    nan.loc[0, "f1"] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf values: \['f1'\]"):
        phenotype_strength(nan)
    with pytest.raises(ValueError, match="duplicate wells"):
        phenotype_strength(pd.concat([wells, wells.iloc[:1]], ignore_index=True))
    moa = wells.copy()
    moa.loc[moa["Metadata_Treatment"] == "null_a", "Metadata_MoA"] = ["mek", "x", "mek", "mek"]
    with pytest.raises(ValueError, match="'null_a' has more than one Metadata_MoA"):
        phenotype_strength(moa)
    with pytest.raises(ValueError, match="replicates"):
        control_null(wells, replicates=[0])


def test_controls_only_give_an_empty_table_with_the_columns() -> None:
    wells = screen_wells(seed=0)
    table = phenotype_strength(wells[wells["Metadata_ControlType"] == "negcon"])
    assert list(table.columns) == list(STRENGTH_COLUMNS)
    assert len(table) == 0
    assert table["is_strong"].dtype == bool
