"""Profiling throughput and memory, printed as JSON.

- crops/s: cell segmentation + cropping of simulated sites;
- classical features cells/s; CNN (ImageNet EfficientNet-B0 block6a, random weights: speed
  only) cells/s on CPU, and on CUDA when available;
- streaming: peak traced memory of ``profile_sites`` on N and 4N sites (it must not grow with
  the number of sites);
- mAP compute time for 10k profiles vs copairs (``benchmarks/profiling_map.py``, ~2 min).

    python benchmarks/profiling.py [--sites 8] [--cnn-cells 64]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from morphoflow.profiling.cells import segment_cells
from morphoflow.profiling.classical import classical_features
from morphoflow.profiling.crops import crop_cells
from morphoflow.profiling.extract import profile_sites
from morphoflow.screen.table import load_screen
from morphoflow.segmentation.segmenter import nuclei_table
from morphoflow.simulate import ScreenPreset, render_site, simulate_screen


def _sites(n: int, size: int = 256, cells: int = 25):
    for seed in range(1000, 1000 + n):
        image, labels = render_site(seed, size=size, n_cells=cells)
        yield image.astype(np.float32), labels.astype(np.int32)


def crops_per_second(n_sites: int) -> tuple[float, list]:
    started = time.perf_counter()
    out = []
    count = 0
    for image, labels in _sites(n_sites):
        cells = segment_cells(image, labels)
        centres = nuclei_table(labels)
        site = crop_cells(image, labels, cells, centres)
        count += len(site)
        out.append(site)
    return count / (time.perf_counter() - started), out


def classical_per_second(sites: list) -> float:
    count, started = 0, time.perf_counter()
    for site in sites:
        classical_features(site.crops, site.masks)
        count += len(site)
    return count / (time.perf_counter() - started)


def cnn_per_second(sites: list, n_cells: int, device: str) -> float:
    from morphoflow.profiling.cnn import ImageNetFeaturizer

    with tempfile.TemporaryDirectory() as tmp:
        import torchvision

        weights = Path(tmp) / "b0.pt"
        torch.save(torchvision.models.efficientnet_b0(weights=None).state_dict(), weights)
        featurizer = ImageNetFeaturizer(weights, batch_size=64, device=device)
    crops = np.concatenate([s.crops for s in sites])[:n_cells]
    masks = np.concatenate([s.masks for s in sites])[:n_cells]
    featurizer(crops[:4], masks[:4])  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    started = time.perf_counter()
    featurizer(crops, masks)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return len(crops) / (time.perf_counter() - started)


def streaming_peak(n_sites: int, workdir: Path) -> dict[str, float]:
    preset = ScreenPreset(
        n_sources=1,
        plates_per_source=2,
        n_moas=2,
        treatments_per_moa=2,
        n_null_treatments=1,
        n_source_specific=0,
        n_dmso_wells=2,
        n_untreated_wells=1,
        sites_per_well=max(1, n_sites // 12),
        site_size=128,
        cells_per_site=(6, 10),
    )
    root = workdir / f"screen_{n_sites}"
    simulate_screen(root, preset=preset, seed=1)
    table = load_screen(root)
    # ground-truth nuclei stand in for segmentation (this measures the profiling stage)
    rows, labels_dir = [], root
    from morphoflow.screen.io import read_image

    for _, site in table.iterrows():
        labels = read_image(root / site["Path_NucleiTruth"])
        n = nuclei_table(labels)
        for key in ("Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_Site"):
            n[key] = site[key]
        n["Path_NucleiLabels"] = site["Path_NucleiTruth"]
        rows.append(n)
    nuclei = pd.concat(rows, ignore_index=True)
    tracemalloc.start()
    started = time.perf_counter()
    profile_sites(
        table,
        nuclei,
        root=root,
        labels_dir=labels_dir,
        extractor=classical_features,
        single_cell_dir=workdir / f"cells_{n_sites}",
    )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "sites": len(table),
        "cells": len(nuclei),
        "peak_traced_mb": round(peak / 2**20, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--cnn-cells", type=int, default=64)
    parser.add_argument("--stream-sites", type=int, default=12)
    parser.add_argument(
        "--skip-map", action="store_true", help="skip the 10k-profile mAP vs copairs part"
    )
    args = parser.parse_args()
    rate, sites = crops_per_second(args.sites)
    result = {
        "benchmark": "profiling",
        "machine": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "cpu_count": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "device_name": torch.cuda.get_device_name()
            if torch.cuda.is_available()
            else platform.processor(),
        },
        "crops_per_s": round(rate, 1),
        "classical_cells_per_s": round(classical_per_second(sites), 1),
        "cnn_imagenet_cells_per_s": {"cpu": round(cnn_per_second(sites, args.cnn_cells, "cpu"), 2)},
    }
    if torch.cuda.is_available():
        result["cnn_imagenet_cells_per_s"]["cuda"] = round(
            cnn_per_second(sites, max(args.cnn_cells, 512), "cuda"), 1
        )
    with tempfile.TemporaryDirectory() as tmp:
        small = streaming_peak(args.stream_sites, Path(tmp))
        large = streaming_peak(4 * args.stream_sites, Path(tmp))
    result["streaming"] = {
        "small": small,
        "large": large,
        "peak_ratio_large_over_small": round(
            large["peak_traced_mb"] / max(small["peak_traced_mb"], 1e-9), 2
        ),
    }
    if not args.skip_map:
        # mAP of 10k profiles vs copairs: benchmarks/profiling_map.py, run as its own process
        script = Path(__file__).with_name("profiling_map.py")
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, check=True
        )
        result["map_10k"] = json.loads(done.stdout)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
