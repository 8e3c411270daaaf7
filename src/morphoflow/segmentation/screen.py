"""Segment the nuclei of every site of a screen (DNA channel), streamed one site at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from morphoflow.progress import track
from morphoflow.segmentation.files import load_channel, write_labels
from morphoflow.segmentation.segmenter import Segmentation, nuclei_table

SegmentFn = Callable[[np.ndarray], Segmentation]
"""2-D DNA image -> :class:`Segmentation` (local model, or Triton's ``nuclei_tta``)."""

_KEYS = ["Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_Site"]


def labels_relpath(plate: str, well: str, site: int) -> str:
    """Where a site's nucleus label image goes, relative to the labels folder."""
    return PurePosixPath(str(plate), f"{well}_s{int(site)}_nuclei.tif").as_posix()


def segment_screen(
    table: pd.DataFrame,
    root: str | Path,
    segment: SegmentFn,
    labels_dir: str | Path,
) -> pd.DataFrame:
    """Segment every site's DNA channel; write label images; return one row per nucleus.

    Memory holds one site at a time (plus the growing nuclei table). Each label image is
    written atomically to ``labels_dir/<plate>/<well>_s<site>_nuclei.tif``.

    Args:
        table: Canonical image table.
        root: Screen folder.
        segment: One image -> :class:`Segmentation`, normally
            :func:`morphoflow.segmentation.settings.make_segmenter` of a local model or a
            Triton client.
        labels_dir: Folder for the label images.

    Returns:
        Nuclei table: ``Metadata_*`` keys of the site, ``ObjectNumber``,
        ``Nuclei_Location_Center_X/Y``, ``Nuclei_AreaShape_Area``, ``Nuclei_TTA_Agreement`` and
        ``Path_NucleiLabels`` (relative to ``labels_dir``).
    """
    root, labels_dir = Path(root), Path(labels_dir)
    frames = []
    for _, site in track(table.iterrows(), "Segmenting nuclei", total=len(table)):
        dna = load_channel(root / site["Path_DNA"], None)
        result = segment(dna)
        relative = labels_relpath(
            site["Metadata_Plate"], site["Metadata_Well"], site["Metadata_Site"]
        )
        write_labels(labels_dir / relative, result.labels)
        nuclei = nuclei_table(result.labels, result.agreement)
        for key in reversed(_KEYS):
            nuclei.insert(0, key, site[key])
        nuclei["Path_NucleiLabels"] = relative
        frames.append(nuclei)
    if not frames:
        return pd.DataFrame(columns=[*_KEYS, "ObjectNumber"])
    return pd.concat(frames, ignore_index=True)
