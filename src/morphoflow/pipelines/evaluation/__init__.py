"""evaluation: score the challenger against the champion on a frozen held-out set; promote."""

from morphoflow.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
