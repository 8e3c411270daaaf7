"""The one way nodes hand metrics to kedro-mlflow's ``MlflowMetricsHistoryDataset``.

That dataset takes ``{name: {"value": float, "step": int}}`` (one value) or
``{name: [{"value", "step"}, ...]}`` (a history). Nodes build these with :func:`metric_values`
and :func:`metric_history` instead of writing the dicts themselves.

Example:
    >>> metric_values({"map": 0.5, "n": 3}, prefix="classical.")
    {'classical.map': {'value': 0.5, 'step': 0}, 'classical.n': {'value': 3.0, 'step': 0}}
    >>> metric_history([{"epoch": 1, "loss": 2.0}, {"epoch": 2}], ["loss"])
    {'loss': [{'value': 2.0, 'step': 1}]}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def metric_values(
    values: Mapping[str, Any], prefix: str = "", *, finite_only: bool = False
) -> dict[str, dict[str, float | int]]:
    """Single values as MLflow metrics (step 0).

    Args:
        values: Metric name -> number (bools count as 0/1).
        prefix: Prepended to every name (e.g. ``"classical."``).
        finite_only: Leave out NaN/inf values (MLflow stores them, but a plot of NaN helps
            nobody); otherwise every value is logged.

    Returns:
        ``{prefix + name: {"value": float, "step": 0}}``.
    """
    out: dict[str, dict[str, float | int]] = {}
    for name, value in values.items():
        number = float(value)
        if finite_only and not math.isfinite(number):
            continue
        out[f"{prefix}{name}"] = {"value": number, "step": 0}
    return out


def metric_history(
    history: Sequence[Mapping[str, Any]],
    names: Iterable[str],
    prefix: str = "",
    *,
    step_key: str = "epoch",
    finite_only: bool = False,
) -> dict[str, list[dict[str, float | int]]]:
    """Per-step values (e.g. per epoch) as MLflow metric histories.

    Args:
        history: One mapping per step, holding ``step_key`` and some of ``names``.
        names: Metrics to take; a step without a name is skipped for that name.
        prefix: Prepended to every name.
        step_key: The key holding the step number.
        finite_only: Leave out NaN/inf values.

    Returns:
        ``{prefix + name: [{"value": float, "step": int}, ...]}``.
    """
    out: dict[str, list[dict[str, float | int]]] = {}
    for name in names:
        entries = []
        for h in history:
            if name not in h:
                continue
            number = float(h[name])
            if finite_only and not math.isfinite(number):
                continue
            entries.append({"value": number, "step": int(h[step_key])})
        out[f"{prefix}{name}"] = entries
    return out
