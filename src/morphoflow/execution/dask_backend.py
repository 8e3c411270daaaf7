"""The Dask distributed backend of :func:`morphoflow.execution.runner.run_partitions`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from distributed import Client, LocalCluster, WorkerPlugin, as_completed

from morphoflow.execution.runner import _describe, _Progress, set_torch_threads
from morphoflow.execution.settings import ExecutionSettings

logger = logging.getLogger(__name__)


class ProcessSetup(WorkerPlugin):
    """Worker plugin: the sequential run's process set-up, once per worker process.

    Telemetry off and the fixed mmap threshold (:func:`morphoflow.runtime.configure_process`),
    and torch's intra-op threads = the worker's thread count (the nanny already sets
    ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` to 1 for BLAS).
    """

    name = "morphoflow-process-setup"
    idempotent = True

    def setup(self, worker: Any) -> None:
        from morphoflow.runtime import configure_process

        configure_process()
        # the worker's own thread count (a LocalCluster's threads_per_worker, or what a
        # remote worker was started with, e.g. dask-jobqueue's cores / processes)
        set_torch_threads(int(worker.state.nthreads))


def connect(settings: ExecutionSettings) -> tuple[Client, LocalCluster | None]:
    """A client of the scheduler at ``settings.address``, or of a new ``LocalCluster``.

    Raises:
        ConnectionError: No scheduler answered at ``settings.address`` within 30 s.
    """
    if settings.address:
        try:
            return Client(settings.address, timeout="30s"), None
        except OSError as exc:
            raise ConnectionError(
                f"execution.address={settings.address}: no Dask scheduler answered within "
                f"30 s ({exc}); start one (deployment/RUNBOOK.md section 8) or leave "
                "execution.address empty for a LocalCluster"
            ) from exc
    cluster = LocalCluster(
        n_workers=settings.workers,
        threads_per_worker=settings.threads_per_worker,
        memory_limit=settings.memory_limit,
        processes=True,
        dashboard_address=settings.dashboard_address or None,
        silence_logs=logging.WARNING,
    )
    return Client(cluster), cluster


def run_dask(
    function: Callable[[Any], Any],
    tasks: Mapping[str, Any],
    settings: ExecutionSettings,
    what: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Submit every task; gather results and failures as they finish (see ``run_partitions``)."""
    client, cluster = connect(settings)
    try:
        client.register_plugin(ProcessSetup(), name=ProcessSetup.name)
        logger.info(
            "Dask %s with %d workers; dashboard: %s",
            f"scheduler {settings.address}" if settings.address else "LocalCluster",
            len(client.scheduler_info().get("workers", {})),
            client.dashboard_link or "off",
        )
        run_id = f"{time.time_ns():x}"
        futures = {
            client.submit(
                function, task, key=f"{what}-{name}-{run_id}", pure=False, retries=settings.retries
            ): name
            for name, task in tasks.items()
        }
        progress = _Progress(len(tasks), what)
        results: dict[str, Any] = {}
        failures: dict[str, str] = {}
        for future in as_completed(list(futures)):
            name = futures[future]
            if future.status == "finished":
                results[name] = future.result()
                progress.finished(name, True, results[name])
            else:
                exc = future.exception()
                failures[name] = _describe(exc) if exc is not None else str(future.status)
                logger.warning("%s %s failed: %s", what, name, failures[name])
                progress.finished(name, False)
        return results, failures
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
