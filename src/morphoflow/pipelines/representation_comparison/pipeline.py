"""representation_comparison pipeline: the thesis' comparison of profile representations.

Needs a profiling run with stored crops and classical features first
(``kedro run --pipelines=profiling --params crops.store=true``): it reads ``crop_index`` and
``profiles_well_raw``.

Held-out design (``representation_comparison.holdout``, default: source ``source_3``): every
cell of the held-out sources/plates is kept out of training: strength calls, training sets
and training/validation splits use the other plates only. Every representation is evaluated on
the held-out wells alone:

- ``classical``: profiling's classical well profiles of the held-out wells;
- ``imagenet``: the held-out stored crops through the ImageNet EfficientNet-B0 featurizer, only
  when ``representation_comparison.imagenet.weights_path`` names a local file (nothing is
  downloaded; otherwise its rows say ``skipped`` and why);
- one WSL CNN per ``representation_comparison.wsl.variants`` entry (training sources x
  leave-cells-out / leave-plates-out split), trained for ``representation_comparison.wsl.epochs``
  epochs with ``training.config``, featurising the held-out stored crops (block6a, 672 features).

Each is scored raw, per-plate standardised and sphered with profiling's evaluation (lambda chosen
on a selection half of the treatments, MoA mAP and folds of enrichment on the other half).
Outputs: ``data/08_reporting/representation_comparison/representation_comparison.csv`` and
``.png``, a JSON report, the trained models in ``data/06_models/representation_comparison/``;
all logged to MLflow.
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline

from morphoflow.pipelines.representation_comparison.nodes import compare, train_variants


def create_pipeline(**kwargs: Any) -> Pipeline:
    """Train the WSL variants on the non-held-out plates, then compare on the held-out part."""
    return Pipeline(
        [
            Node(
                train_variants,
                [
                    "crop_index",
                    "profiles_well_raw",
                    "plate_store",
                    "representation_models",
                    "params:training",
                    "params:dataset_assembly",
                    "params:representation_comparison",
                    "params:wells",
                ],
                [
                    "representation_comparison_training",
                    "representation_comparison_training_metrics",
                ],
                name="train_representation_variants",
            ),
            Node(
                compare,
                [
                    "crop_index",
                    "profiles_well_raw",
                    "representation_comparison_training",
                    "plate_store",
                    "params:batch_correction",
                    "params:representation_comparison",
                    "params:wells",
                ],
                [
                    "representation_comparison_table",
                    "representation_comparison_figure",
                    "representation_comparison_metrics",
                    "representation_comparison_report",
                ],
                name="compare_representations",
            ),
        ]
    )
