"""The profiling evaluation workflow: batch correction choices compared on held-out treatments.

1. Features with NaN/inf or near-zero variance (on control wells) are dropped.
2. Non-control treatments with an MoA are split, within each MoA, into a *selection* half and a
   *report* half (deterministic for a seed). Treatments with an excluded label (``inactive``)
   are candidates (negatives) in both halves; negative controls are in neither (they define the
   correction, not the retrieval task).
3. The sphering regulariser lambda is chosen by MoA-retrieval mAP on the selection half only.
4. Every representation (raw, per-plate standardised, sphered at the chosen lambda) is scored on
   the report half: mAP (copairs-equal, with permutation p-values), the DeepProfilerExperiments
   interpolated mAP, folds of enrichment, and the mean mAP with shuffled MoA labels (baseline).

So the reported numbers never come from the treatments lambda was tuned on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.profiling.aggregate import metadata_columns, treatment_profiles
from morphoflow.profiling.evaluation import (
    DEFAULT_EXCLUDE_LABELS,
    folds_of_enrichment,
    interpolated_map,
    mean_average_precision,
    retrieval_ap,
)
from morphoflow.profiling.normalize import (
    CONTROL_QUERY,
    batch_correct,
    control_mask,
    feature_select,
    select_lambda,
)


@dataclass
class EvaluationSettings:
    """Parameters of :func:`evaluate_representations`."""

    lambdas: Sequence[float] = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8)
    scope: str = "screen"
    null_size: int = 2000
    top_fraction: float = 0.01
    shuffles: int = 20
    seed: int = 0
    exclude_labels: Sequence[str] = field(default_factory=lambda: list(DEFAULT_EXCLUDE_LABELS))


def _order_key(name: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def split_treatments(
    treatments: pd.DataFrame, exclude_labels: Sequence[str], seed: int = 0
) -> tuple[set[str], set[str]]:
    """Selection and report treatment sets (see the module docstring)."""
    candidates = treatments[treatments["Metadata_ControlType"] != "negcon"]
    excluded = candidates["Metadata_MoA"].isna() | candidates["Metadata_MoA"].isin(
        list(exclude_labels)
    )
    selection, report = set(), set()
    for _, group in candidates[~excluded].groupby("Metadata_MoA"):
        names = sorted(group["Metadata_Treatment"], key=lambda n: _order_key(str(n), seed))
        report.update(names[0::2])
        selection.update(names[1::2])
    shared = set(candidates.loc[excluded, "Metadata_Treatment"])
    return selection | shared, report | shared


def _treatments_of(wells: pd.DataFrame, names: set[str]) -> pd.DataFrame:
    rows = wells[
        wells["Metadata_Treatment"].isin(names) & (wells["Metadata_ControlType"] != "negcon")
    ]
    return treatment_profiles(rows)


def retrieval_scores(
    treatments: pd.DataFrame, settings: EvaluationSettings
) -> tuple[dict[str, float], pd.DataFrame, pd.DataFrame]:
    """mAP (+ p-values), interpolated mAP, folds of enrichment and shuffled-label mAP."""
    ap = retrieval_ap(treatments, exclude_labels=settings.exclude_labels)
    if ap.empty:
        raise ValueError("no treatment shares its MoA with another: MoA retrieval is undefined")
    summary, per_query = mean_average_precision(
        ap, null_size=settings.null_size, seed=settings.seed
    )
    interp, _, curve = interpolated_map(treatments, exclude_labels=settings.exclude_labels)
    foe, _ = folds_of_enrichment(
        treatments, exclude_labels=settings.exclude_labels, top_fraction=settings.top_fraction
    )
    rng = np.random.default_rng(settings.seed)
    shuffled = []
    labelled = ~treatments["Metadata_MoA"].isin(list(settings.exclude_labels))
    for _ in range(settings.shuffles):
        permuted = treatments.copy()
        values = permuted.loc[labelled, "Metadata_MoA"].to_numpy()
        permuted.loc[labelled, "Metadata_MoA"] = rng.permutation(values)
        shuffled_ap = retrieval_ap(permuted, exclude_labels=settings.exclude_labels)
        if not shuffled_ap.empty:
            shuffled.append(float(shuffled_ap["ap"].mean()))
    metrics = {
        "map": float(summary["map"]),
        "fraction_retrieved": float(summary.get("fraction_retrieved", np.nan)),
        "n_queries": float(summary.get("n_queries", len(ap))),
        "interpolated_map": float(interp["interpolated_map"]),
        "folds_of_enrichment": float(foe.get("folds_of_enrichment", np.nan)),
        "foe_fraction_significant": float(foe.get("fraction_significant", np.nan)),
        "shuffled_map": float(np.mean(shuffled)) if shuffled else float("nan"),
    }
    return metrics, per_query, curve


@dataclass
class EvaluationResult:
    """Everything :func:`evaluate_representations` produces."""

    metrics: dict[str, Any]
    chosen_lambda: float
    lambda_sweep: pd.DataFrame
    corrected_wells: dict[str, pd.DataFrame]
    per_query: pd.DataFrame
    curves: dict[str, pd.DataFrame]
    selection: set[str]
    report: set[str]


def evaluate_representations(wells: pd.DataFrame, settings: EvaluationSettings) -> EvaluationResult:
    """Feature selection, lambda selection on the selection half, scores on the report half."""
    controls = control_mask(wells, CONTROL_QUERY)
    kept = feature_select(wells, controls)
    if not kept:
        raise ValueError("feature selection left no feature (all constant or non-finite)")
    wells = wells[metadata_columns(wells) + kept]
    profiles = treatment_profiles(wells)
    selection, report = split_treatments(profiles, settings.exclude_labels, settings.seed)
    if not report or not selection:
        raise ValueError("too few MoA-annotated treatments to hold out a selection set for lambda")
    chosen_moas = profiles.loc[profiles["Metadata_Treatment"].isin(selection), "Metadata_MoA"]
    chosen_moas = chosen_moas[~chosen_moas.isin(list(settings.exclude_labels))].dropna()
    if not (chosen_moas.value_counts() >= 2).any():
        raise ValueError(
            "no MoA has >= 2 treatments in the lambda-selection half (each MoA's treatments "
            "are split in two halves, so an MoA needs >= 3-4 treatments): lambda cannot be "
            "chosen by MoA retrieval on this screen"
        )

    def score(rows: pd.DataFrame) -> float:
        ap = retrieval_ap(_treatments_of(rows, selection), exclude_labels=settings.exclude_labels)
        return float(ap["ap"].mean()) if len(ap) else float("nan")

    selection_rows = wells["Metadata_Treatment"].isin(selection).to_numpy() | controls
    chosen, sweep = select_lambda(
        wells, list(settings.lambdas), score, selection_rows, scope=settings.scope
    )
    corrected = {
        "raw": wells.copy(),
        "standardized": batch_correct(wells, "standardize", "plate"),
        "sphered": batch_correct(wells, "sphere", settings.scope, chosen),
    }
    metrics: dict[str, Any] = {}
    tables, curves = [], {}
    for name, frame in corrected.items():
        values, per_query, curve = retrieval_scores(_treatments_of(frame, report), settings)
        metrics[name] = values
        tables.append(per_query.assign(representation=name))
        curves[name] = curve
    metrics["lambda"] = {
        "chosen": chosen,
        "sweep": dict(zip(sweep["lam"], sweep["score"], strict=True)),
    }
    metrics["n_features"] = len(kept)
    metrics["n_selection_treatments"] = len(selection)
    metrics["n_report_treatments"] = len(report)
    return EvaluationResult(
        metrics,
        chosen,
        sweep,
        corrected,
        pd.concat(tables, ignore_index=True),
        curves,
        selection,
        report,
    )
