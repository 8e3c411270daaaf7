"""Which wells a screen-wide step may use: enough cells, a finite profile.

Every well of the platemap reaches the well table (:func:`~morphoflow.profiling.aggregate.
well_profiles`), an empty one with ``Metadata_CellCount = 0`` and NaN features. Before any step
that fits on wells (per-plate standardisation and sphering on control wells, MoA retrieval
queries, phenotype strength), :func:`select_wells` keeps the wells that

1. hold at least ``min_cells_per_well`` profiled cells (a near-empty well is profiled from a few
   cells, often false objects of a noise field, and must not define the controls' statistics or
   act as a query), and
2. have a finite profile (:func:`~morphoflow.profiling.nonfinite.drop_nonfinite`: a mostly
   non-finite well is dropped, then features still non-finite anywhere),

and lists every other well with its reason. ``min_cells_per_well`` has one default,
:data:`DEFAULT_MIN_CELLS_PER_WELL`, which ``conf/base/parameters.yml`` repeats (a test holds
them equal).

Example:
    >>> import pandas as pd
    >>> wells = pd.DataFrame({"Metadata_Plate": ["p"] * 3, "Metadata_Well": ["A01", "A02", "A03"],
    ...                       "Metadata_CellCount": [40, 0, 3], "f": [1.0, float("nan"), 2.0]})
    >>> chosen = select_wells(wells, min_cells_per_well=10)
    >>> chosen.used["Metadata_Well"].tolist()
    ['A01']
    >>> chosen.excluded["Metadata_ExclusionReason"].tolist()
    ['no cells', '3 cells < min_cells_per_well=10']
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.profiling.aggregate import CELL_COUNT, feature_columns, metadata_columns
from morphoflow.profiling.nonfinite import NonFiniteReport, drop_nonfinite

#: Default smallest number of profiled cells for a well to be used (controls and queries).
#: Deliberately low for small simulated sites; real Cell Painting wells hold hundreds to
#: thousands of cells, where 50-100 is a common floor.
DEFAULT_MIN_CELLS_PER_WELL = 10

REASON = "Metadata_ExclusionReason"
_WELL_KEYS = (
    "Metadata_Source",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Treatment",
    "Metadata_MoA",
    "Metadata_ControlType",
    CELL_COUNT,
)


@dataclass
class WellSelection:
    """Result of :func:`select_wells`.

    Attributes:
        used: The wells kept, with the kept features (original row order and index).
        excluded: One row per excluded well: its identifying metadata, ``Metadata_CellCount``
            and ``Metadata_ExclusionReason``.
        nonfinite: What the non-finite rule dropped among the wells with enough cells.
        min_cells_per_well: The threshold applied.
    """

    used: pd.DataFrame
    excluded: pd.DataFrame
    nonfinite: NonFiniteReport
    min_cells_per_well: int
    cell_counts_known: bool = True

    def table(self, wells: pd.DataFrame) -> pd.DataFrame:
        """Every well of ``wells`` with ``Metadata_Used`` and its exclusion reason ("" if used).

        Args:
            wells: The table :func:`select_wells` was given.

        Returns:
            Its identifying metadata columns plus ``Metadata_Used`` (bool) and
            ``Metadata_ExclusionReason`` (str), one row per well in input order.
        """
        keys = [c for c in _WELL_KEYS if c in wells.columns]
        out = wells[keys].copy()
        out[REASON] = ""
        out.loc[self.excluded.index, REASON] = self.excluded[REASON]
        out.insert(len(keys), "Metadata_Used", out[REASON] == "")
        return out.reset_index(drop=True)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary for reports."""
        excluded = self.excluded.astype(object).where(self.excluded.notna(), None)
        return {
            "min_cells_per_well": int(self.min_cells_per_well),
            "cell_counts_known": bool(self.cell_counts_known),
            "n_wells": int(len(self.used) + len(self.excluded)),
            "n_used": int(len(self.used)),
            "n_excluded": int(len(self.excluded)),
            "excluded": excluded.to_dict(orient="records"),
            "dropped_features": list(self.nonfinite.dropped_features),
        }


def select_wells(
    wells: pd.DataFrame,
    min_cells_per_well: int,
    *,
    max_nonfinite_fraction: float = 0.5,
    name: str = "well profiles",
) -> WellSelection:
    """Keep wells with enough cells and a finite profile; list the others with their reason.

    Args:
        wells: Well profile table (``Metadata_*`` + numeric features), normally with
            ``Metadata_CellCount``.
        min_cells_per_well: Smallest cell count of a used well (>= 0; 0 disables the rule).
        max_nonfinite_fraction: Rows with a larger share of NaN/inf features are excluded
            (see :func:`~morphoflow.profiling.nonfinite.drop_nonfinite`).
        name: Table name for messages.

    Returns:
        A :class:`WellSelection`. Reasons are ``"no cells"``, ``"N cells <
        min_cells_per_well=M"`` and ``"non-finite profile (x % of features)"``. A
        :class:`~morphoflow.profiling.nonfinite.NonFiniteWarning` names non-finite drops.

    Raises:
        ValueError: ``min_cells_per_well`` negative or not an integer, or no well is left
            (the message gives the counts). Without a ``Metadata_CellCount`` column the count
            rule cannot apply: a ``UserWarning`` says so and only the non-finite rule runs.
    """
    if isinstance(min_cells_per_well, bool) or not isinstance(min_cells_per_well, int | np.integer):
        raise ValueError(f"min_cells_per_well must be an integer, got {min_cells_per_well!r}")
    if min_cells_per_well < 0:
        raise ValueError(f"min_cells_per_well must be >= 0, got {min_cells_per_well}")
    if not feature_columns(wells):
        raise ValueError(f"{name} has no feature columns")
    counted = CELL_COUNT in wells.columns
    if min_cells_per_well > 0 and not counted:
        warnings.warn(
            f"{name} has no {CELL_COUNT} column: min_cells_per_well={min_cells_per_well} "
            "cannot be applied, every well with a finite profile is used",
            UserWarning,
            stacklevel=2,
        )
    keys = [c for c in _WELL_KEYS if c in wells.columns]
    reasons = pd.Series("", index=wells.index, dtype=object)
    if min_cells_per_well > 0 and counted:
        counts = wells[CELL_COUNT].fillna(0).astype("int64")
        reasons[counts == 0] = "no cells"
        few = (counts > 0) & (counts < min_cells_per_well)
        reasons[few] = [f"{n} cells < min_cells_per_well={min_cells_per_well}" for n in counts[few]]
    enough = wells[reasons == ""]
    if enough.empty:
        raise ValueError(
            f"{name}: none of the {len(wells)} wells has >= {min_cells_per_well} cells "
            f"(largest count: {int(wells[CELL_COUNT].max()) if len(wells) else 0}); lower "
            "wells.min_cells_per_well"
        )
    used, report = drop_nonfinite(enough, name=name, max_row_fraction=max_nonfinite_fraction)
    for index, fraction in zip(
        report.dropped_rows.index, report.dropped_rows["Metadata_NonFiniteFraction"], strict=True
    ):
        reasons[index] = f"non-finite profile ({fraction:.0%} of features)"
    excluded = wells.loc[reasons != "", keys].copy()
    excluded[REASON] = reasons[reasons != ""]
    kept_meta = [c for c in metadata_columns(wells)]
    used = used[kept_meta + feature_columns(used)]
    return WellSelection(used, excluded, report, int(min_cells_per_well), counted)
