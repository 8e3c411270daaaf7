"""Tests of assembly/combined.py: strong selection, class labels, combined index, manifest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from morphoflow.assembly.combined import (
    combined_index,
    content_hash,
    harmonise,
    manifest,
    select_strong,
)
from morphoflow.assembly.strength import phenotype_strength
from tests.assembly import STRONG, crop_index_for, screen_wells

#: (source, plate, well, treatment, control type); plates P1 and P2 in both sources.
LAYOUT = (
    ("A01", "DMSO", "negcon"),
    ("A02", "untreated", "negcon"),
    ("B01", "cpd_a", ""),
    ("B02", "{source}_only", ""),
    ("B03", "cpd_weak", ""),
)


def _wells() -> pd.DataFrame:
    rows = [
        {
            "Metadata_Source": source,
            "Metadata_Plate": plate,
            "Metadata_Well": well,
            "Metadata_Treatment": treatment.format(source=source),
            "Metadata_MoA": "" if control else "moa_" + treatment.format(source=source),
            "Metadata_ControlType": control,
        }
        for source in ("S1", "S2")
        for plate in ("P1", "P2")
        for well, treatment, control in LAYOUT
    ]
    return pd.DataFrame(rows)


def _crop_index(control_cells: int = 3) -> pd.DataFrame:
    """3 cells per treatment well, ``control_cells`` per control well."""
    wells = _wells()
    controls = wells[wells["Metadata_ControlType"] == "negcon"]
    treated = wells[wells["Metadata_ControlType"] != "negcon"]
    index = pd.concat(
        [crop_index_for(controls, control_cells), crop_index_for(treated, 3)], ignore_index=True
    )
    return index.sort_values(["Metadata_Source", "Metadata_Plate", "Metadata_Well"]).reset_index(
        drop=True
    )


def _strength() -> pd.DataFrame:
    """cpd_a strong in both sources; each source's own compound strong in S1 only;
    cpd_weak strong in S2 only."""
    rows = [
        ("S1", "cpd_a", True),
        ("S1", "S1_only", True),
        ("S1", "cpd_weak", False),
        ("S2", "cpd_a", True),
        ("S2", "S2_only", False),
        ("S2", "cpd_weak", True),
    ]
    table = pd.DataFrame(rows, columns=["Metadata_Source", "Metadata_Treatment", "is_strong"])
    table.insert(2, "Metadata_MoA", "moa_" + table["Metadata_Treatment"])
    table["n_replicates"] = 2
    return table


# --------------------------------------------------------------------------- select / harmonise


def test_select_strong_keeps_the_strong_pairs_sorted() -> None:
    kept = select_strong(_strength().iloc[::-1])
    assert kept[["Metadata_Source", "Metadata_Treatment"]].values.tolist() == [
        ["S1", "S1_only"], ["S1", "cpd_a"], ["S2", "cpd_a"], ["S2", "cpd_weak"],
    ]  # fmt: skip
    assert list(kept.columns) == list(_strength().columns)
    assert kept.index.tolist() == [0, 1, 2, 3]


def test_harmonise_shares_names_and_keeps_both_control_kinds() -> None:
    labels = harmonise(select_strong(_strength()), _crop_index())
    assert labels.values.tolist() == [
        ["S1", "DMSO", "negcon", "", "DMSO"],
        ["S2", "DMSO", "negcon", "", "DMSO"],
        ["S1", "S1_only", "", "moa_S1_only", "S1_only"],
        ["S1", "cpd_a", "", "moa_cpd_a", "cpd_a"],
        ["S2", "cpd_a", "", "moa_cpd_a", "cpd_a"],
        ["S2", "cpd_weak", "", "moa_cpd_weak", "cpd_weak"],
        ["S1", "untreated", "negcon", "", "untreated"],
        ["S2", "untreated", "negcon", "", "untreated"],
    ]


def test_harmonise_rejects_conflicting_names() -> None:
    kept = select_strong(_strength())
    clash = kept.copy()
    clash.loc[0, "Metadata_Treatment"] = "DMSO"
    with pytest.raises(ValueError, match=r"negative controls elsewhere: \['DMSO'\]"):
        harmonise(clash, _crop_index())
    moa = kept.copy()
    moa.loc[moa["Metadata_Source"] == "S2", "Metadata_MoA"] = "other"
    with pytest.raises(ValueError, match="'cpd_a' has different MoAs across sources"):
        harmonise(moa, _crop_index())


# --------------------------------------------------------------------------- combined index


def test_combined_index_keeps_strong_cells_and_both_control_classes() -> None:
    index = _crop_index()
    combined = combined_index(index, _strength())
    counts = combined.groupby(["Metadata_Label", "Metadata_Source"]).size().to_dict()
    assert counts == {
        ("DMSO", "S1"): 6,
        ("DMSO", "S2"): 6,
        ("untreated", "S1"): 6,
        ("untreated", "S2"): 6,
        ("cpd_a", "S1"): 6,  # shared name: one class from both sources
        ("cpd_a", "S2"): 6,
        ("S1_only", "S1"): 6,  # source-specific: kept
        ("cpd_weak", "S2"): 6,  # strong only in S2: S1's cells left out
    }
    assert "S2_only" not in set(combined["Metadata_Treatment"])
    assert (combined["Metadata_Label"] == combined["Metadata_Treatment"]).all()
    # Rows are whole crop-index rows (paths and crop positions carried), sorted by cell keys.
    assert list(combined.columns) == [*index.columns, "Metadata_Label"]
    keys = ["Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    expected = index.merge(combined[[*keys, "Metadata_ObjectNumber"]], how="inner")
    pd.testing.assert_frame_equal(combined.drop(columns="Metadata_Label"), expected)
    assert combined.attrs["parameters"] == {"max_control_cells_per_plate": None, "seed": 0}


def test_sources_absent_from_the_strength_table_are_left_out() -> None:
    index = _crop_index()
    extra = index[index["Metadata_Source"] == "S1"].assign(Metadata_Source="S9")
    combined = combined_index(pd.concat([index, extra], ignore_index=True), _strength())
    assert set(combined["Metadata_Source"]) == {"S1", "S2"}
    assert len(combined) == 48


def test_control_cap_is_honoured_per_plate_and_class() -> None:
    index = _crop_index(control_cells=5)
    combined = combined_index(index, _strength(), max_control_cells_per_plate=2, seed=0)
    controls = combined[combined["Metadata_ControlType"] == "negcon"]
    per_plate = controls.groupby(["Metadata_Source", "Metadata_Plate", "Metadata_Label"]).size()
    assert per_plate.tolist() == [2] * 8  # 2 sources x 2 plates x 2 kinds
    assert (combined["Metadata_ControlType"] == "").sum() == 24  # treatment cells untouched
    uncapped = combined_index(index, _strength())
    assert (uncapped["Metadata_ControlType"] == "negcon").sum() == 40
    larger = combined_index(index, _strength(), max_control_cells_per_plate=50)
    pd.testing.assert_frame_equal(larger, uncapped)
    # Deterministic and independent of the input row order.
    shuffled = index.sample(frac=1.0, random_state=1).reset_index(drop=True)
    again = combined_index(shuffled, _strength(), max_control_cells_per_plate=2, seed=0)
    pd.testing.assert_frame_equal(again, combined)
    draws = {
        tuple(
            combined_index(index, _strength(), max_control_cells_per_plate=2, seed=s)[
                "Metadata_ObjectNumber"
            ]
        )
        for s in range(5)
    }
    assert len(draws) > 1  # the seed matters


def test_combined_index_from_the_constructed_screen() -> None:
    wells = screen_wells(seed=0)
    strength = phenotype_strength(wells)
    combined = combined_index(crop_index_for(wells, cells_per_well=2), strength)
    pairs = combined.loc[
        combined["Metadata_ControlType"] == "", ["Metadata_Source", "Metadata_Treatment"]
    ].drop_duplicates()
    assert set(pairs.itertuples(index=False, name=None)) == STRONG
    assert sorted(combined["Metadata_Label"].unique()) == [
        "DMSO", "cpd_strong", "s1_strong", "s2_strong", "untreated",
    ]  # fmt: skip
    # 4 strong pairs x 2 wells x 2 cells; 2 sources x 2 plates x 12 control wells x 2 cells.
    assert len(combined) == 16 + 96


def test_combined_index_errors_name_the_problem() -> None:
    index, strength = _crop_index(), _strength()
    with pytest.raises(
        ValueError, match=r"crop_index lacks the columns \['Metadata_ObjectNumber'\]"
    ):
        combined_index(index.drop(columns="Metadata_ObjectNumber"), strength)
    with pytest.raises(ValueError, match=r"strength_table lacks the columns \['is_strong'\]"):
        combined_index(index, strength.drop(columns="is_strong"))
    no_s2_controls = index[
        ~((index["Metadata_Source"] == "S2") & (index["Metadata_ControlType"] == "negcon"))
    ]
    with pytest.raises(ValueError, match=r"without control cells.*\['S2'\]"):
        combined_index(no_s2_controls, strength)
    no_cells = index[index["Metadata_Treatment"] != "S1_only"]
    with pytest.raises(ValueError, match=r"no cell of the strong pairs.*\('S1', 'S1_only'\)"):
        combined_index(no_cells, strength)
    with pytest.raises(ValueError, match="duplicate cells"):
        combined_index(pd.concat([index, index.iloc[:1]], ignore_index=True), strength)
    for cap in (0, 1.5, True):
        with pytest.raises(ValueError, match="max_control_cells_per_plate"):
            combined_index(index, strength, max_control_cells_per_plate=cap)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is_strong must be boolean"):
        select_strong(strength.assign(is_strong=1))
    with pytest.raises(ValueError, match="duplicate"):
        select_strong(pd.concat([strength, strength.iloc[:1]]))


# --------------------------------------------------------------------------- manifest


def test_manifest_counts_are_exact() -> None:
    strength = _strength()
    combined = combined_index(_crop_index(control_cells=5), strength, max_control_cells_per_plate=2)
    info = manifest(strength, combined, parameters={"run": "r1"})
    assert json.loads(json.dumps(info)) == info  # JSON-serialisable, no numpy types
    assert info["n_cells"] == 24 + 16
    assert info["n_classes"] == 5
    assert info["sources"] == {
        "S1": {
            "treatments_total": 3,
            "treatments_kept": 2,
            "cells_kept": 20,
            "treatment_cells": 12,
            "control_cells": 8,
            "plates": ["P1", "P2"],
        },
        "S2": {
            "treatments_total": 3,
            "treatments_kept": 2,
            "cells_kept": 20,
            "treatment_cells": 12,
            "control_cells": 8,
            "plates": ["P1", "P2"],
        },
    }
    assert info["classes"] == {
        "DMSO": {"cells": 8, "control": True, "sources": ["S1", "S2"]},
        "S1_only": {"cells": 6, "control": False, "sources": ["S1"]},
        "cpd_a": {"cells": 12, "control": False, "sources": ["S1", "S2"]},
        "cpd_weak": {"cells": 6, "control": False, "sources": ["S2"]},
        "untreated": {"cells": 8, "control": True, "sources": ["S1", "S2"]},
    }
    assert info["parameters"]["combined"] == {"max_control_cells_per_plate": 2, "seed": 0}
    assert info["parameters"]["run"] == "r1"
    assert info["version"] == content_hash(combined)
    assert len(info["version"]) == 64


def test_manifest_records_the_strength_parameters() -> None:
    wells = screen_wells(seed=0)
    strength = phenotype_strength(wells, percentile=90.0)
    combined = combined_index(crop_index_for(wells, 1), strength)
    info = manifest(strength, combined)
    assert info["parameters"]["strength"]["percentile"] == 90.0
    assert info["parameters"]["strength"]["min_replicates"] == 2
    assert info["sources"]["S1"]["treatments_total"] == 6
    assert info["sources"]["S1"]["treatments_kept"] == 2
    json.dumps(info)


def test_manifest_hash_is_stable_across_row_and_column_order() -> None:
    strength = _strength()
    index = _crop_index()
    combined = combined_index(index, strength)
    version = manifest(strength, combined)["version"]
    shuffled = index.sample(frac=1.0, random_state=7)[index.columns[::-1]]
    assert manifest(strength, combined_index(shuffled, strength))["version"] == version
    reordered = combined.sample(frac=1.0, random_state=2).assign(Path_Crops="elsewhere")
    assert content_hash(reordered) == version  # keys and labels only
    assert content_hash(combined.astype({"Metadata_Site": "float64"})) == version
    assert content_hash(combined.iloc[1:]) != version
    relabelled = combined.assign(
        Metadata_Label=np.where(
            combined["Metadata_Label"] == "cpd_a", "cpd_x", combined["Metadata_Label"]
        )
    )
    assert content_hash(relabelled) != version
    with pytest.raises(ValueError, match="Metadata_Label"):
        manifest(strength, combined.drop(columns="Metadata_Label"))
