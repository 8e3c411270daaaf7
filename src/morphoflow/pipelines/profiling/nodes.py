"""Nodes of the profiling pipeline: thin wrappers over the science packages."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from morphoflow import __version__ as morphoflow_version
from morphoflow.execution.runner import run_partitions
from morphoflow.execution.settings import ExecutionSettings
from morphoflow.execution.store import (
    PartitionStore,
    check_partition_name,
    inputs_digest,
    row_hashes,
    screen_key,
)
from morphoflow.lifecycle.resolve import resolve_model_file
from morphoflow.pipelines.data_validation.nodes import screen_root
from morphoflow.pipelines.mlflow_metrics import metric_values
from morphoflow.pipelines.profiling.plates import (
    PARTITION_LAYOUT_VERSION,
    PlateTask,
    inference_backend,
    profile_plate,
)
from morphoflow.profiling.aggregate import WELL_STRATA, treatment_profiles
from morphoflow.profiling.evaluation import plot_embedding, plot_pr_curves
from morphoflow.profiling.extract import CropSettings
from morphoflow.profiling.workflow import (
    EvaluationSettings,
    check_design,
    evaluate_representations,
    replicate_summary,
)
from morphoflow.segmentation.onnx_model import MODEL_SUFFIXES
from morphoflow.segmentation.settings import PIPELINE_DEFAULTS, SegmenterSettings
from morphoflow.segmentation.unet import DEFAULT_MODEL_PATH

logger = logging.getLogger(__name__)


def _resolved(path: Path | None) -> str:
    return "default" if path is None else str(path)


def plate_tasks(
    image_table: pd.DataFrame,
    store: PartitionStore,
    screen: Path,
    nuclei_params: dict[str, Any],
    illumination: dict[str, Any],
    crop_params: dict[str, Any],
    feature_params: dict[str, Any],
    inference: dict[str, Any],
    resume: bool = True,
) -> tuple[str, dict[str, PlateTask]]:
    """The screen's key and one :class:`PlateTask` per plate (models resolved to files once,
    here, so every worker loads the same file and the fingerprint sees its version)."""
    # absolute paths: a worker's working directory is not the driver's
    root = screen_root(screen).resolve()
    _check_extractor(feature_params, inference)
    settings = SegmenterSettings.from_params(dict(nuclei_params), defaults=PIPELINE_DEFAULTS)
    store = PartitionStore(store.root.resolve())
    model_files: dict[str, Any] = {}
    if inference_backend(inference) == "triton":
        from morphoflow.serving.client import served_views

        served_views(settings.views)  # refused before the first plate, not after
    else:
        model = resolve_model_file(settings.model, suffix=MODEL_SUFFIXES)
        settings = dataclasses.replace(settings, model=_resolved(model))
        model_files["segmentation_model"] = model or DEFAULT_MODEL_PATH
    features = dict(feature_params)
    if features["extractor"] == "cnn" and inference_backend(inference) == "triton":
        if features.get("model"):
            logger.warning(
                "features.model=%s is ignored with inference.backend=triton: the server's "
                "featurizer model runs",
                features["model"],
            )
    if features["extractor"] == "cnn" and inference_backend(inference) == "local":
        features["model"] = str(resolve_model_file(features.get("model"), suffix=".onnx"))
        model_files["feature_model"] = features["model"]
    if features["extractor"] == "imagenet":
        model_files["feature_weights"] = features.get("weights_path")
    crop = CropSettings(
        int(crop_params["size"]), bool(crop_params["mask_neighbours"]), str(crop_params["edge"])
    )
    store_crops = bool(crop_params.get("store", False))
    hashes = row_hashes(image_table)  # once for the screen, then sliced per plate
    key = screen_key(image_table, root, hashes=hashes)
    tasks: dict[str, PlateTask] = {}
    for plate, positions in image_table.groupby("Metadata_Plate", sort=True).indices.items():
        rows = image_table.iloc[positions]
        plate = check_partition_name(str(plate))
        fingerprint_settings = {
            "layout": PARTITION_LAYOUT_VERSION,
            "morphoflow": morphoflow_version,
            "segmenter": dataclasses.asdict(settings),
            "inference": {k: inference.get(k) for k in ("backend", "url")},
            "illumination": illumination,
            "crop": dataclasses.asdict(crop),
            "store_crops": store_crops,
            "features": features,
        }
        tasks[plate] = PlateTask(
            plate=plate,
            rows=rows.reset_index(drop=True),
            root=str(root),
            store=store,
            screen_key=key,
            inputs_digest=inputs_digest(
                rows, fingerprint_settings, model_files, hashes=hashes[positions]
            ),
            resume=resume,
            segmenter=settings,
            inference=dict(inference),
            illumination=dict(illumination),
            crop=crop,
            store_crops=store_crops,
            features=features,
        )
    return key, tasks


def profile_plates(
    image_table: pd.DataFrame,
    store: PartitionStore,
    screen: Path,
    nuclei_params: dict[str, Any],
    illumination: dict[str, Any],
    crop_params: dict[str, Any],
    feature_params: dict[str, Any],
    inference: dict[str, Any],
    execution: dict[str, Any],
) -> pd.DataFrame:
    """Every plate's partition (nuclei, cells, features, site and well profiles), computed on
    the ``execution`` backend; plates whose stored partition is current are reused.

    Returns:
        The plate manifest: one row per plate with ``Metadata_Plate``, ``screen_key``,
        ``partition`` (relative to the store), ``fingerprint``, ``status`` (``computed`` or
        ``reused``), counts, ``seconds``, ``host`` and ``pid`` of the process that computed it.

    Raises:
        PartitionsFailed: Plates that failed (named, with their errors) after retries; the
            other plates are stored, so a re-run redoes only the failed ones; no manifest
            (and so no screen-wide table) is written.
    """
    settings = ExecutionSettings.from_params(execution)
    key, tasks = plate_tasks(
        image_table,
        store,
        screen,
        nuclei_params,
        illumination,
        crop_params,
        feature_params,
        inference,
        resume=settings.resume,
    )
    store.remove_stale_staging(key)
    logger.info(
        "screen %s: %d plates -> %s on the %s backend (%s)",
        key,
        len(tasks),
        store.root / key,
        settings.backend,
        "stored plates with matching fingerprints are reused" if settings.resume else "no reuse",
    )
    records = run_partitions(profile_plate, tasks, settings, what="plates")
    manifest = pd.DataFrame(
        [
            {
                "Metadata_Plate": plate,
                "partition": store.relative(key, plate),
                "status": record["status"],
                **{k: v for k, v in record.items() if k not in ("plate", "status")},
            }
            for plate, record in records.items()
        ]
    )
    counts = manifest["status"].value_counts().to_dict()
    logger.info(
        "screen %s: %d plates computed, %d reused",
        key,
        counts.get("computed", 0),
        counts.get("reused", 0),
    )
    return manifest


def _partitions(manifest: pd.DataFrame, store: PartitionStore) -> list[tuple[str, Path]]:
    found = []
    for row in manifest.to_dict("records"):
        folder = store.root / str(row["partition"])
        key, plate = str(row["screen_key"]), str(row["Metadata_Plate"])
        if store.current_record(key, plate, str(row["fingerprint"])) is None:
            raise FileNotFoundError(
                f"plate {row['Metadata_Plate']}: partition {folder} is missing or was replaced "
                "since the manifest was written; re-run the profiling pipeline"
            )
        found.append((str(row["Metadata_Plate"]), folder))
    return found


def gather_plates(
    manifest: pd.DataFrame, store: PartitionStore
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Screen-wide tables from the plates' partitions, read one plate at a time.

    Returns:
        (raw well profiles of every plate (well means of site medians, before correction;
        a well whose sites have no cell keeps a row with ``Metadata_CellCount`` 0 and NaN
        features),
        the crop index: one row per cell, ``Path_Crops`` relative to the store root).

    Raises:
        FileNotFoundError: A partition of the manifest is gone or was replaced.
        ValueError: No site of the screen has a cell.
    """
    wells, indexes = [], []
    for plate, folder in _partitions(manifest, store):
        wells.append(pd.read_parquet(folder / "wells.parquet"))
        index = pd.read_parquet(folder / "crop_index.parquet")
        if len(index):
            stored = index["Path_Crops"].astype(str) != ""
            prefix = f"{folder.parent.name}/{plate}/crops/"
            index.loc[stored, "Path_Crops"] = prefix + index.loc[stored, "Path_Crops"]
            indexes.append(index)
    if not indexes:
        raise ValueError("no cell was found in any site of the screen: nothing to profile")
    # the column order of a plate with cells (a plate without any has no feature columns)
    columns = max((list(w.columns) for w in wells), key=len)
    table = pd.concat(wells, ignore_index=True).reindex(columns=columns)
    table = table.sort_values(list(WELL_STRATA), kind="stable").reset_index(drop=True)
    return table, pd.concat(indexes, ignore_index=True)


def _settings(params: dict[str, Any], wells_params: dict[str, Any]) -> EvaluationSettings:
    return EvaluationSettings(
        lambdas=[float(x) for x in params["lambdas"]],
        scope=str(params["scope"]),
        null_size=int(params["null_size"]),
        top_fraction=float(params["top_fraction"]),
        shuffles=int(params["shuffles"]),
        seed=int(params["seed"]),
        exclude_labels=list(params["exclude_labels"]),
        min_cells_per_well=int(wells_params["min_cells_per_well"]),
    )


def check_evaluation_design(
    image_table: pd.DataFrame,
    params: dict[str, Any],
    wells_params: dict[str, Any],
    feature_params: dict[str, Any],
    inference: dict[str, Any],
) -> pd.DataFrame:
    """Refuse, before segmentation, a run that would fail at a later step: a design the
    evaluation cannot score, or a feature extractor whose model or weights file is missing.

    Returns the image table unchanged (the nodes after it read this output, so it runs first).
    """
    check_design(image_table, _settings(params, wells_params))
    _check_extractor(feature_params, inference)
    return image_table


def _check_extractor(params: dict[str, Any], inference: dict[str, Any]) -> None:
    """The checks of :func:`_extractor` that need no model loaded: name, model, weights file."""
    name = params["extractor"]
    if name not in ("classical", "imagenet", "cnn"):
        raise ValueError(f"features.extractor must be classical, imagenet or cnn, got {name!r}")
    if name == "cnn" and inference_backend(inference) == "local":
        model = params.get("model")
        if model is None or str(model) in ("", "default"):
            raise ValueError(
                "features.model must name an ONNX model file or models:/ URI for extractor 'cnn'"
            )
        # a local file is checked here; a registry URI is resolved (downloaded) once, when used
        if "://" not in str(model) and not str(model).startswith(("models:/", "runs:/")):
            if not Path(str(model)).is_file():
                raise FileNotFoundError(f"features.model: model file not found: {model}")
    if name == "imagenet":
        weights = params.get("weights_path")
        if not weights:
            raise ValueError(
                "features.weights_path must name a local ImageNet EfficientNet-B0 state-dict "
                "file for the imagenet extractor (no weights are downloaded)"
            )
        if not Path(str(weights)).is_file():
            raise FileNotFoundError(f"features.weights_path: file not found: {weights}")


def correct_and_evaluate(
    wells: pd.DataFrame,
    params: dict[str, Any],
    feature_params: dict[str, Any],
    wells_params: dict[str, Any],
) -> tuple[
    pd.DataFrame,
    pd.DataFrame,
    dict[str, Any],
    dict[str, Any],
    pd.DataFrame,
    dict[str, Any],
    pd.DataFrame,
]:
    """Well selection, batch correction with lambda chosen on held-out treatments, scores,
    report figures and the table of every well (used or excluded, with the reason)."""
    settings = _settings(params, wells_params)
    result = evaluate_representations(wells, settings)
    excluded = result.wells.excluded
    if len(excluded):
        logger.warning(
            "%d of %d wells are not used (controls, queries): %s",
            len(excluded),
            len(wells),
            "; ".join(
                f"{r.get('Metadata_Plate', '?')}/{r.get('Metadata_Well', '?')}: "
                f"{r['Metadata_ExclusionReason']}"
                for r in excluded.head(10).to_dict("records")
            )
            + (" ..." if len(excluded) > 10 else ""),
        )
    if "undefined" in result.metrics.get("moa_retrieval", {}):
        logger.warning(
            "MoA retrieval is undefined: %s", result.metrics["moa_retrieval"]["undefined"]
        )
    final = result.corrected_wells[str(params["output_representation"])]
    treatments = treatment_profiles(final)
    replicates, replicate_report = replicate_summary(final, settings)
    if "undefined" in replicate_report:
        logger.warning("replicate reproducibility is undefined: %s", replicate_report["undefined"])
    report = {
        "extractor": feature_params["extractor"],
        "output_representation": params["output_representation"],
        **result.metrics,
        "replicate_reproducibility": replicate_report,
    }
    extractor = feature_params["extractor"]
    mlflow_metrics = metric_values(
        {
            **{
                f"{rep}.{name}": value
                for rep in ("raw", "standardized", "sphered")
                for name, value in result.metrics[rep].items()
            },
            "wells_excluded": len(excluded),
            "lambda_chosen": result.chosen_lambda,
            **{
                f"lambda_sweep_selection_map.{lam:g}": score
                for lam, score in zip(
                    result.lambda_sweep["lam"], result.lambda_sweep["score"], strict=True
                )
            },
        },
        f"{extractor}.",
    )
    per_treatment = result.per_query.merge(
        replicates.rename(
            columns={
                "map": "replicate_map",
                "p_value": "replicate_p_value",
                "corrected_p_value": "replicate_corrected_p_value",
                "below_corrected_p": "replicate_below_corrected_p",
            }
        ),
        on="Metadata_Treatment",
        how="left",
        suffixes=("", "_replicates"),
    )
    figures = _figures(result, final)
    well_table = result.wells.table(wells)
    return final, treatments, report, mlflow_metrics, per_treatment, figures, well_table


def _figures(result, final: pd.DataFrame) -> dict[str, Any]:
    # the raw wells as the evaluation used them (wells selected, features finite)
    raw = result.corrected_wells["raw"]
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sweep, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogx(result.lambda_sweep["lam"], result.lambda_sweep["score"], marker="o")
    ax.axvline(
        result.chosen_lambda, color="grey", linestyle="--", label=f"chosen {result.chosen_lambda:g}"
    )
    ax.set_xlabel("sphering lambda (relative to mean control variance)")
    ax.set_ylabel("MoA mAP, selection treatments")
    ax.legend()
    sweep.tight_layout()
    figures = {
        "lambda_sweep.png": sweep,
        "embedding_raw_by_plate.png": plot_embedding(raw, "Metadata_Plate"),
        "embedding_final_by_plate.png": plot_embedding(final, "Metadata_Plate"),
    }
    if "undefined" in result.metrics.get("moa_retrieval", {}):
        return figures  # no MoA annotation to draw: MoA figures would be empty or misleading
    treatments_mask = raw["Metadata_ControlType"] != "negcon"
    figures["pr_curves.png"] = plot_pr_curves(
        result.curves, title="MoA retrieval, report treatments"
    )
    figures["embedding_final_by_moa.png"] = plot_embedding(
        final[treatments_mask.to_numpy()], "Metadata_MoA"
    )
    return figures
