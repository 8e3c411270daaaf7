"""Tests of morphoflow.assembly; shared helpers: a constructed two-source screen."""

from __future__ import annotations

import numpy as np
import pandas as pd

FEATURES = ("f0", "f1", "f2", "f3", "f4", "f5")

#: (treatment, MoA, source -> feature shift in control SDs, or None when absent from the source).
#: One well per plate (2 plates: 2 replicates) unless named in SINGLE.
TREATMENTS: tuple[tuple[str, str, dict[str, np.ndarray | None]], ...] = (
    (
        "cpd_strong",
        "tubulin",
        {"S1": np.array([6, 6, 0, 0, 0, 0.0]), "S2": np.array([6, 6, 0, 0, 0, 0.0])},
    ),
    ("s1_strong", "kinase", {"S1": np.array([0, 0, -6, 0, 0, 0.0]), "S2": None}),
    ("s2_strong", "hdac", {"S1": None, "S2": np.array([0, 0, 0, 6, 6, 0.0])}),
    ("null_a", "mek", {"S1": np.zeros(6), "S2": np.zeros(6)}),
    ("null_b", "mek", {"S1": np.zeros(6), "S2": np.zeros(6)}),
    ("null_c", "egfr", {"S1": np.zeros(6), "S2": np.zeros(6)}),
    ("single", "kinase", {"S1": np.array([0, 8, 0, 0, 8, 0.0]), "S2": None}),
)
#: Treatments with one well only (plate P1): below min_replicates=2.
SINGLE = ("single",)
STRONG = {("S1", "cpd_strong"), ("S1", "s1_strong"), ("S2", "cpd_strong"), ("S2", "s2_strong")}


def screen_wells(seed: int = 0, controls_per_kind: int = 6) -> pd.DataFrame:
    """Well profiles of two sources x two plates (P1, P2 in both sources).

    Every well is N(0, 1) per feature plus a per-plate offset; S2 is also scaled by 3 and
    shifted by +50 (a source effect). Per plate: ``controls_per_kind`` DMSO and as many
    untreated wells (both ``negcon``), and one well per treatment of :data:`TREATMENTS` present
    in the source, shifted by its SDs (``single`` only on P1).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for source in ("S1", "S2"):
        for plate in ("P1", "P2"):
            offset = rng.normal(0, 2, len(FEATURES))
            wells: list[tuple[str, str, str, np.ndarray]] = []
            for kind in ("DMSO", "untreated"):
                wells += [(kind, "", "negcon", np.zeros(len(FEATURES)))] * controls_per_kind
            for name, moa, shifts in TREATMENTS:
                shift = shifts[source]
                if shift is not None and (name not in SINGLE or plate == "P1"):
                    wells.append((name, moa, "", shift))
            for i, (name, moa, control, shift) in enumerate(wells):
                x = rng.normal(size=len(FEATURES)) + shift + offset
                if source == "S2":
                    x = 3 * x + 50
                rows.append(
                    {
                        "Metadata_Source": source,
                        "Metadata_Plate": plate,
                        "Metadata_Well": f"{chr(ord('A') + i // 24)}{i % 24 + 1:02d}",
                        "Metadata_Treatment": name,
                        "Metadata_MoA": moa,
                        "Metadata_ControlType": control,
                        "Metadata_CellCount": 100,
                        **dict(zip(FEATURES, x, strict=True)),
                    }
                )
    return pd.DataFrame(rows)


def crop_index_for(wells: pd.DataFrame, cells_per_well: int = 3) -> pd.DataFrame:
    """A crop index with ``cells_per_well`` cells (site 1) in every well of ``wells``."""
    meta = [
        "Metadata_Source",
        "Metadata_Plate",
        "Metadata_Well",
        "Metadata_Treatment",
        "Metadata_MoA",
        "Metadata_ControlType",
    ]
    rows = []
    for well in wells[meta].to_dict("records"):
        for i in range(cells_per_well):
            rows.append(
                {
                    **well,
                    "Metadata_Site": 1,
                    "Metadata_ObjectNumber": i + 1,
                    "Path_Crops": f"{well['Metadata_Plate']}/{well['Metadata_Well']}_s1.npz",
                    "Metadata_CropIndex": i,
                }
            )
    return pd.DataFrame(rows)
