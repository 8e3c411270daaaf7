"""One rule for NaN and infinite values in profile tables, used by every consumer of profiles.

Profiles reach morphoflow's scores from many places (classical features of odd cells, a CNN fed
an empty crop, a user's own Parquet file), and one non-finite value used to be handled
differently by each step: dropped as a feature by the evaluation, fatal in the embedding plot,
and one all-NaN well removed every feature. :func:`drop_nonfinite` is the single rule:

1. A **row** (well, treatment, ...) whose share of non-finite features is above
   ``max_row_fraction`` (default 0.5; an entirely non-finite well always) is dropped: it carries
   no usable profile, and keeping it would cost every feature it is NaN in.
2. Then every **feature** that is still non-finite in any remaining row is dropped.

Both are named in a :class:`NonFiniteWarning` and returned in a :class:`NonFiniteReport`, which
reports (``metrics.json``, ``summary.json``) carry under ``non_finite``. A table without
non-finite values passes unchanged and silently.

Example:
    >>> import numpy as np, pandas as pd
    >>> wells = pd.DataFrame({"Metadata_Well": ["A01", "A02", "A03"],
    ...                       "f1": [1.0, np.nan, 3.0], "f2": [1.0, np.nan, 2.0],
    ...                       "f3": [np.inf, 1.0, 2.0]})
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     clean, report = drop_nonfinite(wells, name="wells")
    >>> clean["Metadata_Well"].tolist(), report.dropped_features
    (['A01', 'A03'], ['f3'])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.profiling.aggregate import _check_features, feature_columns, metadata_columns

_LISTED = 10


class NonFiniteWarning(UserWarning):
    """Rows or features of a profile table were dropped for NaN/inf values."""


@dataclass
class NonFiniteReport:
    """What :func:`drop_nonfinite` removed.

    Attributes:
        name: Name of the table, as used in messages.
        dropped_rows: Metadata of every dropped row plus ``Metadata_NonFiniteFraction`` (share of
            the row's features that were non-finite).
        dropped_features: Names of the dropped features, in table order.
        n_rows: Rows before dropping.
        n_features: Features before dropping.
    """

    name: str
    dropped_rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    dropped_features: list[str] = field(default_factory=list)
    n_rows: int = 0
    n_features: int = 0

    @property
    def empty(self) -> bool:
        """True when nothing was dropped."""
        return len(self.dropped_rows) == 0 and not self.dropped_features

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for ``metrics.json`` / ``summary.json``)."""
        rows = self.dropped_rows.astype(object).where(self.dropped_rows.notna(), None)
        return {
            "n_rows": int(self.n_rows),
            "n_features": int(self.n_features),
            "dropped_rows": rows.to_dict(orient="records"),
            "dropped_features": list(self.dropped_features),
        }

    def message(self) -> str:
        """One line naming what was dropped."""
        parts = []
        if len(self.dropped_rows):
            ids = [_row_id(row) for _, row in self.dropped_rows.head(_LISTED).iterrows()]
            more = len(self.dropped_rows) - _LISTED
            parts.append(
                f"dropped {len(self.dropped_rows)} of {self.n_rows} row(s) that are mostly "
                f"NaN/inf: {', '.join(ids)}" + (f" and {more} more" if more > 0 else "")
            )
        if self.dropped_features:
            shown = self.dropped_features[:_LISTED]
            more = len(self.dropped_features) - _LISTED
            parts.append(
                f"dropped {len(self.dropped_features)} of {self.n_features} feature(s) with "
                f"NaN/inf values: {', '.join(shown)}" + (f" and {more} more" if more > 0 else "")
            )
        return f"{self.name}: " + "; ".join(parts)


_ID_COLUMNS = (
    "Metadata_Source",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_Treatment",
)


def _row_id(row: pd.Series) -> str:
    keys = [str(row[c]) for c in _ID_COLUMNS if c in row.index and pd.notna(row[c])]
    return "/".join(keys) if keys else f"row {row.name}"


def drop_nonfinite(
    frame: pd.DataFrame,
    *,
    name: str = "profiles",
    max_row_fraction: float = 0.5,
    warn: bool = True,
) -> tuple[pd.DataFrame, NonFiniteReport]:
    """Drop mostly non-finite rows, then features that are still non-finite anywhere.

    Args:
        frame: Profile table: ``Metadata_*`` columns and numeric feature columns.
        name: Table name used in the warning and the report (e.g. ``"well profiles"``).
        max_row_fraction: A row with a larger share of non-finite features is dropped, in
            [0, 1). 0 drops every row with any non-finite value (no feature is lost then).
        warn: Emit a :class:`NonFiniteWarning` when something was dropped.

    Returns:
        ``(clean, report)``: ``clean`` has the kept rows (original index) and the metadata plus
        kept features (original column order); ``report`` says what was dropped.

    Raises:
        ValueError: ``max_row_fraction`` outside [0, 1), ``frame`` has no feature column, a
            feature column is not numeric, or every row is dropped (the message names the
            table).
    """
    if not 0.0 <= float(max_row_fraction) < 1.0:
        raise ValueError(f"max_row_fraction must be in [0, 1), got {max_row_fraction!r}")
    features = feature_columns(frame)
    if not features:
        raise ValueError(f"{name} has no feature columns")
    _check_features(frame, features, name)
    values = frame[features].to_numpy(dtype=np.float64)
    nonfinite = ~np.isfinite(values)
    report = NonFiniteReport(name, n_rows=len(frame), n_features=len(features))
    if not nonfinite.any():
        report.dropped_rows = frame[metadata_columns(frame)].iloc[:0].copy()
        report.dropped_rows["Metadata_NonFiniteFraction"] = pd.Series(dtype="float64")
        return frame, report

    fraction = nonfinite.mean(axis=1)
    drop_row = fraction > float(max_row_fraction)
    if drop_row.all():
        raise ValueError(
            f"{name}: every one of the {len(frame)} rows has more than "
            f"{max_row_fraction:.0%} NaN/inf features; no profile is left"
        )
    meta = metadata_columns(frame)
    dropped = frame.loc[drop_row, meta].copy()
    dropped["Metadata_NonFiniteFraction"] = fraction[drop_row]
    kept_feature = ~nonfinite[~drop_row].any(axis=0)
    report.dropped_rows = dropped
    report.dropped_features = [f for f, k in zip(features, kept_feature, strict=True) if not k]
    if not kept_feature.any():
        raise ValueError(
            f"{name}: every feature has NaN/inf values in some kept row; no feature is left"
        )
    clean = frame.loc[
        ~drop_row, meta + [f for f, k in zip(features, kept_feature, strict=True) if k]
    ]
    if warn:
        warnings.warn(report.message(), NonFiniteWarning, stacklevel=2)
    return clean, report
