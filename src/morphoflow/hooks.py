"""Kedro hooks: lineage (git sha, data fingerprint, package version) and reports to MLflow.

kedro-mlflow's hooks are registered after the project's, so they run first: the MLflow run is
already active in ``before_pipeline_run`` and still active in ``after_node_run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

import morphoflow
from morphoflow.lineage import git_revision

__all__ = ["AllOrNothingOutputsHook", "LineageHook", "MemoryHook", "git_revision", "peak_rss_mb"]

#: Node tag naming a folder parameter the node replaces as a whole (``writes_folder__GROUP.KEY``
#: -> the folder is ``params:GROUP``'s ``KEY``), so a failed run can restore it.
WRITES_FOLDER = "writes_folder__"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class MemoryHook:
    """Log the process's peak RSS after every node (INFO) and as MLflow metrics.

    The peak is cumulative: a jump after a node shows that node's footprint.
    """

    @hook_impl
    def after_node_run(self, node: Any) -> None:
        import logging

        import mlflow

        peak = peak_rss_mb()
        logging.getLogger("morphoflow").info("peak RSS after %s: %.0f MiB", node.name, peak)
        if mlflow.active_run() is not None:
            mlflow.log_metric(f"memory.peak_rss_mb.{node.name}", peak)


class LineageHook:
    """Tag every MLflow run with lineage; log the data validation report and fingerprint."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        import mlflow

        if mlflow.active_run() is None:
            return
        mlflow.set_tags(
            {
                "morphoflow.git_sha": git_revision(),
                "morphoflow.version": morphoflow.__version__,
                "morphoflow.pipelines": ",".join(
                    run_params.get("pipeline_names")
                    or [run_params.get("pipeline_name") or "__default__"]
                ),
            }
        )

    @hook_impl
    def after_node_run(self, node: Any, outputs: dict[str, Any], inputs: dict[str, Any]) -> None:
        if "validation_summary" in outputs:
            self._log_validation(outputs["validation_summary"], inputs)

    @hook_impl
    def on_node_error(self, error: Exception, node: Any, inputs: dict[str, Any]) -> None:
        if node.name == "validate_screen":
            self._log_validation(None, inputs)

    @staticmethod
    def _log_validation(summary: dict[str, Any] | None, inputs: dict[str, Any]) -> None:
        import mlflow

        if mlflow.active_run() is None:
            return
        report_dir = Path(inputs.get("params:data_validation", {}).get("report_dir", ""))
        if summary is not None:
            mlflow.set_tag("morphoflow.data_fingerprint", summary["data_fingerprint"])
        mlflow.set_tag("morphoflow.data_validation", "passed" if summary else "failed")
        if report_dir.is_dir():
            mlflow.log_artifacts(str(report_dir), artifact_path="data_validation")


class AllOrNothingOutputsHook:
    """A failed run leaves the previous run's outputs, never a mix of two runs (or screens).

    Kedro saves each node's outputs as the node finishes, so a run that fails at its last step
    used to leave new tables from the failed run's screen beside old ones from the previous
    run's. This hook moves every local file output aside just before it is overwritten (a
    rename beside it: ``.<name>.previous-run``), and every folder a node declares with a
    ``writes_folder__GROUP.KEY`` tag just before that node runs. When the run fails, the failed
    run's outputs are removed and the previous ones put back; when it succeeds, the previous
    ones are deleted (a folder the run did not write is put back).

    Only local files are handled (``protocol == "file"``); MLflow metrics and artifacts are
    tracked per run, and a failed run is marked FAILED there. A dataset whose catalog entry
    says ``metadata: {morphoflow: {keep_when_run_fails: true}}`` is left out: it is the result
    of a run that fails on purpose (the evaluation pipeline's decision as a CI/CD gate).
    """

    def __init__(self) -> None:
        self._moved: list[tuple[Path, Path | None]] = []  # (output, its previous version)

    @staticmethod
    def _local_path(catalog: Any, name: str) -> Path | None:
        try:
            dataset = catalog.get(name)
        except Exception:  # noqa: BLE001 - a dataset the catalog cannot build is not ours to move
            return None
        if dataset is None:
            return None
        options = (getattr(dataset, "metadata", None) or {}).get("morphoflow") or {}
        if options.get("keep_when_run_fails"):
            return None  # e.g. a CI/CD gate's decision: the result of the run that failed
        describe = getattr(dataset, "_describe", None)
        info = describe() if callable(describe) else {}
        filepath = info.get("filepath") if isinstance(info, dict) else None
        if filepath is None or info.get("protocol", "file") != "file":
            return None
        if info.get("version") is not None:  # versioned datasets keep their history themselves
            return None
        return Path(str(filepath))

    def _stash(self, path: Path) -> None:
        path = path.resolve()
        if any(moved == path for moved, _ in self._moved):
            return
        previous = None
        if path.exists():
            previous = path.with_name(f".{path.name}.previous-run")
            _remove(previous)
            path.replace(previous)
        self._moved.append((path, previous))

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._moved = []
        self._catalog = catalog

    @hook_impl
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        for tag in getattr(node, "tags", ()):
            if tag.startswith(WRITES_FOLDER):
                group, key = tag[len(WRITES_FOLDER) :].split(".", 1)
                folder = (inputs.get(f"params:{group}") or {}).get(key)
                if folder:
                    self._stash(Path(str(folder)))

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        path = self._local_path(getattr(self, "_catalog", None), dataset_name)
        if path is not None:
            self._stash(path)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        for path, previous in self._moved:
            if previous is None:
                continue
            if path.exists():
                _remove(previous)
            else:  # the run did not write it after all: keep the previous one
                previous.replace(path)
        self._moved = []

    @hook_impl
    def on_pipeline_error(
        self, error: Exception, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        import logging

        restored = 0
        for path, previous in reversed(self._moved):
            _remove(path)
            if previous is not None:
                previous.replace(path)
                restored += 1
        if self._moved:
            logging.getLogger("morphoflow").warning(
                "run failed: removed %d output(s) it had written and restored %d of the "
                "previous run, so no output mixes two runs",
                len(self._moved),
                restored,
            )
        self._moved = []


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
