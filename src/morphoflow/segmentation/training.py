"""Training loop of the nucleus U-Net (device-agnostic; mixed precision on CUDA).

Samples are (image, labels) pairs of any bit depth; each is normalised exactly as at inference
(:func:`~morphoflow.segmentation.postprocess.normalize_image`), randomly cropped, transformed by
a random dihedral view and an intensity jitter, and turned into the 3-class target
(:func:`~morphoflow.segmentation.postprocess.labels_to_classes`). The loss is class-weighted
cross-entropy (the boundary class weighs more: it is rare and it is what splits touching nuclei).

Fine-tuning can keep what the model already does well on some data ("learning without
forgetting", Li & Hoiem, ECCV 2016): samples flagged as *anchors* (a third, true element of the
sample tuple) add a distillation term, the per-pixel KL divergence from the frozen starting
model's class probabilities on the same augmented crop to the trained model's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from morphoflow.segmentation.postprocess import labels_to_classes, normalize_image
from morphoflow.segmentation.tta import DIHEDRAL_VIEWS, augment
from morphoflow.segmentation.unet import NucleusUNet, UNetConfig
from morphoflow.torch_files import resolve_device

Sample = tuple[np.ndarray, np.ndarray]
"""(image, labels), optionally followed by an ``anchor`` flag (bool) for distillation."""


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train_unet`.

    Attributes:
        epochs: Passes of ``steps_per_epoch`` optimiser steps.
        steps_per_epoch: Optimiser steps per epoch.
        batch_size: Crops per step.
        crop: Side of the square training crops (multiple of 16).
        lr: Adam learning rate (cosine-decayed to 5 % over training).
        warmup_steps: Steps of linear learning-rate warm-up from 0 before the cosine decay.
            Fine-tuning needs it: AdamW's first steps move every weight by about ``lr``
            whatever its gradient (its moment estimates start empty), which undoes a trained
            model (measured: 2 steps at 3e-4 cost 0.06 synthetic DSB).
        weight_decay: Adam weight decay.
        class_weights: Cross-entropy weights of background, interior, boundary.
        boundary_width: Boundary band of the 3-class target, in pixels.
        freeze_batchnorm: Keep BatchNorm running statistics (and affine weights) fixed, as
            usual when fine-tuning a trained model on few, small batches.
        seed: Seed of weights init, sampling and augmentation.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available).
        unet: Architecture.
    """

    epochs: int = 5
    steps_per_epoch: int = 20
    batch_size: int = 8
    crop: int = 128
    lr: float = 2e-3
    warmup_steps: int = 0
    weight_decay: float = 1e-5
    class_weights: tuple[float, float, float] = (1.0, 1.0, 3.0)
    boundary_width: int = 2
    freeze_batchnorm: bool = False
    seed: int = 0
    device: str = "auto"
    unet: UNetConfig = field(default_factory=UNetConfig)

    def __post_init__(self) -> None:
        if isinstance(self.unet, dict):
            self.unet = UNetConfig(**self.unet)
        self.class_weights = tuple(float(x) for x in self.class_weights)  # type: ignore[assignment]
        for name in ("epochs", "steps_per_epoch", "batch_size", "crop"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.warmup_steps) < 0:
            raise ValueError(f"TrainConfig.warmup_steps must be >= 0, got {self.warmup_steps!r}")
        if self.crop % 2**self.unet.depth:
            raise ValueError(f"TrainConfig.crop must be a multiple of {2**self.unet.depth}")
        if len(self.class_weights) != self.unet.n_classes:
            raise ValueError("TrainConfig.class_weights needs one weight per class")

    def to_dict(self) -> dict[str, Any]:
        """Flat-ish dict for logging."""
        return asdict(self)


def _random_crop(
    image: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator
) -> Sample:
    h, w = image.shape
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        image = np.pad(image, ((0, ph), (0, pw)), mode="reflect")
        labels = np.pad(labels, ((0, ph), (0, pw)))
        h, w = image.shape
    y = int(rng.integers(0, h - size + 1))
    x = int(rng.integers(0, w - size + 1))
    return image[y : y + size, x : x + size], labels[y : y + size, x : x + size]


def make_batch(
    samples: Sequence[Sample], config: TrainConfig, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalise, crop, augment and build targets for one batch of samples."""
    images, targets = [], []
    for image, labels, *_ in samples:
        normalised = normalize_image(np.asarray(image))
        crop, crop_labels = _random_crop(normalised, np.asarray(labels), config.crop, rng)
        view = DIHEDRAL_VIEWS[int(rng.integers(0, len(DIHEDRAL_VIEWS)))]
        crop, crop_labels = augment(crop, view), augment(crop_labels, view)
        gamma = float(np.exp(rng.normal(0, 0.25)))
        crop = np.clip(crop, 0, 1) ** gamma * rng.uniform(0.8, 1.2)
        images.append(np.ascontiguousarray(crop, dtype=np.float32))
        targets.append(labels_to_classes(np.ascontiguousarray(crop_labels), config.boundary_width))
    x = torch.from_numpy(np.stack(images)[:, None])
    y = torch.from_numpy(np.stack(targets).astype(np.int64))
    return x, y


def train_unet(
    sample_stream: Iterator[Sample],
    config: TrainConfig,
    model: NucleusUNet | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    validate: Callable[[NucleusUNet], dict[str, float]] | None = None,
    time_limit_s: float | None = None,
    teacher: NucleusUNet | None = None,
    distill_weight: float = 0.0,
) -> tuple[NucleusUNet, list[dict[str, float]]]:
    """Train (or fine-tune) the nucleus U-Net.

    Args:
        sample_stream: Endless iterator of (image, labels) training samples.
        config: Hyper-parameters.
        model: Model to fine-tune (default: a new one from ``config.unet``).
        on_epoch: Called after each epoch with (epoch, metrics) (e.g. to log to MLflow).
        validate: Called after each epoch with the model in eval mode; its metrics are added.
        time_limit_s: Wall-clock seconds of training after which no further epoch starts
            (checked after each epoch; the learning-rate schedule keeps its planned length);
            None = no limit.
        teacher: Frozen model whose outputs anchor samples are distilled towards (usually a
            copy of ``model`` before fine-tuning, run in eval mode); required when
            ``distill_weight > 0``. Use it with ``config.freeze_batchnorm`` so that the model
            starts out equal to the teacher (train-mode BatchNorm would not).
        distill_weight: Weight of the distillation term: the mean over anchor samples' pixels
            of KL(teacher softmax || model softmax), added to the cross-entropy of the whole
            batch (Li & Hoiem 2016, "Learning without forgetting", temperature 1).

    Returns:
        The trained model (eval mode, on CPU) and the per-epoch history (shorter than
        ``config.epochs`` when the time limit stopped training). With distillation the history
        also has ``distill_loss`` (mean over the steps that had anchor samples).

    Raises:
        ValueError: ``distill_weight`` negative, or positive without a ``teacher``; the
            teacher is ``model`` itself (it is frozen: pass a copy).
    """
    if distill_weight < 0 or (distill_weight > 0 and teacher is None):
        raise ValueError(
            f"distill_weight={distill_weight!r} needs to be >= 0, and > 0 only with a teacher"
        )
    if teacher is not None and teacher is model:
        raise ValueError("teacher must be a separate copy of the model, not the model itself")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = resolve_device(config.device)
    model = (model or NucleusUNet(config.unet)).to(device)
    if config.freeze_batchnorm:
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.requires_grad_(False)
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    total = config.epochs * config.steps_per_epoch
    warmup = min(int(config.warmup_steps), total - 1)
    decay = total - warmup

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        done = min(step - warmup, decay) / decay
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * done))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lr_factor)
    weights = torch.tensor(config.class_weights, dtype=torch.float32, device=device)
    use_amp = device.type == "cuda"
    if teacher is not None and distill_weight > 0:
        teacher = teacher.to(device).eval().requires_grad_(False)
    else:
        teacher = None
    history: list[dict[str, float]] = []
    training_started = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        model.train()
        if config.freeze_batchnorm:
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.eval()
        started = time.perf_counter()
        losses, distill_losses = [], []
        for _ in range(config.steps_per_epoch):
            samples = [next(sample_stream) for _ in range(config.batch_size)]
            x, y = make_batch(samples, config, rng)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, weight=weights)
            anchors = (
                [i for i, sample in enumerate(samples) if len(sample) > 2 and sample[2]]
                if teacher is not None
                else []
            )
            if anchors:
                index = torch.tensor(anchors, device=device)
                with (
                    torch.no_grad(),
                    torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp),
                ):
                    target = F.log_softmax(teacher(x[index]).float(), dim=1)
                student = F.log_softmax(logits.float()[index], dim=1)
                distill = F.kl_div(student, target, log_target=True, reduction="none")
                distill = distill.sum(dim=1).mean()
                loss = loss + distill_weight * distill
                distill_losses.append(float(distill.detach()))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        metrics = {
            "train_loss": float(np.mean(losses)),
            "epoch_seconds": time.perf_counter() - started,
            "lr": float(schedule.get_last_lr()[0]),
        }
        if distill_losses:
            metrics["distill_loss"] = float(np.mean(distill_losses))
        if validate is not None:
            model.eval()
            metrics.update(validate(model))
        history.append({"epoch": float(epoch), **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics)
        if time_limit_s is not None and time.perf_counter() - training_started > time_limit_s:
            break
    model.eval().cpu()
    return model, history


def cycle_samples(samples: Sequence[Sample], seed: int = 0) -> Iterator[Sample]:
    """Endless shuffled passes over a finite list of samples."""
    if not samples:
        raise ValueError("samples is empty: nothing to train on")
    rng = np.random.default_rng(seed)
    while True:
        for index in rng.permutation(len(samples)):
            yield samples[int(index)]


def mix_streams(
    streams: Sequence[Iterator[Sample]], weights: Sequence[float], seed: int = 0
) -> Iterator[Sample]:
    """Endless stream drawing from several streams with the given probabilities."""
    p = np.asarray(weights, dtype=float)
    if len(streams) != len(p) or p.sum() <= 0:
        raise ValueError("mix_streams needs one positive weight per stream")
    p = p / p.sum()
    rng = np.random.default_rng(seed)
    while True:
        yield next(streams[int(rng.choice(len(streams), p=p))])
