"""evaluation pipeline: frozen held-out set -> challenger vs champion -> gated promotion."""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.evaluation.nodes import (
    enforce_decision,
    evaluate_and_promote,
    prepare_heldout,
)


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Prepare (freeze once / locate) the held-out set, then evaluate and promote."""
    return Pipeline(
        [
            Node(
                prepare_heldout,
                "params:evaluation",
                "evaluation_heldout",
                name="prepare_heldout",
            ),
            Node(
                evaluate_and_promote,
                ["evaluation_heldout", "params:evaluation"],
                ["evaluation_decision", "evaluation_metrics"],
                name="evaluate_and_promote",
            ),
            Node(
                enforce_decision,
                ["evaluation_decision", "params:evaluation"],
                None,
                name="enforce_decision",
            ),
        ]
    )
