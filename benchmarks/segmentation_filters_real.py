"""Object filters (CellProfiler IdentifyPrimaryObjects) on real nuclei: counts and DSB.

The shipped U-Net segments real HeLa H2B-GFP frames (``real_nuclei/hela_ctc_n2dl_02``, silver-
standard masks; see its README) once per frame with no filter; each variant then applies
:func:`morphoflow.segmentation.postprocess.filter_objects`, which is what the segmenter does
with those settings (the filters act after the watershed). For the border variant the truth is
filtered the same way (``vs_filtered_truth``: nuclei the settings exclude by design do not count
as misses) and also scored unfiltered (``vs_truth``).

Prints one JSON document. Not a test.

Usage::

    .venv/bin/python benchmarks/segmentation_filters_real.py [--frames t12 t13 t14] [--views 1]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared_data import real_nuclei_dir  # noqa: E402

from morphoflow.segmentation.metrics import dsb_score  # noqa: E402
from morphoflow.segmentation.onnx_model import load_predictor  # noqa: E402
from morphoflow.segmentation.postprocess import MIN_DIAMETER, filter_objects  # noqa: E402
from morphoflow.segmentation.segmenter import segment_nuclei  # noqa: E402

VARIANTS = {
    "none": {"min_diameter": 0.0, "max_diameter": None, "discard_border_objects": False},
    "cli_defaults": {"min_diameter": MIN_DIAMETER, "discard_border_objects": False},
    "pipeline_defaults": {"min_diameter": MIN_DIAMETER, "discard_border_objects": True},
    "cellprofiler_10_40_border": {
        "min_diameter": 10.0,
        "max_diameter": 40.0,
        "discard_border_objects": True,
    },
    "diameter_15_plus_border": {"min_diameter": 15.0, "discard_border_objects": True},
}


def _score(truths: list[np.ndarray], preds: list[np.ndarray]) -> dict:
    score = dsb_score(truths, preds)
    return {
        "dsb": round(score.score, 4),
        "precision_50": round(score.precision_50, 4),
        "recall_50": round(score.recall_50, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", nargs="+", default=["t12", "t13", "t14"])
    parser.add_argument("--views", type=int, default=1)
    args = parser.parse_args()
    folder = real_nuclei_dir() / "hela_ctc_n2dl_02"
    predict = load_predictor(None)
    truths, raw = [], []
    for frame in args.frames:
        image = tifffile.imread(folder / f"{frame}.tif")
        truths.append(tifffile.imread(folder / f"{frame}_mask.tif").astype(np.int64))
        labels = segment_nuclei(predict, image, views=args.views, min_diameter=0.0).labels
        raw.append(labels.astype(np.int64))
    report: dict = {
        "data": f"{folder.name} {args.frames}",
        "views": args.views,
        "truth_objects": int(sum(t.max() for t in truths)),
        "variants": {},
    }
    for name, settings in VARIANTS.items():
        preds = [filter_objects(p, **settings).astype(np.int64) for p in raw]
        entry = {
            "settings": settings,
            "objects": int(sum(p.max() for p in preds)),
            "vs_truth": _score(truths, preds),
        }
        if settings.get("discard_border_objects") or settings.get("min_diameter", 0) > MIN_DIAMETER:
            filtered = [filter_objects(t, **settings).astype(np.int64) for t in truths]
            entry["filtered_truth_objects"] = int(sum(t.max() for t in filtered))
            entry["vs_filtered_truth"] = _score(filtered, preds)
        report["variants"][name] = entry
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
