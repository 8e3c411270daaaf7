"""data_validation: Great Expectations suites on the image table and per-site image QC."""

from morphoflow.pipelines.data_validation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
