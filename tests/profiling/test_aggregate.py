"""Tests of profiling/aggregate.py: site median -> well mean -> treatment mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from morphoflow.profiling.aggregate import (
    SiteMedianAccumulator,
    aggregate,
    feature_columns,
    metadata_columns,
    site_profiles,
    treatment_profiles,
    well_profiles,
)


def _cells() -> pd.DataFrame:
    """Two wells on one plate: A01 with sites 1 (3 cells) and 2 (2 cells), B01 site 1 (1 cell)."""
    return pd.DataFrame(
        {
            "Metadata_Source": ["s1"] * 6,
            "Metadata_Plate": ["p1"] * 6,
            "Metadata_Well": ["A01", "A01", "A01", "A01", "A01", "B01"],
            "Metadata_Site": [1, 1, 1, 2, 2, 1],
            "Metadata_Treatment": ["drugA"] * 5 + ["DMSO"],
            "Metadata_MoA": ["tubulin"] * 5 + [""],
            "Metadata_ControlType": [""] * 5 + ["negcon"],
            "Metadata_ObjectNumber": [1, 2, 3, 1, 2, 1],
            "Cells_Area": [1.0, 9.0, 4.0, 10.0, 20.0, 7.0],
            "Nuclei_Intensity": [0.0, 2.0, 1.0, 3.0, np.nan, 5.0],
        }
    )


def test_feature_and_metadata_columns_split_on_prefix() -> None:
    cells = _cells()
    assert feature_columns(cells) == ["Cells_Area", "Nuclei_Intensity"]
    assert metadata_columns(cells)[:2] == ["Metadata_Source", "Metadata_Plate"]
    assert len(metadata_columns(cells)) == 8


def test_site_profiles_are_medians_with_cell_counts() -> None:
    sites = site_profiles(_cells())
    assert sites["Metadata_Well"].tolist() == ["A01", "A01", "B01"]
    assert sites["Metadata_Site"].tolist() == [1, 2, 1]
    assert sites["Metadata_CellCount"].tolist() == [3, 2, 1]
    assert sites["Cells_Area"].tolist() == [4.0, 15.0, 7.0]
    assert sites["Nuclei_Intensity"].tolist() == [1.0, 3.0, 5.0]  # NaN skipped
    # Constant per site: carried; the object number varies within a site: dropped.
    assert "Metadata_ObjectNumber" not in sites.columns
    assert sites["Metadata_MoA"].tolist() == ["tubulin", "tubulin", ""]
    assert list(sites.columns[-3:]) == ["Metadata_CellCount", "Cells_Area", "Nuclei_Intensity"]


def test_well_profiles_are_means_of_sites_with_counts() -> None:
    wells = well_profiles(site_profiles(_cells()))
    assert wells["Metadata_Well"].tolist() == ["A01", "B01"]
    assert wells["Cells_Area"].tolist() == [9.5, 7.0]  # mean of the site medians 4 and 15
    assert wells["Nuclei_Intensity"].tolist() == [2.0, 5.0]
    assert wells["Metadata_SiteCount"].tolist() == [2, 1]
    assert wells["Metadata_CellCount"].tolist() == [5, 1]
    assert "Metadata_Site" not in wells.columns
    assert wells["Metadata_Treatment"].tolist() == ["drugA", "DMSO"]
    assert wells["Metadata_ControlType"].tolist() == ["", "negcon"]


def test_aggregate_carries_constant_metadata_and_drops_varying() -> None:
    df = pd.DataFrame(
        {
            "Metadata_Well": ["A01", "A01", "B01", "B01"],
            "Metadata_Treatment": ["t1", "t1", "t2", "t2"],  # constant per well
            "Metadata_Batch": ["b1", "b2", "b1", "b1"],  # varies within A01 -> dropped for all
            "Metadata_Note": [np.nan, np.nan, "x", "x"],  # constant (NaN counts as a value)
            "f": [1.0, 3.0, 5.0, 6.0],
        }
    )
    out = aggregate(df, ["Metadata_Well"], "mean", count_column="Metadata_Count")
    assert list(out.columns) == [
        "Metadata_Well",
        "Metadata_Treatment",
        "Metadata_Note",
        "Metadata_Count",
        "f",
    ]
    assert out["Metadata_Treatment"].tolist() == ["t1", "t2"]
    assert pd.isna(out["Metadata_Note"].iloc[0]) and out["Metadata_Note"].iloc[1] == "x"
    assert out["f"].tolist() == [2.0, 5.5]
    assert out["Metadata_Count"].tolist() == [2, 2]


def test_aggregate_row_order_does_not_depend_on_input_order() -> None:
    cells = _cells()
    shuffled = cells.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(site_profiles(shuffled), site_profiles(cells))


def test_aggregate_validates_arguments() -> None:
    cells = _cells()
    with pytest.raises(ValueError, match="operation"):
        aggregate(cells, ["Metadata_Well"], "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Metadata_Missing"):
        aggregate(cells, ["Metadata_Missing"], "mean")
    with pytest.raises(ValueError, match="count_column"):
        aggregate(cells, ["Metadata_Well"], "mean", count_column="n_cells")
    with pytest.raises(ValueError, match="df has no rows"):
        aggregate(cells.iloc[:0], ["Metadata_Well"], "mean")
    with pytest.raises(ValueError, match="Path_DNA"):
        aggregate(cells.assign(Path_DNA="a.tif"), ["Metadata_Well"], "mean")
    with pytest.raises(ValueError, match="cells lacks"):
        site_profiles(cells.drop(columns="Metadata_Site"))


def _wells() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Metadata_Source": ["s1", "s1", "s2", "s1", "s2"],
            "Metadata_Plate": ["p1", "p1", "p2", "p1", "p2"],
            "Metadata_Well": ["A01", "A02", "A01", "B01", "B01"],
            "Metadata_Treatment": ["drugA", "drugA", "drugA", "DMSO", "DMSO"],
            "Metadata_MoA": ["tubulin", "tubulin", "tubulin", "", ""],
            "Metadata_ControlType": ["", "", "", "negcon", "negcon"],
            "Metadata_SiteCount": [2, 2, 1, 2, 2],
            "Metadata_CellCount": [10, 20, 5, 30, 40],
            "f": [1.0, 2.0, 6.0, 0.5, 1.5],
        }
    )


def test_treatment_profiles_mean_counts_and_carried_metadata() -> None:
    out = treatment_profiles(_wells())
    assert out["Metadata_Treatment"].tolist() == ["DMSO", "drugA"]
    assert out["f"].tolist() == [1.0, 3.0]
    assert out["Metadata_MoA"].tolist() == ["", "tubulin"]
    assert out["Metadata_ControlType"].tolist() == ["negcon", ""]
    assert out["Metadata_WellCount"].tolist() == [2, 3]
    assert out["Metadata_CellCount"].tolist() == [70, 35]
    assert out["Metadata_SiteCount"].tolist() == [4, 5]
    for position in ("Metadata_Source", "Metadata_Plate", "Metadata_Well"):
        assert position not in out.columns


def test_treatment_with_two_moas_is_refused_by_name() -> None:
    wells = _wells()
    wells.loc[1, "Metadata_MoA"] = "kinase"
    with pytest.raises(ValueError, match="'drugA'.*Metadata_MoA.*kinase"):
        treatment_profiles(wells)


def test_treatment_with_two_control_types_is_refused_by_name() -> None:
    wells = _wells()
    wells.loc[4, "Metadata_ControlType"] = ""
    with pytest.raises(ValueError, match="'DMSO'.*Metadata_ControlType"):
        treatment_profiles(wells)


def _random_cells(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for plate in ("p1", "p2"):
        for well in ("A01", "B02"):
            for site in (1, 2, 3):
                n = int(rng.integers(1, 9))
                frames.append(
                    pd.DataFrame(
                        {
                            "Metadata_Source": "s1",
                            "Metadata_Plate": plate,
                            "Metadata_Well": well,
                            "Metadata_Site": site,
                            "Metadata_Treatment": f"{plate}-{well}",
                            "Metadata_ObjectNumber": np.arange(1, n + 1),
                            "f0": rng.normal(size=n),
                            "f1": rng.integers(0, 5, size=n).astype(float),
                            "f2": rng.normal(size=n),
                        }
                    )
                )
    frames[3].loc[0, "f2"] = np.nan
    return pd.concat(frames, ignore_index=True)


def test_accumulator_equals_aggregate_on_concatenated_cells() -> None:
    cells = _random_cells()
    acc = SiteMedianAccumulator()
    groups = list(cells.groupby(["Metadata_Plate", "Metadata_Well", "Metadata_Site"]))
    for i, (_, site) in enumerate(reversed(groups)):  # any order
        if i % 2:
            acc.add(site)
        else:
            meta = site.iloc[0][[c for c in site.columns if c.startswith("Metadata_")]]
            meta = meta.drop("Metadata_ObjectNumber").to_dict()
            acc.add_site(meta, site[["f0", "f1", "f2"]].to_numpy(), ["f0", "f1", "f2"])
    assert acc.n_sites == len(groups)
    pd.testing.assert_frame_equal(acc.result(), site_profiles(cells), check_exact=True)


def test_accumulator_accepts_batches_of_whole_sites_and_refuses_a_site_twice() -> None:
    cells = _random_cells(1)
    acc = SiteMedianAccumulator()
    plate1 = cells[cells["Metadata_Plate"] == "p1"]
    acc.add(plate1)
    acc.add(cells[cells["Metadata_Plate"] == "p2"])
    acc.add(cells.iloc[:0])  # nothing
    pd.testing.assert_frame_equal(acc.result(), site_profiles(cells), check_exact=True)
    with pytest.raises(ValueError, match="already added"):
        acc.add(plate1.iloc[:1])
    with pytest.raises(ValueError, match="feature columns differ"):
        other = cells[cells["Metadata_Plate"] == "p1"].assign(Metadata_Plate="p3")
        acc.add(other.drop(columns="f2"))
    with pytest.raises(ValueError, match="no site"):
        SiteMedianAccumulator().result()
