"""profiling pipeline.

Today it is the data_validation stage only (the first stage of profiling); segmentation,
crops, features, aggregation, batch correction and evaluation are added as they land.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Pipeline

from morphoflow.pipelines.data_validation import create_pipeline as data_validation


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Stages of profiling that exist so far: data validation."""
    return data_validation()
