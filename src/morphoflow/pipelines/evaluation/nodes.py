"""Nodes of the evaluation pipeline: thin wrappers over morphoflow.lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from morphoflow.lifecycle.heldout import (
    DEFAULT_HELDOUT_DIRS,
    SegmentationHeldoutSettings,
    freeze_segmentation_heldout,
)
from morphoflow.lifecycle.promotion import PromotionRefused, candidate_kind, promote
from morphoflow.pipelines.mlflow_metrics import metric_values


def prepare_heldout(params: dict[str, Any]) -> dict[str, Any]:
    """The held-out folder of the candidate's model kind; the synthetic segmentation set is
    frozen on first use (``freeze_if_missing``), never rewritten afterwards.

    Returns:
        ``{"path", "kind", "frozen_now"}`` (``path`` None when the kind is unknown).
    """
    version = params.get("version")
    kind = candidate_kind(str(params["model"]), None if version is None else int(version))
    if params.get("heldout"):
        folder: Path | None = Path(params["heldout"])
    else:
        folder = DEFAULT_HELDOUT_DIRS.get(kind) if kind else None
    frozen_now = False
    freeze = dict(params.get("freeze_if_missing") or {})
    enabled = bool(freeze.pop("enabled", False))
    draw = SegmentationHeldoutSettings.from_params(freeze)  # defaults: the dataclass's
    if kind == "segmentation" and folder is not None and not folder.exists() and enabled:
        freeze_segmentation_heldout(folder, draw.n_images, draw.size, draw.seed)
        frozen_now = True
    return {"path": None if folder is None else str(folder), "kind": kind, "frozen_now": frozen_now}


def evaluate_and_promote(
    heldout: dict[str, Any], params: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the gated promotion of the candidate; a refusal is a result, not a failure.

    Returns:
        The decision (``PromotionDecision.to_dict()``) and MLflow metrics.
    """
    version = params.get("version")
    try:
        decision = promote(
            str(params["model"]),
            version=None if version is None else int(version),
            margin=float(params["margin"]),
            heldout=heldout["path"],
            views=int(params["views"]),
        )
    except PromotionRefused as exc:
        decision = exc.decision
    values = {"promoted": decision.promoted}
    for key in ("candidate_score", "champion_score"):
        if (value := getattr(decision, key)) is not None:
            values[key] = value
    metrics = metric_values(values)
    return decision.to_dict(), metrics


def enforce_decision(decision: dict[str, Any], params: dict[str, Any]) -> None:
    """Fail the run on a refusal when ``fail_on_refusal`` is set (a CI/CD gate).

    Runs after the decision is saved and recorded, so a failed run still leaves
    ``decision.json``, the version's tags and the promotion run behind.

    Raises:
        RuntimeError: The candidate was refused and ``fail_on_refusal`` is true.
    """
    if decision.get("decision") == "refused" and params.get("fail_on_refusal", False):
        raise RuntimeError(
            f"promotion of {decision.get('model')} v{decision.get('candidate_version')} "
            f"refused: {decision.get('reason')}"
        )
