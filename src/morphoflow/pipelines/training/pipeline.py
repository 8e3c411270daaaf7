"""training pipeline: combined single-cell index -> WSL CNN -> ONNX featurizer -> registry."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.training.nodes import export_and_register, train_cellpainting_cnn


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Train on the dataset_assembly output, then export and register the featurizer."""
    return Pipeline(
        [
            Node(
                train_cellpainting_cnn,
                ["combined_index", "plate_store", "params:training"],
                ["wsl_model", "wsl_training_summary", "wsl_training_metrics", "wsl_confusion"],
                name="train_cellpainting_cnn",
            ),
            Node(
                export_and_register,
                ["wsl_model", "wsl_training_summary", "assembly_manifest", "params:training"],
                "wsl_registration",
                name="export_and_register",
            ),
        ]
    )
