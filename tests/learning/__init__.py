"""Tests of morphoflow.learning; shared helper: a tiny crop set on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from morphoflow.profiling.crops import SiteCrops, crops_relpath, save_site_crops


def write_crop_set(
    crops_dir: Path,
    classes: tuple[str, ...] = ("cpd_a", "cpd_b", "cpd_c"),
    plates: tuple[str, ...] = ("P1", "P2"),
    cells_per_well: int = 6,
    size: int = 32,
    seed: int = 0,
) -> pd.DataFrame:
    """Write one site per (plate, class well) of class-dependent blob crops; return the index.

    Class k puts a bright blob in channel k (so a CNN can learn the classes quickly).
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 6) ** 2))
    rows = []
    for plate in plates:
        for k, treatment in enumerate(classes):
            well = f"A{k + 1:02d}"
            crops = rng.normal(300, 30, (cells_per_well, 5, size, size)).astype(np.float32)
            crops[:, k % 5] += 3000 * blob
            objects = pd.DataFrame(
                {
                    "ObjectNumber": np.arange(1, cells_per_well + 1),
                    "Nuclei_Location_Center_X": rng.uniform(0, 100, cells_per_well),
                    "Nuclei_Location_Center_Y": rng.uniform(0, 100, cells_per_well),
                    "Metadata_CropEdgeFraction": 0.0,
                }
            )
            masks = np.zeros((cells_per_well, size, size), np.uint8)
            relpath = crops_relpath(plate, well, 1)
            save_site_crops(crops_dir / relpath, SiteCrops(crops, masks, objects))
            for i in range(cells_per_well):
                rows.append(
                    {
                        "Metadata_Source": "src1",
                        "Metadata_Plate": plate,
                        "Metadata_Well": well,
                        "Metadata_Site": 1,
                        "Metadata_Treatment": treatment,
                        "Metadata_MoA": "",
                        "Metadata_ControlType": "",
                        "Metadata_ObjectNumber": i + 1,
                        "Path_Crops": relpath,
                        "Metadata_CropIndex": i,
                    }
                )
    return pd.DataFrame(rows)
