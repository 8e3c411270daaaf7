"""dataset_assembly pipeline: well profiles + crop index (from profiling with stored crops) ->
phenotype strength -> strong treatments -> combined index + versioned manifest."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.dataset_assembly.nodes import assemble, assess_strength


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Select strong treatments per source and pool them into one training index."""
    return Pipeline(
        [
            Node(
                assess_strength,
                ["profiles_well_raw", "params:dataset_assembly", "params:wells"],
                "treatment_strength",
                name="assess_strength",
            ),
            Node(
                assemble,
                ["crop_index", "treatment_strength", "params:dataset_assembly"],
                ["combined_index", "assembly_manifest", "assembly_metrics"],
                name="assemble",
            ),
        ]
    )
