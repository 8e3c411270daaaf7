"""Run one function over named partitions, sequentially or on a Dask distributed cluster.

:func:`run_partitions` is the one entry point: the same function, the same tasks, the same
results, whichever backend runs them. A failing partition does not stop the others; after all
have finished (or failed, retries spent) :class:`PartitionsFailed` names every failed one with
its error. A log line is written per finished partition (``3/12 plates done: P07 in 41.2 s``).

The Dask backend either starts a ``LocalCluster`` (``workers`` processes x
``threads_per_worker`` threads, ``memory_limit`` each) or joins a running scheduler at
``address``. Every worker runs :func:`morphoflow.runtime.configure_process` and sets torch's
thread count to ``threads_per_worker`` before the first task (:class:`~morphoflow.execution.dask_backend.ProcessSetup`), so a
worker computes like the sequential run. Tasks are submitted with ``pure=False`` and
``retries``; a worker that dies mid-task (killed, out of memory) makes the scheduler re-run
the task elsewhere, up to ``distributed.scheduler.allowed-failures`` times, after which the
partition fails with ``KilledWorker`` and is named like any other failure.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from morphoflow.execution.settings import ExecutionSettings

logger = logging.getLogger(__name__)


class PartitionsFailed(RuntimeError):
    """Some partitions failed after their retries; the others completed.

    Attributes:
        failures: Partition name -> error text (type, message; the last frame for context).
        results: Partition name -> result of every partition that completed.
    """

    def __init__(self, failures: Mapping[str, str], results: Mapping[str, Any], what: str):
        self.failures = dict(failures)
        self.results = dict(results)
        listed = "\n".join(f"  {name}: {error}" for name, error in sorted(self.failures.items()))
        super().__init__(
            f"{len(self.failures)} of {len(self.failures) + len(self.results)} {what} failed "
            f"(the others completed and are kept):\n{listed}"
        )


@dataclass
class _Progress:
    total: int
    what: str
    started: float = field(default_factory=time.perf_counter)
    done: int = 0

    def finished(
        self, name: str, ok: bool, result: Any = None, seconds: float | None = None
    ) -> None:
        self.done += 1
        if isinstance(result, Mapping) and result.get("status") == "reused":
            took = " (reused: stored result is current)"
        elif isinstance(result, Mapping) and isinstance(result.get("seconds"), int | float):
            took = f" in {float(result['seconds']):.1f} s"
        else:
            took = "" if seconds is None else f" in {seconds:.1f} s"
        logger.info(
            "%d/%d %s done: %s%s%s (elapsed %.0f s)",
            self.done,
            self.total,
            self.what,
            name,
            took,
            "" if ok else " FAILED",
            time.perf_counter() - self.started,
        )


def _describe(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def worker_identity() -> dict[str, Any]:
    """Host and process id of the process running this call (recorded with each partition)."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def set_torch_threads(threads: int) -> None:
    """Use ``threads`` intra-op threads in torch, when torch is installed (it is here)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(int(threads))


def run_partitions(
    function: Callable[[Any], Any],
    tasks: Mapping[str, Any],
    settings: ExecutionSettings,
    *,
    what: str = "partitions",
) -> dict[str, Any]:
    """``function(task)`` for every named task, on the configured backend.

    Args:
        function: A module-level (picklable) function of one task; it returns a small,
            picklable result (large outputs go to storage, not through the scheduler).
        tasks: Partition name (e.g. a plate) -> task object (picklable).
        settings: Backend and cluster settings.
        what: Word used in log lines and errors (``"plates"``).

    Returns:
        Partition name -> result, in the order of ``tasks``.

    Raises:
        PartitionsFailed: One or more partitions failed after ``settings.retries`` extra
            attempts; every other partition completed (its result is on the exception).
    """
    if not tasks:
        return {}
    if settings.backend == "dask":
        from morphoflow.execution.dask_backend import run_dask

        results, failures = run_dask(function, tasks, settings, what)
    else:
        results, failures = _run_sequential(function, tasks, settings, what)
    if failures:
        raise PartitionsFailed(failures, results, what)
    return {name: results[name] for name in tasks}


def _run_sequential(function, tasks, settings, what):
    progress = _Progress(len(tasks), what)
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name, task in tasks.items():
        start = time.perf_counter()
        for attempt in range(settings.retries + 1):
            try:
                results[name] = function(task)
                failures.pop(name, None)
                break
            except Exception as exc:  # noqa: BLE001 - every failure is reported by name below
                failures[name] = _describe(exc)
                logger.warning(
                    "%s %s failed (attempt %d of %d): %s",
                    what,
                    name,
                    attempt + 1,
                    settings.retries + 1,
                    failures[name],
                )
        progress.finished(name, name in results, results.get(name), time.perf_counter() - start)
    return results, failures
