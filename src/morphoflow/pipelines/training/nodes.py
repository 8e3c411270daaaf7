"""Nodes of the training pipeline: thin wrappers over morphoflow.learning and the registry."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from morphoflow.execution.store import PartitionStore
from morphoflow.learning import (
    Block6aFeatures,
    WSLConfig,
    export_featurizer_onnx,
    plot_confusion,
    train_wsl,
)
from morphoflow.learning.train import confusion_matrix, index_fingerprint
from morphoflow.pipelines.mlflow_metrics import metric_history
from morphoflow.profiling.crops import load_site_crops


def train_cellpainting_cnn(
    combined_index: pd.DataFrame, store: PartitionStore, params: dict[str, Any]
) -> tuple[tuple[Any, list[Any], dict[str, Any]], dict[str, Any], dict[str, Any], Any]:
    """Train the WSL CNN: the model (saved by the catalog's ``wsl_model``), a summary,
    per-epoch metrics for MLflow and the confusion figure."""
    settings = dict(params["config"])
    if settings.get("checkpoint_dir"):
        # one checkpoint folder per training set: a rerun on new data starts afresh
        fingerprint = index_fingerprint(combined_index)[:12]
        settings["checkpoint_dir"] = str(Path(settings["checkpoint_dir"]) / fingerprint)
    config = WSLConfig.from_params(settings)
    model, classes, history = train_wsl(combined_index, store.root, config)
    wsl_model = (
        model,
        classes,
        {"config": config.__dict__, "history": history, "n_cells": len(combined_index)},
    )
    metrics = metric_history(
        history,
        (
            "train_loss",
            "train_accuracy",
            "val_loss",
            "val_accuracy",
            "seconds",
            "crops_per_s",
        ),
        "wsl.",
    )
    figure = _confusion_figure(model, classes, combined_index, store.root, config)
    first = combined_index.iloc[0]
    crops, _, _ = load_site_crops(store.root / first["Path_Crops"])
    summary = {
        "classes": classes,
        "config": config.to_dict(),  # every setting, the YAML's and WSLConfig's defaults
        "epochs": len(history),
        "crop_size": int(crops.shape[-1]),
        "final": {k: float(v) for k, v in history[-1].items()} if history else {},
    }
    return wsl_model, summary, metrics, figure


def _confusion_figure(model, classes, index, crops_dir, config):
    from torch.utils.data import DataLoader

    from morphoflow.learning import CropDataset, split_leave_cells_out, split_leave_plates_out

    if config.split == "leave_plates_out":
        _, val = split_leave_plates_out(
            index, config.val_plates, config.val_plate_fraction, config.seed
        )
    else:
        _, val = split_leave_cells_out(index, config.train_fraction, config.seed)
    val_index = index.iloc[val]
    val_index = val_index[val_index[config.label_col].isin(classes)]
    loader = DataLoader(CropDataset(val_index, crops_dir, config.label_col, classes), batch_size=64)
    return plot_confusion(confusion_matrix(model, loader, n_classes=len(classes)), classes)


def export_and_register(
    wsl_model: tuple[Any, list[Any], dict[str, Any]],
    training_summary: dict[str, Any],
    manifest: dict[str, Any],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Export the block6a featurizer to ONNX (parity-checked) and register it in MLflow."""
    from morphoflow.lifecycle.registry import register_onnx_model

    model, classes, _ = wsl_model
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "cellpainting_cnn.onnx"
        parity = export_featurizer_onnx(
            Block6aFeatures(model), onnx_path, crop_size=int(training_summary["crop_size"])
        )
        final = training_summary.get("final", {})
        tags = {
            "parity_max_abs_diff": parity,
            "n_classes": len(classes),
            "manifest_version": manifest.get("version", ""),
            **{f"metric.{k}": v for k, v in final.items()},
        }
        registered = register_onnx_model(onnx_path, params["registered_model_name"], tags)
    return {**registered, "parity_max_abs_diff": parity}
