"""representation_comparison: classical vs ImageNet vs WSL CNN profiles on a held-out part."""

from morphoflow.pipelines.representation_comparison.pipeline import create_pipeline

__all__ = ["create_pipeline"]
