"""Project pipelines: every folder of ``morphoflow.pipelines`` with a ``create_pipeline``."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    ``__default__`` is the profiling pipeline, the platform's main job.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    # kedro loads only the requested pipelines; "profiling" is there when the default is asked.
    if "profiling" in pipelines:
        pipelines["__default__"] = pipelines["profiling"]
    return pipelines
