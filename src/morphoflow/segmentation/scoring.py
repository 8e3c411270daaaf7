"""Score nucleus segmenters on sites with ground truth: held-out plates, site selection, DSB per
number of TTA views, per-site tables, tracker metrics and overlay figures.

The DSB 2018 metric itself is :mod:`morphoflow.segmentation.metrics`; this module runs it over
sites (formerly ``morphoflow.segmentation.evaluation``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from morphoflow.screen.constants import TRUTH_COLUMN
from morphoflow.screen.io import read_image
from morphoflow.segmentation.files import load_channel
from morphoflow.segmentation.metrics import DatasetScore, dsb_score

Segmenter = Callable[[np.ndarray, int], np.ndarray]
"""(image (H, W), number of views) -> instance labels (H, W)."""

_KEYS = ["Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def require_truth(table: pd.DataFrame) -> None:
    """Refuse a table without ground-truth nucleus masks (named column)."""
    column = table.get(TRUTH_COLUMN)
    if column is None or (column.isna() | (column.astype(str).str.strip() == "")).any():
        raise ValueError(
            f"segmentation training/evaluation needs ground-truth nucleus masks: every site must "
            f"have a {TRUTH_COLUMN} (load_data.csv columns FileName_NucleiTruth + "
            f"PathName_NucleiTruth, as the simulated screens write)"
        )


def split_by_plate(
    table: pd.DataFrame, holdout: str | Sequence[str] = "last_plate_per_source"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split sites into training and held-out plates.

    Args:
        table: Image table.
        holdout: ``"last_plate_per_source"`` (the last plate, in sorted order, of each source) or
            an explicit list of plate names.

    Returns:
        (training sites, held-out sites).

    Raises:
        ValueError: Unknown plates, or a split that leaves either side empty.
    """
    plates = sorted(table["Metadata_Plate"].unique())
    if isinstance(holdout, str):
        if holdout != "last_plate_per_source":
            raise ValueError(
                f"holdout must be 'last_plate_per_source' or a list of plates, got {holdout!r}"
            )
        held = {
            sorted(group["Metadata_Plate"].unique())[-1]
            for _, group in table.groupby("Metadata_Source")
        }
    else:
        held = set(holdout)
        unknown = sorted(held - set(plates))
        if unknown:
            raise ValueError(f"holdout plates {unknown} are not in the screen (plates: {plates})")
    test = table[table["Metadata_Plate"].isin(held)]
    train = table[~table["Metadata_Plate"].isin(held)]
    if train.empty or test.empty:
        raise ValueError(
            f"holdout {sorted(held)} leaves no training or no held-out plate (plates: {plates})"
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def spread_sites(table: pd.DataFrame, n: int | None) -> pd.DataFrame:
    """At most ``n`` sites spread evenly over plates (round-robin over plates in sorted order).

    ``None`` keeps every site. The choice is deterministic.
    """
    if n is None or n >= len(table):
        return table.reset_index(drop=True)
    rank = table.groupby("Metadata_Plate", sort=True).cumcount()
    order = table.assign(_rank=rank).sort_values(["_rank", "Metadata_Plate"], kind="stable")
    return order.head(int(n)).drop(columns="_rank").sort_index().reset_index(drop=True)


def iter_dna_and_truth(
    table: pd.DataFrame, root: str | Path
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream (DNA image, truth labels) for every site of the table."""
    require_truth(table)
    root = Path(root)
    for _, row in table.iterrows():
        yield (
            load_channel(root / row["Path_DNA"], None),
            read_image(root / row[TRUTH_COLUMN]).astype(np.int64),
        )


def evaluate_views(
    segment: Segmenter,
    samples: Sequence[tuple[np.ndarray, np.ndarray]],
    views: Sequence[int] = (1, 8),
) -> tuple[dict[int, DatasetScore], dict[int, list[np.ndarray]]]:
    """DSB score of a segmenter for each number of TTA views, on the same samples.

    Returns:
        ``views -> DatasetScore`` and ``views -> predicted label images``.
    """
    scores: dict[int, DatasetScore] = {}
    predictions: dict[int, list[np.ndarray]] = {}
    truths = [truth for _, truth in samples]
    for n in views:
        predictions[n] = [segment(image, n) for image, _ in samples]
        scores[n] = dsb_score(truths, predictions[n])
    return scores, predictions


def scores_table(scores: dict[int, DatasetScore], table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per-image DSB scores, one row per (site, views)."""
    rows = []
    for n, score in scores.items():
        for (_, site), image in zip(table.iterrows(), score.images, strict=True):
            rows.append(
                {
                    **{k: site[k] for k in _KEYS},
                    "model": model,
                    "views": n,
                    "dsb_score": image.score,
                    "tp": image.tp,
                    "fp": image.fp,
                    "fn": image.fn,
                    "n_true": image.n_true,
                    "n_pred": image.n_pred,
                }
            )
    return pd.DataFrame(rows)


def flat_metrics(scores: dict[int, DatasetScore], model: str) -> dict[str, float]:
    """``<model>.views<n>.<metric>`` -> value, for an experiment tracker."""
    return {
        f"{model}.views{n}.{k}": float(v) for n, s in scores.items() for k, v in s.summary().items()
    }


def overlay_figure(
    image: np.ndarray,
    truth: np.ndarray,
    predictions: dict[str, np.ndarray],
    scores: dict[str, float],
    title: str = "",
):
    """Image, ground truth and each prediction with outlines (cf. the TTA paper's Figure 2).

    Returns:
        A matplotlib Figure.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from skimage.segmentation import find_boundaries

    from morphoflow.segmentation.postprocess import normalize_image

    panels = [
        ("ground truth", truth, None),
        *[(k, v, scores.get(k)) for k, v in predictions.items()],
    ]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.2 * (len(panels) + 1), 3.4))
    shown = normalize_image(image)
    axes[0].imshow(shown, cmap="gray")
    axes[0].set_title("DNA")
    for ax, (name, labels, score) in zip(axes[1:], panels, strict=True):
        rgb = np.dstack([shown] * 3)
        edges = find_boundaries(labels, mode="inner")
        rgb[edges] = (1.0, 0.2, 0.2) if score is not None else (0.2, 1.0, 0.2)
        ax.imshow(rgb)
        label = f"{name}\n{int(labels.max())} nuclei"
        if score is not None:
            label += f", DSB {score:.3f}"
        ax.set_title(label, fontsize=9)
    for ax in axes:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
