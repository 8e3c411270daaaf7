"""Nodes of the profiling pipeline: thin wrappers over the science packages."""

from __future__ import annotations

from functools import partial
from typing import Any

import pandas as pd

from morphoflow.lifecycle.resolve import resolve_model_file
from morphoflow.pipelines.data_validation.nodes import screen_root
from morphoflow.segmentation.screen import segment_screen
from morphoflow.segmentation.unet import load_unet, predict_probabilities


def segment_nuclei_per_site(
    image_table: pd.DataFrame, screen: dict[str, Any], params: dict[str, Any]
) -> pd.DataFrame:
    """Nuclei of every site (DNA channel) with the configured U-Net; label images to disk."""
    model, _ = load_unet(resolve_model_file(params["model"]))
    return segment_screen(
        image_table,
        screen_root(screen),
        partial(predict_probabilities, model, batch_size=int(params.get("batch_size", 8))),
        params["labels_dir"],
        views=int(params["views"]),
        threshold=float(params["threshold"]),
        min_size=int(params["min_size"]),
    )
