"""profiling: the platform's main job, from a screen folder to profiles."""

from morphoflow.pipelines.profiling.pipeline import create_pipeline

__all__ = ["create_pipeline"]
