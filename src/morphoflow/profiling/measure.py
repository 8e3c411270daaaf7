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
dtype (uint16 / 65535, uint8 / 255). A float file is taken as already scaled, as CellProfiler
takes it: its values must lie in [0, 1] and be finite, else it is refused, naming the channel,
the file and the range found.

Every output path is checked before anything is computed (a ``.parquet`` ``--out`` and a
``.tif``/``.tiff`` ``--cells-out`` that are neither folders, nor under a file, nor an input
file, nor each other), and both are written only once everything is computed, each atomically:
a refused or failed run writes nothing.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from morphoflow.atomic import atomic_path, check_output_file, same_file
from morphoflow.profiling.cells import segment_cells
from morphoflow.profiling.classical import (
    FEATURE_SET_COLUMN,
    FEATURE_SETS,
    ClassicalExtractor,
    intensity_scale_for,
)
from morphoflow.screen.constants import CHANNELS
from morphoflow.screen.errors import ImageReadError, ScreenError
from morphoflow.screen.io import check_label_file, read_image

__all__ = ["MeasureError", "check_cells_match_nuclei", "measure_files", "parse_channel_args"]


class MeasureError(ScreenError):
    """Bad input to ``morphoflow measure`` (the message names the argument or file)."""


def parse_channel_args(args: list[str]) -> dict[str, Path]:
    """``["DNA=dna.tif", "ER=er.tif"]`` -> ``{"DNA": Path("dna.tif"), ...}`` (order kept).

    Raises:
        MeasureError: An argument is not ``NAME=FILE``, a name repeats or holds ``_`` or a
            space (feature column names join the channel with ``_``).
    """
    channels: dict[str, Path] = {}
    if not args:
        raise MeasureError("give at least one channel as NAME=FILE (e.g. DNA=dna.tif)")
    for arg in args:
        name, sep, file = arg.partition("=")
        if not sep or not name or not file:
            raise MeasureError(f"channel argument {arg!r} is not NAME=FILE (e.g. DNA=dna.tif)")
        if "_" in name or any(ch.isspace() for ch in name):
            raise MeasureError(
                f"channel name {name!r} ({arg!r}) must not contain '_' or spaces "
                "(it becomes part of the feature column names)"
            )
        if name in channels:
            raise MeasureError(f"channel {name!r} is given twice ({arg!r})")
        channels[name] = Path(file)
    return channels


#: The largest label accepted (the measurements work on int32 labels).
_LABEL_MAX = int(np.iinfo(np.int32).max)


def _check_output(path: Path, arg: str, suffixes: tuple[str, ...], kind: str) -> None:
    """Refuse an output path that cannot be written: wrong suffix, a folder, under a file."""
    try:
        check_output_file(path, arg, suffixes, kind)
    except ValueError as exc:
        raise MeasureError(str(exc)) from None


def _check_outputs_apart(inputs: Mapping[str, Path], outputs: Mapping[str, Path]) -> None:
    """Refuse an output that is an input file, or two outputs that are the same file."""
    for out_what, out_path in outputs.items():
        for in_what, in_path in inputs.items():
            if same_file(out_path, in_path):
                raise MeasureError(
                    f"{out_what} {out_path} is the input file {in_what} {in_path}: "
                    "writing it would overwrite the input; choose another output path"
                )
    (a, pa), *rest = outputs.items()
    for b, pb in rest:
        if same_file(pa, pb):
            raise MeasureError(f"{a} {pa} and {b} {pb} are the same file: give two paths")


def _check_growth_channels(names: list[str]) -> None:
    """Without --cells every Cell Painting channel is needed: name missing and unknown ones."""
    missing = [c for c in CHANNELS if c not in names]
    if not missing:
        return
    unknown = [n for n in names if n not in CHANNELS]
    hints = []
    lowered = {c.lower(): c for c in missing}
    for name in unknown:
        close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
        hint = f" (did you mean {lowered[close[0]]}?)" if close else ""
        hints.append(f"{name}{hint}")
    extra = f"; unknown channel name {', '.join(hints)}" if hints else ""
    raise MeasureError(
        f"without --cells, cells are grown from the Cell Painting channels: give all of "
        f"{', '.join(CHANNELS)} (missing {', '.join(missing)}{extra}) or a --cells image"
    )


def _scaled_plane(plane: np.ndarray, name: str, path: Path) -> np.ndarray:
    """CellProfiler's [0, 1] scaling of one channel; a float file must already be in [0, 1]."""
    if np.issubdtype(plane.dtype, np.integer):
        if plane.dtype.itemsize > 2 or (plane.size and plane.min() < 0):
            # divided by 2^31 - 1, counts become ~1e-6; negative counts do not exist
            raise MeasureError(
                f"channel {name} ({path}) is a {plane.dtype} image"
                + (f" with values down to {plane.min()}" if plane.min() < 0 else "")
                + ": microscope channels are 8- or 16-bit unsigned (uint8 / uint16, divided by "
                "their maximum as CellProfiler does) or float in [0, 1]; convert it (is it a "
                "label image?)"
            )
        # a 12-bit camera's uint16 data stays below 4095 / 65535
        return plane.astype(np.float64) / round(1.0 / intensity_scale_for(plane.dtype))
    values = plane.astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise MeasureError(
            f"channel {name} ({path}) has {int(bad.sum())} non-finite pixels (NaN or inf)"
        )
    if values.size and (values.min() < 0 or values.max() > 1):
        raise MeasureError(
            f"channel {name} ({path}) is a {plane.dtype} image with values in "
            f"[{values.min():g}, {values.max():g}]: float images are taken as CellProfiler "
            "takes them, already scaled to [0, 1]; rescale it, or save raw counts as an "
            "integer image (uint16 / uint8 are divided by their maximum)"
        )
    return values


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
    try:
        check_label_file(labels, f"{what} {path}")
    except ImageReadError as exc:  # negative values, or an intensity image given as labels
        raise MeasureError(str(exc)) from None
    if labels.size and labels.max() > _LABEL_MAX:
        raise MeasureError(
            f"{what} {path} has label {labels.max()}, above the largest accepted "
            f"{_LABEL_MAX} (int32): relabel the objects"
        )
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
    # counts per nucleus by rank, not by label value (labels may be large and sparse)
    rank = np.searchsorted(nuc_ids, nuclei[inside])
    same = np.bincount(rank[cells[inside] == nuclei[inside]], minlength=nuc_ids.size)
    total = np.bincount(rank, minlength=nuc_ids.size)
    bad = nuc_ids[same * 2 <= total]
    if bad.size:
        k = int(bad[0])
        values, counts = np.unique(cells[nuclei == k], return_counts=True)
        found = values[counts.argmax()]
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
        out: Parquet file to write (``.parquet``; not an input file).
        cells: Cell label image, cell k containing nucleus k; None = grow cells.
        cells_out: Where to save the grown cells (uint32 TIFF, ``.tif``/``.tiff``); only
            without ``cells``.
        feature_set: ``"default"`` or ``"extended"``.

    Returns:
        The written table: ``ObjectNumber`` (nucleus label), ``Metadata_FeatureSet``, features.

    Raises:
        MeasureError: Bad arguments or images (the message names the argument or file).
        morphoflow.screen.errors.ImageReadError: A file is missing or unreadable.
    """
    if cells is not None and cells_out is not None:
        raise MeasureError("--cells-out saves grown cells: it cannot be used with --cells")
    if feature_set not in FEATURE_SETS:
        raise MeasureError(f"--set must be one of {', '.join(FEATURE_SETS)}, got {feature_set!r}")
    # every output checked before anything is read or computed
    out = Path(out)
    outputs = {"--out": out}
    if cells_out is not None:
        cells_out = Path(cells_out)
        outputs["--cells-out"] = cells_out
    inputs = {f"channel {name}": Path(path) for name, path in channels.items()}
    inputs["--nuclei"] = Path(nuclei)
    if cells is not None:
        inputs["--cells"] = Path(cells)
    _check_outputs_apart(inputs, outputs)
    _check_output(out, "--out", (".parquet",), "Parquet")
    if cells_out is not None:
        _check_output(cells_out, "--cells-out", (".tif", ".tiff"), "a TIFF")
    if cells is None:
        _check_growth_channels(list(channels))

    planes = {name: _read_plane(Path(path), f"channel {name}") for name, path in channels.items()}
    shapes = {name: p.shape for name, p in planes.items()}
    if len(set(shapes.values())) > 1:
        raise MeasureError(f"the channel images differ in shape: {shapes}")
    shape = next(iter(shapes.values()))
    image = np.stack([_scaled_plane(p, name, Path(channels[name])) for name, p in planes.items()])
    nuc = _read_labels(Path(nuclei), "--nuclei", shape)
    if cells is not None:
        cel = _read_labels(Path(cells), "--cells", shape)
        check_cells_match_nuclei(nuc, cel, f"--cells {cells}")
    # measured as labels 1..N (a sparse label such as 10^9 would size per-label arrays by it);
    # ObjectNumber and --cells-out keep the file's labels
    ids = np.unique(nuc[nuc > 0])
    nuc_n = np.where(nuc > 0, np.searchsorted(ids, nuc) + 1, 0)
    if cells is not None:
        cel_n = np.where(cel > 0, np.searchsorted(ids, cel) + 1, 0)
    else:
        canonical = np.stack([planes[c].astype(np.float32) for c in CHANNELS])
        cel_n = segment_cells(canonical, nuc_n.astype(np.int32)).astype(np.int64)
    extractor = ClassicalExtractor(feature_set, channels=tuple(planes))
    table = extractor.site_features(image, nuc_n, cel_n, intensity_scale=1.0).reset_index()
    table["ObjectNumber"] = ids[table["ObjectNumber"].to_numpy() - 1]
    table.insert(1, FEATURE_SET_COLUMN, extractor.feature_set_id)
    # written only now that everything is computed; both renamed in place once both are written
    with atomic_path(out, suffix=".parquet") as tmp:
        table.to_parquet(tmp, index=False)
        if cells_out is not None:
            import tifffile

            with atomic_path(cells_out, suffix=".tif") as tmp_cells:
                grown = np.where(cel_n > 0, np.concatenate([[0], ids])[cel_n], 0)
                tifffile.imwrite(tmp_cells, grown.astype(np.uint32), compression="zlib")
    return table
