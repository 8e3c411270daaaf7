"""Single-cell crops centred on nuclei, streamed one site at a time.

A crop is a ``size`` x ``size`` box (default 128) of all 5 channels centred on the nucleus
centre (rounded to the nearest pixel: row ``round(Y) - size // 2`` ... ``+ size``).

Edges: the part of a box outside the image is zero-filled (and its mask is 0);
``Metadata_CropEdgeFraction`` records the fraction of the box outside the image, so users can
drop edge cells (``edge="skip"`` drops cells whose box leaves the image).

Masks: per crop, uint8 with 1 = this cell's nucleus, 2 = this cell's cytoplasm (cell minus
nucleus), 0 = anything else (background, neighbours, padding). With ``mask_neighbours=True``
the pixels of other cells are set to 0 in the crop itself.

Storage (for loaders, e.g. WSL training): one ``.npz`` per site,
``<crops_dir>/<plate>/<well>_s<site>.npz`` with ``crops`` float16 (N, 5, S, S) (raw or
illumination-corrected intensities, not normalised per crop), ``masks`` uint8 (N, S, S) and
``object_numbers`` int64 (N,), written atomically; the index table maps every cell to its file
and position (``Path_Crops``, ``Metadata_CropIndex``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from morphoflow.atomic import atomic_path

EDGE_MODES = ("pad", "skip")


@dataclass
class SiteCrops:
    """Crops of one site.

    Attributes:
        crops: Float32 (N, C, S, S).
        masks: Uint8 (N, S, S): 1 nucleus, 2 cytoplasm, 0 other.
        objects: One row per crop: ``ObjectNumber``, ``Nuclei_Location_Center_X/Y``,
            ``Metadata_CropEdgeFraction``.
    """

    crops: np.ndarray
    masks: np.ndarray
    objects: pd.DataFrame

    def __len__(self) -> int:
        return int(self.crops.shape[0])


def crop_cells(
    image: np.ndarray,
    nuclei: np.ndarray,
    cells: np.ndarray,
    centres: pd.DataFrame,
    size: int = 128,
    mask_neighbours: bool = True,
    edge: str = "pad",
) -> SiteCrops:
    """Cut one crop per nucleus.

    Args:
        image: Site (C, H, W).
        nuclei: Nucleus labels (H, W).
        cells: Cell labels (H, W) with cell k containing nucleus k.
        centres: ``ObjectNumber``, ``Nuclei_Location_Center_X``, ``Nuclei_Location_Center_Y``.
        size: Crop side in pixels (even, >= 8).
        mask_neighbours: Zero the pixels of other cells inside each crop.
        edge: ``"pad"`` (zero-fill outside the image) or ``"skip"`` (drop such cells).

    Returns:
        The site's crops.

    Raises:
        ValueError: Inconsistent shapes, a bad ``size`` or ``edge``.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[1:] != nuclei.shape or nuclei.shape != cells.shape:
        raise ValueError(
            f"image {image.shape}, nuclei {nuclei.shape} and cells {cells.shape} do not match"
        )
    if size < 8 or size % 2:
        raise ValueError(f"size must be an even number >= 8, got {size}")
    if edge not in EDGE_MODES:
        raise ValueError(f"edge must be one of {EDGE_MODES}, got {edge!r}")
    c, h, w = image.shape
    half = size // 2
    pad = ((0, 0), (half, half), (half, half))
    padded = np.pad(image, pad)
    padded_nuclei = np.pad(nuclei, pad[1:])
    padded_cells = np.pad(cells, pad[1:])
    crops, masks, rows = [], [], []
    for obj, x, y in centres[
        ["ObjectNumber", "Nuclei_Location_Center_X", "Nuclei_Location_Center_Y"]
    ].itertuples(index=False):
        cy, cx = int(round(float(y))), int(round(float(x)))
        top, left = cy - half, cx - half
        inside_h = max(0, min(top + size, h) - max(top, 0))
        inside_w = max(0, min(left + size, w) - max(left, 0))
        edge_fraction = 1.0 - inside_h * inside_w / float(size * size)
        if edge == "skip" and edge_fraction > 0:
            continue
        sl = (slice(top + half, top + half + size), slice(left + half, left + half + size))
        crop = padded[(slice(None), *sl)].copy()
        own_nucleus = padded_nuclei[sl] == obj
        own_cell = (padded_cells[sl] == obj) | own_nucleus
        mask = np.zeros((size, size), np.uint8)
        mask[own_cell] = 2
        mask[own_nucleus] = 1
        if mask_neighbours:
            others = (padded_cells[sl] > 0) & ~own_cell
            crop[:, others] = 0.0
        crops.append(crop)
        masks.append(mask)
        rows.append(
            {
                "ObjectNumber": int(obj),
                "Nuclei_Location_Center_X": float(x),
                "Nuclei_Location_Center_Y": float(y),
                "Metadata_CropEdgeFraction": edge_fraction,
            }
        )
    if not crops:
        return SiteCrops(
            np.zeros((0, c, size, size), np.float32),
            np.zeros((0, size, size), np.uint8),
            pd.DataFrame(
                columns=[
                    "ObjectNumber",
                    "Nuclei_Location_Center_X",
                    "Nuclei_Location_Center_Y",
                    "Metadata_CropEdgeFraction",
                ]
            ),
        )
    return SiteCrops(np.stack(crops), np.stack(masks), pd.DataFrame(rows))


def crops_relpath(plate: str, well: str, site: int) -> str:
    """Where a site's crops go, relative to the crops folder."""
    return PurePosixPath(str(plate), f"{well}_s{int(site)}.npz").as_posix()


def save_site_crops(path: str | Path, site: SiteCrops) -> None:
    """Write a site's crops as one uncompressed ``.npz`` (float16 crops), atomically."""
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(
            tmp,
            crops=site.crops.astype(np.float16),
            masks=site.masks,
            object_numbers=site.objects["ObjectNumber"].to_numpy(np.int64),
        )


def load_site_crops(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``(crops float32, masks, object_numbers)`` of one site file."""
    with np.load(Path(path)) as data:
        return data["crops"].astype(np.float32), data["masks"], data["object_numbers"]
