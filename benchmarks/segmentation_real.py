"""DSB 2018 score of nucleus U-Nets on real HeLa frames and on synthetic validation images, with
and without TTA, for every TTA merge of :data:`morphoflow.segmentation.tta.SEMANTIC_MERGES`.

Data:

- real: frames of the shared HeLa H2B-GFP set (``segmentation_real_data.py``; t00-t11 are the
  fine-tuning frames, t12-t14 the validation frames: one field of view, split by time), full
  700 x 1100 frames;
- synthetic: the validation set the shipped model's metadata reports
  (:func:`morphoflow.segmentation.train_default.validation_set`, seed 10000: 32 wide-domain
  256 x 256 images + 16 simulated Cell Painting DNA sites, 192 x 192);
- independent real (``real_independent``, only when ``prepare_dsb2018_image.py`` has been run):
  one manually annotated DSB 2018 fluorescence image (512 x 512, 125 nuclei), another lab and
  microscope than the HeLa frames, never trained on.

Every image goes through :func:`morphoflow.segmentation.segmenter.segment_nuclei` (the code of
``morphoflow segment``) with its default filters; the U-Net runs once per image and number of
views (a cache serves the same batch to the merges). Scores: DSB 2018 (mean over IoU 0.50-0.95
of TP / (TP + FP + FN), mean over images), precision and recall at IoU 0.5 (means over images),
object counts (sums). Prints one JSON document.

Usage::

    nice -n 10 .venv/bin/python benchmarks/segmentation_real.py \
        --model old=/tmp/mf_ft/old.pt --model new=src/morphoflow/assets/nuclei_unet.pt \
        --frames all --threads 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from segmentation_real_data import (  # noqa: E402
    ALL_FRAMES,
    DATASET,
    TRAIN_FRAMES,
    VAL_FRAMES,
    load_frames,
    load_independent,
)

from morphoflow.segmentation.metrics import dsb_image_score  # noqa: E402
from morphoflow.segmentation.segmenter import segment_nuclei  # noqa: E402
from morphoflow.segmentation.train_default import validation_set  # noqa: E402
from morphoflow.segmentation.tta import DEFAULT_SEMANTIC_MERGE, SEMANTIC_MERGES  # noqa: E402
from morphoflow.segmentation.unet import (  # noqa: E402
    DEFAULT_MODEL_PATH,
    load_unet,
    predict_probabilities,
    save_unet,
)


class _CachedPredict:
    """The model's predict function, remembering the last batches it saw (one image's views)."""

    def __init__(self, predict) -> None:
        self.predict = predict
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        key = hashlib.sha1(np.ascontiguousarray(batch).tobytes()).hexdigest() + str(batch.shape)
        if key not in self.cache:
            self.cache[key] = self.predict(batch)
        return self.cache[key]


def configs(merges: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """(name, views, merge): one view (every merge gives the same), then 8 views per merge."""
    return [("views1", 1, "mean")] + [(f"views8_{m}", 8, m) for m in merges]


def segment_all(
    model_path: Path, samples, merges: tuple[str, ...], one_view_only: tuple[str, ...] = ()
) -> dict[str, list]:
    """Per config, the per-image scores of one model on samples [(name, image, truth)].

    Samples named in ``one_view_only`` are scored with one view only (their entries of the
    other configs are None).
    """
    model, _ = load_unet(model_path)
    predict = _CachedPredict(partial(predict_probabilities, model))
    out: dict[str, list] = {name: [] for name, _, _ in configs(merges)}
    for sample, image, truth in samples:
        predict.cache.clear()
        for name, views, merge in configs(merges):
            if views > 1 and sample in one_view_only:
                out[name].append(None)
                continue
            labels = segment_nuclei(predict, image, views=views, merge=merge).labels
            out[name].append(dsb_image_score(truth, labels))
    return out


def summarise(scores: list) -> dict[str, float]:
    """DSB, precision/recall at IoU 0.5 (image means) and object counts (sums)."""
    return {
        "dsb": round(float(np.mean([s.score for s in scores])), 4),
        "precision_50": round(float(np.mean([s.precision_50 for s in scores])), 4),
        "recall_50": round(float(np.mean([s.recall_50 for s in scores])), 4),
        "n_true": int(sum(s.n_true for s in scores)),
        "n_pred": int(sum(s.n_pred for s in scores)),
        "n_images": len(scores),
    }


def write_model(path: Path, out: Path, result: dict) -> None:
    """Save a U-Net again with its measured scores in its metadata.

    ``validation`` (the synthetic set, the keys ``train_default`` writes, 8 views with the
    default merge) and ``validation_real`` (every subset and configuration measured here).
    """
    model, meta = load_unet(path)
    synthetic = result["synthetic_val"]
    views8 = synthetic[f"views8_{DEFAULT_SEMANTIC_MERGE}"]
    meta["validation"] = {
        "n_images": synthetic["views1"]["n_images"],
        "dsb_map_views1": synthetic["views1"]["dsb"],
        "precision_50_views1": synthetic["views1"]["precision_50"],
        "recall_50_views1": synthetic["views1"]["recall_50"],
        "dsb_map_views8": views8["dsb"],
        "precision_50_views8": views8["precision_50"],
        "recall_50_views8": views8["recall_50"],
        "views8_merge": DEFAULT_SEMANTIC_MERGE,
        "data": "train_default.validation_set(10000, 32 wide, 16 screen)",
    }
    meta["validation_real"] = {
        "data": f"{DATASET} (silver-standard masks); real_val = {', '.join(VAL_FRAMES)}"
        + (
            "; real_independent = one manually annotated DSB 2018 image (BBBC038v1, from the "
            "stardist 0.9.2 wheel), never trained on"
            if "real_independent" in result
            else ""
        ),
        **{k: v for k, v in result.items() if k.startswith("real_")},
    }
    save_unet(model, out, meta)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="NAME=PATH of a U-Net file (repeatable); default: shipped=<the shipped model>",
    )
    parser.add_argument("--frames", choices=("val", "all"), default="val")
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument(
        "--train-frames-one-view",
        action="store_true",
        help="score the fine-tuning frames t00-t11 with one view only (saves 8-view passes)",
    )
    parser.add_argument("--merges", nargs="+", default=list(SEMANTIC_MERGES))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--write-model",
        default=None,
        help="NAME=OUT: save model NAME to OUT with these scores in its metadata",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    models = {}
    for item in args.model or [f"shipped={DEFAULT_MODEL_PATH}"]:
        name, _, path = item.partition("=")
        models[name] = Path(path)
    merges = tuple(args.merges)

    frames = ALL_FRAMES if args.frames == "all" else VAL_FRAMES
    real = [(f, im, m) for f, (im, m) in zip(frames, load_frames(frames), strict=True)]
    subsets = {"real_val": VAL_FRAMES}
    if args.frames == "all":
        subsets.update({"real_train": TRAIN_FRAMES, "real_all": ALL_FRAMES})
    synthetic = []
    if not args.no_synthetic:
        synthetic = [
            (f"synthetic_{i}", im, m.astype(np.int64))
            for i, (im, m) in enumerate(validation_set(10_000, 32, 16))
        ]

    independent = load_independent()
    if independent is not None:
        real.append(("dsb2018_stardist", independent[0], independent[1]))
        subsets["real_independent"] = ("dsb2018_stardist",)

    report: dict = {
        "benchmark": "segmentation_real",
        "real_data": f"{DATASET} frames {frames[0]}-{frames[-1]} (700 x 1100, silver masks)",
        "synthetic_data": "train_default.validation_set(10000, 32 wide, 16 screen)",
        "independent_data": independent[2] if independent is not None else None,
        "segment_nuclei_defaults": "threshold 0.5, min_diameter 4.5 px, border objects kept",
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "models": {},
    }
    for name, path in models.items():
        started = time.perf_counter()
        _, meta = load_unet(path)
        result: dict = {"path": str(path), "training_data": meta.get("training_data")}
        one_view = TRAIN_FRAMES if args.train_frames_one_view else ()
        real_scores = segment_all(path, real, merges, one_view)
        for subset, names in subsets.items():
            keep = [i for i, (f, _, _) in enumerate(real) if f in names]
            result[subset] = {
                c: summarise([s[i] for i in keep])
                for c, s in real_scores.items()
                if all(s[i] is not None for i in keep)
            }
        if synthetic:
            result["synthetic_val"] = {
                c: summarise(s) for c, s in segment_all(path, synthetic, merges).items()
            }
        result["wall_s"] = round(time.perf_counter() - started, 1)
        report["models"][name] = result
        print(json.dumps({name: result}), file=sys.stderr, flush=True)
    if args.write_model:
        name, _, out = args.write_model.partition("=")
        write_model(models[name], Path(out), report["models"][name])
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
