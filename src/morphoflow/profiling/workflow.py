"""The profiling evaluation workflow: batch correction choices compared on held-out treatments.

0. Wells with fewer than ``min_cells_per_well`` cells or a mostly non-finite profile are
   excluded, with their reason (:func:`morphoflow.profiling.wells.select_wells`).
1. Features with NaN/inf (in the used wells) or near-zero variance (on control wells) are
   dropped; non-finite ones are named in a warning and in ``metrics["wells"]``.
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
    replicate_reproducibility,
    retrieval_ap,
)
from morphoflow.profiling.evaluation.retrieval import REPLICATE_SCORE_COLUMNS
from morphoflow.profiling.normalize import (
    CONTROL_QUERY,
    batch_correct,
    control_mask,
    feature_select,
    select_lambda,
)
from morphoflow.profiling.wells import DEFAULT_MIN_CELLS_PER_WELL, WellSelection, select_wells


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
    min_cells_per_well: int = DEFAULT_MIN_CELLS_PER_WELL


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


def _without_moa_retrieval(
    wells: pd.DataFrame,
    settings: EvaluationSettings,
    kept: list[str],
    chosen_wells: WellSelection,
    reason: str,
) -> EvaluationResult:
    """The corrections at the one given lambda, every MoA score undefined with ``reason``."""
    chosen = float(list(settings.lambdas)[0])
    corrected = {
        "raw": wells.copy(),
        "standardized": batch_correct(wells, "standardize", "plate"),
        "sphered": batch_correct(wells, "sphere", settings.scope, chosen),
    }
    metrics: dict[str, Any] = {name: {} for name in corrected}
    metrics["moa_retrieval"] = {"undefined": reason}
    metrics["lambda"] = {"chosen": chosen, "sweep": {chosen: None}, "given": True}
    metrics["n_features"] = len(kept)
    metrics["n_selection_treatments"] = 0
    metrics["n_report_treatments"] = 0
    metrics["wells"] = chosen_wells.as_dict()
    sweep = pd.DataFrame({"lam": [chosen], "score": [float("nan")]})
    per_query = pd.DataFrame({"Metadata_Treatment": pd.Series(dtype=object)})
    return EvaluationResult(
        metrics, chosen, sweep, corrected, per_query, {}, set(), set(), chosen_wells
    )


def check_design(table: pd.DataFrame, settings: EvaluationSettings) -> None:
    """Refuse a design the evaluation cannot score, before anything expensive runs.

    Works on any table with one row per site or well (the image table right after validation,
    or the well profiles): ``Metadata_Treatment``, ``Metadata_MoA``, ``Metadata_ControlType``,
    and ``Metadata_Plate`` / ``Metadata_Well``. The evaluation needs

    - at least 2 negative-control wells on every plate (per-plate standardisation) and in
      every sphering scope group;
    - an MoA with >= 2 treatments in the lambda-selection half of
      :func:`split_treatments` (:func:`moa_retrieval_problem`) -- unless a single lambda is
      given: then the screen is profiled and every MoA score is reported undefined.

    Args:
        table: Site- or well-level table of the screen.
        settings: Evaluation settings (exclude labels, seed, scope).

    Raises:
        ValueError: The first unmet condition, with the numbers that fail it.
    """
    needed = ["Metadata_Treatment", "Metadata_MoA", "Metadata_ControlType", "Metadata_Plate"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(f"the evaluation needs the columns {missing}")
    well_keys = [c for c in ("Metadata_Source", "Metadata_Plate", "Metadata_Well") if c in table]
    wells = table.drop_duplicates(well_keys) if "Metadata_Well" in table else table
    negcon = wells[wells["Metadata_ControlType"] == "negcon"]
    for scope, columns in (("plate", ["Metadata_Plate"]), (settings.scope, None)):
        if columns is None:
            columns = {"screen": [], "source": ["Metadata_Source"], "plate": ["Metadata_Plate"]}[
                str(settings.scope)
            ]
            columns = [c for c in columns if c in wells.columns]
        groups = wells.groupby(columns).size().index if columns else ["screen"]
        counts = negcon.groupby(columns).size() if columns else pd.Series({"screen": len(negcon)})
        few = [g for g in groups if int(counts.get(g, 0)) < 2]
        if few:
            raise ValueError(
                f"{len(few)} {scope} group(s) have fewer than 2 negative-control wells "
                f"(e.g. {few[0]!r}: {int(counts.get(few[0], 0))}); batch correction fits on "
                "control wells and needs at least 2"
            )
    reason = moa_retrieval_problem(wells, settings)
    if reason is not None and len(list(settings.lambdas)) > 1:
        raise ValueError(
            f"{reason}; to profile this screen without MoA scores, give one sphering lambda "
            "(e.g. --params 'batch_correction.lambdas=[0.01]')"
        )


def moa_retrieval_problem(table: pd.DataFrame, settings: EvaluationSettings) -> str | None:
    """Why MoA retrieval (and choosing lambda by it) is undefined for this design, or None.

    It needs an MoA with >= 2 treatments in the lambda-selection half of
    :func:`split_treatments` (so >= 3-4 annotated treatments of one MoA; the report half then
    has one too). A screen without ``moa.csv`` or with one treatment per MoA has none.

    Args:
        table: Site-, well- or treatment-level table with ``Metadata_Treatment``,
            ``Metadata_MoA`` and ``Metadata_ControlType``.
        settings: Evaluation settings (exclude labels, seed).

    Returns:
        The reason, with the treatments per MoA, or None when MoA retrieval is defined.
    """
    treatments = table.drop_duplicates("Metadata_Treatment")[
        ["Metadata_Treatment", "Metadata_MoA", "Metadata_ControlType"]
    ].fillna({"Metadata_MoA": ""})
    selection, _ = split_treatments(treatments, settings.exclude_labels, settings.seed)
    annotated = treatments[
        (treatments["Metadata_ControlType"] != "negcon")
        & ~treatments["Metadata_MoA"].isin(list(settings.exclude_labels))
    ]
    counts = annotated[annotated["Metadata_Treatment"].isin(selection)][
        "Metadata_MoA"
    ].value_counts()
    if (counts >= 2).any():
        return None
    per_moa = annotated["Metadata_MoA"].value_counts().to_dict()
    return (
        "no MoA has >= 2 treatments in the lambda-selection half (each MoA's treatments are "
        "split in two halves, so an MoA needs >= 3-4 treatments): MoA retrieval is undefined "
        f"and lambda cannot be chosen by it on this screen; treatments per MoA: {per_moa}"
    )


def replicate_summary(
    wells: pd.DataFrame, settings: EvaluationSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Replicate reproducibility of every treatment, or why it is undefined for this design.

    Replicate reproducibility (:func:`~morphoflow.profiling.evaluation.
    replicate_reproducibility`) needs negative-control wells and a treatment with at least two
    wells. A design without them (e.g. one plate with one well per treatment) gets an empty
    table and a summary that says so, instead of losing every other score.

    Args:
        wells: Corrected well profiles (finite features).
        settings: Evaluation settings (``null_size``, ``seed``).

    Returns:
        ``(per_treatment, summary)``: the per-treatment table (possibly empty, same columns)
        and ``{"mean_map", "fraction_reproducible", "n_treatments"}`` with ``"undefined"``
        giving the reason when it cannot be computed (then the scores are None).
    """
    columns = ["Metadata_Treatment", *REPLICATE_SCORE_COLUMNS]
    is_control = (wells["Metadata_ControlType"] == "negcon").to_numpy()
    treated = wells.loc[~is_control, "Metadata_Treatment"].value_counts()
    reason = ""
    if not is_control.any():
        reason = "no negative-control well"
    elif not (treated >= 2).any():
        reason = "no treatment has at least two wells (replicates)"
    if reason:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        return empty, {
            "mean_map": None,
            "fraction_reproducible": None,
            "n_treatments": 0,
            "undefined": reason,
        }
    table = replicate_reproducibility(wells, null_size=settings.null_size, seed=settings.seed)
    return table, {
        "mean_map": float(table["map"].mean()),
        "fraction_reproducible": float(table["below_corrected_p"].mean()),
        "n_treatments": int(len(table)),
    }


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
    wells: WellSelection


def evaluate_representations(wells: pd.DataFrame, settings: EvaluationSettings) -> EvaluationResult:
    """Well selection, feature selection, lambda on the selection half, scores on the report half.

    Args:
        wells: Well profiles before correction (every well of the screen; empty wells with
            ``Metadata_CellCount`` 0 and NaN features are excluded here, with their reason).
        settings: Evaluation settings.

    Returns:
        An :class:`EvaluationResult`; ``metrics["wells"]`` lists the excluded wells and the
        dropped non-finite features.

    Raises:
        ValueError: No well or feature is left, or the design cannot choose lambda or score
            MoA retrieval (see :func:`check_design`).
    """
    chosen_wells = select_wells(wells, int(settings.min_cells_per_well))
    wells = chosen_wells.used
    controls = control_mask(wells, CONTROL_QUERY)
    kept = feature_select(wells, controls)
    if not kept:
        raise ValueError("feature selection left no feature (all constant or non-finite)")
    wells = wells[metadata_columns(wells) + kept]
    check_design(wells, settings)
    undefined = moa_retrieval_problem(wells, settings)
    if undefined is not None:
        return _without_moa_retrieval(wells, settings, kept, chosen_wells, undefined)
    profiles = treatment_profiles(wells)
    selection, report = split_treatments(profiles, settings.exclude_labels, settings.seed)

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
    metrics["wells"] = chosen_wells.as_dict()
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
        chosen_wells,
    )
