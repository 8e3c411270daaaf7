"""Fine-tune the shipped nucleus U-Net on real HeLa frames mixed with its synthetic data.

Training data: frames t00-t11 of the shared real HeLa set (see
``segmentation_real_data.py``; never shipped) drawn with probability ``--real-fraction``, and
otherwise the synthetic stream the shipped model was trained on
(:func:`morphoflow.segmentation.train_default.sample_stream`: wide-domain synthetic nuclei +
simulated Cell Painting DNA sites), so that the model keeps other scales and looks. Frames
t12-t14 are never read here (they validate, in ``segmentation_real.py``).

Loop: :func:`morphoflow.segmentation.training.train_unet` (AdamW, cosine decay, the same
3-class target, random 128 px crops, dihedral + intensity augmentation), starting from the
shipped weights. Seeded end to end; on CPU it is deterministic for a given thread count.

Reproduce (CPU, one thread; the run shipped is in the model's metadata ``command``)::

    nice -n 10 .venv/bin/python benchmarks/segmentation_real_finetune.py \
        --out /tmp/mf_ft/nuclei_unet_ft.pt --epochs 10 --steps-per-epoch 50 --threads 1 \
        --time-limit 1740

With ``--time-limit`` the number of epochs run depends on the machine's speed (recorded as
``steps``); without it the run is fully determined by its arguments.

Writes the model (with training data, provenance, terms and the command in its metadata) and
prints one JSON line per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from segmentation_real_data import DATASET, PROVENANCE, TRAIN_FRAMES, load_frames  # noqa: E402

from morphoflow.segmentation.train_default import sample_stream  # noqa: E402
from morphoflow.segmentation.training import (  # noqa: E402
    TrainConfig,
    cycle_samples,
    mix_streams,
    train_unet,
)
from morphoflow.segmentation.unet import DEFAULT_MODEL_PATH, load_unet, save_unet  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--init", type=Path, default=DEFAULT_MODEL_PATH)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--real-fraction", type=float, default=0.5)
    parser.add_argument("--screen-fraction", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--freeze-batchnorm",
        action="store_true",
        help="keep the base model's BatchNorm statistics and affine weights",
    )
    parser.add_argument(
        "--time-limit", type=float, default=None, help="seconds; no epoch starts after it"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    model, init_meta = load_unet(args.init)
    real = load_frames(TRAIN_FRAMES)
    stream = mix_streams(
        [cycle_samples(real, seed=args.seed), sample_stream(args.seed + 1, args.screen_fraction)],
        [args.real_fraction, 1.0 - args.real_fraction],
        seed=args.seed + 2,
    )
    config = TrainConfig(
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size,
        crop=args.crop,
        lr=args.lr,
        seed=args.seed,
        device="cpu",
        freeze_batchnorm=args.freeze_batchnorm,
        unet=model.config,
    )
    started = time.perf_counter()
    command = "python benchmarks/segmentation_real_finetune.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        print(json.dumps({"epoch": epoch, **metrics}), flush=True)

    model, history = train_unet(
        stream, config, model=model, on_epoch=on_epoch, time_limit_s=args.time_limit
    )
    metadata = {
        "command": command,
        "fine_tuned_from": {
            "file": str(args.init.name),
            "command": init_meta.get("command"),
            "validation": init_meta.get("validation"),
        },
        "steps": len(history) * args.steps_per_epoch,
        "planned_steps": args.epochs * args.steps_per_epoch,
        "train_seconds": round(time.perf_counter() - started, 1),
        "device": "cpu",
        "torch": str(torch.__version__),
        "threads": args.threads,
        "config": config.to_dict(),
        "final_loss": history[-1]["train_loss"],
        "training_data": (
            f"fine-tuned: {args.real_fraction:.0%} of crops from real frames "
            f"{TRAIN_FRAMES[0]}-{TRAIN_FRAMES[-1]} of {DATASET}, the rest wide-domain "
            "synthetic nuclei + simulated Cell Painting DNA sites (as the base model)"
        ),
        "real_training_frames": list(TRAIN_FRAMES),
        "real_data": PROVENANCE,
    }
    save_unet(model, args.out, metadata)
    print(json.dumps({"saved": str(args.out), **metadata}, default=str), flush=True)
    return metadata


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
