"""Nodes of the representation_comparison pipeline: thin wrappers over
:mod:`morphoflow.learning.comparison`."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pandas as pd

from morphoflow.execution.store import PartitionStore
from morphoflow.learning import WSLConfig, load_wsl_model, save_wsl_model
from morphoflow.learning.comparison import (
    AssemblySettings,
    Block6aExtractor,
    HoldOut,
    Representation,
    WSLVariant,
    compare_representations,
    extractor_kind,
    held_out_wells,
    plot_comparison,
    train_variant,
)
from morphoflow.pipelines.mlflow_metrics import metric_history, metric_values
from morphoflow.profiling.workflow import EvaluationSettings
from morphoflow.torch_files import resolve_device

_HISTORY_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


def _holdout(params: dict[str, Any]) -> HoldOut:
    spec = params["holdout"]
    return HoldOut(tuple(spec.get("sources") or ()), tuple(spec.get("plates") or ()))


def _check_inputs(crop_index: pd.DataFrame, wells: pd.DataFrame, holdout: HoldOut) -> None:
    if crop_index.empty or (crop_index["Path_Crops"].astype(str) == "").all():
        raise ValueError(
            "the crop index has no stored crops: run the profiling pipeline with "
            "--params crops.store=true first (representation_comparison reads the crops)"
        )
    kind = extractor_kind(wells)
    if kind != "classical":
        raise ValueError(
            f"profiles_well_raw holds {kind} features; representation_comparison needs the "
            "classical ones: run profiling with features.extractor=classical"
        )
    holdout.check(crop_index, "crop_index")
    holdout.check(wells, "profiles_well_raw")


def train_variants(
    crop_index: pd.DataFrame,
    wells: pd.DataFrame,
    store: PartitionStore,
    models: Path,
    training_params: dict[str, Any],
    assembly_params: dict[str, Any],
    params: dict[str, Any],
    wells_params: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train every WSL variant on the non-held-out plates; save the models; describe them."""
    holdout = _holdout(params)
    _check_inputs(crop_index, wells, holdout)
    wsl = params["wsl"]
    config = WSLConfig.from_params(
        {
            **training_params["config"],
            **(wsl.get("config") or {}),
            "epochs": int(wsl["epochs"]),
            "checkpoint_dir": wsl.get("checkpoint_dir"),
        }
    )
    assembly = AssemblySettings(
        strength=dict(assembly_params["strength"]),
        max_control_cells_per_plate=assembly_params.get("max_control_cells_per_plate"),
        seed=int(assembly_params["seed"]),
        min_cells_per_well=int(wells_params["min_cells_per_well"]),
    )
    summary: dict[str, Any] = {
        "holdout": dataclasses.asdict(holdout),
        "config": config.to_dict(),
        "variants": {},
    }
    metrics: dict[str, Any] = {}
    for name, spec in wsl["variants"].items():
        variant = WSLVariant(str(name), tuple(spec["sources"]), str(spec["split"]))
        trained = train_variant(variant, crop_index, wells, store.root, holdout, config, assembly)
        described = trained.summary()
        path = save_wsl_model(
            trained.model,
            trained.classes,
            Path(models) / f"{variant.name}.pt",
            {k: v for k, v in described.items() if k != "classes"},
        )
        summary["variants"][variant.name] = {**described, "model_path": str(path)}
        for key in _HISTORY_METRICS:
            metrics.update(
                metric_history(trained.history, [key], f"wsl.{variant.name}.", finite_only=True)
            )
    return summary, metrics


def _imagenet(
    eval_index: pd.DataFrame, crops_dir: str, params: dict[str, Any], batch_size: int, device: str
) -> Representation:
    weights = (params.get("imagenet") or {}).get("weights_path")
    if not weights:
        return Representation(
            "imagenet",
            "imagenet",
            reason="no local ImageNet weights configured "
            "(representation_comparison.imagenet.weights_path is null; nothing is downloaded)",
        )
    if not Path(weights).is_file():
        return Representation(
            "imagenet", "imagenet", reason=f"ImageNet weights file not found: {weights}"
        )
    from morphoflow.profiling.cnn import ImageNetFeaturizer

    extractor = ImageNetFeaturizer(weights, batch_size=batch_size, device=device)
    wells, seconds = held_out_wells(eval_index, crops_dir, extractor)
    return Representation(
        "imagenet", "imagenet", wells, info={"featurize_seconds": seconds, "epochs": 0}
    )


def compare(
    crop_index: pd.DataFrame,
    wells: pd.DataFrame,
    training: dict[str, Any],
    store: PartitionStore,
    evaluation_params: dict[str, Any],
    params: dict[str, Any],
    wells_params: dict[str, Any],
) -> tuple[pd.DataFrame, Any, dict[str, Any], dict[str, Any]]:
    """Featurise the held-out cells with every representation and score them."""
    holdout = _holdout(params)
    _check_inputs(crop_index, wells, holdout)
    names = {f.name for f in dataclasses.fields(EvaluationSettings)}
    settings = EvaluationSettings(
        **{k: v for k, v in evaluation_params.items() if k in names},
        min_cells_per_well=int(wells_params["min_cells_per_well"]),
    )
    featurize = params.get("featurize") or {}
    batch_size = int(featurize.get("batch_size", 64))
    device = str(resolve_device(str(featurize.get("device", "cpu"))))
    eval_index = crop_index[holdout.mask(crop_index)].reset_index(drop=True)
    held_wells = wells[holdout.mask(wells)].reset_index(drop=True)

    representations = [Representation("classical", "classical", held_wells, info={"epochs": 0})]
    representations.append(_imagenet(eval_index, store.root, params, batch_size, device))
    for name, info in training["variants"].items():
        model, _, _ = load_wsl_model(info["model_path"])
        profiles, seconds = held_out_wells(
            eval_index, store.root, Block6aExtractor(model, batch_size, device)
        )
        representations.append(
            Representation(
                name,
                "wsl",
                profiles,
                info={
                    "training_sources": "+".join(info["sources"]),
                    "split": info["split"],
                    "epochs": info["epochs"],
                    "n_classes": info["n_classes"],
                    "n_training_cells": info["n_training_cells"],
                    "final_val_accuracy": info["final"].get("val_accuracy", math.nan),
                    "seconds_per_epoch": info["seconds_per_epoch"],
                    "train_seconds": info["seconds"],
                    "featurize_seconds": seconds,
                },
            )
        )
    table = compare_representations(representations, settings)
    where = ", ".join([*holdout.sources, *holdout.plates])
    figure = plot_comparison(table, title=f"MoA retrieval on held-out {where}")
    metrics = metric_values(
        {
            f"{row.representation}.{row.correction}.{score}": getattr(row, score)
            for row in table[table["status"] == "ok"].itertuples(index=False)
            for score in ("map", "folds_of_enrichment", "shuffled_map", "interpolated_map")
        },
        finite_only=True,
    )
    report = {
        "holdout": dataclasses.asdict(holdout),
        "evaluation": dataclasses.asdict(settings),
        "n_held_out_cells": len(eval_index),
        "n_held_out_wells": len(held_wells),
        "skipped": {r.name: r.reason for r in representations if r.reason},
        "training": {
            k: {kk: vv for kk, vv in v.items() if kk != "history"}
            for k, v in training["variants"].items()
        },
    }
    return table, figure, metrics, report
