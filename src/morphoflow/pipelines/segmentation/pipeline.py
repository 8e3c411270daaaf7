"""segmentation pipeline: train nucleus models on simulated plates, evaluate with/without TTA."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.segmentation.nodes import (
    evaluate_nucleus_unet,
    register_nucleus_unet,
    split_sites,
    train_and_evaluate_maskrcnn,
    train_nucleus_unet,
)


def create_pipeline(**kwargs: Any) -> Pipeline:
    """data_validation -> split plates -> train U-Net -> DSB with/without TTA -> register
    (ONNX, challenger) (+ Mask R-CNN)."""
    return Pipeline(
        [
            Node(
                split_sites,
                ["validated_image_table", "params:segmentation"],
                ["segmentation_train_sites", "segmentation_test_sites"],
                name="split_sites",
            ),
            Node(
                train_nucleus_unet,
                ["segmentation_train_sites", "screen", "params:segmentation"],
                ["nucleus_unet", "segmentation_training_metrics"],
                name="train_nucleus_unet",
            ),
            Node(
                evaluate_nucleus_unet,
                ["nucleus_unet", "segmentation_test_sites", "screen", "params:segmentation"],
                ["segmentation_metrics", "segmentation_scores", "segmentation_overlay"],
                name="evaluate_nucleus_unet",
            ),
            Node(
                register_nucleus_unet,
                ["nucleus_unet", "segmentation_metrics", "params:segmentation"],
                "segmentation_registered_model",
                name="register_nucleus_unet",
            ),
            Node(
                train_and_evaluate_maskrcnn,
                [
                    "segmentation_train_sites",
                    "segmentation_test_sites",
                    "screen",
                    "params:segmentation",
                ],
                ["maskrcnn_metrics", "maskrcnn_scores"],
                name="train_and_evaluate_maskrcnn",
            ),
        ]
    )
