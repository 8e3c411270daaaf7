"""How partitions run: the ``execution:`` parameters block as a validated dataclass."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BACKENDS = ("sequential", "dask")

MAX_OVERSUBSCRIPTION = 4
"""A LocalCluster may run at most this many threads per core of the machine."""


@dataclass(frozen=True)
class ExecutionSettings:
    """Where the per-partition work of a pipeline runs.

    Attributes:
        backend: ``"sequential"`` (in the Kedro process, one partition after the other: the
            default) or ``"dask"`` (a Dask distributed cluster).
        workers: Worker processes of the ``LocalCluster`` started when ``address`` is not set.
        threads_per_worker: Threads per worker process; also the worker's torch / BLAS /
            OpenMP thread count.
        memory_limit: Memory limit per worker of the ``LocalCluster`` (Dask syntax, e.g.
            ``"4GiB"``; ``"auto"`` splits the machine's memory).
        address: ``tcp://HOST:8786`` of a running scheduler (compose, SLURM via dask-jobqueue,
            Kubernetes via dask-kubernetes) instead of a ``LocalCluster``; its workers must run
            the same morphoflow version and see the same filesystem paths.
        retries: Extra attempts of a failing partition (Dask retries it on any worker; the
            sequential backend retries it in place).
        dashboard_address: Where the ``LocalCluster`` serves its dashboard (``":8787"``; ``""``
            or null leaves it to Dask's default). The dashboard link is logged.
        resume: Reuse a stored partition whose fingerprint matches (True), or recompute
            every partition (False; e.g. after the model behind a Triton URL changed, which
            the fingerprint cannot see).

    Raises:
        ValueError: An unknown backend, a value out of range or a memory size Dask cannot
            read, named by its field; a ``LocalCluster`` of more than
            :data:`MAX_OVERSUBSCRIPTION` threads per core of this machine.
    """

    backend: str = "sequential"
    workers: int = 2
    threads_per_worker: int = 1
    memory_limit: str = "4GiB"
    address: str | None = None
    retries: int = 1
    dashboard_address: str = ":8787"
    resume: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"execution.backend must be one of {BACKENDS}, got {self.backend!r}")
        for name in ("workers", "threads_per_worker"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"execution.{name} must be >= 1, got {getattr(self, name)!r}")
        if int(self.retries) < 0:
            raise ValueError(f"execution.retries must be >= 0, got {self.retries!r}")
        if self.address is not None and not str(self.address).strip():
            object.__setattr__(self, "address", None)
        if str(self.memory_limit) != "auto":
            from dask.utils import parse_bytes

            try:
                parse_bytes(str(self.memory_limit))
            except ValueError:
                raise ValueError(
                    f"execution.memory_limit must be a size such as 4GiB or 'auto', got "
                    f"{self.memory_limit!r}"
                ) from None
        cores = os.cpu_count() or 1
        threads = int(self.workers) * int(self.threads_per_worker)
        if (
            self.backend == "dask"
            and self.address is None
            and threads > MAX_OVERSUBSCRIPTION * cores
        ):
            raise ValueError(
                f"execution.workers x execution.threads_per_worker = {threads} threads on a "
                f"{cores}-core machine (more than {MAX_OVERSUBSCRIPTION}x its cores): a "
                "LocalCluster runs on this machine only; for more workers join a cluster "
                "with execution.address"
            )

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> ExecutionSettings:
        """Settings from the ``execution:`` block; missing keys take the defaults above.

        Raises:
            ValueError: Unknown keys (listed with the known ones) or invalid values.
        """
        params = dict(params or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"execution has unknown keys {unknown}; known: {sorted(known)}")
        values: dict[str, Any] = {}
        for key, value in params.items():
            if key in ("workers", "threads_per_worker", "retries"):
                value = int(value)
            elif key == "resume":
                value = _boolean(key, value)
            elif key == "dashboard_address":
                value = "" if value in (None, "", "null", "none", "''") else str(value)
            elif key == "address":
                value = None if value in (None, "", "null", "none") else str(value)
            else:
                value = str(value)
            values[key] = value
        return cls(**values)


def _boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"execution.{key} must be true or false, got {value!r}")
