"""The science on the simulated truth: each modality predicts the assays it can see.

One cross-validation (scaffold split, folds 0 and 1 of 5; 400 compounds; Chemprop 40 epochs,
hidden 128) is shared by the tests. The thresholds are stated once below; they test directions
that follow from the simulator's stated causes (``assay_truth.csv``), measured with margins.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from morphoflow.activity.crossval import cross_validate
from morphoflow.activity.evaluation import median_auroc, score_folds
from morphoflow.activity.inputs import load_activity_data, read_assays, read_compounds
from morphoflow.activity.models import ModelConfig, torch_threads
from morphoflow.activity.splits import make_splits

SINGLES = ["cs", "mo", "ge"]


@pytest.fixture(scope="module")
def by_assay(small_library: Path) -> pd.DataFrame:
    """Median AUROC over folds per assay (rows) and modality (columns), plus ``cause``."""
    compounds, controls = read_compounds(small_library / "compounds.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_activity_data(
            compounds,
            read_assays(small_library / "assays.csv"),
            {
                "mo": pd.read_parquet(small_library / "profiles_mo_latent.parquet"),
                "ge": pd.read_parquet(small_library / "profiles_ge_latent.parquet"),
            },
            min_positives=5,
            controls=controls,
        )
    splits = make_splits(
        data.compounds.loc[data.labels.index, "Metadata_SMILES"], data.profiles, ["scaffold"]
    )
    config = ModelConfig(mpnn_epochs=40, mpnn_hidden=128, mpnn_ffn_hidden=128, batch_size=32)
    with torch_threads(1):
        predictions, _ = cross_validate(
            data, splits, ["cs", "mo", "ge", "cell_count"], config, folds=[0, 1]
        )
    table = median_auroc(score_folds(predictions)).loc["scaffold"]
    truth = pd.read_csv(small_library / "assay_truth.csv").set_index("assay")["cause"]
    return table.assign(cause=table.index.map(truth))


def _mean(table: pd.DataFrame, cause: str, modality: str) -> float:
    return float(table.loc[table["cause"] == cause, modality].mean())


def test_morphology_beats_structure_on_phenotype_assays(by_assay: pd.DataFrame) -> None:
    assert _mean(by_assay, "phenotype", "mo") > _mean(by_assay, "phenotype", "cs") + 0.15
    assert _mean(by_assay, "phenotype", "mo") > 0.75


def test_structure_beats_morphology_on_structure_assays(by_assay: pd.DataFrame) -> None:
    assert _mean(by_assay, "structure", "cs") > _mean(by_assay, "structure", "mo") + 0.1


def test_cell_count_baseline_wins_only_on_count_assays(by_assay: pd.DataFrame) -> None:
    best_single = {
        c: max(_mean(by_assay, c, m) for m in SINGLES) for c in by_assay["cause"].unique()
    }
    assert _mean(by_assay, "count", "cell_count") > best_single["count"] + 0.1
    for cause in ("phenotype", "structure", "both"):
        assert _mean(by_assay, cause, "cell_count") < best_single[cause], cause


def test_noise_assays_stay_near_chance(by_assay: pd.DataFrame) -> None:
    for modality in [*SINGLES, "cell_count", "late_max_all"]:
        assert abs(_mean(by_assay, "noise", modality) - 0.5) < 0.1, modality


def test_late_fusion_at_least_best_single_modality_on_the_union(by_assay: pd.DataFrame) -> None:
    """On the assays some single modality predicts (median AUROC > 0.7), the paper's late
    fusion (max probability of CS and MO) scores at least the best single modality (within
    0.01). Measured: seed 0 fusion 0.81 vs MO 0.795; seed 1 0.802 vs 0.795. The fusion of all
    three (CS, MO, GE) is not asserted: seed 0 0.797 vs 0.795, seed 1 0.777 vs 0.795."""
    union = by_assay[(by_assay[SINGLES] > 0.7).any(axis=1)]
    assert len(union) >= 5
    best = max(float(union[m].mean()) for m in SINGLES)
    assert float(union["late_max_cs_mo"].mean()) >= best - 0.01
    assert np.isfinite(union["late_max_all"]).all()
