"""Nodes of the data_validation pipeline: thin wrappers over morphoflow.screen/validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from morphoflow.pipelines.mlflow_metrics import metric_values
from morphoflow.screen.qc import site_qc
from morphoflow.screen.table import load_screen
from morphoflow.validation import ValidationConfig, validate_screen


def screen_root(screen: str | Path) -> Path:
    """The screen folder given by the catalog's ``screen`` dataset (``--params screen.root``).

    Raises:
        ValueError: An empty value.
    """
    if not str(screen):
        raise ValueError("screen.root is empty (pass --params screen.root=DIR)")
    return Path(screen)


def load_image_table(screen: Path) -> pd.DataFrame:
    """Read the screen folder into the canonical image table."""
    return load_screen(screen_root(screen))


def compute_site_qc(image_table: pd.DataFrame, screen: Path) -> pd.DataFrame:
    """Per-site, per-channel image QC statistics."""
    return site_qc(image_table, screen_root(screen))


def validate(
    image_table: pd.DataFrame,
    qc: pd.DataFrame,
    screen: Path,
    report_dir: Path,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Run the GX suites; write the report; stop the run on failure.

    Returns:
        The validated image table, the summary (for lineage) and MLflow metrics.
    """
    summary = validate_screen(
        image_table, qc, screen_root(screen), report_dir, ValidationConfig.from_params(params)
    )
    names = ("n_sites", "n_plates", "n_wells", "n_treatments", "expectations_evaluated")
    return image_table, summary, metric_values({name: summary[name] for name in names})
