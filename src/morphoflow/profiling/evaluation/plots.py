"""Plots of profile evaluations (matplotlib Figure objects; no pyplot, so no GUI backend and
no global state; matplotlib and scikit-learn are imported lazily)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from morphoflow.profiling.evaluation.retrieval import _feature_matrix, _require_column

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# --------------------------------------------------------------------------------------------
# Plots (matplotlib Figure objects; no pyplot, so no GUI backend and no global state)
# --------------------------------------------------------------------------------------------
def _new_figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def plot_pr_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]] | pd.DataFrame],
    title: str = "Interpolated precision-recall",
) -> Figure:
    """Plot precision-recall curves, one line per entry.

    Args:
        curves: Name -> ``(recall, precision)`` or a DataFrame with ``recall`` and
            ``precision`` columns (e.g. the curve returned by :func:`interpolated_map`).
        title: Axes title.

    Returns:
        A matplotlib Figure (built without pyplot; save it with ``fig.savefig``).

    Raises:
        ValueError: If ``curves`` is empty or an entry is malformed.
    """
    if not curves:
        raise ValueError("curves must name at least one curve")
    figure = _new_figure((5.0, 4.0))
    axes = figure.subplots()
    for name, curve in curves.items():
        if isinstance(curve, pd.DataFrame):
            if not {"recall", "precision"} <= set(curve.columns):
                raise ValueError(f"curves[{name!r}] needs 'recall' and 'precision' columns")
            recall, precision = curve["recall"].to_numpy(), curve["precision"].to_numpy()
        else:
            recall, precision = (np.asarray(v, dtype=np.float64) for v in curve)
        if recall.shape != precision.shape or recall.ndim != 1:
            raise ValueError(f"curves[{name!r}] must be two 1-D arrays of equal length")
        axes.plot(recall, precision, label=str(name))
    axes.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02), title=title)
    axes.legend(loc="upper right", fontsize="small")
    return figure


def _embed(X: np.ndarray, method: str, seed: int) -> np.ndarray:
    if method == "pca":
        from sklearn.decomposition import PCA

        coords = PCA(n_components=min(2, X.shape[1]), random_state=seed).fit_transform(X)
        if coords.shape[1] == 1:
            coords = np.column_stack([coords[:, 0], np.zeros(len(coords))])
        return coords
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (X.shape[0] - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(X)


def plot_embedding(
    profiles: pd.DataFrame,
    color_by: str,
    method: Literal["pca", "tsne"] = "pca",
    seed: int = 0,
) -> Figure:
    """2-D embedding (PCA or t-SNE) of the profiles' features, coloured by a metadata column.

    Args:
        profiles: Profile table.
        color_by: Metadata column whose values colour the points (one legend entry each;
            missing values shown as ``"NA"``, empty strings as ``"(empty)"``).
        method: ``"pca"`` or ``"tsne"`` (perplexity ``min(30, (n - 1) / 3)``).
        seed: Random state of the embedding.

    Returns:
        A matplotlib Figure (built without pyplot).

    Raises:
        ValueError: If ``color_by`` is missing, ``method`` is unknown or there are fewer than
            3 profiles.
    """
    if method not in ("pca", "tsne"):
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    X = _feature_matrix(profiles, "profiles")
    _require_column(profiles, color_by, "profiles", "color_by")
    if X.shape[0] < 3:
        raise ValueError(f"profiles needs at least 3 rows to embed, got {X.shape[0]}")
    coords = _embed(X, method, seed)
    raw = profiles[color_by]
    values = np.array(
        ["NA" if pd.isna(v) else ("(empty)" if str(v) == "" else str(v)) for v in raw],
        dtype=object,
    )
    categories = list(dict.fromkeys(values))

    from matplotlib import colormaps

    palette = colormaps["tab10" if len(categories) <= 10 else "tab20"]
    figure = _new_figure((6.0, 4.5))
    axes = figure.subplots()
    handles = []
    for index, category in enumerate(categories):
        chosen = values == category
        handles.append(
            axes.scatter(
                coords[chosen, 0], coords[chosen, 1], s=14, color=palette(index % palette.N)
            )
        )
    axes.set(
        xlabel=f"{method.upper()} 1",
        ylabel=f"{method.upper()} 2",
        title=f"{method.upper()} of {X.shape[0]} profiles by {color_by}",
    )
    # explicit handles: matplotlib would otherwise drop labels that are empty or start with "_"
    axes.legend(
        handles,
        categories,
        title=color_by,
        fontsize="small",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        ncol=1 if len(categories) <= 20 else 2,
        markerscale=1.5,
    )
    return figure
