"""OnnxFeaturizer end to end vs its bare ONNX session on the same crops, printed as JSON.

The featuriser adds per-crop channel scaling (``scale_crops``), batching and a DataFrame to
``session.run``; on a cluster that overhead multiplies across workers. Both sides run the same
random-weight EfficientNet-B0 block6a ONNX export on the same (N, 5, 128, 128) crops; the bare
session gets crops already scaled (its time excludes scaling).

    python benchmarks/featurizer_overhead.py [--crops 256] [--batch 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from morphoflow.runtime import configure_process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    configure_process()

    import torch

    from morphoflow.backbone import scale_crops
    from morphoflow.backbone.efficientnet import build_efficientnet_b0
    from morphoflow.learning.model import export_featurizer_onnx
    from morphoflow.profiling.cnn import OnnxFeaturizer

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    crops = (rng.gamma(2.0, 300.0, (args.crops, 5, 128, 128))).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "featurizer.onnx"
        export_featurizer_onnx(build_efficientnet_b0(n_classes=4, in_channels=5), path)
        featurizer = OnnxFeaturizer(path, batch_size=args.batch)
        session = featurizer.session
        scaled = scale_crops(crops)

        def bare() -> None:
            for start in range(0, len(scaled), args.batch):
                session.run(["features"], {"crops": scaled[start : start + args.batch]})

        def end_to_end() -> None:
            featurizer(crops)

        def scaling() -> None:
            scale_crops(crops)

        bare(), end_to_end()  # warm-up
        timings: dict[str, list[float]] = {"bare": [], "featurizer": [], "scale_crops": []}
        for _ in range(args.repeats):  # interleaved: both see the same machine load
            for name, fn in (("bare", bare), ("featurizer", end_to_end), ("scale_crops", scaling)):
                start = time.perf_counter()
                fn()
                timings[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in timings.items()}
    print(
        json.dumps(
            {
                "benchmark": "featurizer_overhead",
                "crops": args.crops,
                "batch": args.batch,
                "bare_session_crops_per_s": round(args.crops / best["bare"], 1),
                "featurizer_crops_per_s": round(args.crops / best["featurizer"], 1),
                "featurizer_over_bare_speed": round(best["bare"] / best["featurizer"], 3),
                "scale_crops_s_per_1000_crops": round(best["scale_crops"] * 1000 / args.crops, 4),
                "seconds": {k: [round(x, 4) for x in v] for k, v in timings.items()},
                "machine": {
                    "cpus": __import__("os").cpu_count(),
                    "python": platform.python_version(),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
