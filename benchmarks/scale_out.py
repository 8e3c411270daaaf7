"""The profiling pipeline's per-plate work on Dask vs sequential, printed as JSON.

- ratio: wall time of ``profile_plates`` + ``gather_plates`` on a LocalCluster of 2 workers
  (1 thread each; cluster start-up included) vs the sequential backend (after a warm-up plate
  in this process), same simulated screen, and the max abs difference of the raw well
  profiles (``profiles_well_raw``);
- memory: peak RSS of each worker process at 1x and 4x plates (it must not grow with the
  screen: a worker holds one plate at a time);
- JUMP scale: build the plate tasks of a 1.5 M-site image table (400 plates; no image files,
  nothing read) and schedule a no-op task per plate on a LocalCluster: seconds to build,
  seconds to run the graph, scheduler RSS before and after.

    python benchmarks/scale_out.py [--plates 4] [--sites-per-well 1] [--jump-sites 1500000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from morphoflow.runtime import configure_process

ROOT = Path(__file__).resolve().parents[1]


def _params() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "conf/base/parameters_profiling.yml").read_text())


def _screen(out: Path, plates: int, seed: int = 0) -> tuple[pd.DataFrame, Path]:
    from morphoflow.screen.table import load_screen
    from morphoflow.simulate import ScreenPreset, simulate_screen

    preset = ScreenPreset(
        n_sources=1,
        plates_per_source=plates,
        n_moas=2,
        treatments_per_moa=3,
        n_null_treatments=1,
        n_source_specific=0,
        n_dmso_wells=2,
        n_untreated_wells=1,
        sites_per_well=2,
        site_size=192,
        cells_per_site=(8, 14),
    )
    simulate_screen(out, preset=preset, seed=seed)
    return load_screen(out), out


def _profile(table: pd.DataFrame, root: Path, store: Path, execution: dict[str, Any]):
    from morphoflow.execution.store import PartitionStore
    from morphoflow.pipelines.profiling.nodes import gather_plates, profile_plates

    params = _params()
    started = time.perf_counter()
    manifest = profile_plates(
        table,
        PartitionStore(store),
        root,
        params["nuclei"],
        params["illumination"],
        params["crops"],
        params["features"],
        params["inference"],
        {**params["execution"], **execution},
    )
    wells, _ = gather_plates(manifest, PartitionStore(store))
    return time.perf_counter() - started, manifest, wells


def _max_abs_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    features = [c for c in a.columns if not c.startswith("Metadata_")]
    return float(np.nanmax(np.abs(a[features].to_numpy() - b[features].to_numpy())))


def ratio_and_memory(work: Path, plates: int) -> dict[str, Any]:
    dask = {"backend": "dask", "workers": 2, "dashboard_address": ""}
    table, root = _screen(work / "screen", plates)
    # warm-up: imports, model load and first-call costs of this process, outside the timing
    first = table[table["Metadata_Plate"] == table["Metadata_Plate"].iloc[0]]
    _profile(first, root, work / "store_warmup", {"backend": "sequential"})
    seq_s, _, seq_wells = _profile(table, root, work / "store_seq", {"backend": "sequential"})
    dask_s, manifest, dask_wells = _profile(table, root, work / "store_dask", dask)
    big, big_root = _screen(work / "screen4x", 4 * plates, seed=1)
    big_s, big_manifest, _ = _profile(big, big_root, work / "store_4x", dask)
    return {
        "plates": plates,
        "sites": len(table),
        "sequential_s": round(seq_s, 2),
        "dask_2_workers_s": round(dask_s, 2),
        "sequential_over_dask_wall": round(seq_s / dask_s, 3),
        "profiles_well_raw_max_abs_diff": _max_abs_diff(seq_wells, dask_wells),
        "worker_peak_rss_mib_1x": manifest.groupby("pid")["peak_rss_mib"].max().round(1).tolist(),
        "worker_peak_rss_mib_4x": big_manifest.groupby("pid")["peak_rss_mib"]
        .max()
        .round(1)
        .tolist(),
        "plates_4x": 4 * plates,
        "dask_2_workers_4x_s": round(big_s, 2),
    }


def _noop(task: Any) -> dict[str, Any]:
    return {"plate": task.plate, "seconds": 0.0}


def jump_scale(n_sites: int, n_plates: int) -> dict[str, Any]:
    from morphoflow.execution.dask_backend import connect
    from morphoflow.execution.settings import ExecutionSettings
    from morphoflow.execution.store import PartitionStore
    from morphoflow.pipelines.profiling.nodes import plate_tasks
    from morphoflow.screen.constants import CHANNELS

    rng = np.random.default_rng(0)
    per_plate = n_sites // n_plates
    wells = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]
    sites_per_well = int(np.ceil(per_plate / len(wells)))
    plate = np.repeat(np.arange(n_plates), per_plate)
    within = np.tile(np.arange(per_plate), n_plates)
    table = pd.DataFrame(
        {
            "Metadata_Source": "source_1",
            "Metadata_Plate": [f"BR{p:05d}" for p in plate],
            "Metadata_Well": np.asarray(wells)[within // sites_per_well],
            "Metadata_Site": within % sites_per_well + 1,
            "Metadata_Treatment": rng.integers(0, 116_000, len(plate)).astype(str),
            "Metadata_MoA": "",
            "Metadata_ControlType": "",
        }
    )
    for channel in CHANNELS:
        table[f"Path_{channel}"] = (
            table["Metadata_Plate"] + "/" + table["Metadata_Well"] + f"_{channel}.tiff"
        )
    params = _params()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        key, tasks = plate_tasks(
            table,
            PartitionStore(tmp),
            Path(tmp),
            params["nuclei"],
            params["illumination"],
            params["crops"],
            params["features"],
            params["inference"],
        )
        build_s = time.perf_counter() - started
    settings = ExecutionSettings(backend="dask", workers=2, dashboard_address="")
    client, cluster = connect(settings)
    try:

        def rss() -> float:
            import psutil

            return psutil.Process().memory_info().rss / 2**20

        before = client.run_on_scheduler(rss)
        started = time.perf_counter()
        futures = [
            client.submit(_noop, task, key=f"noop-{name}", pure=False)
            for name, task in tasks.items()
        ]
        submit_s = time.perf_counter() - started
        client.gather(futures)
        run_s = time.perf_counter() - started
        after = client.run_on_scheduler(rss)
    finally:
        client.close()
        cluster.close()
    return {
        "sites": len(table),
        "plates": len(tasks),
        "build_tasks_s": round(build_s, 2),
        "submit_s": round(submit_s, 2),
        "submit_and_run_noop_s": round(run_s, 2),
        # a LocalCluster's scheduler runs in the driver process: this is driver + scheduler
        "driver_and_scheduler_rss_mib_before_submit": round(before, 1),
        "driver_and_scheduler_rss_mib_after_run": round(after, 1),
        "driver_table_mib": round(table.memory_usage(deep=True).sum() / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plates", type=int, default=4)
    parser.add_argument("--jump-sites", type=int, default=1_500_000)
    parser.add_argument("--jump-plates", type=int, default=400)
    parser.add_argument("--skip-profiling", action="store_true")
    args = parser.parse_args()
    configure_process()
    import logging

    logging.basicConfig(level=logging.WARNING)
    result: dict[str, Any] = {"benchmark": "scale_out"}
    if not args.skip_profiling:
        with tempfile.TemporaryDirectory() as tmp:
            result["profiling"] = ratio_and_memory(Path(tmp), args.plates)
    result["jump_scale"] = jump_scale(args.jump_sites, args.jump_plates)
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
