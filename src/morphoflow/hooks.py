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

__all__ = ["LineageHook", "MemoryHook", "git_revision", "peak_rss_mb"]


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
