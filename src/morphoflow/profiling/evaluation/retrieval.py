"""Retrieval metrics of profiles: similarity, average precision (exact and copairs-equal),
mAP with permutation p-values, the interpolated mAP, replicate reproducibility.

The retrieval setup, tie rule and agreement with copairs are described in
:mod:`morphoflow.profiling.evaluation`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from morphoflow.profiling import aggregate

METADATA_PREFIX = "Metadata_"
DEFAULT_EXCLUDE_LABELS: tuple[str, ...] = ("", "inactive")

# Similarity rows are computed in blocks of about this many float64 values (~64 MB).
_BLOCK_VALUES = 2**23
# Null AP matrices are generated in chunks of about this many permuted indices.
_NULL_CHUNK_VALUES = 2**22
# Tolerance when comparing two floating-point AP values that are mathematically equal.
_AP_TOLERANCE = 1e-12

Mode = Literal["exact", "copairs"]

#: Score columns of :func:`replicate_reproducibility`, after the treatment column.
REPLICATE_SCORE_COLUMNS: tuple[str, ...] = (
    "n_wells",
    "map",
    "p_value",
    "corrected_p_value",
    "below_p",
    "below_corrected_p",
)


# --------------------------------------------------------------------------------------------
# Table helpers
# --------------------------------------------------------------------------------------------
def feature_columns(df: pd.DataFrame) -> list[str]:
    """Return the feature columns of a profile table (every column not starting ``Metadata_``).

    Args:
        df: Profile table.

    Returns:
        Feature column names, in table order.

    Raises:
        ValueError: If ``df`` is not a DataFrame or has no feature column.

    Example:
        >>> feature_columns(pd.DataFrame({"Metadata_Well": ["A01"], "f1": [1.0], "f2": [0.0]}))
        ['f1', 'f2']
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    features = aggregate.feature_columns(df)
    if not features:
        raise ValueError(f"df has no feature columns: every column starts with {METADATA_PREFIX!r}")
    return features


def _metadata_columns(df: pd.DataFrame) -> list[str]:
    return aggregate.metadata_columns(df)


def _feature_matrix(df: pd.DataFrame, name: str) -> np.ndarray:
    """Float64 feature matrix of ``df``; ``name`` is the argument named in errors."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    try:
        columns = feature_columns(df)
    except ValueError as error:
        raise ValueError(str(error).replace("df has", f"{name} has", 1)) from None
    non_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise ValueError(
            f"{name} has non-numeric feature columns {non_numeric[:5]}; metadata columns must "
            f"start with {METADATA_PREFIX!r}"
        )
    matrix = df[columns].to_numpy(dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise ValueError(f"{name} has NaN or infinite feature values")
    return matrix


def _require_column(df: pd.DataFrame, column: str, name: str, argument: str) -> None:
    if column not in df.columns:
        raise ValueError(f"{argument}={column!r} is not a column of {name}")


def _excluded(labels: pd.Series, exclude_labels: Iterable[Any]) -> np.ndarray:
    """Boolean mask: label missing or in ``exclude_labels``."""
    return (labels.isna() | labels.isin(list(exclude_labels))).to_numpy()


# --------------------------------------------------------------------------------------------
# Similarity and AP primitives
# --------------------------------------------------------------------------------------------
def _normalize_rows(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1)
    return X / np.where(norms > 0, norms, 1.0)[:, None]


def cosine_similarity_matrix(X: np.ndarray | pd.DataFrame) -> np.ndarray:
    """Cosine similarity between all rows of ``X``.

    Rows are L2-normalised first; an all-zero row stays zero, so its similarity with every row
    (itself included) is 0 instead of NaN.

    Args:
        X: ``(n, d)`` matrix of profiles (array or all-numeric DataFrame).

    Returns:
        ``(n, n)`` float64 matrix.

    Raises:
        ValueError: If ``X`` is not two-dimensional or has non-finite values.

    Example:
        >>> cosine_similarity_matrix(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])).round(3)
        array([[1.   , 0.707, 0.   ],
               [0.707, 1.   , 0.   ],
               [0.   , 0.   , 0.   ]])
    """
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"X must be two-dimensional, got shape {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise ValueError("X has NaN or infinite values")
    normalized = _normalize_rows(matrix)
    return normalized @ normalized.T


def _ranked_bool(ranked_is_positive: Any) -> np.ndarray:
    ranked = np.asarray(ranked_is_positive)
    if ranked.ndim != 1:
        raise ValueError(f"ranked_is_positive must be one-dimensional, got shape {ranked.shape}")
    ranked = ranked.astype(bool)
    if not ranked.any():
        raise ValueError("ranked_is_positive has no positive; AP is undefined")
    return ranked


def average_precision(ranked_is_positive: np.ndarray | Sequence[bool]) -> float:
    """Non-interpolated average precision of one ranked list.

    AP is the mean, over the positives, of the precision at each positive's rank:
    ``AP = (1/P) * sum_m m / R_m`` where ``R_m`` is the (1-based) rank of the m-th positive.

    Args:
        ranked_is_positive: Relevance of the ranked candidates, best first (bool or 0/1).

    Returns:
        AP in (0, 1].

    Raises:
        ValueError: If ``ranked_is_positive`` is not 1-D or has no positive.

    Example:
        >>> average_precision([1, 0, 1, 0])  # (1/1 + 2/3) / 2
        0.8333333333333333
    """
    ranked = _ranked_bool(ranked_is_positive)
    ranks = np.flatnonzero(ranked) + 1
    return float(np.mean(np.arange(1, ranks.size + 1) / ranks))


def _recall_axis(recall_levels: int | Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    if isinstance(recall_levels, (int, np.integer)) and not isinstance(recall_levels, bool):
        if recall_levels < 2:
            raise ValueError(f"{name} must be at least 2 when given as a count")
        return np.linspace(0.0, 1.0, int(recall_levels))
    levels = np.asarray(recall_levels, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence or a count")
    if not np.isfinite(levels).all() or levels.min() < 0.0 or levels.max() > 1.0:
        raise ValueError(f"{name} must lie in [0, 1]")
    return levels


def _interpolated_from_ranks(ranks: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Interpolated precision at ``levels`` from the sorted 1-based ranks of the positives."""
    n_pos = ranks.size
    precision = np.arange(1, n_pos + 1) / ranks
    best_from = np.maximum.accumulate(precision[::-1])[::-1]  # max precision at recall >= m/P
    # smallest m with m / P >= r (tolerance so that e.g. r = 0.3, P = 10 gives m = 3)
    m_min = np.ceil(levels * n_pos - 1e-9).astype(np.int64)
    return best_from[np.clip(m_min, 1, n_pos) - 1]


def interpolated_precision(
    ranked_is_positive: np.ndarray | Sequence[bool],
    recall_levels: int | Sequence[float] | np.ndarray = 11,
) -> np.ndarray:
    """Interpolated precision of one ranked list at the given recall levels.

    ``P_interp(r) = max { precision@k : recall@k >= r }`` over all cut-offs ``k`` of the list
    (the standard information-retrieval interpolation, as described in DeepProfilerExperiments'
    ``interpolated_precision_recall_curve``).

    Args:
        ranked_is_positive: Relevance of the ranked candidates, best first.
        recall_levels: Recall levels in [0, 1], or a count of evenly spaced levels from 0 to 1
            (11 gives the classic 11-point curve).

    Returns:
        Interpolated precision at each level.

    Raises:
        ValueError: If the list has no positive or the levels are invalid.

    Example:
        >>> interpolated_precision([1, 0, 1, 0], [0.0, 0.5, 0.6, 1.0]).round(4)
        array([1.    , 1.    , 0.6667, 0.6667])
    """
    ranked = _ranked_bool(ranked_is_positive)
    levels = _recall_axis(recall_levels, "recall_levels")
    return _interpolated_from_ranks(np.flatnonzero(ranked) + 1, levels)


# --------------------------------------------------------------------------------------------
# Ranking core: 1-based ranks of every query's positives, computed block-wise
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Ranks:
    """Ranks of the positives of each query, as a ragged (CSR) array."""

    queries: np.ndarray  # row positions of the queries
    offsets: np.ndarray  # ranks[offsets[q]:offsets[q + 1]] belong to query q
    ranks: np.ndarray  # 1-based ranks, ascending within a query
    n_total: np.ndarray  # number of candidates of each query

    @property
    def n_pos(self) -> np.ndarray:
        return np.diff(self.offsets)

    def of(self, q: int) -> np.ndarray:
        return self.ranks[self.offsets[q] : self.offsets[q + 1]]

    def average_precision(self) -> np.ndarray:
        n_pos = self.n_pos
        if self.ranks.size == 0:
            return np.zeros(0)
        m = np.arange(self.ranks.size) - np.repeat(self.offsets[:-1], n_pos) + 1
        return np.add.reduceat(m / self.ranks, self.offsets[:-1]) / n_pos


def _group_members(codes: np.ndarray) -> dict[int, np.ndarray]:
    """Row positions of each non-negative code."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    groups = np.split(order, starts[1:])
    return {int(codes[g[0]]): g for g in groups if codes[g[0]] >= 0}


def _rank_positives(
    X: np.ndarray,
    codes: np.ndarray,
    queries: np.ndarray,
    *,
    always_candidate: np.ndarray | None,
    mode: Mode,
) -> _Ranks:
    """Rank the candidates of each query by cosine similarity and locate its positives.

    The candidates of query ``i`` are the rows ``j != i`` with ``codes[j] == codes[i]``
    (positives) plus, when ``always_candidate`` is given, the rows it marks (negatives); with
    ``always_candidate=None`` every other row is a candidate. Rows with ``codes < 0`` are never
    positives.
    """
    n = X.shape[0]
    normalized = _normalize_rows(X)
    members = _group_members(codes)
    block = max(1, _BLOCK_VALUES // max(n, 1))
    all_ranks: list[np.ndarray] = []
    n_total = np.empty(queries.size, dtype=np.int64)
    if always_candidate is None:
        n_total[:] = n - 1

    for start in range(0, queries.size, block):
        rows = queries[start : start + block]
        sims = normalized[rows] @ normalized.T
        local = np.arange(rows.size)
        if always_candidate is not None:
            outside = ~always_candidate[None, :] & (codes[None, :] != codes[rows, None])
            sims[outside] = -np.inf
        sims[local, rows] = -np.inf  # the query is never ranked
        if mode == "copairs":
            # copairs sorts by float32(1 - float32(sim)); s - 1 in float32 is its exact negative
            sims = (sims.astype(np.float32) - np.float32(1.0)).astype(np.float64)
        if always_candidate is not None:
            n_total[start : start + rows.size] = np.isfinite(sims).sum(axis=1)
        ascending = np.sort(sims, axis=1)

        for r, i in enumerate(rows):
            group = members[int(codes[i])]
            positives = group[group != i]
            values = sims[r, positives]
            above = n - np.searchsorted(ascending[r], values, side="right")
            at_or_above = n - np.searchsorted(ascending[r], values, side="left")
            if np.all(at_or_above - above == 1):  # no candidate ties with a positive
                all_ranks.append(np.sort(above) + 1)
                continue
            candidates = np.flatnonzero(np.isfinite(sims[r]))
            is_positive = codes[candidates] == codes[i]
            if mode == "copairs":  # copairs: equal keys -> positives first
                order = np.lexsort((candidates, ~is_positive, -sims[r, candidates]))
            else:  # stable: equal similarities keep table order
                order = np.lexsort((candidates, -sims[r, candidates]))
            all_ranks.append(np.flatnonzero(is_positive[order]) + 1)

    sizes = np.array([a.size for a in all_ranks], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    ranks = np.concatenate(all_ranks) if all_ranks else np.zeros(0, dtype=np.int64)
    return _Ranks(queries, offsets, ranks.astype(np.float64), n_total)


def _label_queries(
    profiles: pd.DataFrame,
    label_col: str,
    exclude_labels: Iterable[Any],
    query_mask: np.ndarray | Sequence[bool] | pd.Series | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a label retrieval problem: returns (features, label codes, query rows)."""
    X = _feature_matrix(profiles, "profiles")
    _require_column(profiles, label_col, "profiles", "label_col")
    if isinstance(exclude_labels, str):
        raise ValueError("exclude_labels must be a collection of labels, not a string")
    labels = profiles[label_col]
    excluded = _excluded(labels, exclude_labels)
    codes = np.full(len(profiles), -1, dtype=np.int64)
    if (~excluded).any():
        codes[~excluded] = pd.factorize(labels[~excluded], sort=False)[0]
    sizes = np.bincount(codes[codes >= 0], minlength=1) if (codes >= 0).any() else np.zeros(1)
    has_partner = (codes >= 0) & (sizes[np.maximum(codes, 0)] >= 2)
    if query_mask is not None:
        mask = np.asarray(
            query_mask.to_numpy() if isinstance(query_mask, pd.Series) else query_mask
        )
        if mask.shape != (len(profiles),):
            raise ValueError(
                f"query_mask must have one entry per profile ({len(profiles)}), got shape "
                f"{mask.shape}"
            )
        has_partner &= mask.astype(bool)
    return X, codes, np.flatnonzero(has_partner)


def _check_mode(mode: str) -> None:
    if mode not in ("exact", "copairs"):
        raise ValueError(f"mode must be 'exact' or 'copairs', got {mode!r}")


# --------------------------------------------------------------------------------------------
# Retrieval AP / mAP
# --------------------------------------------------------------------------------------------
def retrieval_ap(
    profiles: pd.DataFrame,
    label_col: str = "Metadata_MoA",
    exclude_labels: Iterable[Any] = DEFAULT_EXCLUDE_LABELS,
    query_mask: np.ndarray | Sequence[bool] | pd.Series | None = None,
    mode: Mode = "exact",
) -> pd.DataFrame:
    """Average precision of retrieving each profile's same-label profiles (e.g. MoA retrieval).

    For every query (a profile whose label is not excluded and shared by at least one other
    profile), all *other* profiles are ranked by cosine similarity to it, descending; positives
    share its label; every other profile is a negative -- including profiles with an excluded
    label (``""``, ``"inactive"``, missing), which are never queries but are negatives for
    every query. Ties: see the module docstring (``mode="exact"``: equal similarities keep
    table order; ``mode="copairs"``: float32 keys, positives first, exactly like copairs 0.5).

    Args:
        profiles: Profile table (metadata + numeric features).
        label_col: Column holding the label that defines positives.
        exclude_labels: Labels that never make a query nor a positive. Missing labels are
            always excluded.
        query_mask: Optional boolean per profile restricting which profiles are queries (the
            others stay candidates).
        mode: ``"exact"`` (float64 similarities, stable ties) or ``"copairs"``.

    Returns:
        One row per query (index of ``profiles`` kept): the query's metadata columns, ``ap``,
        ``n_pos`` (number of positives) and ``n_total`` (number of candidates).

    Raises:
        ValueError: If ``profiles`` has no features or non-finite ones, ``label_col`` is
            missing, or ``query_mask``/``mode`` is invalid.

    Example:
        >>> df = pd.DataFrame({"Metadata_MoA": ["a", "a", "b", "b"],
        ...                    "f1": [1.0, 0.9, 0.0, 0.1], "f2": [0.0, 0.1, 1.0, 0.9]})
        >>> retrieval_ap(df)["ap"].tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    _check_mode(mode)
    X, codes, queries = _label_queries(profiles, label_col, exclude_labels, query_mask)
    ranks = _rank_positives(X, codes, queries, always_candidate=None, mode=mode)
    table = profiles.iloc[queries][_metadata_columns(profiles)].copy()
    table["ap"] = ranks.average_precision()
    table["n_pos"] = ranks.n_pos
    table["n_total"] = ranks.n_total
    return table


def _null_average_precision(n_pos: int, n_total: int, null_size: int, seed: int) -> np.ndarray:
    """AP of ``null_size`` random rankings with ``n_pos`` positives among ``n_total``.

    Each sample is a uniformly random permutation of ``range(n_total)`` whose first ``n_pos``
    entries are the positions of the positives. The random stream (``default_rng(seed)``,
    row-wise ``Generator.permuted``) is the one copairs 0.5 uses, so both draw the same
    rankings for the same seed.
    """
    rng = np.random.default_rng(seed)
    dtype = np.uint16 if n_total < 2**16 else np.uint32
    rows_per_chunk = max(1, _NULL_CHUNK_VALUES // max(n_total, 1))
    ranks = np.empty((null_size, n_pos), dtype=np.float64)
    base = np.arange(n_total, dtype=dtype)
    for start in range(0, null_size, rows_per_chunk):
        rows = min(rows_per_chunk, null_size - start)
        permutations = np.tile(base, (rows, 1))
        rng.permuted(permutations, axis=1, out=permutations)
        ranks[start : start + rows] = np.sort(permutations[:, :n_pos], axis=1) + 1.0
    return (np.arange(1, n_pos + 1) / ranks).mean(axis=1)


def _null_distributions(
    n_pos: np.ndarray, n_total: np.ndarray, null_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Null AP samples per distinct (n_pos, n_total); returns (nulls, row -> conf index)."""
    confs, inverse = np.unique(np.stack([n_pos, n_total], axis=1), axis=0, return_inverse=True)
    conf_seeds = np.random.default_rng(seed).integers(8096, size=len(confs))
    nulls = np.empty((len(confs), null_size), dtype=np.float64)
    for c, ((k, total), conf_seed) in enumerate(zip(confs, conf_seeds, strict=True)):
        nulls[c] = _null_average_precision(int(k), int(total), null_size, int(conf_seed))
    return nulls, np.asarray(inverse).reshape(-1)


def _p_value(observed: np.ndarray | float, null: np.ndarray) -> np.ndarray:
    """``(1 + #{null >= observed}) / (1 + null_size)`` for scores sharing one null sample."""
    ordered = np.sort(null)
    at_or_above = null.size - np.searchsorted(
        ordered, np.asarray(observed, dtype=np.float64) - _AP_TOLERANCE, side="left"
    )
    return (1.0 + at_or_above) / (1.0 + null.size)


def mean_average_precision(
    ap_table: pd.DataFrame,
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
    group_by: Sequence[str] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """mAP with copairs-style permutation p-values and Benjamini-Hochberg correction.

    For each distinct ``(n_pos, n_total)`` the null is the AP of ``null_size`` uniformly random
    rankings with ``n_pos`` positives among ``n_total`` candidates. A query's
    ``p = (1 + #{null AP >= AP}) / (1 + null_size)``. With ``group_by`` (copairs' ``sameby``)
    each group's score is the mean AP of its queries and its null is the element-wise mean of
    its queries' null samples. p-values are BH-corrected across the returned rows.

    The null draws reproduce copairs 0.5 (per-configuration seeds drawn from
    ``default_rng(seed).integers(8096)`` over the sorted distinct configurations of the whole
    table, then row-wise permutations), so the p-values equal ``copairs.map.mean_average_precision``
    on the same table and seed -- except where a null sample ties the observed score exactly:
    copairs counts only null values strictly greater (in float32), we count ``>=`` (the
    conservative permutation p-value). Unlike copairs, nothing is cached on disk. As in copairs,
    a configuration's seed depends on the set of configurations in the table.

    Args:
        ap_table: Output of :func:`retrieval_ap` (columns ``ap``, ``n_pos``, ``n_total``).
        null_size: Number of null samples per configuration.
        threshold: Significance level for ``below_p`` / ``below_corrected_p``.
        seed: Seed of the null distributions.
        group_by: Columns to aggregate queries by (``None``: one test per query).

    Returns:
        ``(summary, table)``. ``summary``: ``map`` (mean AP over queries),
        ``fraction_retrieved`` (share of rows of ``table`` with ``below_corrected_p``),
        ``n_queries``, ``n_groups`` (rows of ``table``), ``null_map`` (mean over queries of
        their null mean AP), ``null_size``, ``threshold``. ``table``: per query, ``ap_table``
        plus ``null_mean_ap``, ``p_value``, ``corrected_p_value``, ``below_p``,
        ``below_corrected_p``; with ``group_by``, per group: the group columns, ``map``,
        ``n_queries``, ``p_value``, ``corrected_p_value``, ``below_p``, ``below_corrected_p``.

    Raises:
        ValueError: If ``ap_table`` lacks columns or rows, or an argument is out of range.
    """
    if not isinstance(ap_table, pd.DataFrame):
        raise ValueError(f"ap_table must be a pandas DataFrame, got {type(ap_table).__name__}")
    missing = [c for c in ("ap", "n_pos", "n_total") if c not in ap_table.columns]
    if missing:
        raise ValueError(f"ap_table lacks columns {missing} (use retrieval_ap's output)")
    if len(ap_table) == 0:
        raise ValueError("ap_table has no queries")
    if not isinstance(null_size, (int, np.integer)) or null_size < 1:
        raise ValueError(f"null_size must be a positive integer, got {null_size!r}")
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    ap = ap_table["ap"].to_numpy(dtype=np.float64)
    n_pos = ap_table["n_pos"].to_numpy(dtype=np.int64)
    n_total = ap_table["n_total"].to_numpy(dtype=np.int64)
    if np.isnan(ap).any() or (n_pos < 1).any() or (n_total < n_pos).any():
        raise ValueError("ap_table has NaN AP or invalid n_pos/n_total")

    nulls, conf_of_row = _null_distributions(n_pos, n_total, int(null_size), seed)
    null_means = nulls.mean(axis=1)[conf_of_row]

    if group_by is None:
        table = ap_table.copy()
        table["null_mean_ap"] = null_means
        p_value = np.empty(len(ap))
        for conf, null in enumerate(nulls):
            rows_of_conf = conf_of_row == conf
            p_value[rows_of_conf] = _p_value(ap[rows_of_conf], null)
        table["p_value"] = p_value
    else:
        group_cols = [group_by] if isinstance(group_by, str) else list(group_by)
        for column in group_cols:
            _require_column(ap_table, column, "ap_table", "group_by")
        positions = pd.Series(np.arange(len(ap_table)))
        keys = [ap_table[c].reset_index(drop=True) for c in group_cols]
        grouped = positions.groupby(keys, sort=True, dropna=False)
        rows: list[dict[str, Any]] = []
        for key, members in grouped:
            member_rows = members.to_numpy()
            key_tuple = key if isinstance(key, tuple) else (key,)
            row: dict[str, Any] = dict(zip(group_cols, key_tuple, strict=True))
            row["map"] = float(ap[member_rows].mean())
            row["n_queries"] = int(member_rows.size)
            # null of a group's mAP: element-wise mean of its members' null samples
            member_confs, counts = np.unique(conf_of_row[member_rows], return_counts=True)
            group_null = (counts[:, None] * nulls[member_confs]).sum(axis=0) / counts.sum()
            row["p_value"] = float(_p_value(row["map"], group_null))
            rows.append(row)
        table = pd.DataFrame(rows)

    table["corrected_p_value"] = stats.false_discovery_control(
        table["p_value"].to_numpy(), method="bh"
    )
    table["below_p"] = table["p_value"] < threshold
    table["below_corrected_p"] = table["corrected_p_value"] < threshold
    summary = {
        "map": float(ap.mean()),
        "fraction_retrieved": float(table["below_corrected_p"].mean()),
        "n_queries": int(len(ap_table)),
        "n_groups": int(len(table)),
        "null_map": float(null_means.mean()),
        "null_size": int(null_size),
        "threshold": float(threshold),
    }
    return summary, table


# --------------------------------------------------------------------------------------------
# DeepProfilerExperiments-style interpolated mAP
# --------------------------------------------------------------------------------------------
def interpolated_map(
    profiles: pd.DataFrame,
    label_col: str = "Metadata_MoA",
    exclude_labels: Iterable[Any] = DEFAULT_EXCLUDE_LABELS,
    recall_levels: int | Sequence[float] | np.ndarray | None = None,
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """Interpolated-precision mAP and mean precision-recall curve (DeepProfilerExperiments).

    DeepProfilerExperiments (``profiling/metrics.py``, ``interpolated_precision_recall_curve``;
    used for the "MAP" of Moshkov et al., Nat Commun 2024) computes, per query, the
    interpolated precision ``P_interp(r) = max { precision@k : recall@k >= r }`` at evenly
    spaced recall levels -- as many as there are profiles (``linspace(0, 1, N)``) -- averages
    the curves over the queries and reports the mean of that mean curve as MAP. This function
    evaluates the same definition exactly, on the candidate set, labels and ties of
    :func:`retrieval_ap` (the query is not ranked; excluded labels are negatives only).

    Known differences from that code, by design: (1) its loop stores a value before advancing
    its pointer, so its curve lags one recall level (its recall-1.0 point is the precision of
    the whole list); we evaluate ``P_interp`` at each level (difference O(1/N) in the mean);
    (2) it ranks the query itself last as a negative; (3) it only queries treatments with at
    least two other same-MoA treatments (we need one) and (4) it matches multi-MoA labels
    (``"a|b"``) by any shared MoA (we compare labels exactly).

    Args:
        profiles: Profile table.
        label_col: Label column (positives share it).
        exclude_labels: Labels that never make a query nor a positive (negatives only).
        recall_levels: Recall levels in [0, 1], a count of evenly spaced levels, or ``None``
            for DeepProfilerExperiments' axis ``linspace(0, 1, len(profiles))``.

    Returns:
        ``(summary, per_query, curve)``: ``summary`` has ``interpolated_map`` (mean over
        queries and levels), ``n_queries``, ``n_recall_levels``; ``per_query`` has the query
        metadata, ``interpolated_ap`` (mean over the levels), ``n_pos``, ``n_total``;
        ``curve`` has ``recall`` (ascending) and ``precision`` (mean over queries).

    Raises:
        ValueError: On invalid input (see :func:`retrieval_ap`) or when there is no query.
    """
    X, codes, queries = _label_queries(profiles, label_col, exclude_labels)
    if queries.size == 0:
        raise ValueError(f"profiles has no query: no {label_col} label is shared by 2 profiles")
    if recall_levels is None:
        levels = np.linspace(0.0, 1.0, max(len(profiles), 2))
    else:
        levels = _recall_axis(recall_levels, "recall_levels")
    levels = np.sort(levels)
    ranks = _rank_positives(X, codes, queries, always_candidate=None, mode="exact")
    curves = np.vstack([_interpolated_from_ranks(ranks.of(q), levels) for q in range(queries.size)])
    per_query = profiles.iloc[queries][_metadata_columns(profiles)].copy()
    per_query["interpolated_ap"] = curves.mean(axis=1)
    per_query["n_pos"] = ranks.n_pos
    per_query["n_total"] = ranks.n_total
    curve = pd.DataFrame({"recall": levels, "precision": curves.mean(axis=0)})
    summary = {
        "interpolated_map": float(curves.mean()),
        "n_queries": int(queries.size),
        "n_recall_levels": int(levels.size),
    }
    return summary, per_query, curve


# --------------------------------------------------------------------------------------------
# Replicate reproducibility (copairs "phenotypic activity")
# --------------------------------------------------------------------------------------------
def replicate_reproducibility(
    well_profiles: pd.DataFrame,
    treatment_col: str = "Metadata_Treatment",
    control_col: str = "Metadata_ControlType",
    control_value: Any = "negcon",
    null_size: int = 10000,
    threshold: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Per-treatment QC: can a treatment's wells retrieve each other among negative controls?

    copairs' "phenotypic activity" setup: each treatment well (``control_col !=
    control_value``) is a query; its candidates are the treatment's other wells (positives)
    plus every negative-control well (negatives); other treatments are not ranked. Well APs
    (cosine similarity, stable ties) are averaged per treatment and tested with the
    permutation null of :func:`mean_average_precision` (``group_by=[treatment_col]``),
    BH-corrected over treatments. Treatments with a single well have no positive and are
    left out.

    Args:
        well_profiles: Well-level profile table.
        treatment_col: Column naming the treatment of each well.
        control_col: Column marking control wells.
        control_value: Value of ``control_col`` for negative controls.
        null_size: Null samples per configuration.
        threshold: Significance level.
        seed: Seed of the null distributions.

    Returns:
        One row per treatment: ``treatment_col``, ``n_wells``, ``map``, ``p_value``,
        ``corrected_p_value``, ``below_p``, ``below_corrected_p``.

    Raises:
        ValueError: If a column is missing, there is no control well or no treatment with two
            wells.
    """
    X = _feature_matrix(well_profiles, "well_profiles")
    _require_column(well_profiles, treatment_col, "well_profiles", "treatment_col")
    _require_column(well_profiles, control_col, "well_profiles", "control_col")
    is_control = (well_profiles[control_col] == control_value).to_numpy()
    if not is_control.any():
        raise ValueError(f"well_profiles has no control well ({control_col} == {control_value!r})")
    treatments = well_profiles[treatment_col]
    codes = np.full(len(well_profiles), -1, dtype=np.int64)
    codes[~is_control] = pd.factorize(treatments[~is_control], sort=False)[0]
    sizes = np.bincount(codes[codes >= 0]) if (codes >= 0).any() else np.zeros(1, dtype=int)
    queries = np.flatnonzero((codes >= 0) & (sizes[np.maximum(codes, 0)] >= 2))
    if queries.size == 0:
        raise ValueError("well_profiles has no treatment with at least two wells")
    ranks = _rank_positives(X, codes, queries, always_candidate=is_control, mode="exact")
    ap_table = pd.DataFrame(
        {
            treatment_col: treatments.iloc[queries].to_numpy(),
            "ap": ranks.average_precision(),
            "n_pos": ranks.n_pos,
            "n_total": ranks.n_total,
        }
    )
    _, table = mean_average_precision(
        ap_table, null_size=null_size, threshold=threshold, seed=seed, group_by=[treatment_col]
    )
    table = table.rename(columns={"n_queries": "n_wells"})
    return table[[treatment_col, *REPLICATE_SCORE_COLUMNS]]
