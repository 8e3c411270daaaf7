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

__all__ = [
    "AllOrNothingOutputsHook",
    "KnownParametersHook",
    "LineageHook",
    "MemoryHook",
    "git_revision",
    "peak_rss_mb",
    "unknown_parameters",
]


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

        self._screen_logged = False
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
    def before_node_run(self, node: Any, inputs: dict[str, Any]) -> None:
        # the screen is a catalog dataset, not a parameter: log its folder like one, once
        if "screen" in inputs and not getattr(self, "_screen_logged", False):
            import mlflow

            if mlflow.active_run() is not None:
                mlflow.log_param("screen.root", str(inputs["screen"]))
                self._screen_logged = True

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
        report_dir = Path(str(inputs.get("validation_report_dir") or ""))
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
    rename beside it: ``.<name>.previous-run``). When the run fails, the failed run's outputs
    are removed and the previous ones put back; when it succeeds, the previous ones are
    deleted. The per-plate partitions of the profiling pipeline (``plate_store``) are not
    outputs: they are kept under their screen's key, written atomically one plate at a time,
    and reused by the next run (a failed run's completed plates are not recomputed).

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
        self._handlers = _raise_on_termination()

    def _restore_handlers(self) -> None:
        import signal

        for signum, handler in getattr(self, "_handlers", {}).items():
            signal.signal(signum, handler)
        self._handlers = {}

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        path = self._local_path(getattr(self, "_catalog", None), dataset_name)
        if path is not None:
            self._stash(path)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._restore_handlers()
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

        self._restore_handlers()
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


class RunTerminated(Exception):
    """The run was stopped by SIGTERM or SIGINT (a scheduler, `timeout`, Ctrl-C)."""


def _raise_on_termination() -> dict[int, Any]:
    """Turn SIGTERM and SIGINT into :class:`RunTerminated` for the duration of a run.

    Python's default SIGTERM ends the process without cleanup, Ctrl-C raises KeyboardInterrupt
    and Lightning turns SIGTERM into SystemExit(0): none is an ``Exception``, so kedro ran no
    ``on_pipeline_error`` hook, the MLflow run was recorded FINISHED, the exit code could be 0
    and outputs of two runs stayed mixed. As an ordinary exception, the run fails cleanly:
    outputs restored, MLflow run FAILED, non-zero exit. Returns the previous handlers (empty
    outside the main thread, where handlers cannot be set).
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}

    def _handler(signum: int, frame: Any) -> None:
        raise RunTerminated(f"run stopped by {signal.Signals(signum).name}")

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.getsignal(signum)
        signal.signal(signum, _handler)
    return previous


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _dotted(params: dict[str, Any], prefix: str = "") -> list[str]:
    """Leaf paths of a (possibly nested, possibly dotted-key) parameters dict."""
    out: list[str] = []
    for key, value in params.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.extend(_dotted(value, f"{path}."))
        else:
            out.append(path)
    return out


def unknown_parameters(runtime: dict[str, Any], known: dict[str, Any]) -> list[str]:
    """Runtime parameter paths that name no parameter of the configuration.

    A path is known when every part of it exists in ``known``; below a parameter whose value
    is an empty mapping (a free-form block such as ``segmentation.maskrcnn.config: {}``) any
    key is accepted. Each unknown path is given with the closest known path, if one is close.

    Args:
        runtime: ``--params`` values, nested or with dotted keys.
        known: The project's parameters without the runtime values.

    Returns:
        One message per unknown path, e.g. ``"wells.min_cell_per_well (did you mean
        wells.min_cells_per_well?)"``; empty when all are known.

    Example:
        >>> unknown_parameters({"wells.min_cell_per_well": 5}, {"wells": {"min_cells_per_well": 10}})
        ['wells.min_cell_per_well (did you mean wells.min_cells_per_well?)']
    """
    import difflib

    known_paths = _dotted(known)
    problems = []
    for path in _dotted(runtime):
        node: Any = known
        ok = True
        for part in path.split("."):
            if isinstance(node, dict) and not node:
                break  # free-form block
            if not isinstance(node, dict) or part not in node:
                ok = False
                break
            node = node[part]
        if not ok:
            close = difflib.get_close_matches(path, known_paths, n=1, cutoff=0.75)
            problems.append(path + (f" (did you mean {close[0]}?)" if close else ""))
    return problems


#: Parameter blocks read by a settings dataclass (``module:Class``): the YAML names only the
#: fields where the pipeline differs from the class's defaults, so every field of the class is a
#: known key there.
SETTINGS_BLOCKS: dict[str, str] = {
    "training.config": "morphoflow.learning.train:WSLConfig",
    "representation_comparison.wsl.config": "morphoflow.learning.train:WSLConfig",
    "evaluation.freeze_if_missing": "morphoflow.lifecycle.heldout:SegmentationHeldoutSettings",
    "nuclei": "morphoflow.segmentation.settings:SegmenterSettings",
    "execution": "morphoflow.execution.settings:ExecutionSettings",
}


def _settings_fields(spec: str) -> list[str]:
    import dataclasses
    import importlib

    module, name = spec.split(":")
    cls = getattr(importlib.import_module(module), name)
    return [f.name for f in dataclasses.fields(cls)]


def _catalog_runtime_params(conf_source: str) -> list[str]:
    """Runtime parameters the catalog resolves (``${runtime_params:KEY,...}``), e.g. input roots."""
    import re

    found: set[str] = set()
    for path in Path(conf_source).rglob("catalog*.yml"):
        found.update(re.findall(r"runtime_params:([A-Za-z0-9_.]+)", path.read_text()))
    return sorted(found)


class KnownParametersHook:
    """Refuse a run whose ``--params`` name a parameter the project does not have.

    Kedro adds unknown runtime parameters silently, so ``--params screen.rot=DIR`` used to
    profile the default screen and ``wells.min_cell_per_well=100`` changed nothing. This hook
    runs when the context is created, before any node and before the MLflow run starts, and
    fails with every unknown name and the closest known one.
    """

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        from kedro.config import OmegaConfigLoader

        loader = context.config_loader
        runtime = dict(getattr(loader, "runtime_params", None) or {})
        if not runtime or not isinstance(loader, OmegaConfigLoader):
            return
        plain = OmegaConfigLoader(
            conf_source=str(loader.conf_source),
            env=loader.env,
            base_env=loader.base_env,
            default_run_env=loader.default_run_env,
            merge_strategy=loader.merge_strategy,
        )
        known = _with_settings_fields(dict(plain["parameters"]))
        for key in _catalog_runtime_params(str(loader.conf_source)):
            _insert(known, key)
        problems = unknown_parameters(runtime, known)
        if problems:
            raise ValueError(
                f"unknown parameter(s) in --params: {'; '.join(problems)}. Parameters are "
                "defined in conf/base/parameters*.yml"
            )
        if any(str(key).split(".")[0] == "execution" for key in runtime):  # nested or dotted
            # checked now, not after data validation has read every image of the screen
            from morphoflow.execution.settings import ExecutionSettings

            ExecutionSettings.from_params(context.params.get("execution"))


def _insert(tree: dict[str, Any], path: str, value: Any = None) -> None:
    node = tree
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node.setdefault(parts[-1], value)


def _with_settings_fields(params: dict[str, Any]) -> dict[str, Any]:
    """``params`` plus every field of the settings dataclass behind each SETTINGS_BLOCKS block."""
    import copy

    out = copy.deepcopy(params)
    for block, spec in SETTINGS_BLOCKS.items():
        for field_name in _settings_fields(spec):
            _insert(out, f"{block}.{field_name}")
    return out
