"""Folds of enrichment of a retrieval (Fisher test on each query's top-ranked profiles)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from morphoflow.profiling.evaluation.retrieval import (
    DEFAULT_EXCLUDE_LABELS,
    _label_queries,
    _metadata_columns,
    _rank_positives,
)


# --------------------------------------------------------------------------------------------
# Folds of enrichment
# --------------------------------------------------------------------------------------------
def folds_of_enrichment(
    profiles: pd.DataFrame,
    label_col: str = "Metadata_MoA",
    exclude_labels: Iterable[Any] = DEFAULT_EXCLUDE_LABELS,
    top_fraction: float = 0.01,
    threshold: float = 0.05,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Per-query enrichment of same-label profiles among the most similar ones.

    For each query (as in :func:`retrieval_ap`: ``n`` candidates = all other profiles, ranked
    by cosine similarity with stable ties) the top ``k = max(1, round(top_fraction * n))``
    candidates (round half up) form the "top" set. The 2x2 table
    ``[[a, b], [c, d]]`` = ``[[same label in top, other in top], [same label not in top,
    other not in top]]`` is tested with the one-sided Fisher exact test
    (``scipy.stats.fisher_exact(table, alternative="greater")``, i.e. the hypergeometric
    upper tail); the odds ratio is the sample odds ratio ``a*d / (b*c)``.

    Infinite odds ratios (``b*c == 0 < a*d``, e.g. a top set of positives only) follow
    DeepProfilerExperiments (``profiling/quality.py``, ``enrichment_analysis``): they are
    replaced by ``d``. Undefined ones (``0/0``) stay NaN and are left out of the mean.
    DeepProfilerExperiments selects the top set as similarities above the 99th percentile of
    the query's similarities; we take exactly ``k`` candidates by rank.

    Args:
        profiles: Profile table.
        label_col: Label column.
        exclude_labels: Labels that never make a query nor a positive (negatives only).
        top_fraction: Fraction of the candidates in the top set, in (0, 1].
        threshold: p-value threshold for ``fraction_significant``.

    Returns:
        ``(summary, per_query)``: ``summary`` has ``folds_of_enrichment`` (mean odds ratio),
        ``fraction_significant`` (share of queries with p < ``threshold``), ``n_queries``,
        ``top_k``; ``per_query`` has the query metadata, ``a``, ``b``, ``c``, ``d``,
        ``odds_ratio``, ``p_value``.

    Raises:
        ValueError: On invalid input or when there is no query.
    """
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    X, codes, queries = _label_queries(profiles, label_col, exclude_labels)
    if queries.size == 0:
        raise ValueError(f"profiles has no query: no {label_col} label is shared by 2 profiles")
    ranks = _rank_positives(X, codes, queries, always_candidate=None, mode="exact")
    n_candidates = len(profiles) - 1
    k = max(1, math.floor(top_fraction * n_candidates + 0.5))
    a = np.array([(ranks.of(q) <= k).sum() for q in range(queries.size)], dtype=np.int64)
    n_pos = ranks.n_pos
    b = k - a
    c = n_pos - a
    d = n_candidates - k - c
    numerator = a.astype(np.float64) * d
    denominator = b.astype(np.float64) * c
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = numerator / denominator
    odds = np.where(np.isposinf(odds), d.astype(np.float64), odds)
    # P(X >= a), X ~ Hypergeometric(population n, n_pos successes, k draws) == Fisher "greater"
    p_value = stats.hypergeom.sf(a - 1, n_candidates, n_pos, k)
    per_query = profiles.iloc[queries][_metadata_columns(profiles)].copy()
    per_query["a"], per_query["b"], per_query["c"], per_query["d"] = a, b, c, d
    per_query["odds_ratio"] = odds
    per_query["p_value"] = np.clip(p_value, 0.0, 1.0)
    finite = odds[~np.isnan(odds)]
    summary = {
        "folds_of_enrichment": float(finite.mean()) if finite.size else float("nan"),
        "fraction_significant": float((per_query["p_value"] < threshold).mean()),
        "n_queries": int(queries.size),
        "top_k": int(k),
    }
    return summary, per_query
