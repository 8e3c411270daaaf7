"""training: weakly supervised (treatment classification) Cell Painting CNN -> registry."""

from morphoflow.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
