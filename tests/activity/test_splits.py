"""Scaffold, same-size k-means and random folds."""

from __future__ import annotations

import numpy as np
import pytest

from morphoflow.activity.splits import (
    kmeans_folds,
    murcko_scaffold,
    random_folds,
    scaffold_folds,
    split_hash,
    split_table,
)


def test_scaffold_groups_stay_whole_largest_first_into_smallest_fold() -> None:
    smiles = [
        "c1ccccc1C",
        "c1ccccc1CC",
        "c1ccccc1O",  # benzene x3
        "C1CCCCC1O",
        "C1CCCCC1N",  # cyclohexane x2
        "c1ccncc1C",  # pyridine x1
        "CCO",  # acyclic ("" scaffold) x1
    ]
    folds = scaffold_folds(smiles, n_folds=3)
    # benzene (3) -> 0; cyclohexane (2) -> 1; then size-1 groups by scaffold SMILES:
    # "" -> 2 (empty), then "c1ccncc1" -> 2 (sizes 3, 2, 1)
    assert folds.tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert murcko_scaffold("CCO") == ""
    assert murcko_scaffold("c1ccccc1CC") == "c1ccccc1"


def test_scaffold_split_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="cannot fill n_folds=5"):
        scaffold_folds(["CC", "CCC"], 5)
    with pytest.raises(ValueError, match="RDKit cannot parse"):
        scaffold_folds(["CC", "C1CC(", "CCC"], 2)


def test_kmeans_folds_have_equal_sizes_and_follow_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.normal(0, 0.5, (20, 2)) for c in centres])
    folds = kmeans_folds(x, n_folds=3, seed=0)
    assert np.bincount(folds).tolist() == [20, 20, 20]
    for k in range(3):  # each true cluster is one fold
        assert len(set(folds[20 * k : 20 * (k + 1)])) == 1


def test_kmeans_folds_refuse_nonfinite() -> None:
    x = np.ones((10, 2))
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        kmeans_folds(x, 2)


def test_random_folds_and_hash_are_deterministic() -> None:
    a = split_table(list("abcdef"), {"random": random_folds(6, 3, seed=1)})
    b = split_table(list("abcdef"), {"random": random_folds(6, 3, seed=1)})
    assert np.bincount(a["fold"]).tolist() == [2, 2, 2]
    assert split_hash(a) == split_hash(b)
    c = split_table(list("abcdef"), {"random": random_folds(6, 3, seed=2)})
    assert split_hash(a) != split_hash(c) or a.equals(c)


def test_kmeans_folds_with_fewer_compounds_than_pca_dimensions() -> None:
    """The demo screen: 15 compounds, 317 features (PCA is capped at the compound count)."""
    x = np.random.default_rng(1).normal(size=(15, 317))
    folds = kmeans_folds(x, n_folds=5, seed=0)
    assert np.bincount(folds).tolist() == [3, 3, 3, 3, 3]
