"""Scores of activity prediction (Moshkov et al., Nat Commun 2023).

- :func:`score_folds`: per assay x modality x split x fold, AUROC and average precision of the
  out-of-fold predictions (NaN when the test fold lacks a positive or a negative).
- :func:`summarize`: per split and modality, the median over folds per assay, the number of
  assays with median AUROC > 0.5 / 0.7 / 0.9, which assays each modality predicts well
  (overlap), the retrospective union (per assay, the best single modality chosen after the
  fact: an upper bound, not a method), and the enrichment of actives among the top 1 % of
  compounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.activity.crossval import BASELINE, SINGLE_MODALITIES
from morphoflow.activity.inputs import TREATMENT

THRESHOLDS = (0.5, 0.7, 0.9)
AUROC_COLUMNS = ["assay", "modality", "split", "fold", "auroc", "ap", "n_test", "n_positive"]


def score_folds(predictions: pd.DataFrame) -> pd.DataFrame:
    """AUROC and average precision per assay, modality, split and fold.

    Args:
        predictions: Long predictions (``split, fold, Metadata_Treatment, assay, modality,
            probability, label``); rows with a NaN label are ignored.

    Returns:
        Frame with :data:`AUROC_COLUMNS`; ``auroc``/``ap`` are NaN where the fold's labelled
        test compounds are all of one class.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    rows = []
    labelled = predictions[predictions["label"].notna()]
    for (split, fold, modality, assay), group in labelled.groupby(
        ["split", "fold", "modality", "assay"], sort=True
    ):
        y = group["label"].to_numpy()
        p = group["probability"].to_numpy(dtype=np.float64)
        n_pos = int((y == 1).sum())
        if 0 < n_pos < len(y):
            auroc, ap = float(roc_auc_score(y, p)), float(average_precision_score(y, p))
        else:
            auroc = ap = float("nan")
        rows.append([assay, modality, split, int(fold), auroc, ap, len(y), n_pos])
    return pd.DataFrame(rows, columns=AUROC_COLUMNS)


def median_auroc(scores: pd.DataFrame) -> pd.DataFrame:
    """Median AUROC over folds: frame (split, assay) x modality (NaN folds ignored)."""
    return scores.pivot_table(
        index=["split", "assay"], columns="modality", values="auroc", aggfunc="median"
    )


def enrichment_top(predictions: pd.DataFrame, fraction: float = 0.01) -> pd.DataFrame:
    """Enrichment of actives among the top ``fraction`` of compounds, per split/modality/assay.

    Out-of-fold predictions of all folds are pooled (each compound is predicted once per
    split); the top ``max(1, round(fraction * n))`` labelled compounds by probability (ties by
    treatment id) are taken; enrichment = hit rate among them / hit rate overall.

    Returns:
        Frame ``split, modality, assay, n_top, hits_top, enrichment``.
    """
    rows = []
    labelled = predictions[predictions["label"].notna()]
    for (split, modality, assay), group in labelled.groupby(["split", "modality", "assay"]):
        rate = float(group["label"].mean())
        if rate == 0:
            continue
        n_top = max(1, int(round(fraction * len(group))))
        top = group.sort_values(["probability", TREATMENT], ascending=[False, True]).head(n_top)
        hits = float(top["label"].sum())
        rows.append([split, modality, assay, n_top, int(hits), (hits / n_top) / rate])
    return pd.DataFrame(
        rows, columns=["split", "modality", "assay", "n_top", "hits_top", "enrichment"]
    )


def well_predicted(medians: pd.DataFrame, split: str, threshold: float) -> dict[str, set[str]]:
    """Modality -> assays with median AUROC > ``threshold`` on ``split``."""
    table = medians.loc[split]
    return {str(m): set(table.index[table[m] > threshold]) for m in table.columns}


def overlap_table(
    medians: pd.DataFrame, split: str, threshold: float, modalities: Sequence[str]
) -> pd.DataFrame:
    """UpSet-style counts: for every non-empty combination of ``modalities``, the number of
    assays predicted well (> ``threshold``) by exactly those modalities.

    Returns:
        Frame ``combination`` ("cs+mo"), ``n_assays``, ``assays`` (";"-joined), sorted by
        count, largest first.
    """
    sets = well_predicted(medians, split, threshold)
    present = [m for m in modalities if m in sets]
    rows = []
    for k in range(1, len(present) + 1):
        for combo in combinations(present, k):
            exact = set.intersection(*(sets[m] for m in combo))
            for other in present:
                if other not in combo:
                    exact -= sets[other]
            rows.append(["+".join(combo), len(exact), ";".join(sorted(exact))])
    frame = pd.DataFrame(rows, columns=["combination", "n_assays", "assays"])
    return frame.sort_values("n_assays", ascending=False, kind="stable").reset_index(drop=True)


def summarize(
    scores: pd.DataFrame,
    predictions: pd.DataFrame,
    thresholds: Sequence[float] = THRESHOLDS,
    meaningful: bool = True,
    reason: str = "",
) -> dict[str, Any]:
    """The run's summary (JSON-ready).

    Per split: for every modality (models, baseline, fusions), ``n_assays_scored``,
    ``median_auroc`` (median over assays of the per-assay median over folds), ``median_ap``,
    ``count_gt_<t>`` (assays with median AUROC > t), ``median_enrichment_top1pct``; then
    ``retrospective_union`` (per assay the best single modality among CS/MO/GE:
    ``count_gt_<t>``, and ``best_modality_counts``), ``overlap_<t>`` (UpSet counts of the
    single modalities) and ``any_single_gt_<t>``.

    When ``meaningful`` is False (too few compounds), counts and medians are omitted and
    ``note`` says why; the per-fold table is still written by the caller.
    """
    out: dict[str, Any] = {"auroc_meaningful": bool(meaningful)}
    if not meaningful:
        out["note"] = f"AUROC is not meaningful here: {reason}. No counts are reported."
        out["n_rows_scored"] = int(scores["auroc"].notna().sum())
        return out
    medians = median_auroc(scores)
    ap_medians = scores.pivot_table(
        index=["split", "assay"], columns="modality", values="ap", aggfunc="median"
    )
    enrichment = enrichment_top(predictions)
    splits: dict[str, Any] = {}
    for split in sorted(scores["split"].unique()):
        table = medians.loc[split]
        per_modality = {}
        for modality in table.columns:
            values = table[modality].dropna()
            enrich = enrichment[
                (enrichment["split"] == split) & (enrichment["modality"] == modality)
            ]["enrichment"]
            entry: dict[str, Any] = {
                "n_assays_scored": int(len(values)),
                "median_auroc": _num(values.median()),
                "median_ap": _num(ap_medians.loc[split][modality].dropna().median()),
                "median_enrichment_top1pct": _num(enrich.median()),
            }
            for t in thresholds:
                entry[f"count_gt_{t}"] = int((values > t).sum())
            per_modality[str(modality)] = entry
        singles = [m for m in SINGLE_MODALITIES if m in table.columns]
        block: dict[str, Any] = {"modalities": per_modality}
        if singles:
            best = table[singles].max(axis=1)
            best_name = table[singles].idxmax(axis=1).dropna()
            union: dict[str, Any] = {
                "note": "per assay the best of CS/MO/GE chosen after seeing the scores "
                "(an upper bound on what combining modalities could reach)",
                "best_modality_counts": {
                    str(k): int(v) for k, v in best_name.value_counts().items()
                },
            }
            for t in thresholds:
                union[f"count_gt_{t}"] = int((best > t).sum())
                block[f"overlap_{t}"] = (
                    overlap_table(medians, split, t, singles)
                    .query("n_assays > 0")[["combination", "n_assays"]]
                    .to_dict(orient="records")
                )
            block["retrospective_union"] = union
        if BASELINE in table.columns:
            block["assays_where_baseline_is_best"] = sorted(
                str(a)
                for a in table.index
                if np.isfinite(table.loc[a, BASELINE])
                and all(
                    not (table.loc[a, m] >= table.loc[a, BASELINE])
                    for m in singles
                    if np.isfinite(table.loc[a, m])
                )
            )
        splits[str(split)] = block
    out["splits"] = splits
    return out


def _num(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 4)
