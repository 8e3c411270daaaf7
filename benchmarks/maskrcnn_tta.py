"""Mask R-CNN on a simulated screen: train on training plates, DSB with/without instance TTA.

Prints JSON. Generates the screen (``--preset``, ``--seed``) into ``--screen`` when it is not
there, trains ``maskrcnn_resnet50_fpn`` (random init: no weights are downloaded) on the DNA
channel of the training plates and scores the held-out plates (last plate of each source) with
1 view and with 8 dihedral views merged by IoU >= 0.5 majority vote. Also scores the shipped
U-Net on the same sites for comparison.

    python benchmarks/maskrcnn_tta.py --screen /tmp/demo_screen --steps 1500 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from functools import partial
from pathlib import Path

import torch

from morphoflow.screen.table import load_screen
from morphoflow.segmentation.maskrcnn import (
    MaskRCNNConfig,
    build_maskrcnn,
    segment_instances,
    train_maskrcnn,
)
from morphoflow.segmentation.scoring import (
    evaluate_views,
    iter_dna_and_truth,
    split_by_plate,
    spread_sites,
)
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.segmentation.training import cycle_samples
from morphoflow.segmentation.unet import load_unet, predict_probabilities
from morphoflow.simulate import simulate_screen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--screen", type=Path, default=Path("/tmp/morphoflow_demo_screen"))
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-sites", type=int, default=60)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    if not (args.screen / "screen.json").is_file():
        simulate_screen(args.screen, preset=args.preset, seed=args.seed)
    table = load_screen(args.screen)
    train_sites, test_sites = split_by_plate(table)
    train = list(iter_dna_and_truth(train_sites, args.screen))
    sites = spread_sites(test_sites, args.max_sites)
    samples = list(iter_dna_and_truth(sites, args.screen))

    config = MaskRCNNConfig()
    started = time.perf_counter()
    model, history = train_maskrcnn(
        cycle_samples(train, args.seed),
        config,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        device=args.device,
        model=build_maskrcnn(config),
    )
    train_seconds = time.perf_counter() - started
    model.to(args.device)

    def mask_rcnn(image, views):
        return segment_instances(model, image, config, views=views)[0]

    started = time.perf_counter()
    mrcnn_scores, _ = evaluate_views(mask_rcnn, samples, (1, 8))
    mrcnn_seconds = time.perf_counter() - started

    unet, _ = load_unet(device=args.device)
    predict = partial(predict_probabilities, unet)
    unet_scores, _ = evaluate_views(
        lambda im, v: segment_nuclei(predict, im, views=v).labels, samples, (1, 8)
    )

    def summary(scores):
        return {
            str(v): {
                "dsb_score": round(s.score, 4),
                "precision_50": round(s.precision_50, 4),
                "recall_50": round(s.recall_50, 4),
            }
            for v, s in scores.items()
        }

    print(
        json.dumps(
            {
                "benchmark": "maskrcnn_tta",
                "screen": {
                    "path": str(args.screen),
                    "preset": args.preset,
                    "seed": args.seed,
                    "train_sites": len(train),
                    "heldout_sites_scored": len(samples),
                    "heldout_plates": sorted(sites["Metadata_Plate"].unique().tolist()),
                },
                "maskrcnn": {
                    "steps": args.steps,
                    "batch_size": args.batch_size,
                    "lr": args.lr,
                    "train_seconds": round(train_seconds, 1),
                    "eval_seconds": round(mrcnn_seconds, 1),
                    "first_loss": history[0]["loss"] if history else None,
                    "last_loss": history[-1]["loss"] if history else None,
                    "views": summary(mrcnn_scores),
                },
                "unet_shipped": {"views": summary(unet_scores)},
                "machine": {
                    "device": args.device,
                    "device_name": torch.cuda.get_device_name()
                    if args.device.startswith("cuda")
                    else platform.processor(),
                    "torch": str(torch.__version__),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
