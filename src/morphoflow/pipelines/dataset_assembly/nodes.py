"""Nodes of the dataset_assembly pipeline: thin wrappers over morphoflow.assembly."""

from __future__ import annotations

from typing import Any

import pandas as pd

from morphoflow.assembly import combined_index, manifest, phenotype_strength
from morphoflow.pipelines.mlflow_metrics import metric_values
from morphoflow.profiling.wells import select_wells


def assess_strength(
    wells: pd.DataFrame, params: dict[str, Any], wells_params: dict[str, Any]
) -> pd.DataFrame:
    """Per-(source, treatment) phenotype strength against that source's negative controls.

    Wells with fewer than ``wells.min_cells_per_well`` cells or a non-finite profile take no
    part (named in a warning).
    """
    strength = params["strength"]
    usable = select_wells(wells, int(wells_params["min_cells_per_well"])).used
    return phenotype_strength(
        usable.reset_index(drop=True),
        n_components=strength["n_components"],
        percentile=float(strength["percentile"]),
        min_replicates=int(strength["min_replicates"]),
        scope=str(strength["scope"]),
        n_null=int(strength["n_null"]),
        seed=int(params["seed"]),
    )


def assemble(
    crop_index: pd.DataFrame, strength: pd.DataFrame, params: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Combined single-cell index (strong treatments + both control kinds) and its manifest."""
    if crop_index.empty or (crop_index["Path_Crops"].astype(str) == "").all():
        raise ValueError(
            "the crop index has no stored crops: run the profiling pipeline with "
            "--params crops.store=true first (dataset_assembly and training read the crops)"
        )
    cap = params.get("max_control_cells_per_plate")
    combined = combined_index(
        crop_index, strength, None if cap is None else int(cap), int(params["seed"])
    )
    description = manifest(
        strength,
        combined,
        {
            "strength": params["strength"],
            "max_control_cells_per_plate": cap,
            "seed": params["seed"],
        },
    )
    metrics = {}
    for source, info in description.get("sources", {}).items():
        for key in ("treatments_total", "treatments_kept", "cells_kept"):
            if key in info:
                metrics.update(metric_values({key: info[key]}, f"{source}."))
    return combined, description, metrics
