"""profiling pipeline: data validation -> per plate (sequential or on Dask): nuclei,
(illumination), cells, crops, features, site and well profiles -> gather the plates ->
batch correction (lambda on held-out treatments) -> treatment profiles and evaluation report."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.profiling.nodes import (
    check_evaluation_design,
    correct_and_evaluate,
    gather_plates,
    profile_plates,
)


def create_pipeline(**kwargs: Any) -> Pipeline:
    """The platform's main job."""
    return Pipeline(
        [
            Node(
                check_evaluation_design,
                [
                    "validated_image_table",
                    "params:batch_correction",
                    "params:wells",
                    "params:features",
                    "params:inference",
                ],
                "profiling_image_table",
                name="check_evaluation_design",
            ),
            Node(
                profile_plates,
                [
                    "profiling_image_table",
                    "plate_store",
                    "screen",
                    "params:nuclei",
                    "params:illumination",
                    "params:crops",
                    "params:features",
                    "params:inference",
                    "params:execution",
                ],
                "plate_manifest",
                name="profile_plates",
            ),
            Node(
                gather_plates,
                ["plate_manifest", "plate_store"],
                ["profiles_well_raw", "crop_index"],
                name="gather_plates",
            ),
            Node(
                correct_and_evaluate,
                [
                    "profiles_well_raw",
                    "params:batch_correction",
                    "params:features",
                    "params:wells",
                ],
                [
                    "profiles_well",
                    "profiles_treatment",
                    "profiling_report",
                    "profiling_metrics",
                    "profiling_per_treatment",
                    "profiling_figures",
                    "profiling_wells",
                ],
                name="correct_and_evaluate",
            ),
        ]
    )
