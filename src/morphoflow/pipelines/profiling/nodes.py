"""Nodes of the profiling pipeline: thin wrappers over the science packages."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.atomic import atomic_dir
from morphoflow.lifecycle.resolve import resolve_model_file
from morphoflow.pipelines.data_validation.nodes import screen_root
from morphoflow.pipelines.mlflow_metrics import metric_values
from morphoflow.profiling.aggregate import treatment_profiles, well_profiles
from morphoflow.profiling.evaluation import plot_embedding, plot_pr_curves
from morphoflow.profiling.extract import CropSettings, profile_sites
from morphoflow.profiling.illumination import plate_illumination, plate_percentiles
from morphoflow.profiling.workflow import (
    EvaluationSettings,
    check_design,
    evaluate_representations,
    replicate_summary,
)
from morphoflow.screen.table import fingerprint
from morphoflow.segmentation.onnx_model import MODEL_SUFFIXES, load_predictor
from morphoflow.segmentation.screen import segment_screen
from morphoflow.segmentation.settings import PIPELINE_DEFAULTS, SegmenterSettings, make_segmenter

logger = logging.getLogger(__name__)


def _triton_client(inference: dict[str, Any]):
    from morphoflow.serving.client import TritonClient

    return TritonClient(
        str(inference["url"]),
        protocol=inference.get("protocol"),
        timeout_s=float(inference.get("timeout_s", 120)),
        retries=int(inference.get("retries", 4)),
    )


def _backend(inference: dict[str, Any]) -> str:
    backend = str(inference.get("backend", "local"))
    if backend not in ("local", "triton"):
        raise ValueError(f"inference.backend must be local or triton, got {backend!r}")
    return backend


@contextmanager
def _screen_folder(folder: str | Path, image_table: pd.DataFrame, root: Path) -> Iterator[Path]:
    """A staging folder that replaces ``folder`` as a whole when the block succeeds.

    Per-plate outputs (label images, single-cell Parquet files, crops) of a run thus never sit
    beside another screen's plates, and a failed run leaves the previous complete folder. The
    folder records its screen in ``_screen.json`` (fingerprint of the image table and files;
    the leading underscore keeps Parquet readers from taking it for data).
    """
    with atomic_dir(folder) as staging:
        record = {"screen_root": str(root), "data_fingerprint": fingerprint(image_table, root)}
        (staging / "_screen.json").write_text(json.dumps(record, indent=2))
        yield staging


def segment_nuclei_per_site(
    image_table: pd.DataFrame,
    screen: dict[str, Any],
    params: dict[str, Any],
    inference: dict[str, Any],
) -> pd.DataFrame:
    """Nuclei of every site (DNA channel); label images to disk.

    ``params`` is the ``nuclei:`` block: ``labels_dir`` plus the
    :class:`~morphoflow.segmentation.settings.SegmenterSettings` fields, missing ones taken from
    :data:`~morphoflow.segmentation.settings.PIPELINE_DEFAULTS` (unknown keys are an error).
    With ``inference.backend=local`` the configured model (torch ``.pt`` or ``.onnx`` file,
    ``models:/`` URI, or the shipped U-Net) runs here; with ``triton`` every site goes to the
    server's ``nuclei_tta`` model (the same normalisation, TTA and post-processing code).
    """
    settings_params = {k: v for k, v in params.items() if k != "labels_dir"}
    settings = SegmenterSettings.from_params(settings_params, defaults=PIPELINE_DEFAULTS)
    if _backend(inference) == "triton":
        from morphoflow.serving.client import served_views

        served_views(settings.views)  # refused before the first site, not after
        backend = _triton_client(inference)
    else:
        model_file = resolve_model_file(settings.model, suffix=MODEL_SUFFIXES)
        backend = load_predictor(model_file, batch_size=settings.batch_size)
    segment = make_segmenter(settings, backend)
    root = screen_root(screen)
    with _screen_folder(params["labels_dir"], image_table, root) as staging:
        return segment_screen(image_table, root, segment, staging)


def compute_illumination(
    image_table: pd.DataFrame, screen: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Per-plate illumination functions and (optional) 8-bit stretch percentiles.

    Returns ``{"functions": {plate: (C, H, W)}, "compression": {plate: (low, high)}}``; each
    is empty when its option (``enabled``, ``compress_8bit``) is off.
    """
    root = screen_root(screen)
    functions: dict[str, np.ndarray] = {}
    compression: dict[str, Any] = {}
    for plate, rows in image_table.groupby("Metadata_Plate"):
        if params.get("enabled", False):
            functions[str(plate)] = plate_illumination(
                rows, root, int(params["downscale"]), int(params["median_size"])
            )
        if params.get("compress_8bit", False):
            low, high = params["compress_percentiles"]
            compression[str(plate)] = plate_percentiles(
                rows, root, functions.get(str(plate)), float(low), float(high)
            )
    return {"functions": functions, "compression": compression}


def _extractor(params: dict[str, Any], inference: dict[str, Any]):
    _check_extractor(params, inference)
    name = params["extractor"]
    if name == "cnn" and _backend(inference) == "triton":
        from morphoflow.serving.client import TritonFeaturizer

        if params.get("model"):
            logger.warning(
                "features.model=%s is ignored with inference.backend=triton: the server's "
                "featurizer model runs",
                params["model"],
            )

        return TritonFeaturizer(_triton_client(inference), batch_size=int(params["batch_size"]))
    if name == "classical":
        from morphoflow.profiling.classical import classical_features

        return classical_features
    if name == "imagenet":
        from morphoflow.profiling.cnn import ImageNetFeaturizer

        return ImageNetFeaturizer(
            params.get("weights_path"),
            batch_size=int(params["batch_size"]),
            device=str(params.get("device", "cpu")),
        )
    if name == "cnn":
        from morphoflow.profiling.cnn import OnnxFeaturizer

        path = resolve_model_file(params.get("model"), suffix=".onnx")
        return OnnxFeaturizer(path, batch_size=int(params["batch_size"]))
    raise AssertionError(name)  # _check_extractor refused every other name


def extract_features(
    image_table: pd.DataFrame,
    nuclei: pd.DataFrame,
    illumination: dict[str, Any],
    screen: dict[str, Any],
    nuclei_params: dict[str, Any],
    crop_params: dict[str, Any],
    feature_params: dict[str, Any],
    inference: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Single-cell features (Parquet per plate) -> site profiles, plus the crop index.

    The single-cell folder (and the crops folder when ``crops.store``) is replaced as a whole
    when the node succeeds, so it holds this screen's plates only.
    """
    root = screen_root(screen)
    store = bool(crop_params.get("store", False))
    with ExitStack() as stack:
        single_cell = stack.enter_context(
            _screen_folder(feature_params["single_cell_dir"], image_table, root)
        )
        crops = (
            stack.enter_context(_screen_folder(crop_params["dir"], image_table, root))
            if store
            else None
        )
        return profile_sites(
            image_table,
            nuclei,
            root=root,
            labels_dir=nuclei_params["labels_dir"],
            extractor=_extractor(feature_params, inference),
            single_cell_dir=single_cell,
            crop=CropSettings(
                int(crop_params["size"]),
                bool(crop_params["mask_neighbours"]),
                str(crop_params["edge"]),
            ),
            illumination=illumination["functions"] or None,
            crops_dir=crops,
            compression=illumination["compression"] or None,
        )


def aggregate_wells(site_profiles: pd.DataFrame) -> pd.DataFrame:
    """Site medians -> well means (raw, before batch correction)."""
    return well_profiles(site_profiles)


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
    if name == "cnn" and _backend(inference) == "local":
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
