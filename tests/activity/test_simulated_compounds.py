"""The simulated compounds and assays (morphoflow.simulate.compounds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphoflow.simulate.compounds import (
    CAUSES,
    SCAFFOLDS,
    SUBSTITUENTS,
    build_smiles,
    simulate_compound_library,
    write_screen_compounds,
)


def test_every_scaffold_substituent_combination_is_a_valid_molecule() -> None:
    for s in range(len(SCAFFOLDS)):
        for r in range(len(SUBSTITUENTS)):
            build_smiles(s, r, (r + 5) % len(SUBSTITUENTS))  # raises when RDKit refuses


def test_library_files_and_truth(small_library: Path) -> None:
    meta = json.loads((small_library / "library.json").read_text())
    assert "latent phenotype directly" in meta["profiles"]
    compounds = pd.read_csv(small_library / "compounds.csv")
    assert compounds["Metadata_Treatment"].is_unique and compounds["Metadata_SMILES"].is_unique
    truth = pd.read_csv(small_library / "assay_truth.csv")
    assert set(truth["cause"]) == set(CAUSES)
    mo = pd.read_parquet(small_library / "profiles_mo_latent.parquet")
    assert (mo["Metadata_CellCount"] > 0).all() and (mo["Metadata_WellCount"] == 4).all()
    assays = pd.read_csv(small_library / "assays.csv")
    unlabelled = pd.read_csv(small_library / "truth.csv")["unlabelled"].to_numpy()
    assert assays.iloc[:, 1:].loc[unlabelled].isna().all().all()


def test_library_refuses_to_overwrite_another_folder(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError, match="refusing to overwrite"):
        simulate_compound_library(tmp_path, n_compounds=60)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_screen_compounds_are_deterministic_and_controls_have_no_smiles(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    from morphoflow.simulate import LATENT_DIMS

    rows = [
        {
            "Metadata_Treatment": f"T{i}",
            "Metadata_MoA": f"M{i % 2}",
            "strength": 1.0,
            "kind": "strong",
        }
        for i in range(10)
    ] + [{"Metadata_Treatment": "DMSO", "Metadata_MoA": "", "strength": 0.0, "kind": "control"}]
    truth = pd.DataFrame(rows)
    shifts = pd.DataFrame(
        rng.normal(size=(11, len(LATENT_DIMS))), columns=[f"shift_{d}" for d in LATENT_DIMS]
    )
    truth = pd.concat([truth, shifts], axis=1)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_screen_compounds(tmp_path / name, truth, seed=4)
    for file in ("compounds.csv", "assays.csv", "assay_truth.csv"):
        assert (tmp_path / "a" / file).read_text() == (tmp_path / "b" / file).read_text()
    compounds = pd.read_csv(tmp_path / "a" / "compounds.csv", keep_default_na=False)
    assert compounds.set_index("Metadata_Treatment").loc["DMSO", "Metadata_SMILES"] == ""
