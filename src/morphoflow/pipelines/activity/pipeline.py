"""activity pipeline: inputs -> folds -> cross-validated modalities -> report; MO model ->
ONNX -> registry; predictions for unassayed compounds."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.activity.nodes import (
    cross_validate_modalities,
    evaluate_activity,
    make_activity_folds,
    predict_and_register,
    validate_activity_inputs,
)


def create_pipeline(**kwargs: Any) -> Pipeline:
    """The activity pipeline (Moshkov et al., Nat Commun 2023)."""
    return Pipeline(
        [
            Node(
                validate_activity_inputs,
                [
                    "activity_compounds",
                    "activity_assays",
                    "activity_mo_profiles",
                    "activity_ge_profiles",
                    "params:activity",
                ],
                "activity_data",
                name="validate_activity_inputs",
            ),
            Node(
                make_activity_folds,
                ["activity_data", "params:activity"],
                "activity_splits",
                name="make_activity_folds",
            ),
            Node(
                cross_validate_modalities,
                ["activity_data", "activity_splits", "params:activity"],
                ["activity_fold_predictions", "activity_training_metrics"],
                name="cross_validate_modalities",
            ),
            Node(
                evaluate_activity,
                [
                    "activity_fold_predictions",
                    "activity_splits",
                    "activity_data",
                    "params:activity",
                ],
                ["activity_auroc", "activity_summary", "activity_figures", "activity_metrics"],
                name="evaluate_activity",
            ),
            Node(
                predict_and_register,
                ["activity_data", "activity_summary", "params:activity"],
                ["activity_predictions", "activity_registration", "activity_models"],
                name="predict_and_register",
            ),
        ]
    )
