"""WSL training and featurisation throughput, printed as JSON.

- training crops/s: SGD steps (augmentations on, batch 32, 128 x 128 x 5 random crops,
  EfficientNet-B0) with the loop's own :func:`~morphoflow.learning.train.train_step`; bf16
  autocast + channels_last on CUDA;
- loading crops/s: :class:`~morphoflow.learning.data.CropDataset` reading and scaling crops in
  random order from per-site ``.npz`` files on disk (the input side of training);
- featurisation cells/s: :class:`~morphoflow.learning.model.Block6aFeatures` in torch, and its
  ONNX export run with onnxruntime (CPU execution provider, as ``OnnxFeaturizer`` does).

Random weights (speed only). CPU always, CUDA when available.

    python benchmarks/training.py [--steps 3] [--cells 64] [--threads 0]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from morphoflow.learning.data import Augment, CropDataset
from morphoflow.learning.model import Block6aFeatures, build_efficientnet_b0, parity_inputs
from morphoflow.learning.train import train_step
from morphoflow.profiling.crops import SiteCrops, crops_relpath, save_site_crops


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def training_crops_per_s(device: torch.device, steps: int, batch: int = 32) -> float:
    torch.manual_seed(0)
    model = build_efficientnet_b0(50).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9, weight_decay=1e-5)
    x = torch.from_numpy(parity_inputs(n=batch, size=128))
    y = torch.randint(0, 50, (batch,))
    augment, generator = Augment(), torch.Generator().manual_seed(0)
    amp = device.type == "cuda"
    train_step(model, optimizer, x, y, augment, generator, amp=amp)  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, x, y, augment, generator, amp=amp)
    _sync(device)
    return steps * batch / (time.perf_counter() - started)


def loading_crops_per_s(n_sites: int = 8, per_site: int = 64) -> float:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(n_sites):
            rel = crops_relpath("P1", f"A{s + 1:02d}", 1)
            crops = rng.normal(500, 50, (per_site, 5, 128, 128)).astype(np.float32)
            objects = pd.DataFrame({"ObjectNumber": np.arange(1, per_site + 1)})
            save_site_crops(
                Path(tmp) / rel, SiteCrops(crops, np.zeros((per_site, 128, 128), np.uint8), objects)
            )
            rows += [
                {"Path_Crops": rel, "Metadata_CropIndex": i, "Metadata_Treatment": f"t{s}"}
                for i in range(per_site)
            ]
        dataset = CropDataset(pd.DataFrame(rows), tmp)
        order = rng.permutation(len(dataset))
        started = time.perf_counter()
        for item in order:
            dataset[int(item)]
        return len(order) / (time.perf_counter() - started)


def block6a_cells_per_s(device: torch.device, n_cells: int, batch: int) -> float:
    torch.manual_seed(0)
    featurizer = Block6aFeatures(build_efficientnet_b0(50)).to(device).eval()
    crops = torch.from_numpy(parity_inputs(n=min(n_cells, batch), size=128))
    with torch.inference_mode():
        featurizer(crops[:2].to(device))
        _sync(device)
        started = time.perf_counter()
        done = 0
        while done < n_cells:
            featurizer(crops.to(device))
            done += len(crops)
        _sync(device)
    return done / (time.perf_counter() - started)


def onnx_cells_per_s(n_cells: int, batch: int = 64) -> float:
    import onnxruntime as ort

    from morphoflow.learning.model import export_featurizer_onnx

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "wsl.onnx"
        export_featurizer_onnx(build_efficientnet_b0(50).eval(), path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    crops = parity_inputs(n=min(n_cells, batch), size=128)
    session.run(["features"], {"crops": crops[:2]})
    started = time.perf_counter()
    done = 0
    while done < n_cells:
        session.run(["features"], {"crops": crops})
        done += len(crops)
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed training steps on CPU")
    parser.add_argument("--cells", type=int, default=64, help="cells featurised on CPU")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    result: dict = {
        "benchmark": "training",
        "machine": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "device_name": torch.cuda.get_device_name()
            if torch.cuda.is_available()
            else platform.processor(),
        },
        "training_crops_per_s": {"cpu": round(training_crops_per_s(cpu, args.steps), 2)},
        "loading_crops_per_s": round(loading_crops_per_s(), 1),
        "block6a_cells_per_s": {"cpu": round(block6a_cells_per_s(cpu, args.cells, 32), 1)},
        "onnx_cells_per_s": {"cpu": round(onnx_cells_per_s(args.cells), 1)},
    }
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        result["training_crops_per_s"]["cuda"] = round(training_crops_per_s(cuda, 30), 1)
        result["training_crops_per_s"]["cuda_batch"] = 32
        result["block6a_cells_per_s"]["cuda"] = round(block6a_cells_per_s(cuda, 8192, 512), 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
