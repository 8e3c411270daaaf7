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

``--distill-weight W`` (> 0) makes every synthetic crop an *anchor*: besides its ground truth
it is pulled towards the starting model's own outputs on that crop (learning without
forgetting, Li & Hoiem 2016), so that adapting to the real frames does not move what the model
does on synthetic images. ``--monitor`` scores, after every epoch, one view on a synthetic
*selection* set (seed 20000, other draws than the seed-10000 validation set the benchmark
reports) and on real frame t11 (a training frame: a trend, not a validation score), and keeps
each epoch's weights as ``<out stem>_epochN.pt``.

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
import copy
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from segmentation_real_data import DATASET, PROVENANCE, TRAIN_FRAMES, load_frames  # noqa: E402

from morphoflow.segmentation.train_default import (  # noqa: E402
    evaluate,
    sample_stream,
    validation_set,
)
from morphoflow.segmentation.training import (  # noqa: E402
    TrainConfig,
    cycle_samples,
    mix_streams,
    train_unet,
)
from morphoflow.segmentation.unet import (  # noqa: E402
    DEFAULT_MODEL_PATH,
    NucleusUNet,
    load_unet,
    save_unet,
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the fine-tuned model file (.pt)")
    parser.add_argument(
        "--init",
        type=Path,
        default=DEFAULT_MODEL_PATH,
        help="model to start from; default: the shipped model, which is itself already "
        "fine-tuned (its stage-1 synthetic-only model: README, model card)",
    )
    parser.add_argument("--epochs", type=int, default=6, help="epochs of --steps-per-epoch steps")
    parser.add_argument("--steps-per-epoch", type=int, default=100, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=8, help="crops per step")
    parser.add_argument("--crop", type=int, default=128, help="crop side, px (multiple of 16)")
    parser.add_argument("--lr", type=float, default=3e-4, help="peak AdamW learning rate")
    parser.add_argument(
        "--warmup-steps", type=int, default=0, help="steps of linear learning-rate warm-up"
    )
    parser.add_argument(
        "--real-fraction",
        type=float,
        default=0.5,
        help="share of crops from the real frames, in [0, 1]; the rest synthetic",
    )
    parser.add_argument(
        "--screen-fraction",
        type=float,
        default=0.25,
        help="share of simulated screen sites among the synthetic crops, in [0, 1]",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of sampling and augmentation")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--freeze-batchnorm",
        action="store_true",
        help="keep the base model's BatchNorm statistics and affine weights",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="seconds (> 0); no epoch starts after it (the first always runs)",
    )
    parser.add_argument(
        "--distill-weight",
        type=float,
        default=0.0,
        help="weight (>= 0) of the distillation of synthetic crops towards the --init model "
        "(0 = off; use with --freeze-batchnorm)",
    )
    parser.add_argument(
        "--monitor",
        action="store_true",
        help="score each epoch on a synthetic selection set and frame t11, and keep each "
        "epoch's weights as <out stem>_epochN.pt beside --out",
    )
    args = parser.parse_args(argv)
    for name in ("real_fraction", "screen_fraction"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            parser.error(f"--{name.replace('_', '-')} must be in [0, 1], got {getattr(args, name)}")
    if not (math.isfinite(args.distill_weight) and args.distill_weight >= 0):
        parser.error(f"--distill-weight must be a finite number >= 0, got {args.distill_weight}")
    if args.time_limit is not None and not (math.isfinite(args.time_limit) and args.time_limit > 0):
        parser.error(f"--time-limit must be a positive number of seconds, got {args.time_limit}")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if not args.init.is_file():
        parser.error(f"--init: model file not found: {args.init}")
    torch.set_num_threads(args.threads)

    model, init_meta = load_unet(args.init)
    try:  # TrainConfig checks the counts, the crop and the warm-up
        config = TrainConfig(
            epochs=args.epochs,
            steps_per_epoch=args.steps_per_epoch,
            batch_size=args.batch_size,
            crop=args.crop,
            lr=args.lr,
            warmup_steps=args.warmup_steps,
            seed=args.seed,
            device="cpu",
            freeze_batchnorm=args.freeze_batchnorm,
            unet=model.config,
        )
    except ValueError as error:
        parser.error(str(error))
    teacher = copy.deepcopy(model) if args.distill_weight > 0 else None
    real = load_frames(TRAIN_FRAMES)
    synthetic = sample_stream(args.seed + 1, args.screen_fraction)
    if args.distill_weight > 0:
        synthetic = ((image, labels, True) for image, labels in synthetic)
    stream = mix_streams(
        [cycle_samples(real, seed=args.seed), synthetic],
        [args.real_fraction, 1.0 - args.real_fraction],
        seed=args.seed + 2,
    )
    started = time.perf_counter()
    given = list(sys.argv[1:] if argv is None else argv)
    if not any(arg == "--init" or arg.startswith("--init=") for arg in given):
        given = ["--init", str(args.init)] + given  # the default init changes when a model ships
    command = "python benchmarks/segmentation_real_finetune.py " + " ".join(given)

    validate = None
    if args.monitor:
        selection = validation_set(20000, 12, 6)
        monitor_frame = load_frames(TRAIN_FRAMES[-1:])
        epochs_seen = [0]

        def score(current: NucleusUNet) -> dict[str, float]:
            synthetic_score = evaluate(current, selection, 1, torch.device("cpu"))
            real_score = evaluate(current, monitor_frame, 1, torch.device("cpu"))
            return {
                "selection_synthetic_dsb": synthetic_score["dsb_map"],
                f"monitor_{TRAIN_FRAMES[-1]}_dsb": real_score["dsb_map"],
            }

        def validate(current: NucleusUNet) -> dict[str, float]:
            epochs_seen[0] += 1
            save_unet(current, args.out.with_name(f"{args.out.stem}_epoch{epochs_seen[0]}.pt"), {})
            return score(current)

        print(json.dumps({"epoch": 0, **score(model.eval())}), flush=True)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        print(json.dumps({"epoch": epoch, **metrics}), flush=True)

    model, history = train_unet(
        stream,
        config,
        model=model,
        on_epoch=on_epoch,
        validate=validate,
        time_limit_s=args.time_limit,
        teacher=teacher,
        distill_weight=args.distill_weight,
    )
    metadata = {
        "command": command,
        "fine_tuned_from": {
            "file": str(args.init.name),
            "sha256": hashlib.sha256(args.init.read_bytes()).hexdigest(),
            "command": init_meta.get("command"),
            "validation": init_meta.get("validation"),
            "validation_real": init_meta.get("validation_real"),
            "training_data": init_meta.get("training_data"),
            "fine_tuned_from": init_meta.get("fine_tuned_from"),
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
            + (
                f"; synthetic crops distilled towards the base model (weight "
                f"{args.distill_weight:g})"
                if args.distill_weight > 0
                else ""
            )
        ),
        "distill_weight": args.distill_weight,
        "method": "AdamW, linear warm-up then cosine decay to 5 %, class-weighted cross-entropy "
        "on the 3-class target"
        + (
            "; synthetic crops also distilled towards the --init model (per-pixel KL of the "
            "class probabilities; learning without forgetting, Li & Hoiem 2016)"
            if args.distill_weight > 0
            else ""
        ),
        "history": history,
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
