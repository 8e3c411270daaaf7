"""Train the nucleus U-Net shipped with morphoflow (``assets/nuclei_unet.pt``).

Training data: wide-domain synthetic nuclei (:mod:`morphoflow.simulate.nuclei`)
mixed with DNA channels of simulated Cell Painting sites (:mod:`morphoflow.simulate`),
generated on the fly by DataLoader workers. Validation: DSB 2018 score with and without TTA on
fixed held-out draws of both (other seeds). Reproduce with::

    python -m morphoflow.segmentation.train_default --out src/morphoflow/assets/nuclei_unet.pt \
        --steps 3000 --batch-size 32 --device cuda --workers 14

The command line, the scores and the training time are stored in the model file's metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch

from morphoflow.segmentation.metrics import dsb_score
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.segmentation.training import TrainConfig, make_batch
from morphoflow.segmentation.unet import NucleusUNet, UNetConfig, predict_probabilities, save_unet
from morphoflow.simulate.nuclei import random_nuclei_image
from morphoflow.torch_files import resolve_device

Sample = tuple[np.ndarray, np.ndarray]


def screen_site_sample(rng: np.random.Generator) -> Sample:
    """DNA channel and truth of one simulated Cell Painting site with a random cell line look,
    optics and phenotype shift."""
    from morphoflow.simulate import LATENT_DIMS, CellLine, Optics, render_site

    line = CellLine(
        nucleus_radius=float(rng.uniform(6.0, 16.0)),
        axis_ratio=float(rng.uniform(0.6, 0.9)),
        chromatin_scale=float(rng.uniform(0.8, 2.0)),
        texture=float(rng.uniform(0.05, 0.35)),
        touching=float(rng.uniform(0.05, 0.4)),
    )
    optics = Optics(
        gain=tuple(float(g) for g in rng.uniform(0.5, 2.0, 5)),
        blur=tuple(float(b) for b in rng.uniform(0.5, 2.0, 5)),
        illumination_centre=(float(rng.uniform(0.3, 0.7)), float(rng.uniform(0.3, 0.7))),
        electrons_per_adu=float(rng.uniform(0.5, 3.0)),
    )
    size = 192
    max_cells = int(0.45 * size * size / (np.pi * (line.nucleus_radius * 1.25) ** 2))
    n_cells = int(rng.integers(3, max(4, max_cells)))
    shift = rng.normal(0.0, 0.7, len(LATENT_DIMS))
    for attempt in range(4):
        try:
            image, labels = render_site(
                rng,
                size=size,
                n_cells=max(1, n_cells >> attempt),
                shift=shift,
                cell_line=line,
                optics=optics,
            )
            return image[0], labels
        except ValueError:
            continue
    image, labels = render_site(rng, size=size, n_cells=1, cell_line=line, optics=optics)
    return image[0], labels


def sample_stream(seed: int, screen_fraction: float, size: int = 192) -> Iterator[Sample]:
    """Endless mix of wide-domain nuclei and simulated screen sites."""
    rng = np.random.default_rng(seed)
    while True:
        if rng.random() < screen_fraction:
            yield screen_site_sample(rng)
        else:
            yield random_nuclei_image(rng, (size, size))


class _Batches(torch.utils.data.IterableDataset):
    def __init__(self, config: TrainConfig, screen_fraction: float) -> None:
        self.config = config
        self.screen_fraction = screen_fraction

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        seed = self.config.seed * 1000 + worker
        stream = sample_stream(seed, self.screen_fraction)
        rng = np.random.default_rng(seed + 7)
        while True:
            yield make_batch(
                [next(stream) for _ in range(self.config.batch_size)], self.config, rng
            )


def validation_set(seed: int, n_wide: int, n_screen: int) -> list[Sample]:
    """Fixed held-out images: ``n_wide`` wide-domain draws + ``n_screen`` screen sites."""
    rng = np.random.default_rng(seed)
    samples = [random_nuclei_image(rng, (256, 256)) for _ in range(n_wide)]
    samples.extend(screen_site_sample(rng) for _ in range(n_screen))
    return samples


def evaluate(
    model: NucleusUNet, samples: list[Sample], views: int, device: torch.device
) -> dict[str, float]:
    """DSB score of the model on samples with the given number of TTA views."""
    predict = partial(predict_probabilities, model, device=device)
    preds = [segment_nuclei(predict, image, views=views).labels for image, _ in samples]
    score = dsb_score([labels for _, labels in samples], preds)
    return {
        "dsb_map": float(score.score),
        "precision_50": float(score.precision_50),
        "recall_50": float(score.recall_50),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Command-line entry point; returns the metadata stored with the model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--base", type=int, default=12)
    parser.add_argument("--screen-fraction", type=float, default=0.25)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-wide", type=int, default=24)
    parser.add_argument("--val-screen", type=int, default=8)
    parser.add_argument(
        "--time-limit", type=float, default=float("inf"), help="seconds of training at most"
    )
    args = parser.parse_args(argv)

    config = TrainConfig(
        epochs=1,
        steps_per_epoch=args.steps,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        unet=UNetConfig(base=args.base),
    )
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = NucleusUNet(config.unet).to(device)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=config.lr, total_steps=args.steps, pct_start=0.1
    )
    weights = torch.tensor(config.class_weights, device=device)
    loader = torch.utils.data.DataLoader(
        _Batches(config, args.screen_fraction),
        batch_size=None,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers else None,
        pin_memory=device.type == "cuda",
    )
    started = time.perf_counter()
    losses: list[float] = []
    step = 0
    model.train()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(
            device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
        ):
            logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y, weight=weights)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            print(
                json.dumps(
                    {
                        "step": step,
                        "loss": float(np.mean(losses[-100:])),
                        "seconds": round(time.perf_counter() - started, 1),
                    }
                ),
                flush=True,
            )
        if step >= args.steps or time.perf_counter() - started > args.time_limit:
            break
    train_seconds = time.perf_counter() - started
    model.eval()
    samples = validation_set(10_000 + args.seed, args.val_wide, args.val_screen)
    scores = {
        f"{name}_views{v}": value
        for v in (1, 8)
        for name, value in evaluate(model, samples, v, device).items()
    }
    metadata: dict[str, object] = {
        "command": "python -m morphoflow.segmentation.train_default "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "steps": step,
        "train_seconds": round(train_seconds, 1),
        "device": str(device),
        "torch": str(torch.__version__),
        "final_loss": float(np.mean(losses[-100:])),
        "validation": {"n_images": len(samples), **scores},
        "training_data": "wide-domain synthetic nuclei + simulated Cell Painting DNA sites",
    }
    save_unet(model.cpu(), args.out, metadata)
    print(json.dumps(metadata, indent=2), flush=True)
    return metadata


if __name__ == "__main__":
    main()
