"""profiling pipeline: data validation -> nuclei segmentation per site -> (crops, features,
profiles, batch correction, evaluation: added as they land)."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.data_validation import create_pipeline as data_validation
from morphoflow.pipelines.profiling.nodes import segment_nuclei_per_site


def create_pipeline(**kwargs: Any) -> Pipeline:
    """The stages of profiling that exist so far."""
    return data_validation() + Pipeline(
        [
            Node(
                segment_nuclei_per_site,
                ["validated_image_table", "params:screen", "params:nuclei"],
                "nuclei_locations",
                name="segment_nuclei",
            ),
        ]
    )
