"""activity: compound activity prediction from structure, morphology and gene expression."""

from morphoflow.pipelines.activity.pipeline import create_pipeline

__all__ = ["create_pipeline"]
