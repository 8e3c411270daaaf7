"""Cross-validation folds for compound activity prediction.

- :func:`scaffold_folds`: Bemis-Murcko scaffold split (RDKit ``MurckoScaffold``): compounds
  sharing a scaffold stay in one fold; scaffold groups are placed largest first, each into the
  fold that currently holds the fewest compounds (ties: the lowest fold number; groups of equal
  size: ordered by scaffold SMILES). Acyclic compounds (empty scaffold) form one group.
- :func:`kmeans_folds`: same-size k-means in profile space (``k-means-constrained``): the
  standardised profiles are clustered into ``n_folds`` clusters of sizes
  ``floor(n / n_folds)`` .. ``ceil(n / n_folds)``; cluster = fold, so test compounds are
  phenotypically far from the training compounds.
- :func:`random_folds`: a seeded random partition of equal sizes (reference only).

Moshkov et al., Nat Commun 2023 ("Predicting compound activity from phenotypic profiles and
chemical structures") evaluate with the scaffold split and the same-size k-means splits on
each profile modality. :func:`split_table` gathers folds into one long table with a content
hash, computed once and used by every modality.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from morphoflow.activity.inputs import TREATMENT


def murcko_scaffold(smiles: str) -> str:
    """Canonical Bemis-Murcko scaffold SMILES of a molecule ("" for acyclic molecules).

    Raises:
        ValueError: RDKit cannot parse ``smiles``.
    """
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"RDKit cannot parse the SMILES {smiles!r}")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def _check_folds(n: int, n_folds: int) -> int:
    n_folds = int(n_folds)
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if n < n_folds:
        raise ValueError(f"{n} compounds cannot fill n_folds={n_folds} folds")
    return n_folds


def scaffold_folds(smiles: Sequence[str], n_folds: int = 5) -> np.ndarray:
    """Assign whole Bemis-Murcko scaffold groups to folds, largest group first.

    Args:
        smiles: One SMILES per compound.
        n_folds: Number of folds (>= 2).

    Returns:
        int64 array (n,) of fold numbers 0 .. n_folds-1. Deterministic (no randomness).

    Raises:
        ValueError: Fewer compounds than folds, ``n_folds`` < 2, or an unparseable SMILES.

    Example:
        >>> scaffold_folds(["c1ccccc1C", "c1ccccc1CC", "C1CCCCC1O", "CCO"], n_folds=2).tolist()
        [0, 0, 1, 1]
    """
    n_folds = _check_folds(len(smiles), n_folds)
    scaffolds = [murcko_scaffold(s) for s in smiles]
    groups: dict[str, list[int]] = {}
    for i, scaffold in enumerate(scaffolds):
        groups.setdefault(scaffold, []).append(i)
    order = sorted(groups, key=lambda s: (-len(groups[s]), s))
    folds = np.zeros(len(smiles), dtype=np.int64)
    sizes = np.zeros(n_folds, dtype=np.int64)
    for scaffold in order:
        target = int(np.argmin(sizes))
        folds[groups[scaffold]] = target
        sizes[target] += len(groups[scaffold])
    return folds


def kmeans_folds(
    features: np.ndarray, n_folds: int = 5, seed: int = 0, n_components: int | None = 50
) -> np.ndarray:
    """Same-size k-means folds in profile space.

    The features are standardised (zero mean, unit variance per column; constant columns
    dropped), optionally reduced by PCA to ``n_components``, and clustered with
    ``KMeansConstrained(n_clusters=n_folds, size_min=n // n_folds, size_max=ceil(n / n_folds))``.

    Args:
        features: (n, d) float array of treatment profiles, finite.
        n_folds: Number of folds (>= 2).
        seed: Random state of the k-means initialisation.
        n_components: PCA dimensions before clustering (at most the number of compounds;
            None: no PCA).

    Returns:
        int64 array (n,) of fold numbers, fold sizes differing by at most one.

    Raises:
        ValueError: Fewer compounds than folds, ``n_folds`` < 2, or non-finite features.
    """
    from k_means_constrained import KMeansConstrained

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n, d), got shape {x.shape}")
    n_folds = _check_folds(len(x), n_folds)
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN/inf; drop those columns first")
    sd = x.std(axis=0)
    x = (x[:, sd > 0] - x[:, sd > 0].mean(axis=0)) / sd[sd > 0]
    if n_components is not None and x.shape[1] > min(n_components, len(x)):
        from sklearn.decomposition import PCA

        components = min(int(n_components), len(x))
        x = PCA(n_components=components, random_state=seed).fit_transform(x)
    n = len(x)
    model = KMeansConstrained(
        n_clusters=n_folds,
        size_min=n // n_folds,
        size_max=-(-n // n_folds),
        random_state=seed,
        n_init=4,
    )
    labels = model.fit_predict(x)
    # number the clusters by their first member, so folds do not depend on label order
    first = {int(label): i for i, label in reversed(list(enumerate(labels)))}
    renumber = {label: rank for rank, label in enumerate(sorted(first, key=first.get))}
    return np.array([renumber[int(label)] for label in labels], dtype=np.int64)


def random_folds(n: int, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """A seeded random partition into folds of equal size (+-1)."""
    n_folds = _check_folds(int(n), n_folds)
    rng = np.random.default_rng(seed)
    folds = np.arange(int(n)) % n_folds
    return rng.permutation(folds).astype(np.int64)


def split_table(treatments: Sequence[str], splits: dict[str, np.ndarray]) -> pd.DataFrame:
    """Long table of folds: ``Metadata_Treatment``, ``split``, ``fold`` (int64).

    Rows are sorted by split name then treatment, so equal folds give equal tables.
    """
    frames = []
    for name, folds in splits.items():
        if len(folds) != len(treatments):
            raise ValueError(f"split {name!r}: {len(folds)} folds for {len(treatments)} compounds")
        frames.append(
            pd.DataFrame(
                {TREATMENT: list(treatments), "split": name, "fold": np.asarray(folds, np.int64)}
            )
        )
    table = pd.concat(frames, ignore_index=True)
    return table.sort_values(["split", TREATMENT], kind="stable").reset_index(drop=True)


def split_hash(table: pd.DataFrame) -> str:
    """SHA-256 (hex, first 16 characters) of a split table's content."""
    text = table[[TREATMENT, "split", "fold"]].to_csv(index=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def make_splits(
    smiles: pd.Series,
    profiles: dict[str, pd.DataFrame],
    kinds: Sequence[str],
    n_folds: int = 5,
    seed: int = 0,
) -> pd.DataFrame:
    """Compute the requested splits of the labelled compounds.

    Args:
        smiles: SMILES indexed by treatment (the compounds to split).
        profiles: Modality -> profiles (index treatment) for the ``kmeans_<modality>`` splits.
        kinds: Split names: ``scaffold``, ``random``, ``kmeans_<modality>`` (skipped, not an
            error, when that modality has no profiles).
        n_folds: Folds per split.
        seed: Seed of the k-means and random splits.

    Returns:
        :func:`split_table` of the splits that could be computed.

    Raises:
        ValueError: An unknown split name.
    """
    treatments = list(smiles.index)
    out: dict[str, np.ndarray] = {}
    for kind in kinds:
        if kind == "scaffold":
            out[kind] = scaffold_folds(list(smiles), n_folds)
        elif kind == "random":
            out[kind] = random_folds(len(treatments), n_folds, seed)
        elif kind.startswith("kmeans_"):
            modality = kind.removeprefix("kmeans_")
            if modality in profiles:
                x = profiles[modality].loc[treatments].to_numpy()
                out[kind] = kmeans_folds(x, n_folds, seed)
        else:
            raise ValueError(
                f"activity.splits: unknown split {kind!r} (scaffold, random, kmeans_<modality>)"
            )
    return split_table(treatments, out)
