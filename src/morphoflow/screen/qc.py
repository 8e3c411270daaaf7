"""Per-site image quality control statistics, computed from the pixels.

One row per (site, channel): dtype, shape, intensity summary, saturation, focus and emptiness.
Streams over sites (one site in memory at a time). Unreadable files are recorded as such
(``QC_Readable == False`` with the reason in ``QC_Error``) so that data validation can report
every bad file of a screen at once and then stop the run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from morphoflow.progress import track
from morphoflow.screen.constants import CHANNELS
from morphoflow.screen.errors import ImageReadError
from morphoflow.screen.io import read_image, require_finite

_KEYS = ["Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def saturation_fraction(image: np.ndarray) -> float:
    """Fraction of pixels at the image's maximum value (CellProfiler's *PercentMaximal* / 100).

    A well exposed image has a tiny fraction (a handful of pixels at its maximum); saturated or
    constant images have a large one.
    """
    if image.size == 0:
        return 1.0
    return float(np.count_nonzero(image == image.max()) / image.size)


def focus_score(image: np.ndarray) -> float:
    """Focus measure: variance of the Laplacian of the image divided by its mean.

    Independent of a global intensity scale; low values mean blur (or an empty image).
    """
    data = image.astype(np.float32)
    mean = float(data.mean())
    if mean <= 0:
        return 0.0
    return float(ndimage.laplace(data / mean).var())


def site_qc(table: pd.DataFrame, root: str | Path) -> pd.DataFrame:
    """Compute QC statistics for every site and channel of an image table.

    Args:
        table: Canonical image table (``Path_<Ch>`` relative to ``root``).
        root: Screen folder.

    Returns:
        One row per (site, channel) with ``Metadata_*`` keys, ``Channel``, ``QC_Path``,
        ``QC_Readable``, ``QC_Error``, ``QC_DType``, ``QC_Height``, ``QC_Width``,
        ``QC_ShapeConsistent`` (all channels of the site have one shape), ``QC_Min``, ``QC_Max``,
        ``QC_Mean``, ``QC_Std``, ``QC_Empty``, ``QC_SaturationFraction``, ``QC_FocusScore`` and
        ``QC_FocusRatio`` (focus score / median of its plate and channel).
    """
    root = Path(root)
    rows: list[dict[str, object]] = []
    for _, site in track(table.iterrows(), "QC of sites", total=len(table)):
        keys = {k: site[k] for k in _KEYS}
        site_rows = []
        for channel in CHANNELS:
            relative = site[f"Path_{channel}"]
            row: dict[str, object] = {**keys, "Channel": channel, "QC_Path": relative}
            try:
                image = read_image(root / relative)
                if image.ndim != 2:
                    raise ImageReadError(f"{root / relative} is not a 2D plane: {image.shape}")
                require_finite(image, root / relative)  # NaN/inf: unusable, named by file
            except ImageReadError as exc:
                row.update(
                    QC_Readable=False,
                    QC_Error=str(exc),
                    QC_DType="",
                    QC_Height=0,
                    QC_Width=0,
                    QC_Min=np.nan,
                    QC_Max=np.nan,
                    QC_Mean=np.nan,
                    QC_Std=np.nan,
                    QC_Empty=False,
                    QC_SaturationFraction=0.0,
                    QC_FocusScore=np.nan,
                )
            else:
                std = float(image.std())
                row.update(
                    QC_Readable=True,
                    QC_Error="",
                    QC_DType=str(image.dtype),
                    QC_Height=int(image.shape[0]),
                    QC_Width=int(image.shape[1]),
                    QC_Min=float(image.min()),
                    QC_Max=float(image.max()),
                    QC_Mean=float(image.mean()),
                    QC_Std=std,
                    QC_Empty=bool(std == 0.0 or float(image.max()) == 0.0),
                    QC_SaturationFraction=saturation_fraction(image),
                    QC_FocusScore=focus_score(image),
                )
            site_rows.append(row)
        shapes = {(r["QC_Height"], r["QC_Width"]) for r in site_rows if r["QC_Readable"]}
        for row in site_rows:
            row["QC_ShapeConsistent"] = len(shapes) <= 1
        rows.extend(site_rows)
    qc = pd.DataFrame(rows)
    if qc.empty:
        return qc
    median = qc.groupby(["Metadata_Plate", "Channel"])["QC_FocusScore"].transform("median")
    qc["QC_FocusRatio"] = (qc["QC_FocusScore"] / median.where(median > 0)).fillna(0.0)
    qc.loc[~qc["QC_Readable"], "QC_FocusRatio"] = np.nan
    return qc
