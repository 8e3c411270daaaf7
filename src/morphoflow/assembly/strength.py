"""Phenotype strength: does a treatment's profile differ from the negative controls?

A treatment is *strong* when the mean of its replicate wells lies farther from the negative
controls than the mean of the same number of control wells would lie by chance. Only strong
treatments enter the combined training set (:mod:`morphoflow.assembly.combined`).

Procedure (:func:`phenotype_strength`; :func:`control_null` describes the null it uses)
---------------------------------------------------------------------------------------

Controls are the wells with ``Metadata_ControlType == "negcon"``: every kind of negative
control (e.g. ``DMSO`` and ``untreated``) is pooled into one control set.

1. **Canonical order.** Wells are sorted by source, plate and well, so the result does not
   depend on the input row order.
2. **Per-plate standardisation.** Every well is standardised with the mean and standard
   deviation (``ddof=1``) of the control wells of *its own plate*:
   ``batch_correct(wells, "standardize", "plate")``. This removes plate and source offsets and
   puts every feature on the scale of its control variation (so a source shift alone never
   makes a treatment strong).
3. **Analysis groups.** With ``scope="source"`` (default) each source is analysed on its own
   (its own PCA and null); with ``scope="screen"`` all sources form one group. Rows of the
   result are one per (source, treatment) either way.
4. **Reduced space.** A PCA is fitted on the group's standardised control wells (centred on
   their mean, the *control centroid*, which is 0 up to rounding after step 2). It keeps the
   smallest number of components whose cumulative explained variance reaches
   ``n_components`` (a fraction in (0, 1]), or exactly ``n_components`` components (an int),
   clipped to the controls' rank (and to that of the null's folds, step 6). Distances are
   Euclidean in the space of the PC scores (not whitened). A phenotype orthogonal to every
   kept component is invisible: with fewer control wells than features the control span is
   at most ``n_controls - 1`` dimensional.
5. **Treatment distance.** For a treatment with ``n`` wells (``n_replicates``) in a source,
   ``distance = || P (mean of its n standardised wells - control centroid) ||`` with ``P`` the
   kept components.
6. **Null.** For every replicate count ``n`` that occurs, ``n_null`` pseudo-treatments of
   ``n`` control wells are scored the way a treatment is, each drawn well kept *out of
   sample* like a treatment's wells are:

   - *Folds.* The group's control wells are dealt into 3 folds (fewer if there are fewer
     wells): within each plate, in random order, round-robin, so every fold has about the
     same number of wells on every plate. The null draws are shared equally by the folds.
   - *Draw.* From one fold, a random permutation of its wells, of which the first ``n`` are
     taken that keep the draw spread over the plates (at most ``c`` wells per plate, ``c``
     the smallest number that allows ``n`` wells: one per plate while ``n`` is at most the
     number of plates, like replicates on replicate plates) and leave at least 2 controls on
     every plate.
   - *Held-out standardisation.* Each drawn well is standardised with the mean and standard
     deviation of the *remaining* controls of its plate (all folds), not with itself.
   - *Cross-fitted components.* The drawn wells' mean is projected on components fitted (as
     in step 4, with the same number of components) on the controls of the *other* folds,
     and its distance is measured from the control centroid of step 4.

   Why: the treatment's wells take part neither in the standardisation nor in the PCA, and a
   null built from controls that do is far from the treatment's distribution. In-sample
   standardisation shrinks the controls' variance (null too narrow: in simulation with
   Gaussian wells, 4 plates, 20 features and treatments identical to the controls, one well
   per plate, 74 % / 32 % / 16 % of them came out strong at 8 / 16 / 32 controls per
   plate). In-sample PCA inflates it along the top components when features are many (null
   too wide: with 672 features and 640 controls the null median was 1.4x the median distance
   of control-like treatments, 2x with 20 components, so nothing could be strong). With both
   held out, simulations (8-32 controls per plate, 20-672 features) call about 5-7 % of
   control-like treatments strong (nominal 5 %: slightly liberal; raise ``percentile`` or
   use ``p_value`` for a stricter cut) and the null median is within 2 % of theirs. 3 folds
   were the best compromise there: more folds leave too few distinct draws per fold when
   plates have few controls (10 folds, 8 controls per plate: 40 % "strong"), fewer fit the
   draws' components on fewer controls than the treatments'.

   ``n_components`` is clipped to the rank of every fold's controls, so treatments and draws
   always use the same number of components. ``n`` larger than a fold allows (every plate
   keeping 2 controls) is capped at the largest possible draw (``subset_size`` in
   :func:`control_null`): a wider null, so the test stays conservative. Draws are
   deterministic: the folds and the draws of each (group, ``n``) are seeded from ``seed``,
   the group name and ``n``, so adding a source does not change another source's result.
7. **Threshold and call.** ``threshold`` = the ``percentile``-th percentile (linear
   interpolation) of the null distances of the treatment's replicate count;
   ``strength = distance / threshold``; ``p_value = (1 + #{null >= distance}) / (1 + n_null)``;
   ``is_strong = distance > threshold and n_replicates >= min_replicates``.

Example:
    >>> import pandas as pd
    >>> wells = pd.DataFrame({
    ...     "Metadata_Source": ["s"] * 6, "Metadata_Plate": ["p"] * 6,
    ...     "Metadata_Well": ["A01", "A02", "A03", "A04", "A05", "B01"],
    ...     "Metadata_Treatment": ["DMSO"] * 5 + ["drug"],
    ...     "Metadata_MoA": [""] * 5 + ["tubulin"],
    ...     "Metadata_ControlType": ["negcon"] * 5 + [""],
    ...     "f": [1.0, 2.0, 3.0, 4.0, 5.0, 8.0]})
    >>> table = phenotype_strength(wells, min_replicates=1)
    >>> table[["distance", "threshold", "is_strong"]].round(4).to_numpy().tolist()
    [[3.1623, 1.9365, True]]
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from morphoflow.profiling.aggregate import feature_columns
from morphoflow.profiling.normalize import CONTROL_QUERY, batch_correct, control_mask

SOURCE = "Metadata_Source"
PLATE = "Metadata_Plate"
WELL = "Metadata_Well"
TREATMENT = "Metadata_Treatment"
MOA = "Metadata_MoA"
CONTROL_TYPE = "Metadata_ControlType"

#: Columns :func:`phenotype_strength` needs in the well profiles (besides the features).
REQUIRED_COLUMNS: tuple[str, ...] = (SOURCE, PLATE, WELL, TREATMENT, MOA, CONTROL_TYPE)

#: Columns of the strength table, in order.
STRENGTH_COLUMNS: tuple[str, ...] = (
    SOURCE,
    TREATMENT,
    MOA,
    "n_replicates",
    "distance",
    "threshold",
    "strength",
    "is_strong",
    "p_value",
    "n_control_wells",
    "n_components",
)

#: Columns of the null description (:func:`control_null`), in order.
NULL_COLUMNS: tuple[str, ...] = (
    SOURCE,
    "n_replicates",
    "subset_size",
    "n_control_wells",
    "n_plates",
    "n_components",
    "explained_variance",
    "n_samples",
    "null_mean",
    "null_std",
    "null_median",
    "threshold",
)

Scope = Literal["source", "screen"]
_SCOPES: tuple[str, ...] = ("source", "screen")
_MIN_LEFT = 2  # controls that must remain on a plate to standardise a drawn well without it
_EPS = np.finfo(np.float64).eps
_FOLDS = 3  # cross-fitting folds of the null (fewer when there are fewer control wells)
_CHUNK_VALUES = 4_000_000  # floats per block of null samples (bounds memory)


# --------------------------------------------------------------------------- public API


def phenotype_strength(
    wells: pd.DataFrame,
    n_components: float | int = 0.9,
    percentile: float = 95.0,
    min_replicates: int = 2,
    scope: Scope = "source",
    *,
    n_null: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Score every (source, treatment) against the negative controls of its source.

    The procedure is described step by step in the module docstring.

    Args:
        wells: Well-level profiles: one row per (source, plate, well) with
            :data:`REQUIRED_COLUMNS` and finite numeric features; control wells have
            ``Metadata_ControlType == "negcon"`` (every kind of negative control).
        n_components: PCA size: a fraction in (0, 1] of the control variance to keep, or a
            number of components (int >= 1, clipped to the controls' rank).
        percentile: Percentile of the control null used as threshold, in (0, 100).
        min_replicates: Fewest wells a treatment needs to be called strong (>= 1).
        scope: ``"source"``: PCA and null per source; ``"screen"``: one PCA and null over
            the standardised controls of all sources.
        n_null: Number of random control subsets per replicate count (>= 1).
        seed: Seed of the null draws (>= 0).

    Returns:
        One row per non-control (source, treatment), sorted by source and treatment, with
        :data:`STRENGTH_COLUMNS`: ``n_replicates`` (wells), ``distance``, ``threshold``,
        ``strength`` (= distance / threshold), ``is_strong``, ``p_value``,
        ``n_control_wells`` and ``n_components`` of the analysis group. ``attrs["parameters"]``
        holds the arguments (read by :func:`morphoflow.assembly.combined.manifest`).

    Raises:
        ValueError: If an argument is out of range, ``wells`` lacks a column, has duplicate
            wells, non-finite or no features, a treatment with two MoAs in a source, a source
            without control wells, a plate with fewer than 2 control wells, or a group whose
            controls cannot make a null (the message names the source).
    """
    min_replicates = _check_int(min_replicates, "min_replicates", 1)
    strength, _ = _analyse(wells, n_components, percentile, scope, n_null, seed, None)
    strength["is_strong"] = (strength["distance"] > strength["threshold"]) & (
        strength["n_replicates"] >= min_replicates
    )
    table = strength[list(STRENGTH_COLUMNS)]
    table.attrs["parameters"] = {
        "n_components": n_components,
        "percentile": float(percentile),
        "min_replicates": min_replicates,
        "scope": scope,
        "n_null": int(n_null),
        "seed": int(seed),
    }
    return table


def control_null(
    wells: pd.DataFrame,
    n_components: float | int = 0.9,
    percentile: float = 95.0,
    scope: Scope = "source",
    *,
    n_null: int = 1000,
    seed: int = 0,
    replicates: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Describe the control-to-control null distributions behind :func:`phenotype_strength`.

    With the same arguments, the thresholds are exactly those of :func:`phenotype_strength`.

    Args:
        wells: Well-level profiles (see :func:`phenotype_strength`).
        n_components: PCA size (see :func:`phenotype_strength`).
        percentile: Percentile used as threshold, in (0, 100).
        scope: ``"source"`` or ``"screen"``.
        n_null: Number of random control subsets per replicate count (>= 1).
        seed: Seed of the null draws (>= 0).
        replicates: Replicate counts to describe; None = those of the group's treatments.

    Returns:
        One row per (group, replicate count) with :data:`NULL_COLUMNS`: the group's source
        (None for ``scope="screen"``), ``n_replicates``, ``subset_size`` (control wells per
        draw; smaller than ``n_replicates`` only when the controls are too few),
        ``n_control_wells``, ``n_plates``, ``n_components``, ``explained_variance`` (fraction
        of the control variance the components keep), ``n_samples`` and the mean, standard
        deviation, median and ``percentile`` (``threshold``) of the null distances.

    Raises:
        ValueError: As :func:`phenotype_strength`, or if a replicate count is < 1.
    """
    if replicates is not None:
        replicates = [_check_int(n, "replicates", 1) for n in replicates]
    _, null = _analyse(wells, n_components, percentile, scope, n_null, seed, replicates)
    return null


# --------------------------------------------------------------------------- validation


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_n_components(value: Any) -> float | int:
    if isinstance(value, bool):
        raise ValueError(f"n_components must be a fraction in (0, 1] or an int >= 1, got {value!r}")
    if isinstance(value, int | np.integer):
        return _check_int(value, "n_components", 1)
    if isinstance(value, float | np.floating) and 0.0 < value <= 1.0:
        return float(value)
    raise ValueError(f"n_components must be a fraction in (0, 1] or an int >= 1, got {value!r}")


def _check_wells(wells: pd.DataFrame) -> list[str]:
    if not isinstance(wells, pd.DataFrame):
        raise ValueError(f"wells must be a pandas DataFrame, got {type(wells).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in wells.columns]
    if missing:
        raise ValueError(f"wells lacks the columns {missing}")
    if len(wells) == 0:
        raise ValueError("wells has no rows")
    for column in (SOURCE, PLATE, WELL, TREATMENT):
        if wells[column].isna().any():
            raise ValueError(f"wells: column {column} has missing values")
    duplicated = wells.duplicated([SOURCE, PLATE, WELL])
    if duplicated.any():
        first = wells.loc[duplicated, [SOURCE, PLATE, WELL]].iloc[0].tolist()
        raise ValueError(f"wells has duplicate wells (one row per well expected), e.g. {first}")
    features = feature_columns(wells)
    if not features:
        raise ValueError("wells has no feature columns")
    bad = [c for c in features if not pd.api.types.is_numeric_dtype(wells[c].dtype)]
    if bad:
        raise ValueError(f"wells: feature columns must be numeric, not: {bad[:10]}")
    finite = np.isfinite(wells[features].to_numpy(dtype=np.float64)).all(axis=0)
    if not finite.all():
        bad = [f for f, ok in zip(features, finite, strict=True) if not ok]
        raise ValueError(f"wells: features with NaN/inf values: {bad[:10]}")
    moas = wells.groupby([SOURCE, TREATMENT], sort=True)[MOA].nunique(dropna=False)
    if (moas > 1).any():
        source, treatment = moas[moas > 1].index[0]
        raise ValueError(
            f"wells: treatment {treatment!r} has more than one {MOA} in source {source!r}"
        )
    return features


# --------------------------------------------------------------------------- analysis


def _analyse(
    wells: pd.DataFrame,
    n_components: Any,
    percentile: Any,
    scope: Any,
    n_null: Any,
    seed: Any,
    replicates: list[int] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Steps 1-7 of the module docstring: (strength rows without is_strong, null table)."""
    n_components = _check_n_components(n_components)
    if isinstance(percentile, bool) or not (
        isinstance(percentile, int | float | np.integer | np.floating) and 0 < percentile < 100
    ):
        raise ValueError(f"percentile must be in (0, 100), got {percentile!r}")
    if scope not in _SCOPES:
        raise ValueError(f"scope must be one of {_SCOPES}, got {scope!r}")
    n_null = _check_int(n_null, "n_null", 1)
    seed = _check_int(seed, "seed", 0)
    features = _check_wells(wells)

    frame = wells.sort_values([SOURCE, PLATE, WELL], kind="mergesort").reset_index(drop=True)
    controls = control_mask(frame, CONTROL_QUERY)
    per_source = pd.Series(controls).groupby(frame[SOURCE].to_numpy(), sort=True).sum()
    without = [s for s, count in per_source.items() if count == 0]
    if without:
        raise ValueError(
            f"wells: sources without negative-control wells ({CONTROL_QUERY}): {without}"
        )
    try:
        corrected = batch_correct(frame, "standardize", "plate")
    except ValueError as exc:
        raise ValueError(f"wells: {exc}") from exc
    values = corrected[features].to_numpy(dtype=np.float64)

    if scope == "source":
        groups = [
            (source, str(source), np.flatnonzero((frame[SOURCE] == source).to_numpy()))
            for source in per_source.index
        ]
    else:
        groups = [(None, "screen", np.arange(len(frame)))]

    strength_parts: list[pd.DataFrame] = []
    null_rows: list[dict[str, Any]] = []
    for source, label, rows in groups:
        where = "the screen" if source is None else f"source {source!r}"
        ctrl = rows[controls[rows]]
        space = _ControlSpace(values[ctrl], n_components, where)
        plates = frame.loc[ctrl, [SOURCE, PLATE]].astype(str).agg("/".join, axis=1)
        folds = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(label.encode()), 0]))
        # Building the null may truncate ``space`` to the folds' rank: score treatments after.
        null = _HeldOutNull(values[ctrl], pd.factorize(plates)[0], space, where, folds)

        treated = frame.loc[rows[~controls[rows]]]
        grouped = treated.groupby([SOURCE, TREATMENT], sort=True)
        table = grouped[MOA].first().reset_index()
        indices = grouped.indices
        positions = [indices[key] for key in zip(table[SOURCE], table[TREATMENT], strict=True)]
        table["n_replicates"] = np.array([len(p) for p in positions], dtype=np.int64)
        centre = (
            np.stack([values[treated.index.to_numpy()[p]].mean(axis=0) for p in positions])
            if positions
            else np.empty((0, values.shape[1]))
        )
        table["distance"] = space.distance(centre)

        counts = replicates if replicates is not None else table["n_replicates"].tolist()
        nulls: dict[int, np.ndarray] = {}
        for n in sorted(set(counts)):
            rng = np.random.default_rng(
                np.random.SeedSequence([seed, zlib.crc32(label.encode()), n])
            )
            nulls[n] = null.sample(n, n_null, rng)
            dist = nulls[n]
            null_rows.append(
                {
                    SOURCE: source,
                    "n_replicates": n,
                    "subset_size": null.subset_size(n),
                    "n_control_wells": len(ctrl),
                    "n_plates": null.n_plates,
                    "n_components": space.k,
                    "explained_variance": space.explained,
                    "n_samples": n_null,
                    "null_mean": float(dist.mean()),
                    "null_std": float(dist.std(ddof=1)) if n_null > 1 else 0.0,
                    "null_median": float(np.median(dist)),
                    "threshold": float(np.percentile(dist, percentile)),
                }
            )
        if replicates is None and len(table):
            thresholds, p_values = [], []
            for n, d in zip(table["n_replicates"], table["distance"], strict=True):
                dist = nulls[int(n)]
                thresholds.append(float(np.percentile(dist, percentile)))
                p_values.append((1.0 + float((dist >= d).sum())) / (1.0 + n_null))
            table["threshold"] = thresholds
            with np.errstate(divide="ignore", invalid="ignore"):
                table["strength"] = table["distance"] / table["threshold"]
            table["p_value"] = p_values
            table["n_control_wells"] = len(ctrl)
            table["n_components"] = space.k
            strength_parts.append(table)

    columns = [c for c in STRENGTH_COLUMNS if c != "is_strong"]
    if strength_parts:
        strength = pd.concat(strength_parts, ignore_index=True)
        strength = strength.sort_values([SOURCE, TREATMENT], kind="mergesort")
        strength = strength.reset_index(drop=True)[columns]
    else:
        strength = pd.DataFrame(
            {c: pd.Series(dtype=_EMPTY_DTYPES.get(c, "object")) for c in columns}
        )
    return strength, pd.DataFrame(null_rows, columns=list(NULL_COLUMNS))


_EMPTY_DTYPES = {
    "n_replicates": "int64",
    "distance": "float64",
    "threshold": "float64",
    "strength": "float64",
    "p_value": "float64",
    "n_control_wells": "int64",
    "n_components": "int64",
}


class _ControlSpace:
    """PCA of standardised control wells: centroid, kept components, distances.

    Args:
        controls: Standardised control wells the components are fitted on (centred on their
            own mean).
        n_components: Fraction of variance (float) or number of components (int, clipped to
            the rank).
        where: Names the group in error messages.
        centroid: Point distances are measured from; default: the mean of ``controls``.
    """

    def __init__(
        self,
        controls: np.ndarray,
        n_components: float | int,
        where: str,
        centroid: np.ndarray | None = None,
    ) -> None:
        n, d = controls.shape
        mean = controls.mean(axis=0)
        self.centroid = mean if centroid is None else centroid
        _, sv, vt = np.linalg.svd(controls - mean, full_matrices=False)
        tol = (sv[0] if len(sv) else 0.0) * max(n, d) * _EPS
        rank = int((sv > tol).sum()) if len(sv) and sv[0] > 0 else 0
        if rank == 0:
            raise ValueError(f"wells: the control wells of {where} do not vary in any feature")
        var = sv[:rank] ** 2
        if isinstance(n_components, float):
            cumulative = np.cumsum(var) / var.sum()
            k = int(np.searchsorted(cumulative, n_components - 1e-12) + 1)
        else:
            k = n_components
        self.rank = rank
        self._vt = vt[:rank]
        self._var = var
        self.truncate(min(k, rank))

    def truncate(self, k: int) -> None:
        """Keep the first ``k`` components (``k`` <= rank)."""
        self.k = k
        self.components = self._vt[:k]
        self.explained = float(self._var[:k].sum() / self._var.sum())

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Euclidean norm of the PC scores of ``points - centroid`` (rows)."""
        return np.linalg.norm((points - self.centroid) @ self.components.T, axis=-1)


class _HeldOutNull:
    """Null distances of random control subsets, out of sample like a treatment's wells.

    Every drawn well is standardised without itself (held-out statistics of its plate) and
    projected on components fitted without it (cross-fitting: the controls are split into
    folds, a draw takes its wells from one fold and is projected on the components of the
    other folds).

    ``values`` are the controls *after* per-plate standardisation; held-out statistics are
    computed in that space, which gives the same standardised values as computing them on the
    raw features (standardisation is affine per plate and feature) and avoids cancellation.
    """

    def __init__(
        self,
        values: np.ndarray,
        plate: np.ndarray,
        space: _ControlSpace,
        where: str,
        rng: np.random.Generator,
    ) -> None:
        self.values = values
        self.plate = plate
        self.n_plates = int(plate.max()) + 1
        self.count = np.bincount(plate, minlength=self.n_plates)
        self.sums = np.zeros((self.n_plates, values.shape[1]))
        np.add.at(self.sums, plate, values)
        self.squares = np.zeros_like(self.sums)
        np.add.at(self.squares, plate, values**2)
        cap = np.maximum(self.count - _MIN_LEFT, 0)  # drawable wells per plate
        if cap.sum() == 0:
            raise ValueError(
                f"wells: {where} needs a plate with at least {_MIN_LEFT + 1} control wells to "
                f"build the null (each drawn well is standardised by {_MIN_LEFT} or more others)"
            )
        # Folds: within each plate (in random order) wells are dealt round-robin, so every
        # fold has about the same number of wells on every plate.
        n_folds = min(_FOLDS, len(values))
        fold = np.empty(len(values), dtype=np.int64)
        dealt = 0
        for p in range(self.n_plates):
            rows = rng.permutation(np.flatnonzero(plate == p))
            fold[rows] = (dealt + np.arange(len(rows))) % n_folds
            dealt += len(rows)
        self.folds = [np.flatnonzero(fold == j) for j in range(n_folds)]
        self.spaces = [
            _ControlSpace(values[fold != j], space.k, where, centroid=space.centroid)
            for j in range(n_folds)
        ]
        # Treatments and draws are scored with the same number of components.
        k = min(sp.k for sp in (space, *self.spaces))
        for sp in (space, *self.spaces):
            sp.truncate(k)
        self.caps = [
            np.minimum(cap, np.bincount(plate[rows], minlength=self.n_plates))
            for rows in self.folds
        ]
        self.max_subset = max(int(c.sum()) for c in self.caps)

    def subset_size(self, n: int) -> int:
        return min(n, self.max_subset)

    def sample(self, n: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
        """Null distances of ``n_samples`` pseudo-treatments of ``subset_size(n)`` wells,
        shared equally by the folds that hold that many drawable wells."""
        size = self.subset_size(n)
        usable = [j for j, c in enumerate(self.caps) if c.sum() >= size]
        shares = np.full(len(usable), n_samples // len(usable))
        shares[: n_samples % len(usable)] += 1
        d = self.values.shape[1]
        out = []
        for j, share in zip(usable, shares, strict=True):
            rows, caps = self.folds[j], _spread(self.caps[j], size)
            chunk = max(1, _CHUNK_VALUES // max(len(rows) + size * (d + size), 1))
            for start in range(0, int(share), chunk):
                batch = min(chunk, int(share) - start)
                idx = self._draw(rows, caps, size, batch, rng)
                out.append(self._distances(idx, self.spaces[j]))
        return np.concatenate(out)

    def _draw(
        self,
        rows: np.ndarray,
        caps: np.ndarray,
        size: int,
        n_samples: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """(n_samples, size) control indices: the first ``size`` wells of a random
        permutation of ``rows`` that respect the per-plate ``caps``."""
        order = rows[np.argsort(rng.random((n_samples, len(rows))), axis=1)]
        plates = self.plate[order]
        rank = np.zeros(order.shape, dtype=np.int64)  # 1-based rank within the plate
        for p in range(self.n_plates):
            mask = plates == p
            rank[mask] = np.cumsum(mask, axis=1)[mask]
        eligible = rank <= caps[plates]
        take = eligible & (np.cumsum(eligible, axis=1) <= size)
        return order[take].reshape(n_samples, size)

    def _distances(self, idx: np.ndarray, space: _ControlSpace) -> np.ndarray:
        drawn = self.values[idx]  # (B, n, d)
        plate = self.plate[idx]  # (B, n)
        same = (plate[:, :, None] == plate[:, None, :]).astype(np.float64)  # (B, n, n)
        left = (self.count[plate] - same.sum(axis=2))[:, :, None]  # controls left on the plate
        mean = (self.sums[plate] - same @ drawn) / left
        var = (self.squares[plate] - same @ drawn**2 - left * mean**2) / (left - 1)
        scale = np.sqrt(np.maximum(var, 0.0))
        scale = np.where(scale <= 10 * _EPS * np.maximum(1.0, np.abs(mean)), 1.0, scale)
        held_out = (drawn - mean) / scale
        return space.distance(held_out.mean(axis=1))


def _spread(caps: np.ndarray, size: int) -> np.ndarray:
    """Per-plate maxima of a draw of ``size``: as evenly spread as ``caps`` allow."""
    for c in range(1, int(caps.max()) + 1):
        spread = np.minimum(caps, c)
        if spread.sum() >= size:
            return spread
    return caps
