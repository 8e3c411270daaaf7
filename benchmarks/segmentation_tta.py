"""Latency and DSB score of the shipped nucleus U-Net with and without test-time augmentation.

For each device (CPU, and CUDA when available): the median latency of segmenting one 512 x 512
image with 1 view and with 8 views (the 8 dihedral views go through the network as one batch),
after a warm-up, and the DSB 2018 score of each on N simulated 512 x 512 Cell Painting sites
(DNA channel of :func:`morphoflow.simulate.render.render_site`). The sites use seeds from
``--seed-start`` (default 10000), away from the small seeds the tests use.

Prints one JSON document. Not a test: numbers depend on the machine (and, on a shared machine,
on its load).

Usage::

    .venv/bin/python benchmarks/segmentation_tta.py [--n-images 8] [--device all|cpu|cuda]
        [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from functools import partial

import numpy as np
import torch

from morphoflow.segmentation.metrics import dsb_score
from morphoflow.segmentation.postprocess import normalize_image
from morphoflow.segmentation.segmenter import segment_nuclei
from morphoflow.segmentation.tta import augment_batch, select_views
from morphoflow.segmentation.unet import DEFAULT_MODEL_PATH, load_unet, predict_probabilities
from morphoflow.simulate import render_site

VIEWS = (1, 8)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _median_seconds(fn, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_device(
    device: str, sites: list[tuple[np.ndarray, np.ndarray]], repeats: int, warmup: int
) -> dict:
    model, meta = load_unet(device=device)
    predict = partial(predict_probabilities, model, batch_size=8, device=device)
    image = sites[0][0]
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else _cpu_name()
    result: dict = {"device": device, "device_name": name, "views": {}}
    for views in VIEWS:
        batch = augment_batch(normalize_image(image)[None], select_views(views)).astype(np.float32)
        model_s = _median_seconds(lambda b=batch: predict(b), repeats, warmup)
        segment_s = _median_seconds(
            lambda v=views: segment_nuclei(predict, image, views=v), repeats, warmup
        )
        started = time.perf_counter()
        predictions = [segment_nuclei(predict, dna, views=views).labels for dna, _ in sites]
        score_s = time.perf_counter() - started
        score = dsb_score([truth for _, truth in sites], predictions)
        result["views"][str(views)] = {
            "model_latency_s": round(model_s, 4),
            "segment_latency_s": round(segment_s, 4),
            "dsb_score": round(score.score, 4),
            "dsb_min_image": round(min(s.score for s in score.images), 4),
            "precision_50": round(score.precision_50, 4),
            "recall_50": round(score.recall_50, 4),
            "n_true": int(sum(s.n_true for s in score.images)),
            "n_pred": int(sum(s.n_pred for s in score.images)),
            "scoring_wall_s": round(score_s, 2),
        }
    result["tta_latency_ratio"] = round(
        result["views"]["8"]["segment_latency_s"] / result["views"]["1"]["segment_latency_s"], 2
    )
    result["model_metadata_validation"] = meta.get("validation", {})
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-images", type=int, default=8, help="simulated sites to score")
    parser.add_argument("--size", type=int, default=512, help="side of the sites, pixels")
    parser.add_argument("--n-cells", type=int, default=80, help="nuclei per site")
    parser.add_argument(
        "--seed-start",
        type=int,
        default=10_000,
        help="first render_site seed (tests use small seeds)",
    )
    parser.add_argument(
        "--device",
        choices=("all", "cpu", "cuda"),
        default="all",
        help="all = CPU, plus CUDA when available",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up calls")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.n_images < 1:
        parser.error("--n-images must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")

    devices = ["cpu"] if args.device in ("all", "cpu") else []
    if args.device == "cuda" or (args.device == "all" and torch.cuda.is_available()):
        devices.append("cuda")

    seeds = list(range(args.seed_start, args.seed_start + args.n_images))
    sites = []
    for seed in seeds:
        image, truth = render_site(seed, size=args.size, n_cells=args.n_cells)
        sites.append((image[0], truth))

    report = {
        "benchmark": "segmentation_tta",
        "model": str(DEFAULT_MODEL_PATH.name),
        "images": {
            "n": args.n_images,
            "size": args.size,
            "n_cells": args.n_cells,
            "seeds": [seeds[0], seeds[-1]],
            "source": "render_site DNA channel",
        },
        "timing": {
            "repeats": args.repeats,
            "warmup": args.warmup,
            "statistic": "median",
            "model_latency": "predict_probabilities on the batch of views (one call)",
            "segment_latency": "segment_nuclei: normalise + views + merge + instances",
        },
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpu": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(),
            "load_average_1min": round(os.getloadavg()[0], 2)
            if hasattr(os, "getloadavg")
            else None,
        },
        "results": [bench_device(d, sites, args.repeats, args.warmup) for d in devices],
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
