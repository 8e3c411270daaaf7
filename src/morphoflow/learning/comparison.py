"""Representation comparison: classical, ImageNet and WSL CNN profiles on a held-out screen part.

The thesis result (Moshkov; Moshkov et al. 2024, Figures 6/7) is that a CNN trained weakly
supervised (classify each single-cell crop's treatment) on strong treatments pooled from several
sources gives better MoA retrieval than classical and ImageNet features, and that sphering is
still essential. This module measures that claim on any screen with stored crops:

1. **Held-out part** (:class:`HoldOut`): whole sources and/or plates. No cell, well or strength
   call of the held-out part is used for training: every training set is assembled from the
   other plates only.
2. **Training sets** (:func:`training_index`): per :class:`WSLVariant` (a list of training
   sources and a split), phenotype strength is computed on the variant's own well profiles
   (:func:`morphoflow.assembly.phenotype_strength`) and its strong treatments plus both control
   kinds are pooled into a combined index (:func:`morphoflow.assembly.combined_index`), exactly
   as the ``dataset_assembly`` pipeline does.
3. **Training** (:func:`train_variant`): :func:`morphoflow.learning.train.train_wsl` with the
   variant's split (leave-cells-out or leave-plates-out, inside the training plates).
4. **Featurisation** (:func:`featurize_index`): the held-out cells' *stored* crops (no new
   segmentation) go through an extractor (``(crops, masks) -> features``, the protocol of
   :mod:`morphoflow.profiling.extract`), then site median and well mean as in profiling. The
   WSL extractor is :class:`Block6aExtractor` (the torch twin of the exported ONNX featurizer:
   spatial mean of block6a, 672 features, inputs scaled by
   :func:`~morphoflow.backbone.scale_crops`).
5. **Evaluation** (:func:`compare_representations`): every representation's held-out well
   profiles go through :func:`morphoflow.profiling.workflow.evaluate_representations` (features
   selected on control wells; sphering lambda chosen on a selection half of the treatments; raw,
   per-plate standardised and sphered profiles scored on the other half: MoA mAP, folds of
   enrichment, shuffled-label mAP). A representation that cannot be computed (ImageNet without
   local weights) is reported as ``skipped`` with its reason, never estimated.

No kedro, mlflow, great_expectations or tritonclient here.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from morphoflow.assembly import combined_index, content_hash, phenotype_strength
from morphoflow.backbone import BLOCK6A_CHANNELS, scale_crops
from morphoflow.backbone.efficientnet import Block6aFeatures
from morphoflow.learning.train import SPLITS, WSLConfig, split_index, train_wsl
from morphoflow.profiling.aggregate import feature_columns, well_profiles
from morphoflow.profiling.extract import Extractor, profile_stored_crops
from morphoflow.profiling.wells import DEFAULT_MIN_CELLS_PER_WELL, select_wells
from morphoflow.profiling.workflow import EvaluationSettings, evaluate_representations

SOURCE = "Metadata_Source"
PLATE = "Metadata_Plate"

#: Batch corrections scored for every representation, in plot order.
CORRECTIONS: tuple[str, ...] = ("raw", "standardized", "sphered")

#: Scores copied from :func:`~morphoflow.profiling.workflow.retrieval_scores` into the table.
SCORES: tuple[str, ...] = (
    "map",
    "fraction_retrieved",
    "interpolated_map",
    "folds_of_enrichment",
    "foe_fraction_significant",
    "shuffled_map",
    "n_queries",
)

#: Columns of the comparison table, in order.
TABLE_COLUMNS: tuple[str, ...] = (
    "representation",
    "kind",
    "correction",
    "status",
    "reason",
    *SCORES,
    "map_sem",
    "lambda",
    "n_features",
    "n_report_treatments",
    "n_selection_treatments",
    "n_wells",
    "n_cells",
    "training_sources",
    "split",
    "epochs",
    "n_classes",
    "n_training_cells",
    "final_val_accuracy",
    "seconds_per_epoch",
    "train_seconds",
    "featurize_seconds",
)


# --------------------------------------------------------------------------- held-out part


@dataclass(frozen=True)
class HoldOut:
    """The held-out part of a screen: every cell of these sources and of these plates.

    Attributes:
        sources: Held-out ``Metadata_Source`` values.
        plates: Held-out ``Metadata_Plate`` values (of any source).

    Raises:
        ValueError: Both are empty.

    Example:
        >>> frame = pd.DataFrame({"Metadata_Source": ["a", "b", "c"],
        ...                       "Metadata_Plate": ["a1", "b1", "c1"]})
        >>> HoldOut(sources=("c",), plates=("a1",)).mask(frame).tolist()
        [True, False, True]
    """

    sources: tuple[str, ...] = ()
    plates: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))
        object.__setattr__(self, "plates", tuple(str(p) for p in self.plates))
        if not self.sources and not self.plates:
            raise ValueError("HoldOut needs at least one held-out source or plate")

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows of ``frame`` (with ``Metadata_Source`` and ``Metadata_Plate``) that are held out."""
        _require(frame, [SOURCE, PLATE], "frame")
        return (
            frame[SOURCE].astype(str).isin(self.sources)
            | frame[PLATE].astype(str).isin(self.plates)
        ).to_numpy()

    def check(self, frame: pd.DataFrame, name: str) -> None:
        """Raise when a held-out source or plate is not in ``frame`` or nothing is left to train.

        Raises:
            ValueError: Naming the unknown sources/plates, or when every row is held out.
        """
        _require(frame, [SOURCE, PLATE], name)
        unknown = sorted(set(self.sources) - set(frame[SOURCE].astype(str)))
        unknown += sorted(set(self.plates) - set(frame[PLATE].astype(str)))
        if unknown:
            raise ValueError(f"{name}: held-out sources/plates not in the screen: {unknown}")
        if self.mask(frame).all():
            raise ValueError(f"{name}: every row is held out, nothing is left to train on")


# --------------------------------------------------------------------------- training sets


@dataclass(frozen=True)
class WSLVariant:
    """One WSL model of the comparison: trained on ``sources`` with ``split``.

    Attributes:
        name: Identifier (used as representation name, file and folder name).
        sources: Training sources (their non-held-out plates).
        split: ``"leave_cells_out"`` or ``"leave_plates_out"`` (inside the training plates).
    """

    name: str
    sources: tuple[str, ...]
    split: str = "leave_cells_out"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))
        if not self.name or "/" in self.name or "\\" in self.name:
            raise ValueError(f"WSLVariant.name must be a plain name, got {self.name!r}")
        if not self.sources:
            raise ValueError(f"WSLVariant {self.name!r}: sources is empty")
        if self.split not in SPLITS:
            raise ValueError(
                f"WSLVariant {self.name!r}: split must be one of {SPLITS}, got {self.split!r}"
            )


@dataclass(frozen=True)
class AssemblySettings:
    """How a training set is assembled (the ``dataset_assembly`` parameters).

    Attributes:
        strength: Keyword arguments of :func:`~morphoflow.assembly.phenotype_strength`
            (``n_components``, ``percentile``, ``min_replicates``, ``scope``, ``n_null``).
        max_control_cells_per_plate: Cap per plate and control class (None: keep all).
        seed: Seed of the strength null and of the control cap.
        min_cells_per_well: Wells with fewer cells (or a non-finite profile) take no part in
            the strength calls (:func:`morphoflow.profiling.wells.select_wells`).
    """

    strength: Mapping[str, Any] = field(default_factory=dict)
    max_control_cells_per_plate: int | None = 200
    seed: int = 0
    min_cells_per_well: int = DEFAULT_MIN_CELLS_PER_WELL


def training_index(
    crop_index: pd.DataFrame,
    wells: pd.DataFrame,
    sources: Sequence[str],
    holdout: HoldOut,
    settings: AssemblySettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The combined WSL training index of ``sources``, without any held-out plate.

    Phenotype strength is computed on the training wells only (held-out wells never decide
    which treatments are strong), then strong treatments and both control kinds are pooled.

    Args:
        crop_index: One row per cell (profiling's crop index with stored crops).
        wells: Well profiles (classical, before correction) of the same screen.
        sources: Training sources.
        holdout: The held-out part.
        settings: Assembly settings.

    Returns:
        ``(combined index, strength table)``.

    Raises:
        ValueError: A source is unknown or held out, or no training plate is left.
    """
    sources = [str(s) for s in sources]
    _require(crop_index, [SOURCE, PLATE, "Path_Crops", "Metadata_CropIndex"], "crop_index")
    _require(wells, [SOURCE, PLATE], "wells")
    known = set(crop_index[SOURCE].astype(str))
    unknown = sorted(set(sources) - known)
    if unknown:
        raise ValueError(f"training sources not in the crop index: {unknown} (has {sorted(known)})")
    held = sorted(set(sources) & set(holdout.sources))
    if held:
        raise ValueError(f"training sources {held} are held out for evaluation")
    in_cells = crop_index[SOURCE].astype(str).isin(sources).to_numpy() & ~holdout.mask(crop_index)
    in_wells = wells[SOURCE].astype(str).isin(sources).to_numpy() & ~holdout.mask(wells)
    if not in_cells.any() or not in_wells.any():
        raise ValueError(f"sources {sources}: no plate is left once the held-out part is removed")
    usable = select_wells(
        wells[in_wells].reset_index(drop=True),
        int(settings.min_cells_per_well),
        name=f"well profiles of sources {sources}",
    ).used
    strength = phenotype_strength(
        usable.reset_index(drop=True), **dict(settings.strength), seed=settings.seed
    )
    index = combined_index(
        crop_index[in_cells].reset_index(drop=True),
        strength,
        settings.max_control_cells_per_plate,
        settings.seed,
    )
    return index, strength


# --------------------------------------------------------------------------- training


@dataclass
class TrainedVariant:
    """A trained WSL model of the comparison and how it was trained.

    Attributes:
        variant: What was trained.
        model: The classifier (eval mode, CPU).
        classes: Its classes (label order).
        history: Per-epoch metrics of :func:`~morphoflow.learning.train.train_wsl`.
        n_index_cells: Cells in the combined index (training + validation split).
        n_training_cells: Cells of the split's training part.
        n_strong: Strong treatments kept (all training sources).
        index_version: Content hash of the combined index.
        seconds: Wall time of assembly and training.
    """

    variant: WSLVariant
    model: torch.nn.Module
    classes: list[Any]
    history: list[dict[str, float]]
    n_index_cells: int
    n_training_cells: int
    n_strong: int
    index_version: str
    seconds: float

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (no weights)."""
        epochs = [h.get("seconds", math.nan) for h in self.history]
        final = self.history[-1] if self.history else {}
        return {
            "sources": list(self.variant.sources),
            "split": self.variant.split,
            "epochs": len(self.history),
            "classes": [str(c) for c in self.classes],
            "n_classes": len(self.classes),
            "n_index_cells": self.n_index_cells,
            "n_training_cells": self.n_training_cells,
            "n_strong_treatments": self.n_strong,
            "index_version": self.index_version,
            "seconds": self.seconds,
            "seconds_per_epoch": float(np.mean(epochs)) if epochs else math.nan,
            "final": {k: float(v) for k, v in final.items()},
            "history": [{k: float(v) for k, v in h.items()} for h in self.history],
        }


def train_variant(
    variant: WSLVariant,
    crop_index: pd.DataFrame,
    wells: pd.DataFrame,
    crops_dir: str | Path,
    holdout: HoldOut,
    config: WSLConfig,
    assembly: AssemblySettings,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainedVariant:
    """Assemble ``variant``'s training set and train it with :func:`train_wsl`.

    ``config`` gives every hyper-parameter but the split (the variant's). When
    ``config.checkpoint_dir`` is set, checkpoints go to ``<checkpoint_dir>/<name>-<hash>``
    (``hash``: first 12 hex digits of the index's content hash), so a run resumes only from
    a checkpoint of the same training set.

    Returns:
        The trained model and its description.
    """
    started = time.perf_counter()
    index, strength = training_index(crop_index, wells, variant.sources, holdout, assembly)
    version = content_hash(index)
    changes: dict[str, Any] = {"split": variant.split}
    if config.checkpoint_dir is not None:
        changes["checkpoint_dir"] = str(
            Path(config.checkpoint_dir) / f"{variant.name}-{version[:12]}"
        )
    config = dataclasses.replace(config, **changes)
    train_rows, _ = split_index(index.reset_index(drop=True), config)
    model, classes, history = train_wsl(index, crops_dir, config, on_epoch=on_epoch)
    return TrainedVariant(
        variant=variant,
        model=model,
        classes=list(classes),
        history=history,
        n_index_cells=len(index),
        n_training_cells=len(train_rows),
        n_strong=int(strength["is_strong"].sum()),
        index_version=version,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------- featurisation


class Block6aExtractor:
    """WSL CNN features of crops: spatial mean of block6a (672 values, ``CNN_<i>``).

    The torch twin of the exported ONNX featurizer used by profiling's ``cnn`` extractor (same
    input scaling, :func:`~morphoflow.backbone.scale_crops`; the export is checked to
    agree within 1e-4).

    Args:
        model: An EfficientNet-B0 classifier (e.g. from :func:`train_wsl`); not modified.
        batch_size: Crops per forward pass.
        device: Torch device.
    """

    def __init__(
        self, model: torch.nn.Module, batch_size: int = 64, device: str | torch.device = "cpu"
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.device = torch.device(device)
        self.featurizer = Block6aFeatures(model).to(self.device).eval()
        self.batch_size = int(batch_size)
        self.columns = [f"CNN_{i}" for i in range(BLOCK6A_CHANNELS)]

    def __call__(self, crops: np.ndarray, masks: np.ndarray | None = None) -> pd.DataFrame:
        scaled = scale_crops(crops)
        out = np.zeros((len(scaled), BLOCK6A_CHANNELS), np.float32)
        with torch.inference_mode():
            for start in range(0, len(scaled), self.batch_size):
                x = torch.from_numpy(scaled[start : start + self.batch_size]).to(self.device)
                out[start : start + len(x)] = self.featurizer(x).float().cpu().numpy()
        return pd.DataFrame(out, columns=self.columns)


def featurize_index(
    index: pd.DataFrame, crops_dir: str | Path, extractor: Extractor
) -> pd.DataFrame:
    """Site profiles of the cells of a crop index, from their stored crops in ``crops_dir``.

    :func:`morphoflow.profiling.extract.profile_stored_crops` with ``Path_Crops`` relative to
    ``crops_dir`` (see there for the returns and errors).
    """
    return profile_stored_crops(
        index, crop_file=lambda relpath: Path(crops_dir) / relpath, extractor=extractor
    )


def held_out_wells(
    index: pd.DataFrame, crops_dir: str | Path, extractor: Extractor
) -> tuple[pd.DataFrame, float]:
    """Well profiles (site median -> well mean) of ``index``'s cells and the seconds it took."""
    started = time.perf_counter()
    wells = well_profiles(featurize_index(index, crops_dir, extractor))
    return wells, time.perf_counter() - started


# --------------------------------------------------------------------------- evaluation


@dataclass
class Representation:
    """One row group of the comparison: held-out well profiles of one feature extractor.

    Attributes:
        name: Row label (``classical``, ``imagenet``, a WSL variant name).
        kind: ``classical``, ``imagenet`` or ``wsl``.
        wells: Held-out well profiles before correction; None when skipped.
        reason: Why the representation was skipped ("" when it was computed).
        info: Extra columns of its rows (training sources, split, epochs, timings, ...).
    """

    name: str
    kind: str
    wells: pd.DataFrame | None = None
    reason: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.wells is None) == (not self.reason):
            raise ValueError(
                f"representation {self.name!r}: give either well profiles or a reason to skip"
            )


def compare_representations(
    representations: Sequence[Representation], settings: EvaluationSettings
) -> pd.DataFrame:
    """Score every representation raw, per-plate standardised and sphered on held-out wells.

    Each representation's wells go through
    :func:`~morphoflow.profiling.workflow.evaluate_representations` with the same ``settings``
    (so the same selection/report treatment halves for every representation: the split depends
    only on treatment names, MoAs and the seed).

    Args:
        representations: What to compare.
        settings: Evaluation settings (profiling's ``batch_correction`` parameters).

    Returns:
        One row per (representation, correction) with :data:`TABLE_COLUMNS`: ``status`` ``ok``
        or ``skipped`` (then ``reason`` says why and the scores are NaN); ``map_sem`` is the
        standard error of the mAP over the report queries (their APs' sample standard
        deviation / sqrt(n)), a reminder of how few queries a small screen has.

    Raises:
        ValueError: No representation, or two with the same name.
    """
    if not representations:
        raise ValueError("representations is empty: nothing to compare")
    names = [r.name for r in representations]
    if len(set(names)) != len(names):
        raise ValueError(f"representation names must be unique, got {names}")
    rows: list[dict[str, Any]] = []
    for rep in representations:
        base = {"representation": rep.name, "kind": rep.kind, **rep.info}
        if rep.wells is None:
            rows += [
                {**base, "correction": c, "status": "skipped", "reason": rep.reason}
                for c in CORRECTIONS
            ]
            continue
        result = evaluate_representations(rep.wells, settings)
        common = {
            **base,
            "status": "ok",
            "reason": "",
            "lambda": float(result.chosen_lambda),
            "n_features": int(result.metrics["n_features"]),
            "n_report_treatments": int(result.metrics["n_report_treatments"]),
            "n_selection_treatments": int(result.metrics["n_selection_treatments"]),
            "n_wells": len(rep.wells),
            "n_cells": int(rep.wells["Metadata_CellCount"].sum())
            if "Metadata_CellCount" in rep.wells.columns
            else math.nan,
        }
        for correction in CORRECTIONS:
            scores = result.metrics[correction]
            ap = result.per_query.loc[result.per_query["representation"] == correction, "ap"]
            sem = float(ap.std(ddof=1) / math.sqrt(len(ap))) if len(ap) > 1 else math.nan
            rows.append(
                {
                    **common,
                    "correction": correction,
                    **{s: float(scores[s]) for s in SCORES},
                    "map_sem": sem,
                }
            )
    table = pd.DataFrame(rows)
    for column in TABLE_COLUMNS:
        if column not in table.columns:
            table[column] = math.nan
    extra = [c for c in table.columns if c not in TABLE_COLUMNS]
    return table[[*TABLE_COLUMNS, *extra]]


def plot_comparison(table: pd.DataFrame, title: str = "MoA retrieval on the held-out part"):
    """Points per representation: MoA mAP and folds of enrichment, raw / standardised / sphered.

    Error bars are the mAP's standard error over the report queries (``map_sem``); the
    shuffled-label mAP of each row is drawn as a black tick (chance level); skipped
    representations are labelled as such.

    Args:
        table: Output of :func:`compare_representations`.
        title: Figure title.

    Returns:
        A ``matplotlib.figure.Figure`` (not attached to pyplot).
    """
    from matplotlib.figure import Figure

    _require(
        table, ["representation", "correction", "status", "map", "folds_of_enrichment"], "table"
    )
    names = list(dict.fromkeys(table["representation"]))
    corrections = [c for c in CORRECTIONS if c in set(table["correction"])]
    colors = {"raw": "#9e9e9e", "standardized": "#1f77b4", "sphered": "#d62728"}
    width = 0.8 / max(len(corrections), 1)
    fig = Figure(figsize=(max(6.0, 1.3 * len(names) + 2.0), 7.0), layout="constrained")
    axes = fig.subplots(2, 1, sharex=True)
    for ax, metric, label in (
        (axes[0], "map", "MoA mAP (report treatments)"),
        (axes[1], "folds_of_enrichment", "folds of enrichment (top 1 %)"),
    ):
        for k, correction in enumerate(corrections):
            rows = table[table["correction"] == correction].set_index("representation")
            x = np.arange(len(names)) + (k - (len(corrections) - 1) / 2) * width
            y = [rows[metric].get(n, math.nan) for n in names]
            error = [rows["map_sem"].get(n, math.nan) for n in names] if metric == "map" else None
            ax.bar(
                x, y, width=width * 0.9, color=colors.get(correction), label=correction, yerr=error
            )
            if metric == "map":
                chance = [rows["shuffled_map"].get(n, math.nan) for n in names]
                ax.scatter(
                    x,
                    chance,
                    marker="_",
                    s=200,
                    color="black",
                    zorder=3,
                    label="shuffled MoA labels" if k == 0 else None,
                )
        for i, name in enumerate(names):
            status = table.loc[table["representation"] == name, "status"].iloc[0]
            if status != "ok":
                ax.text(
                    i,
                    0.02,
                    "skipped",
                    ha="center",
                    va="bottom",
                    rotation=90,
                    fontsize=8,
                    transform=ax.get_xaxis_transform(),
                )
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[1].set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    fig.suptitle(title)
    return fig


def extractor_kind(wells: pd.DataFrame) -> str:
    """Which extractor made a profile table: ``cnn``, ``imagenet`` or ``classical``.

    Judged by the feature names (``CNN_<i>``, ``ImageNet_<channel>_<i>``; anything else is
    classical).
    """
    features = feature_columns(wells)
    if features and all(f.startswith("CNN_") for f in features):
        return "cnn"
    if features and all(f.startswith("ImageNet_") for f in features):
        return "imagenet"
    return "classical"


def _require(frame: pd.DataFrame, columns: Sequence[str], name: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks the columns {missing}")


__all__ = [
    "CORRECTIONS",
    "TABLE_COLUMNS",
    "AssemblySettings",
    "Block6aExtractor",
    "HoldOut",
    "Representation",
    "TrainedVariant",
    "WSLVariant",
    "compare_representations",
    "extractor_kind",
    "featurize_index",
    "held_out_wells",
    "plot_comparison",
    "train_variant",
    "training_index",
]
