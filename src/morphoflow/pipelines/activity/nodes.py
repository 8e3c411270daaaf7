"""Nodes of the activity pipeline: thin wrappers over morphoflow.activity and the registry."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.activity.crossval import available_modalities, cross_validate, refit_and_predict
from morphoflow.activity.evaluation import score_folds, summarize
from morphoflow.activity.inputs import SMILES, TREATMENT, ActivityData, load_activity_data
from morphoflow.activity.models import ModelConfig, torch_threads
from morphoflow.activity.splits import make_splits, split_hash
from morphoflow.pipelines.mlflow_metrics import metric_history, metric_values

logger = logging.getLogger(__name__)


def validate_activity_inputs(
    compounds: dict[str, Any],
    assays: dict[str, Any],
    mo_profiles: dict[str, Any],
    ge_profiles: dict[str, Any],
    params: dict[str, Any],
) -> ActivityData:
    """Check and align the inputs (errors name file and line; drops are listed)."""
    profiles = {"mo": mo_profiles["table"], "ge": ge_profiles["table"]}
    for name, entry in (("mo", mo_profiles), ("ge", ge_profiles)):
        if entry["table"] is None:
            logger.warning(
                "activity: no %s profiles at %r; %s is not run", name, entry["path"], name
            )
    data = load_activity_data(
        compounds["compounds"],
        assays["assays"],
        profiles,
        min_positives=int(params.get("min_positives", 5)),
        controls=compounds["controls"],
        sources={
            "compounds": compounds["path"],
            "assays": assays["path"],
            "mo": mo_profiles["path"],
            "ge": ge_profiles["path"],
        },
    )
    for name, entry in (("mo", mo_profiles), ("ge", ge_profiles)):
        if entry["table"] is None:
            data.report.setdefault("warnings", []).append(
                f"no {name} profiles (no file at {entry['path']!r}): the {name} model and "
                "everything that needs it (fusions, cell-count baseline for mo) did not run"
            )
    data.report["data_fingerprint"] = _fingerprint(data)
    data.report["inputs"] = {
        "compounds": compounds["path"],
        "assays": assays["path"],
        "mo_profiles": mo_profiles["path"] if mo_profiles["table"] is not None else None,
        "ge_profiles": ge_profiles["path"] if ge_profiles["table"] is not None else None,
    }
    return data


def _fingerprint(data: ActivityData) -> str:
    """SHA-256 (first 16 hex) of the validated inputs: compounds, labels, profiles."""
    import hashlib

    digest = hashlib.sha256()
    frames = [data.compounds, data.labels, *(data.profiles[m] for m in sorted(data.profiles))]
    for frame in frames:
        digest.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
        digest.update(",".join(map(str, frame.columns)).encode())
    return digest.hexdigest()[:16]


def make_activity_folds(data: ActivityData, params: dict[str, Any]) -> pd.DataFrame:
    """The folds of every split, computed once on the labelled compounds."""
    smiles = data.compounds.loc[data.labels.index, SMILES]
    return make_splits(
        smiles,
        data.profiles,
        params.get("splits", ["scaffold", "kmeans_mo", "kmeans_ge"]),
        int(params.get("n_folds", 5)),
        int(params.get("seed", 0)),
    )


def _config(params: dict[str, Any]) -> ModelConfig:
    return ModelConfig.from_params({"seed": int(params.get("seed", 0)), **params.get("model", {})})


def cross_validate_modalities(
    data: ActivityData, splits: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Out-of-fold predictions of every modality (and late fusions) on every split."""
    modalities = available_modalities(data, params.get("modalities"))
    folds = params.get("folds")
    with torch_threads(params.get("torch_threads", 1)):
        predictions, log = cross_validate(
            data, splits, modalities, _config(params), folds=folds, progress=logger.info
        )
    metrics: dict[str, Any] = {}
    for split_modality in {(e["split"], e["modality"]) for e in log}:
        steps = [e for e in log if (e["split"], e["modality"]) == split_modality]
        metrics.update(
            metric_history(
                steps, ["seconds"], f"train_seconds.{'.'.join(split_modality)}.", step_key="fold"
            )
        )
    return predictions, metrics


def evaluate_activity(
    predictions: pd.DataFrame, splits: pd.DataFrame, data: ActivityData, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """AUROC/AP table, summary (counts, overlap, union, enrichment), figures, MLflow metrics."""
    from morphoflow.activity.figures import auroc_distribution, unmeaningful, upset

    scores = score_folds(predictions)
    minimum = int(params.get("min_compounds", 100))
    meaningful = data.report["n_labelled"] >= minimum
    reason = f"{data.report['n_labelled']} labelled compounds (< activity.min_compounds={minimum})"
    if not meaningful:
        logger.warning("activity: AUROC is not meaningful here: %s", reason)
    summary = summarize(scores, predictions, meaningful=meaningful, reason=reason)
    fold_sizes = (
        splits.groupby(["split", "fold"]).size().rename("n").reset_index().to_dict(orient="records")
    )
    summary.update(
        {
            "paper": "Moshkov et al., Nat Commun 2023, Predicting compound activity from "
            "phenotypic profiles and chemical structures",
            "splits_hash": split_hash(splits),
            "fold_sizes": fold_sizes,
            "modalities": sorted(predictions["modality"].unique()),
            "inputs": data.report,
        }
    )
    figures: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if meaningful:
        for split in sorted(scores["split"].unique()):
            figures[f"auroc_{split}.png"] = auroc_distribution(scores, split)
            figures[f"upset_{split}.png"] = upset(scores, split, 0.9)
            figures[f"upset_{split}_0.7.png"] = upset(scores, split, 0.7)
        for split, block in summary["splits"].items():
            for modality, entry in block["modalities"].items():
                values = {k: v for k, v in entry.items() if v is not None}
                metrics.update(metric_values(values, f"{split}.{modality}.", finite_only=True))
    else:
        figures["auroc_not_meaningful.png"] = unmeaningful(reason)
    table = scores[["assay", "modality", "split", "fold", "auroc", "ap", "n_test", "n_positive"]]
    return table, summary, figures, metrics


def predict_and_register(
    data: ActivityData, summary: dict[str, Any], params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Refit on all labelled compounds, predict the unassayed ones, register ``activity-mo``.

    The MO model is exported to ONNX (parity-checked) and registered with the cross-validated
    median AUROC (``activity.promotion_split``, default scaffold) as score; it becomes
    champion only when there is none and AUROC was meaningful.
    """
    from morphoflow.activity.export import MODEL_KIND, export_activity_onnx

    modalities = available_modalities(data, params.get("modalities"))
    with torch_threads(params.get("torch_threads", 1)):
        predictions, fitted = refit_and_predict(data, modalities, _config(params), logger.info)
    mo_model = fitted.get("mo")
    predictions = predictions.drop(columns=["split", "fold", "label"])
    predictions.insert(1, SMILES, data.compounds[SMILES].reindex(predictions[TREATMENT]).to_numpy())
    models = {name: _storable(model) for name, model in fitted.items()}
    if mo_model is None:
        return predictions, {"registered": False, "reason": "no mo profiles"}, models

    import mlflow

    from morphoflow.lifecycle.registry import register_onnx_model

    split = params.get("promotion_split", "scaffold")
    meaningful = bool(summary.get("auroc_meaningful"))
    cv = None
    if meaningful:
        cv = (
            summary["splits"].get(split, {}).get("modalities", {}).get("mo", {}).get("median_auroc")
        )
    profiles = data.profiles["mo"]
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "activity_mo.onnx"
        export = export_activity_onnx(
            mo_model,
            profiles.to_numpy(),
            onnx_path,
            [str(c) for c in profiles.columns],
            data.assays,
            tolerance=float(params.get("parity_tolerance", 1e-4)),
        )
        tags = {
            "parity_max_abs_diff": export["parity_max_abs_diff"],
            "cv_split": split,
            "cv_median_auroc": "not meaningful" if cv is None else cv,
            "cv_auroc_meaningful": str(meaningful).lower(),
            "splits_hash": summary.get("splits_hash", ""),
            "data_fingerprint": data.report.get("data_fingerprint", ""),
            "n_assays": len(data.assays),
            "n_features": profiles.shape[1],
            "n_training_compounds": len(data.labels),
        }
        registered = register_onnx_model(
            onnx_path,
            params.get("registered_model_name", "activity-mo"),
            tags,
            set_champion_if_none=meaningful,
            model_kind=MODEL_KIND,
            example_inputs={"profiles": profiles.to_numpy(dtype=np.float32)[:2]},
            scores={} if cv is None else {"cv_median_auroc": float(cv)},
            parity_tolerance=float(params.get("parity_tolerance", 1e-4)),
        )
    if cv is not None:
        mlflow.log_metric("activity.mo.cv_median_auroc", float(cv))
    return predictions, {**registered, **export, "path": None, "cv_median_auroc": cv}, models


def _storable(model: Any) -> Any:
    """What is saved of a refit model: torch state dicts (Chemprop: plus its descriptor
    scaling and hyper-parameters), the scikit-learn baseline as is."""
    from morphoflow.activity.models import ChempropModel, ProfileClassifier

    if isinstance(model, ProfileClassifier):
        return {"kind": "profile_ffn", "state_dict": model.state_dict()}
    if isinstance(model, ChempropModel):
        return {
            "kind": "chemprop_mpnn",
            "state_dict": model.mpnn.state_dict(),
            "xd_mean": model.xd_mean,
            "xd_scale": model.xd_scale,
        }
    return {"kind": type(model).__name__, "model": model}
