"""Empty fields vs. real nuclei: the empty-field test of ``normalize_image`` (issue 12, item 7).

Before the change, every image was stretched to [0, 1] by its 1st-99.8th percentiles, so a
background-only tile with an illumination gradient became bright "nuclei". Now an image whose
:func:`~morphoflow.segmentation.postprocess.foreground_contrast` is below
``EMPTY_FIELD_CONTRAST`` normalises to zeros. This script measures, with the shipped U-Net,

- nuclei found on empty uint16 tiles (20 % left-to-right gradient, shot + read noise) at several
  background levels, before (``empty_contrast=None``) and after, with 1 and 8 views;
- the DSB score before and after on the 48 synthetic validation images the shipped model was
  validated on (``train_default.validation_set(10_000, 32, 16)``) and on the real HeLa frames of
  ``<shared data>/real_nuclei/hela_ctc_n2dl_02`` (all 15, uint16 with a +32768 offset).

The model is deterministic: when an image's normalised input is bit-identical before and after
(``inputs_identical``), its prediction is computed once and used for both (``--recompute`` runs
both anyway). Prints one JSON document. Not a test.

Usage::

    .venv/bin/python benchmarks/normalization_empty_fields.py [--real-views 1 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared_data import real_nuclei_dir  # noqa: E402

from morphoflow.segmentation.metrics import dsb_score  # noqa: E402
from morphoflow.segmentation.postprocess import (  # noqa: E402
    EMPTY_FIELD_CONTRAST,
    foreground_contrast,
    normalize_image,
)
from morphoflow.segmentation.segmenter import segment_nuclei  # noqa: E402
from morphoflow.segmentation.train_default import validation_set  # noqa: E402
from morphoflow.segmentation.unet import load_unet, predict_probabilities  # noqa: E402
from morphoflow.simulate.nuclei import empty_field  # noqa: E402

BEFORE, AFTER = None, EMPTY_FIELD_CONTRAST


def _score_set(
    predict, samples: list[tuple[np.ndarray, np.ndarray]], views: int, recompute: bool
) -> dict:
    preds = {"before": [], "after": []}
    identical = 0
    started = time.perf_counter()
    for image, _ in samples:
        same = np.array_equal(
            normalize_image(image, empty_contrast=BEFORE),
            normalize_image(image, empty_contrast=AFTER),
        )
        identical += int(same)
        after = segment_nuclei(predict, image, views=views, empty_contrast=AFTER).labels
        if same and not recompute:
            before = after
        else:
            before = segment_nuclei(predict, image, views=views, empty_contrast=BEFORE).labels
        preds["before"].append(before)
        preds["after"].append(after)
    truths = [truth for _, truth in samples]
    out: dict = {"views": views, "n_images": len(samples), "inputs_identical": identical}
    for name, labels in preds.items():
        score = dsb_score(truths, labels)
        out[f"dsb_{name}"] = round(score.score, 4)
        out[f"precision_50_{name}"] = round(score.precision_50, 4)
        out[f"recall_50_{name}"] = round(score.recall_50, 4)
    out["dsb_change"] = round(out["dsb_after"] - out["dsb_before"], 4)
    out["wall_s"] = round(time.perf_counter() - started, 1)
    return out


def _real_frames() -> tuple[Path, list[tuple[np.ndarray, np.ndarray]]]:
    folder = real_nuclei_dir() / "hela_ctc_n2dl_02"
    frames = []
    for image_path in sorted(folder.glob("t[0-9][0-9].tif")):
        mask = tifffile.imread(image_path.with_name(f"{image_path.stem}_mask.tif"))
        frames.append((tifffile.imread(image_path), mask.astype(np.int64)))
    if not frames:
        raise FileNotFoundError(f"no tNN.tif frames in {folder}")
    return folder, frames


def _empty_fields(predict, backgrounds: list[float], seeds: int) -> list[dict]:
    rows = []
    for background in backgrounds:
        for seed in range(seeds):
            image = empty_field(np.random.default_rng(seed), background=background)
            row = {
                "background_adu": background,
                "seed": seed,
                "foreground_contrast": round(foreground_contrast(image), 2),
            }
            for views in (1, 8):
                for name, threshold in (("before", BEFORE), ("after", AFTER)):
                    labels = segment_nuclei(
                        predict, image, views=views, empty_contrast=threshold
                    ).labels
                    row[f"nuclei_{name}_views{views}"] = int(labels.max())
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic-views", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--real-views", type=int, nargs="*", default=[1])
    parser.add_argument("--backgrounds", type=float, nargs="+", default=[100, 400, 2000, 10000])
    parser.add_argument("--seeds", type=int, default=3, help="empty tiles per background")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--recompute", action="store_true", help="never share predictions")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model, meta = load_unet()
    predict = partial(predict_probabilities, model)
    started = time.perf_counter()

    synthetic = validation_set(10_000, 32, 16)
    contrasts = [foreground_contrast(image) for image, _ in synthetic]
    folder, real = _real_frames()
    real_contrasts = [foreground_contrast(image) for image, _ in real]
    report = {
        "benchmark": "normalization_empty_fields",
        "command": "python benchmarks/normalization_empty_fields.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
        "empty_field_contrast_threshold": EMPTY_FIELD_CONTRAST,
        "model_validation_metadata": meta.get("validation", {}),
        "empty_fields": {
            "image": "256 x 256 uint16, 20 % left-to-right gradient, 2 e-/ADU shot noise, "
            "3 ADU read noise, offset 100 ADU (simulate.nuclei.empty_field)",
            "rows": _empty_fields(predict, args.backgrounds, args.seeds),
        },
        "synthetic_validation": {
            "images": "train_default.validation_set(10_000, 32, 16): 32 wide-domain 256 px + "
            "16 screen-site 192 px",
            "foreground_contrast_min": round(min(contrasts), 1),
            "scores": [
                _score_set(predict, synthetic, v, args.recompute) for v in args.synthetic_views
            ],
        },
        "real_frames": {
            "folder": str(folder),
            "n_frames": len(real),
            "foreground_contrast_min": round(min(real_contrasts), 1),
            "scores": [_score_set(predict, real, v, args.recompute) for v in args.real_views],
        },
        "machine": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda_available": torch.cuda.is_available(),
        },
        "wall_s": None,
    }
    report["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
