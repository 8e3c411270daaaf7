"""Figures of the activity report (metrics stay in :mod:`.evaluation`)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from morphoflow.activity.crossval import SINGLE_MODALITIES
from morphoflow.activity.evaluation import median_auroc, overlap_table


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def auroc_distribution(scores: pd.DataFrame, split: str):
    """Box plot of the per-assay median AUROC of every modality on ``split``."""
    medians = median_auroc(scores).loc[split]
    order = list(medians.median().sort_values(ascending=False).index)
    fig, ax = _figure(figsize=(max(5.0, 0.7 * len(order) + 2), 3.6))
    ax.boxplot([medians[m].dropna() for m in order], showfliers=True)
    ax.set_xticks(range(1, len(order) + 1), order, rotation=45, ha="right")
    for y, style in ((0.5, ":"), (0.7, "--"), (0.9, "-")):
        ax.axhline(y, color="grey", lw=0.8, ls=style)
    ax.set_ylabel("median AUROC over folds")
    ax.set_title(f"Assay AUROC per modality ({split} split)")
    fig.tight_layout()
    return fig


def upset(
    scores: pd.DataFrame,
    split: str,
    threshold: float = 0.9,
    modalities: Sequence[str] = SINGLE_MODALITIES,
):
    """UpSet-style figure: assays predicted well (median AUROC > ``threshold``) by exactly
    each combination of the single modalities (bars) with the membership dots below."""
    medians = median_auroc(scores)
    present = [m for m in modalities if m in medians.columns]
    table = overlap_table(medians, split, threshold, present)
    fig, (top, bottom) = _figure(
        2, 1, figsize=(max(4.0, 0.6 * len(table) + 2), 4.2), height_ratios=(3, 1), sharex=True
    )
    x = range(len(table))
    top.bar(x, table["n_assays"], color="#4c72b0")
    top.set_ylabel(f"assays AUROC > {threshold}")
    top.set_title(f"Which modality predicts which assays ({split} split)")
    for i, combo in enumerate(table["combination"]):
        members = combo.split("+")
        for j, m in enumerate(present):
            bottom.plot(i, j, "o", color="black" if m in members else "#dddddd", ms=6)
    bottom.set_yticks(range(len(present)), present)
    bottom.set_xticks(list(x), [""] * len(table))
    bottom.set_ylim(-0.5, len(present) - 0.5)
    fig.tight_layout()
    return fig


def unmeaningful(reason: str):
    """A placeholder figure saying why no AUROC figure is drawn."""
    fig, ax = _figure(figsize=(5, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, f"AUROC not meaningful:\n{reason}", ha="center", va="center", wrap=True)
    return fig
