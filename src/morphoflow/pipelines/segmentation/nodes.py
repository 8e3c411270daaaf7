"""Nodes of the segmentation pipeline: thin wrappers over morphoflow.segmentation."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.lifecycle.resolve import resolve_model_file
from morphoflow.pipelines.data_validation.nodes import screen_root
from morphoflow.pipelines.mlflow_metrics import metric_history, metric_values
from morphoflow.segmentation.scoring import (
    evaluate_views,
    flat_metrics,
    iter_dna_and_truth,
    overlay_figure,
    require_truth,
    scores_table,
    split_by_plate,
    spread_sites,
)
from morphoflow.segmentation.settings import PIPELINE_DEFAULTS, SegmenterSettings, make_segmenter
from morphoflow.segmentation.training import TrainConfig, cycle_samples, train_unet
from morphoflow.segmentation.unet import NucleusUNet, load_unet, predict_probabilities


def split_sites(
    image_table: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Training sites and held-out-plate sites (both need ground-truth masks)."""
    require_truth(image_table)
    return split_by_plate(image_table, params["holdout"])


def train_nucleus_unet(
    train_sites: pd.DataFrame, screen: Path, params: dict[str, Any]
) -> tuple[NucleusUNet, dict[str, list[dict[str, float]]]]:
    """Train (or fine-tune the shipped) U-Net on training plates; per-epoch losses for MLflow."""
    train = dict(params["train"])
    init = train.pop("init", "default")
    max_sites = train.pop("max_sites", None)
    sites = spread_sites(train_sites, max_sites)
    samples = list(iter_dna_and_truth(sites, screen_root(screen)))
    model = None
    if init != "random":
        model, _ = load_unet(resolve_model_file(init))
        train["unet"] = model.config
    config = TrainConfig(**train)
    model, history = train_unet(cycle_samples(samples, config.seed), config, model=model)
    model.metadata = {
        "init": str(init),
        "train": config.to_dict(),
        "n_train_sites": len(samples),
        "train_plates": sorted(sites["Metadata_Plate"].unique().tolist()),
    }
    metrics = metric_history(history, ("train_loss", "epoch_seconds"), "unet.")
    return model, metrics


def _unet_segmenter(model: NucleusUNet, postprocess: dict[str, Any]):
    """(image, views) -> labels: the shipped segmenter factory with the ``postprocess`` block
    (``threshold``, object filters ``min_diameter`` / ``max_diameter`` /
    ``discard_border_objects``; unknown keys are an error) and the given views."""
    predict = partial(predict_probabilities, model)

    def segment(image: np.ndarray, views: int) -> np.ndarray:
        settings = SegmenterSettings.from_params(
            {**postprocess, "views": views}, defaults=PIPELINE_DEFAULTS
        )
        return make_segmenter(settings, predict)(image).labels

    return segment


def evaluate_nucleus_unet(
    model: NucleusUNet, test_sites: pd.DataFrame, screen: Path, params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame, Any]:
    """DSB scores with and without TTA on held-out plates, per-image table and overlay figure.

    When the model was fine-tuned from an initial model, that model is scored on the same sites
    too (``unet_initial.*``), so the run shows whether fine-tuning helped.
    """
    evaluation = params["evaluation"]
    sites = spread_sites(test_sites, evaluation["max_sites"])
    samples = list(iter_dna_and_truth(sites, screen_root(screen)))
    views = [int(v) for v in evaluation["views"]]
    scores, predictions = evaluate_views(
        _unet_segmenter(model, params["postprocess"]), samples, views
    )
    flat = flat_metrics(scores, "unet")
    tables = [scores_table(scores, sites, "unet")]
    init = params["train"].get("init", "default")
    if init != "random":
        initial, _ = load_unet(resolve_model_file(init))
        initial_scores, _ = evaluate_views(
            _unet_segmenter(initial, params["postprocess"]), samples, views
        )
        flat.update(flat_metrics(initial_scores, "unet_initial"))
        tables.append(scores_table(initial_scores, sites, "unet_initial"))
    metrics = metric_values(flat)
    # overlay of the held-out site where TTA changed the score most
    low, high = min(views), max(views)
    gains = [
        b.score - a.score for a, b in zip(scores[low].images, scores[high].images, strict=True)
    ]
    pick = int(np.argmax(np.abs(gains)))
    image, truth = samples[pick]
    names = (f"U-Net, {low} view(s)", f"U-Net + TTA, {high} views")
    figure = overlay_figure(
        image,
        truth,
        {names[0]: predictions[low][pick], names[1]: predictions[high][pick]},
        {names[0]: scores[low].images[pick].score, names[1]: scores[high].images[pick].score},
        title="held-out site "
        + "/".join(
            str(sites.iloc[pick][k]) for k in ("Metadata_Plate", "Metadata_Well", "Metadata_Site")
        ),
    )
    return metrics, pd.concat(tables, ignore_index=True), figure


def train_and_evaluate_maskrcnn(
    train_sites: pd.DataFrame,
    test_sites: pd.DataFrame,
    screen: Path,
    params: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Mask R-CNN trained on the same plates and scored with/without instance TTA (opt-in).

    With ``maskrcnn.enabled: false`` (default: CPU training of a ResNet-50 FPN takes long) no
    model is trained and empty results are returned; the run's parameters record that choice.
    """
    options = params["maskrcnn"]
    if not options.get("enabled", False):
        return {}, pd.DataFrame()
    from morphoflow.segmentation.maskrcnn import (
        MaskRCNNConfig,
        build_maskrcnn,
        segment_instances,
        train_maskrcnn,
    )

    root = screen_root(screen)
    config = MaskRCNNConfig(**options.get("config", {}))
    model = build_maskrcnn(config, options.get("weights_path"))
    train = list(iter_dna_and_truth(train_sites, root))
    seed = int(options.get("seed", 0))
    model, _ = train_maskrcnn(
        cycle_samples(train, seed),
        config,
        steps=int(options["steps"]),
        batch_size=int(options["batch_size"]),
        lr=float(options["lr"]),
        seed=seed,
        device=str(options.get("device", "cpu")),
        model=model,
    )
    sites = spread_sites(test_sites, params["evaluation"]["max_sites"])
    samples = list(iter_dna_and_truth(sites, root))

    def segment(image: np.ndarray, views: int) -> np.ndarray:
        return segment_instances(model, image, config, views=views)[0]

    scores, _ = evaluate_views(segment, samples, [int(v) for v in params["evaluation"]["views"]])
    metrics = metric_values(flat_metrics(scores, "maskrcnn"))
    return metrics, scores_table(scores, sites, "maskrcnn")


def register_nucleus_unet(
    model: NucleusUNet, metrics: dict[str, Any], params: dict[str, Any]
) -> dict[str, Any]:
    """Export the trained U-Net to ONNX (parity-checked) and register it as the challenger.

    The held-out DSB scores of this run (``unet.*``) become model-version tags, so
    ``morphoflow promote`` and the registry UI show what the version scored. Disabled with
    ``segmentation.register.enabled=false`` (returns ``{"registered": False}``).
    """
    settings = params.get("register", {})
    if not settings.get("enabled", True):
        return {"registered": False}
    import tempfile

    from morphoflow.lifecycle.registry import register_unet
    from morphoflow.segmentation.unet import save_unet

    scores = {}
    for key, value in metrics.items():
        # as saved ({"value", "step"}) or as loaded back from MLflow (prefixed, a history list)
        name = key.removeprefix("segmentation.")
        if isinstance(value, list):
            value = value[-1]
        if name.startswith("unet.") and name.endswith("dsb_score"):
            scores[f"eval.{name}"] = round(float(value["value"]), 6)
    with tempfile.TemporaryDirectory(prefix="nuclei-unet-") as tmp:
        path = save_unet(model, Path(tmp) / "nuclei_unet.pt", half=False)
        registered = register_unet(
            path,
            name=str(settings.get("name", "nuclei-unet")),
            extra_tags={**scores, "trained_by": "kedro segmentation pipeline"},
        )
    return {"registered": True, **registered}
