"""Start a Dask cluster on SLURM from slurm.yaml and keep it up for `kedro run`.

    python deployment/dask/hpc_cluster.py --jobs 10     # prints tcp://HOST:PORT, then waits
    kedro run --pipelines=profiling --params execution.backend=dask,execution.address=tcp://HOST:PORT

Runs on a login node (or in a long job); Ctrl-C cancels the worker jobs. Needs dask-jobqueue
(``pip install dask-jobqueue``) and the same morphoflow environment on the compute nodes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs (each runs N workers)")
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("slurm.yaml"))
    args = parser.parse_args()

    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(**yaml.safe_load(args.config.read_text())["cluster"])
    print(cluster.job_script(), flush=True)  # what each SLURM job runs, before submitting
    cluster.scale(jobs=args.jobs)
    print(f"scheduler: {cluster.scheduler_address}  dashboard: {cluster.dashboard_link}")
    try:
        while True:
            time.sleep(60)
    except KeyboardInterrupt:
        cluster.close()


if __name__ == "__main__":
    main()
