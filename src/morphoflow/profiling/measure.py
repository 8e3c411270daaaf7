"""``morphoflow measure``: CellProfiler's measurements of a user's own images and masks.

For CellProfiler users who bring their own segmentation: one TIFF per channel, a nucleus label
image and (optionally) a cell label image in which every cell carries the label of its
nucleus. Writes one row per nucleus: ``ObjectNumber``, ``Metadata_FeatureSet`` and the
classical features (:mod:`morphoflow.profiling.classical`: ``Nuclei_``, ``Cells_`` and
``Cytoplasm_`` columns with CellProfiler's names and definitions).

Without cell labels the cells are grown from the nuclei as the profiling pipeline does
(:func:`morphoflow.profiling.cells.segment_cells`: watershed over the AGP, ER and RNA channels),
which needs the five Cell Painting channels.

Pixel scaling is CellProfiler's: each channel is divided by the maximum of its file's integer
dtype (uint16 / 65535, uint8 / 255; float files are used as stored).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from morphoflow.atomic import atomic_path
from morphoflow.profiling.cells import segment_cells
from morphoflow.profiling.classical import (
    FEATURE_SET_COLUMN,
    ClassicalExtractor,
    intensity_scale_for,
)
from morphoflow.screen.constants import CHANNELS
from morphoflow.screen.errors import ScreenError
from morphoflow.screen.io import read_image

__all__ = ["MeasureError", "check_cells_match_nuclei", "measure_files", "parse_channel_args"]


class MeasureError(ScreenError):
    """Bad input to ``morphoflow measure`` (the message names the argument or file)."""


def parse_channel_args(args: list[str]) -> dict[str, Path]:
    """``["DNA=dna.tif", "ER=er.tif"]`` -> ``{"DNA": Path("dna.tif"), ...}`` (order kept).

    Raises:
        MeasureError: An argument is not ``NAME=FILE``, a name repeats or holds ``_``.
    """
    channels: dict[str, Path] = {}
    if not args:
        raise MeasureError("give at least one channel as NAME=FILE (e.g. DNA=dna.tif)")
    for arg in args:
        name, sep, file = arg.partition("=")
        if not sep or not name or not file:
            raise MeasureError(f"channel argument {arg!r} is not NAME=FILE (e.g. DNA=dna.tif)")
        if "_" in name:
            raise MeasureError(f"channel name {name!r} ({arg!r}) must not contain '_'")
        if name in channels:
            raise MeasureError(f"channel {name!r} is given twice ({arg!r})")
        channels[name] = Path(file)
    return channels


def _read_plane(path: Path, what: str) -> np.ndarray:
    plane = read_image(path)  # ImageReadError names the file
    if plane.ndim != 2:
        raise MeasureError(f"{what} {path} must hold one plane, got shape {plane.shape}")
    return plane


def _read_labels(path: Path, what: str, shape: tuple[int, ...]) -> np.ndarray:
    labels = _read_plane(path, what)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise MeasureError(
            f"{what} {path} must be an integer label image (0 = background), got {labels.dtype}"
        )
    if labels.shape != shape:
        raise MeasureError(
            f"{what} {path} has shape {labels.shape} but the channel images have shape {shape}"
        )
    if labels.size and labels.min() < 0:
        raise MeasureError(f"{what} {path} has negative labels")
    return labels.astype(np.int64)


def check_cells_match_nuclei(nuclei: np.ndarray, cells: np.ndarray, cells_name: str) -> None:
    """Refuse cell labels that do not carry their nucleus's label.

    Each nucleus k needs a cell k that holds most of its pixels, and every cell needs a nucleus.

    Raises:
        MeasureError: The first kind of mismatch found, with up to 5 example labels.
    """
    nuc_ids = np.unique(nuclei[nuclei > 0])
    cell_ids = np.unique(cells[cells > 0])
    missing = np.setdiff1d(nuc_ids, cell_ids)
    if missing.size:
        raise MeasureError(
            f"{cells_name} has no cell for {missing.size} nuclei (labels {missing[:5].tolist()}): "
            "a cell must carry the label of its nucleus"
        )
    orphans = np.setdiff1d(cell_ids, nuc_ids)
    if orphans.size:
        raise MeasureError(
            f"{cells_name} has {orphans.size} cells without a nucleus of the same label "
            f"(labels {orphans[:5].tolist()}): a cell must carry the label of its nucleus"
        )
    inside = nuclei > 0
    top = int(nuc_ids.max(initial=0)) + 1
    same = np.bincount(nuclei[inside & (cells == nuclei)], minlength=top)
    total = np.bincount(nuclei[inside], minlength=top)
    bad = nuc_ids[same[nuc_ids] * 2 <= total[nuc_ids]]
    if bad.size:
        k = int(bad[0])
        found = np.bincount(cells[nuclei == k]).argmax()
        raise MeasureError(
            f"{cells_name}: {bad.size} nuclei lie mostly outside the cell of their label (e.g. "
            f"nucleus {k} lies in cell {found}): a cell must carry the label of its nucleus"
        )


def measure_files(
    channels: Mapping[str, Path],
    nuclei: Path,
    out: Path,
    *,
    cells: Path | None = None,
    cells_out: Path | None = None,
    feature_set: str = "default",
) -> pd.DataFrame:
    """Measure the objects of one field and write ``out`` (Parquet), atomically.

    Args:
        channels: Channel name -> single-plane image file, in output column order.
        nuclei: Nucleus label image (integer, 0 = background).
        out: Parquet file to write.
        cells: Cell label image, cell k containing nucleus k; None = grow cells.
        cells_out: Where to save the grown cells (uint32 TIFF); only without ``cells``.
        feature_set: ``"default"`` or ``"extended"``.

    Returns:
        The written table: ``ObjectNumber`` (nucleus label), ``Metadata_FeatureSet``, features.

    Raises:
        MeasureError: Bad arguments or images (the message names the argument or file).
        morphoflow.screen.errors.ImageReadError: A file is missing or unreadable.
    """
    if cells is not None and cells_out is not None:
        raise MeasureError("--cells-out saves grown cells: it cannot be used with --cells")
    if not str(out):
        raise MeasureError("--out must name a Parquet file")
    planes = {name: _read_plane(Path(path), f"channel {name}") for name, path in channels.items()}
    shapes = {name: p.shape for name, p in planes.items()}
    if len(set(shapes.values())) > 1:
        raise MeasureError(f"the channel images differ in shape: {shapes}")
    shape = next(iter(shapes.values()))
    nuc = _read_labels(Path(nuclei), "--nuclei", shape)
    # CellProfiler's scaling per file (a 12-bit camera's uint16 data stays below 4095 / 65535)
    image = np.stack(
        [
            p.astype(np.float64) / round(1.0 / intensity_scale_for(p.dtype))
            if np.issubdtype(p.dtype, np.integer)
            else p.astype(np.float64)
            for p in planes.values()
        ]
    )
    if cells is not None:
        cel = _read_labels(Path(cells), "--cells", shape)
        check_cells_match_nuclei(nuc, cel, f"--cells {cells}")
    else:
        missing = [c for c in CHANNELS if c not in planes]
        if missing:
            raise MeasureError(
                f"without --cells, cells are grown from the Cell Painting channels: give all of "
                f"{', '.join(CHANNELS)} (missing {', '.join(missing)}) or a --cells image"
            )
        canonical = np.stack([planes[c].astype(np.float32) for c in CHANNELS])
        cel = segment_cells(canonical, nuc.astype(np.int32)).astype(np.int64)
        if cells_out is not None:
            import tifffile

            with atomic_path(cells_out, suffix=".tif") as tmp:
                tifffile.imwrite(tmp, cel.astype(np.uint32), compression="zlib")
    extractor = ClassicalExtractor(feature_set, channels=tuple(planes))
    table = extractor.site_features(image, nuc, cel, intensity_scale=1.0).reset_index()
    table.insert(1, FEATURE_SET_COLUMN, extractor.feature_set_id)
    with atomic_path(out, suffix=".parquet") as tmp:
        table.to_parquet(tmp, index=False)
    return table
