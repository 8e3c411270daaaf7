"""Weakly supervised training of the Cell Painting CNN: classify each crop's treatment.

DeepProfiler's recipe: EfficientNet-B0 on 5-channel crops, categorical cross-entropy, SGD
(lr 0.005, momentum 0.9), batch 32, augmentations on, classes re-balanced every epoch (the
median per-class count drawn from every class). The learning rate is constant.

Classes are the labels of the *training* split (sorted); validation cells of a class that does
not occur in training (possible with leave-plates-out) are left out of the validation metrics
(``val_cells`` in the history says how many were used).

Determinism and resuming: on CPU a run is a function of ``seed`` (model init, dropout and
stochastic depth via torch's global generator; the balanced draw via (seed, epoch);
augmentations via a dedicated CPU generator, applied to whole batches in the main process so
worker processes do not matter). After every epoch a checkpoint (model, optimizer, epoch,
history and all generator states) is written to ``checkpoint_dir``; with ``resume=True`` a run
continues after the latest one and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from morphoflow.learning.data import (
    Augment,
    BalancedEpochSampler,
    CropDataset,
    split_leave_cells_out,
    split_leave_plates_out,
)
from morphoflow.learning.model import build_efficientnet_b0
from morphoflow.torch_files import resolve_device, safe_torch_load, save_payload

logger = logging.getLogger(__name__)

SPLITS = ("leave_cells_out", "leave_plates_out")
CHECKPOINT_FORMAT = "morphoflow-wsl-checkpoint/1"
_CHECKPOINT_NAME = re.compile(r"^wsl_epoch_(\d+)\.pt$")
# config fields that may change between a checkpoint and the run resuming from it
_RESUMABLE_CHANGES = {"epochs", "device", "amp", "num_workers", "checkpoint_dir"}


@dataclass
class WSLConfig:
    """Hyper-parameters of :func:`train_wsl`.

    The defaults are the paper's recipe (DeepProfiler; Moshkov et al.), 30 epochs included: they
    are the library's defaults and the single place each default is declared. The Kedro
    pipelines build their config with :meth:`from_params` from ``training.config``
    (``conf/base/parameters_training.yml``), which names only where the pipeline deliberately
    differs (``epochs: 3`` for the 2-core CPU demo, ``label_col``, ``checkpoint_dir``); every
    other field takes the default below. A test holds each YAML value to a field that exists
    and differs from its default.

    Attributes:
        epochs: Balanced passes over the classes.
        batch_size: Crops per SGD step.
        lr: SGD learning rate (constant).
        momentum: SGD momentum.
        weight_decay: L2 penalty (all parameters).
        label_smoothing: Cross-entropy label smoothing of the training loss.
        augment: Random crop-resize, flips, rotations, intensity jitter (:class:`Augment`).
        split: ``"leave_cells_out"`` or ``"leave_plates_out"``.
        train_fraction: Fraction of each well's cells that train (leave-cells-out).
        val_plates: Plates to validate on (leave-plates-out); default: drawn.
        val_plate_fraction: Fraction of plates drawn for validation when ``val_plates`` is None.
        label_col: Index column with the class (the treatment).
        weights_path: Local ImageNet EfficientNet-B0 state dict to start from (None: random).
        seed: Seed of everything random.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        amp: bfloat16 autocast on CUDA (ignored on CPU).
        num_workers: DataLoader worker processes.
        checkpoint_dir: Folder of per-epoch checkpoints (None: no checkpoints).
    """

    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.005
    momentum: float = 0.9
    weight_decay: float = 1e-5
    label_smoothing: float = 0.0
    augment: bool = True
    split: str = "leave_cells_out"
    train_fraction: float = 0.6
    val_plates: list[str] | None = None
    val_plate_fraction: float = 0.25
    label_col: str = "Metadata_Treatment"
    weights_path: str | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    num_workers: int = 0
    checkpoint_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"WSLConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.num_workers) < 0:
            raise ValueError(f"WSLConfig.num_workers must be >= 0, got {self.num_workers!r}")
        if not self.lr > 0:
            raise ValueError(f"WSLConfig.lr must be > 0, got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"WSLConfig.momentum must be in [0, 1), got {self.momentum!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(
                f"WSLConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}"
            )
        if self.split not in SPLITS:
            raise ValueError(f"WSLConfig.split must be one of {SPLITS}, got {self.split!r}")
        if self.val_plates is not None:
            self.val_plates = [str(p) for p in self.val_plates]
        if self.weights_path is not None:
            self.weights_path = str(self.weights_path)
        if self.checkpoint_dir is not None:
            self.checkpoint_dir = str(self.checkpoint_dir)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for logging and checkpoints)."""
        return asdict(self)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> WSLConfig:
        """Build from a parameters mapping (e.g. ``training.config``).

        Keys absent from ``params`` take the defaults of the dataclass.

        Raises:
            ValueError: A key is not a field (the message names it and lists the fields), or
                a value is out of range.

        Example:
            >>> WSLConfig.from_params({"epochs": 3}).epochs, WSLConfig().epochs
            (3, 30)
        """
        params = dict(params or {})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"unknown WSLConfig parameter(s) {unknown}; known: {known}")
        return cls(**params)


def split_index(index: pd.DataFrame, config: WSLConfig) -> tuple[np.ndarray, np.ndarray]:
    """Positional training and validation rows of ``index`` under ``config.split``."""
    if config.split == "leave_plates_out":
        return split_leave_plates_out(
            index, config.val_plates, fraction=config.val_plate_fraction, seed=config.seed
        )
    return split_leave_cells_out(index, train_fraction=config.train_fraction, seed=config.seed)


def latest_checkpoint(checkpoint_dir: str | Path) -> Path | None:
    """The checkpoint of the highest epoch in ``checkpoint_dir`` (None when there is none)."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    found = [
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT_NAME.match(p.name))
    ]
    return max(found)[1] if found else None


def _save_checkpoint(folder: Path, epoch: int, payload: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = save_payload(folder / f"wsl_epoch_{epoch:04d}.pt", payload)
    for old in folder.iterdir():  # keep only the latest
        m = _CHECKPOINT_NAME.match(old.name)
        if m and int(m.group(1)) < epoch:
            old.unlink(missing_ok=True)
    return path


def index_fingerprint(index: pd.DataFrame) -> str:
    """sha256 of a crop index's rows (all columns, in order): which data a checkpoint saw."""
    import hashlib

    hashed = pd.util.hash_pandas_object(index.reset_index(drop=True), index=False)
    return hashlib.sha256(np.ascontiguousarray(hashed.to_numpy()).tobytes()).hexdigest()


def _load_checkpoint(
    path: Path, config: WSLConfig, classes: list[Any], data: str
) -> dict[str, Any]:
    payload = safe_torch_load(path, "WSL training checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} file")
    saved = payload["config"]
    current = config.to_dict()
    changed = sorted(
        f.name
        for f in fields(WSLConfig)
        if f.name not in _RESUMABLE_CHANGES and saved.get(f.name) != current[f.name]
    )
    if changed:
        raise ValueError(
            f"checkpoint {path} was written with a different config ({changed}); use another "
            "checkpoint_dir or resume=False"
        )
    if list(payload["classes"]) != list(classes):
        raise ValueError(f"checkpoint {path} has different classes than this index")
    if payload.get("data") not in (None, data):
        raise ValueError(
            f"checkpoint {path} was trained on another crop index (fingerprint "
            f"{str(payload['data'])[:12]} != {data[:12]}); use another checkpoint_dir or "
            "resume=False"
        )
    return payload


def _loader(dataset: CropDataset, config: WSLConfig, device: torch.device, **kwargs: Any):
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        **kwargs,
    )


def evaluate(
    model: torch.nn.Module, loader: DataLoader, device: torch.device, amp: bool = False
) -> tuple[float, float, int]:
    """Mean cross-entropy, accuracy and count over a loader (eval mode, no augmentation)."""
    model.eval()
    total, correct, seen = 0.0, 0, 0
    with torch.inference_mode():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            total += float(F.cross_entropy(logits.float(), y, reduction="sum"))
            correct += int((logits.argmax(dim=1) == y).sum())
            seen += len(y)
    if seen == 0:
        return math.nan, math.nan, 0
    return total / seen, correct / seen, seen


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    augment: Augment | None = None,
    generator: torch.Generator | None = None,
    label_smoothing: float = 0.0,
    amp: bool = False,
) -> tuple[float, int]:
    """One SGD step on a batch of scaled crops (moved to the model's device, augmented there).

    Returns:
        The batch's mean training loss and its number of correct predictions.
    """
    device = next(model.parameters()).device
    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if augment is not None:
        x = augment(x, generator)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach()), int((logits.detach().argmax(dim=1) == y).sum())


def train_wsl(
    index: pd.DataFrame,
    crops_dir: str | Path,
    config: WSLConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    resume: bool = True,
) -> tuple[torch.nn.Module, list[Any], list[dict[str, float]]]:
    """Train the WSL treatment classifier on single-cell crops.

    Args:
        index: Crop index table (one row per cell; see :class:`CropDataset`).
        crops_dir: Folder of the site crop files.
        config: Hyper-parameters.
        on_epoch: Called after each epoch with (epoch, metrics) (e.g. to log to MLflow).
        resume: Continue after the latest checkpoint in ``config.checkpoint_dir`` if any.

    Returns:
        The model (eval mode, CPU), its classes (label order) and the per-epoch history:
        ``epoch, train_loss, train_accuracy, val_loss, val_accuracy, val_cells, seconds,
        crops_per_s`` (training loss/accuracy on the augmented balanced batches; validation on
        every validation cell, plain cross-entropy; NaN without validation cells).

    Raises:
        ValueError: An empty training split, fewer than 2 training classes, or a checkpoint
            written with a different config or classes.
    """
    device = resolve_device(config.device)
    use_amp = bool(config.amp) and device.type == "cuda"
    index = index.reset_index(drop=True)
    data = index_fingerprint(index)
    train_rows, val_rows = split_index(index, config)
    if len(train_rows) == 0:
        raise ValueError("index: the split leaves no training cells")
    labels = index[config.label_col]
    classes = sorted(pd.unique(labels.iloc[train_rows]).tolist())
    if len(classes) < 2:
        raise ValueError(f"index: training needs >= 2 classes, the split has {classes}")
    val_rows = val_rows[labels.iloc[val_rows].isin(classes).to_numpy()]
    train_set = CropDataset(index.iloc[train_rows], crops_dir, config.label_col, classes)
    val_set = CropDataset(index.iloc[val_rows], crops_dir, config.label_col, classes)
    sampler = BalancedEpochSampler(train_set.targets, seed=config.seed)

    torch.manual_seed(config.seed)
    model = build_efficientnet_b0(len(classes), weights_path=config.weights_path).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    augment = Augment() if config.augment else None
    augment_rng = torch.Generator().manual_seed(config.seed + 1)
    loader_rng = torch.Generator().manual_seed(config.seed + 2)
    history: list[dict[str, float]] = []
    start = 1
    folder = Path(config.checkpoint_dir) if config.checkpoint_dir else None
    if folder is not None and resume and (path := latest_checkpoint(folder)) is not None:
        state = _load_checkpoint(path, config, classes, data)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(list(state["rng"]["cuda"]))
        augment_rng.set_state(state["rng"]["augment"])
        loader_rng.set_state(state["rng"]["loader"])
        history = [dict(h) for h in state["history"]]
        start = int(state["epoch"]) + 1
        logger.info("resuming WSL training from %s (epoch %d)", path, start)
    val_loader = _loader(val_set, config, device, shuffle=False)
    # drop a last batch of 1 (BatchNorm cannot train on it)
    drop_last = len(sampler) % config.batch_size == 1 and len(sampler) > 1

    for epoch in range(start, config.epochs + 1):
        sampler.set_epoch(epoch)
        loader = _loader(
            train_set, config, device, sampler=sampler, drop_last=drop_last, generator=loader_rng
        )
        model.train()
        started = time.perf_counter()
        total, correct, seen = 0.0, 0, 0
        for x, y in loader:
            loss, hits = train_step(
                model, optimizer, x, y, augment, augment_rng, config.label_smoothing, use_amp
            )
            total += loss * len(y)
            correct += hits
            seen += len(y)
        seconds = time.perf_counter() - started
        val_loss, val_accuracy, val_cells = evaluate(model, val_loader, device, use_amp)
        metrics = {
            "train_loss": total / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "val_cells": float(val_cells),
            "seconds": seconds,
            "crops_per_s": seen / seconds if seconds > 0 else math.nan,
        }
        history.append({"epoch": float(epoch), **metrics})
        logger.info(
            "WSL epoch %d/%d: train loss %.4f acc %.3f, val loss %.4f acc %.3f, %.1f crops/s",
            epoch,
            config.epochs,
            metrics["train_loss"],
            metrics["train_accuracy"],
            val_loss,
            val_accuracy,
            metrics["crops_per_s"],
        )
        if folder is not None:
            _save_checkpoint(
                folder,
                epoch,
                {
                    "format": CHECKPOINT_FORMAT,
                    "epoch": epoch,
                    "config": config.to_dict(),
                    "classes": classes,
                    "data": data,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                        "augment": augment_rng.get_state(),
                        "loader": loader_rng.get_state(),
                    },
                },
            )
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    model = model.eval().cpu().to(memory_format=torch.contiguous_format)
    return model, classes, history


def confusion_matrix(
    model: torch.nn.Module, loader: DataLoader, n_classes: int | None = None
) -> np.ndarray:
    """Counts of (true class, predicted class) over a loader of (crops, labels).

    Args:
        model: Classifier (run in eval mode on the device of its parameters).
        loader: Yields (crops (N, C, S, S), labels (N,)).
        n_classes: Matrix size (default: the model's number of outputs).

    Returns:
        Int64 (n_classes, n_classes): rows true classes, columns predictions.
    """
    device = next(model.parameters()).device
    model.eval()
    matrix: np.ndarray | None = None if n_classes is None else np.zeros((n_classes,) * 2, np.int64)
    with torch.inference_mode():
        for x, y in loader:
            logits = model(x.to(device))
            if matrix is None:
                matrix = np.zeros((logits.shape[1],) * 2, np.int64)
            k = matrix.shape[0]
            pred = logits.argmax(dim=1).cpu().numpy()
            true = np.asarray(y, dtype=np.int64)
            if len(pred) == 0:
                continue
            if max(int(true.max()), int(pred.max())) >= k or int(true.min()) < 0:
                raise ValueError(f"n_classes {k} does not cover the labels and predictions")
            np.add.at(matrix, (true, pred), 1)
    if matrix is None:
        raise ValueError("loader is empty and n_classes is not given")
    return matrix


def plot_confusion(matrix: np.ndarray, classes: list[Any], normalize: bool = True):
    """A confusion-matrix heat map (rows true, columns predicted).

    Args:
        matrix: (K, K) counts from :func:`confusion_matrix`.
        classes: K class names.
        normalize: Colour by the fraction of each true class (counts are annotated when K <= 20).

    Returns:
        A ``matplotlib.figure.Figure`` (not attached to pyplot).

    Raises:
        ValueError: ``matrix`` is not square or does not match ``classes``.
    """
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or len(classes) != len(matrix):
        raise ValueError(
            f"matrix must be ({len(classes)}, {len(classes)}) for the classes, got {matrix.shape}"
        )
    k = len(classes)
    shown = matrix.astype(float)
    if normalize:
        shown = shown / np.maximum(shown.sum(axis=1, keepdims=True), 1)
    side = min(3.0 + 0.35 * k, 20.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="viridis", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, label="fraction of true class" if normalize else "cells")
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=90, fontsize=7)
    ax.set_yticks(range(k), [str(c) for c in classes], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(int(matrix[i, j])),
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if shown[i, j] < 0.5 * (shown.max() or 1) else "black",
                )
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"accuracy {accuracy:.3f} ({int(matrix.sum())} cells)")
    fig.tight_layout()
    return fig
