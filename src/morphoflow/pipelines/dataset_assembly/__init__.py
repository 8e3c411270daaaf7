"""dataset_assembly: strong treatments from several sources -> combined single-cell index."""

from morphoflow.pipelines.dataset_assembly.pipeline import create_pipeline

__all__ = ["create_pipeline"]
