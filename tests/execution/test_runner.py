"""run_partitions on both backends: same results, failures named, killed workers survived.

The Dask tests start a real LocalCluster of 2 worker processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from morphoflow.execution.runner import PartitionsFailed, run_partitions
from morphoflow.execution.settings import ExecutionSettings
from morphoflow.execution.store import PartitionStore

SEQUENTIAL = ExecutionSettings(retries=0)
DASK = ExecutionSettings(backend="dask", workers=2, dashboard_address="", retries=0)


def square(task: dict) -> dict:
    if task.get("fail"):
        raise ValueError(f"cannot square {task['x']}")
    return {"x": task["x"] ** 2, "pid": os.getpid()}


def flaky(task: dict) -> int:
    """Fails on its first call (a marker file records the call), then succeeds."""
    marker = Path(task["marker"])
    if not marker.exists():
        marker.write_text("called")
        raise OSError("transient")
    return task["x"]


def write_then_die(task: dict) -> str:
    """Write half a partition, then kill the process (the first ``kills`` attempts)."""
    store = PartitionStore(task["store"])
    counter = Path(task["counter"])
    attempts = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(attempts + 1))
    with store.write("screen", task["name"], {"fingerprint": "f"}) as staging:
        (staging / "part-1.parquet").write_bytes(b"half")
        if attempts < task["kills"]:
            os._exit(1)  # a killed worker: no cleanup, no exception
        (staging / "part-2.parquet").write_bytes(b"rest")
    return task["name"]


def test_settings_from_params_refuse_typos_and_bad_values() -> None:
    settings = ExecutionSettings.from_params({"backend": "dask", "workers": "3", "resume": "no"})
    assert (settings.backend, settings.workers, settings.resume) == ("dask", 3, False)
    assert ExecutionSettings.from_params({"address": None}).address is None
    # `--params execution.dashboard_address=` (null) turns the dashboard off; not host "None"
    assert ExecutionSettings.from_params({"dashboard_address": None}).dashboard_address == ""
    with pytest.raises(ValueError, match=r"unknown keys \['worker'\]"):
        ExecutionSettings.from_params({"worker": 2})
    with pytest.raises(ValueError, match="execution.backend"):
        ExecutionSettings.from_params({"backend": "spark"})
    with pytest.raises(ValueError, match="execution.workers"):
        ExecutionSettings(workers=0)
    with pytest.raises(ValueError, match="execution.resume"):
        ExecutionSettings.from_params({"resume": "maybe"})
    with pytest.raises(ValueError, match="execution.memory_limit must be a size"):
        ExecutionSettings.from_params({"memory_limit": "lots"})
    cores = os.cpu_count() or 1
    with pytest.raises(ValueError, match="threads on a .*-core machine"):
        ExecutionSettings(backend="dask", workers=4 * cores + 1)
    # a remote cluster is sized by its own workers, not by this machine
    assert ExecutionSettings(backend="dask", workers=500, address="tcp://h:8786").workers == 500


def test_no_scheduler_at_the_address_is_one_clear_error() -> None:
    settings = ExecutionSettings(backend="dask", address="tcp://127.0.0.1:1", retries=0)
    with pytest.raises(ConnectionError, match=r"execution.address=tcp://127.0.0.1:1: no Dask"):
        run_partitions(square, {"A": {"x": 1}}, settings)


def test_sequential_names_failures_and_finishes_the_others() -> None:
    tasks = {"A": {"x": 2}, "B": {"x": 3, "fail": True}, "C": {"x": 4}}
    with pytest.raises(PartitionsFailed) as error:
        run_partitions(square, tasks, SEQUENTIAL, what="plates")
    assert set(error.value.failures) == {"B"}
    assert "ValueError: cannot square 3" in error.value.failures["B"]
    assert {k: v["x"] for k, v in error.value.results.items()} == {"A": 4, "C": 16}
    assert "1 of 3 plates failed" in str(error.value) and "B: ValueError" in str(error.value)
    assert run_partitions(square, {}, SEQUENTIAL) == {}


def test_sequential_retries_a_failing_partition(tmp_path: Path) -> None:
    task = {"x": 7, "marker": str(tmp_path / "m")}
    with pytest.raises(PartitionsFailed, match="OSError: transient"):
        run_partitions(flaky, {"A": task}, SEQUENTIAL)
    (tmp_path / "m").unlink()
    assert run_partitions(flaky, {"A": task}, ExecutionSettings(retries=1)) == {"A": 7}


def test_dask_equals_sequential_and_runs_in_worker_processes(tmp_path: Path) -> None:
    tasks = {name: {"x": x} for name, x in zip("ABCDEFGH", range(8), strict=True)}
    sequential = run_partitions(square, tasks, SEQUENTIAL)
    distributed = run_partitions(square, tasks, DASK)
    assert list(distributed) == list(tasks)  # the order of the tasks, not of completion
    assert {k: v["x"] for k, v in distributed.items()} == {k: v["x"] for k, v in sequential.items()}
    pids = {v["pid"] for v in distributed.values()}
    assert os.getpid() not in pids and len(pids) == 2  # two worker processes, not the driver

    tasks["D"] = {"x": 3, "fail": True}
    with pytest.raises(PartitionsFailed) as error:
        run_partitions(square, tasks, DASK, what="plates")
    assert set(error.value.failures) == {"D"} and "cannot square 3" in error.value.failures["D"]
    assert set(error.value.results) == set(tasks) - {"D"}


def _killer_tasks(tmp_path: Path, kills: dict[str, int]) -> dict[str, dict]:
    common = {"store": str(tmp_path / "store")}
    return {
        name: {**common, "name": name, "kills": n, "counter": str(tmp_path / f"count-{name}")}
        for name, n in kills.items()
    }


def test_a_worker_killed_mid_partition_is_recovered_without_a_half_written_partition(
    tmp_path: Path,
) -> None:
    store = PartitionStore(tmp_path / "store")
    # P1's first attempt kills its worker half-way through writing; the scheduler re-runs it
    # on the restarted worker (a task running beside it on a dying worker is re-run too)
    tasks = _killer_tasks(tmp_path, {"P1": 1, "P2": 0})
    assert run_partitions(write_then_die, tasks, DASK, what="plates") == {"P1": "P1", "P2": "P2"}
    assert (tmp_path / "count-P1").read_text() == "2"
    for name in ("P1", "P2"):
        folder = store.partition_dir("screen", name)
        assert sorted(p.name for p in folder.iterdir()) == [
            "_partition.json",
            "part-1.parquet",
            "part-2.parquet",
        ]
    # the killed attempt left its staging folder; the next run's driver removes it
    assert len(store.remove_stale_staging("screen")) == 1
    assert sorted(p.name for p in (store.root / "screen").iterdir()) == ["P1", "P2"]


def test_a_partition_that_kills_every_worker_is_named_and_never_stored(tmp_path: Path) -> None:
    import dask

    store = PartitionStore(tmp_path / "store")
    tasks = _killer_tasks(tmp_path, {"P9": 99})
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        with pytest.raises(PartitionsFailed) as error:
            run_partitions(write_then_die, tasks, DASK, what="plates")
    assert set(error.value.failures) == {"P9"}
    assert "KilledWorker" in error.value.failures["P9"]
    assert (tmp_path / "count-P9").read_text() == "2"  # allowed-failures + 1 attempts
    assert not store.partition_dir("screen", "P9").exists()
    assert store.record("screen", "P9") is None


def test_runbook_slurm_cluster_renders_a_job_script() -> None:
    """The runbook's dask-jobqueue configuration is a real SLURMCluster (not submitted)."""
    import yaml
    from dask_jobqueue import SLURMCluster

    from tests.conftest import PROJECT_ROOT

    config = yaml.safe_load((PROJECT_ROOT / "deployment" / "dask" / "slurm.yaml").read_text())
    cluster = SLURMCluster(**config["cluster"])
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert script.startswith("#!/usr/bin/env bash")
    assert "#SBATCH -p cpu" in script and "distributed.cli.dask_worker" in script
    assert f"--nthreads {config['cluster']['cores'] // config['cluster']['processes']}" in script
