"""Names shared by every layer: channel order, metadata columns, well names."""

from __future__ import annotations

import re

#: Cell Painting channels, in the canonical order of every (C, H, W) array.
CHANNELS: tuple[str, ...] = ("DNA", "ER", "RNA", "AGP", "Mito")

#: Metadata columns of the canonical image table (one row per site).
METADATA_COLUMNS: tuple[str, ...] = (
    "Metadata_Source",
    "Metadata_Plate",
    "Metadata_Well",
    "Metadata_Site",
    "Metadata_Treatment",
    "Metadata_MoA",
    "Metadata_ControlType",
)

#: Path column of each channel in the canonical image table.
PATH_COLUMNS: tuple[str, ...] = tuple(f"Path_{c}" for c in CHANNELS)

#: Optional path column to a ground-truth nucleus label image (simulated screens).
TRUTH_COLUMN = "Path_NucleiTruth"

#: Allowed values of ``Metadata_ControlType`` ("" = treatment well).
CONTROL_TYPES: tuple[str, ...] = ("negcon", "")

#: Well names of a 384-well plate: A01 ... P24.
WELL_PATTERN = re.compile(r"^[A-P](?:0[1-9]|1[0-9]|2[0-4])$")


def well_name(row: int, col: int) -> str:
    """Return the well name of a zero-based (row, column) position, e.g. (0, 0) -> "A01"."""
    if not (0 <= row < 16 and 0 <= col < 24):
        raise ValueError(f"well position ({row}, {col}) is outside a 384-well plate")
    return f"{chr(ord('A') + row)}{col + 1:02d}"
