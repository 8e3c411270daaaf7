"""profiling pipeline: data validation -> nuclei per site -> (illumination) -> crops and
features -> site/well profiles -> batch correction (lambda on held-out treatments) ->
treatment profiles and evaluation report."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.hooks import WRITES_FOLDER
from morphoflow.pipelines.profiling.nodes import (
    aggregate_wells,
    check_evaluation_design,
    compute_illumination,
    correct_and_evaluate,
    extract_features,
    segment_nuclei_per_site,
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
                segment_nuclei_per_site,
                ["profiling_image_table", "params:screen", "params:nuclei", "params:inference"],
                "nuclei_locations",
                name="segment_nuclei",
                tags=[f"{WRITES_FOLDER}nuclei.labels_dir"],
            ),
            Node(
                compute_illumination,
                ["profiling_image_table", "params:screen", "params:illumination"],
                "illumination_functions",
                name="compute_illumination",
            ),
            Node(
                extract_features,
                [
                    "profiling_image_table",
                    "nuclei_locations",
                    "illumination_functions",
                    "params:screen",
                    "params:nuclei",
                    "params:crops",
                    "params:features",
                    "params:inference",
                ],
                ["site_profiles", "crop_index"],
                name="extract_features",
                tags=[f"{WRITES_FOLDER}features.single_cell_dir", f"{WRITES_FOLDER}crops.dir"],
            ),
            Node(aggregate_wells, "site_profiles", "profiles_well_raw", name="aggregate_wells"),
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
