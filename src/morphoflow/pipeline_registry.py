"""Project pipelines: every folder of ``morphoflow.pipelines`` with a ``create_pipeline``,
composed here.

Each folder's ``create_pipeline`` holds only its own nodes; this registry composes them:
``segmentation`` and ``profiling`` run behind ``data_validation`` (a screen is validated before
anything reads its pixels), and ``__default__`` is the profiling pipeline, the platform's main
job. Run a stage alone with ``kedro run --pipelines=data_validation``.
"""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from morphoflow.pipelines import data_validation

#: Pipelines that run behind data validation.
VALIDATED = ("segmentation", "profiling")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    # kedro loads only the requested pipelines (all of them for __default__); validation is
    # imported directly because it is part of others even when it was not requested by name
    pipelines = find_pipelines(raise_errors=True)
    validation = data_validation.create_pipeline()
    for name in VALIDATED:
        if name in pipelines:
            pipelines[name] = validation + pipelines[name]
    if "profiling" in pipelines:
        pipelines["__default__"] = pipelines["profiling"]
    return pipelines
