"""data_validation pipeline: screen folder -> validated image table + GX report."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.data_validation.nodes import compute_site_qc, load_image_table, validate


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Load the screen, compute image QC, validate both with Great Expectations."""
    return Pipeline(
        [
            Node(load_image_table, "screen", "image_table", name="load_image_table"),
            Node(
                compute_site_qc,
                ["image_table", "screen"],
                "site_qc",
                name="compute_site_qc",
            ),
            Node(
                validate,
                [
                    "image_table",
                    "site_qc",
                    "screen",
                    "validation_report_dir",
                    "params:data_validation",
                ],
                ["validated_image_table", "validation_summary", "validation_metrics"],
                name="validate_screen",
            ),
        ]
    )
