"""segmentation: train and evaluate nucleus models (U-Net, optionally Mask R-CNN) with TTA."""

from morphoflow.pipelines.segmentation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
