"""ImageJ ROI export/import at field size: seconds and peak traced memory (issue 13, item 4).

A label image of N square nuclei (31 x 31 px on a 37 px grid, touching nothing) is exported
with :func:`~morphoflow.segmentation.rois.export_roi_set` and imported back with
:func:`~morphoflow.segmentation.rois.import_roi_set`; the round trip must be exact. Peak memory
is what ``tracemalloc`` sees (numpy buffers included), per step. Before the import filled each
ROI inside its bounding box, it kept one full-image mask per ROI: 3,136 ROIs on 2,048 x 2,048
took 13 GB and 35 s (``/usr/bin/time``, ``morphoflow import-rois``).

Prints one JSON document. Not a test.

Usage::

    .venv/bin/python benchmarks/annotation_rois.py [--sizes 1024 2048]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from morphoflow.segmentation.rois import export_roi_set, import_roi_set


def _grid_labels(size: int, pitch: int = 37, side: int = 31) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    labels = ((yy // pitch) * (size // pitch + 1) + xx // pitch + 1).astype(np.uint32)
    labels[(yy % pitch >= side) | (xx % pitch >= side)] = 0
    return labels


def _timed(step):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        value = step()
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return value, round(seconds, 3), round(peak / 2**20, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    args = parser.parse_args()
    if any(s < 64 for s in args.sizes):
        parser.error("--sizes must be >= 64 px")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            labels = _grid_labels(size)
            path = Path(tmp) / f"grid_{size}.zip"
            n, export_s, export_mib = _timed(lambda: export_roi_set(labels, path))  # noqa: B023
            back, import_s, import_mib = _timed(lambda: import_roi_set(path, labels.shape))  # noqa: B023
            runs.append(
                {
                    "size": [size, size],
                    "rois": n,
                    "label_image_mib": round(labels.nbytes / 2**20, 1),
                    "export_s": export_s,
                    "export_peak_mib": export_mib,
                    "import_s": import_s,
                    "import_peak_mib": import_mib,
                    "round_trip_exact": bool(np.array_equal(back, labels)),
                }
            )
    print(
        json.dumps(
            {
                "benchmark": "annotation_rois",
                "machine": {"platform": platform.platform(), "python": platform.python_version()},
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
