"""Annotation assist: label images <-> ImageJ/Fiji ROI sets, and contour suggestions at points.

ImageJ ROI format (``roifile``, the format of ImageJ's ``RoiEncoder``/``RoiDecoder``; a ROI set
is a ``.zip`` of ``<name>.roi`` files, what Fiji's ROI Manager saves and opens). Coordinates
are ImageJ's: x to the right, y down, in pixels, the pixel (row r, column c) covering the
square [c, c + 1) x [r, r + 1); a polygon covers the pixels whose centres lie inside it.

Export (:func:`labels_to_rois`): each object's outer boundary, traced along pixel edges (so the
vertices are pixel corners; objects 8-connected), becomes one ``TRACED`` polygon ROI named
``label_<n>``. Import (:func:`rois_to_labels`): each polygon is filled (pixel centres inside,
even-odd rule). Hence:

- a label image of simply connected, non-overlapping objects comes back identical, labels
  included;
- an object with a hole is exported by its outer boundary: it comes back with the hole
  filled, except hole pixels that belong to another object (where ROIs overlap, the smaller
  ROI, by polygon area, wins; equal areas: the later ROI);
- an object in several 8-connected parts is exported as one ROI per part, named
  ``label_<n>_part_<k>`` (k = 1.. in raster order of the parts' first pixels); on import the
  parts are merged back into label n, so it comes back identical;
- a ROI set whose names do not all follow ``label_<n>[_part_<k>]`` (e.g. drawn in Fiji) is
  numbered 1..N in file order.

Napari opens the label TIFFs morphoflow writes (uint16/uint32, 0 = background) as a labels
layer: ``napari.Viewer().open("x_labels.tif", layer_type="labels")``.
"""

from __future__ import annotations

import math
import re
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from morphoflow.atomic import atomic_path
from morphoflow.segmentation.metrics import check_label_image

_NAME = re.compile(r"^label_(\d+)(?:_part_(\d+))?$")
_AREA_TYPES = ("POLYGON", "FREEHAND", "TRACED", "RECT", "OVAL")

# Outgoing pixel-edge directions (dx, dy), y down; the object is on the right of travel.
_E, _S, _W, _N = (1, 0), (0, 1), (-1, 0), (0, -1)
_LEFT = {_E: _N, _N: _W, _W: _S, _S: _E}


class RoiFileError(ValueError):
    """A ROI set or points file cannot be used (the message names the file)."""


# ----------------------------------------------------------------------------- tracing


def trace_outline(mask: np.ndarray) -> np.ndarray:
    """Outer boundary of the 8-connected component holding ``mask``'s first pixel.

    The boundary runs along pixel edges, clockwise on screen (y down), starting at the top-left
    corner of the first foreground pixel in raster order; at a vertex where two foreground
    pixels touch only diagonally it turns towards the diagonal pixel (8-connectivity). Only
    corners are returned (collinear vertices dropped). Filling the polygon (pixel centres
    inside) gives the component with its holes filled.

    Args:
        mask: 2-D boolean array (H, W) with at least one True pixel.

    Returns:
        int64 array (n, 2) of x, y vertex coordinates (pixel corners), not closed (the first
        vertex is not repeated), n >= 4.

    Raises:
        ValueError: ``mask`` is not 2-D or is empty.

    Example:
        >>> trace_outline(np.ones((2, 3), bool)).tolist()
        [[0, 0], [3, 0], [3, 2], [0, 2]]
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H, W), got shape {m.shape}")
    if not m.any():
        raise ValueError("mask holds no pixel")
    p = np.pad(m, 1)  # p[y + 1, x + 1] is pixel (row y, column x)

    def fg(y: int, x: int) -> bool:
        return bool(p[y + 1, x + 1])

    def outgoing(x: int, y: int) -> list[tuple[int, int]]:
        ul, ur, ll, lr = fg(y - 1, x - 1), fg(y - 1, x), fg(y, x - 1), fg(y, x)
        out = []
        if lr and not ur:
            out.append(_E)
        if ll and not lr:
            out.append(_S)
        if ul and not ll:
            out.append(_W)
        if ur and not ul:
            out.append(_N)
        return out

    rows, cols = np.nonzero(m)
    start = (int(cols[0]), int(rows[0]))
    x, y = start
    heading = _E
    vertices = [start]
    limit = 4 * int(m.sum()) + 4
    for _ in range(limit):
        x, y = x + heading[0], y + heading[1]
        if (x, y) == start:
            break
        options = outgoing(x, y)
        new = options[0] if len(options) == 1 else _LEFT[heading]
        if new != heading:
            vertices.append((x, y))
        heading = new
    else:  # pragma: no cover - a boundary is closed by construction
        raise RuntimeError("outline tracing did not close")
    return np.asarray(vertices, dtype=np.int64)


def fill_polygon(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of ``shape`` whose centres lie inside a polygon (even-odd rule), as ImageJ fills.

    Args:
        points: Array (n, 2) of x, y vertices in pixels (ImageJ coordinates; closed or not).
        shape: (H, W) of the image.

    Returns:
        Boolean mask (H, W); a centre exactly on a left edge counts as inside, on a right
        edge as outside. Parts outside the image are clipped.

    Raises:
        ValueError: ``points`` is not (n, 2) or holds non-finite values.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (n, 2) x, y, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points hold NaN or infinite values")
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), dtype=bool)
    if len(pts) < 3:
        return mask
    x0, y0 = pts[:, 0], pts[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    r_lo = max(0, math.ceil(float(pts[:, 1].min()) - 0.5))
    r_hi = min(h - 1, math.floor(float(pts[:, 1].max()) - 0.5))
    for r in range(r_lo, r_hi + 1):
        yc = r + 0.5
        crossing = ((y0 <= yc) & (y1 > yc)) | ((y1 <= yc) & (y0 > yc))
        if not crossing.any():
            continue
        xs = x0[crossing] + (yc - y0[crossing]) * (x1[crossing] - x0[crossing]) / (
            y1[crossing] - y0[crossing]
        )
        xs.sort()
        for a, b in zip(xs[0::2], xs[1::2], strict=False):
            c0 = max(0, math.ceil(a - 0.5))
            c1 = min(w, math.ceil(b - 0.5))
            if c1 > c0:
                mask[r, c0:c1] ^= True
    return mask


# ----------------------------------------------------------------------------- export


@dataclass(frozen=True)
class Outline:
    """One exported polygon: object ``label``, part ``part`` (0 when the object is whole)."""

    label: int
    part: int
    points: np.ndarray

    @property
    def name(self) -> str:
        return f"label_{self.label}" if self.part == 0 else f"label_{self.label}_part_{self.part}"


def _object_boxes(
    lab: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, list[tuple[slice, slice] | None]]:
    """Objects indexed 1..n: (label of each index, index image, bounding box of each index).

    ``ndi.find_objects`` on the labels themselves would allocate one slot per label value up to
    the largest (a label of 4e9: MemoryError); the index image has n + 1 values.
    """
    values, compact = np.unique(lab, return_inverse=True)
    compact = compact.reshape(lab.shape)
    if values[0] != 0:  # no background pixel: index 0 is an object, shift it to 1
        compact = compact + 1
        values = np.concatenate([[0], values])
    return values, compact, ndi.find_objects(compact)


def label_outlines(labels: np.ndarray) -> list[Outline]:
    """Outer outlines of every object of a label image, by label then part.

    Args:
        labels: Instance labels (H, W), non-negative integers, 0 = background.

    Returns:
        One :class:`Outline` per 8-connected part of each object (``part`` 0 for an object in
        one part, else 1..k in raster order of the parts' first pixels).

    Raises:
        ValueError: ``labels`` is not a 2-D non-negative integer image.
    """
    lab = check_label_image(labels, "labels")
    if lab.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W), got shape {lab.shape}")
    values, compact, boxes = _object_boxes(lab)
    outlines: list[Outline] = []
    for index, box in enumerate(boxes, start=1):
        if box is None:
            continue
        crop = compact[box] == index
        parts, n = ndi.label(crop, structure=np.ones((3, 3), dtype=bool))
        offset = np.array([box[1].start, box[0].start], dtype=np.int64)
        for k in range(1, n + 1):
            points = trace_outline(parts == k) + offset
            outlines.append(Outline(int(values[index]), 0 if n == 1 else k, points))
    return outlines


def outlines_to_rois(outlines: Sequence[Outline]) -> list:
    """ImageJ ``TRACED`` polygon ROIs (``roifile.ImagejRoi``) named by :attr:`Outline.name`."""
    import roifile

    rois = []
    for outline in outlines:
        roi = roifile.ImagejRoi.frompoints(outline.points, name=outline.name)
        roi.roitype = roifile.ROI_TYPE.TRACED
        rois.append(roi)
    return rois


def write_roi_set(path: str | Path, rois: Sequence, names: Sequence[str] | None = None) -> Path:
    """Write ROIs as an ImageJ ROI set (``.zip``), atomically; an empty set is an empty zip.

    Raises:
        ValueError: ``path`` does not end in ``.zip`` or the names are not unique.
    """
    import roifile

    path = Path(path)
    if path.suffix.lower() != ".zip":
        raise ValueError(f"a ROI set is a .zip file, got {path}")
    names = [r.name for r in rois] if names is None else list(names)
    if len(set(names)) != len(names):
        raise ValueError(f"ROI names in {path} must be unique")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".zip") as tmp:
        if rois:
            roifile.roiwrite(tmp, list(rois), name=names, mode="w")
        else:
            with zipfile.ZipFile(tmp, "w"):
                pass
    return path


def export_roi_set(labels: np.ndarray, path: str | Path) -> int:
    """Write a label image as an ImageJ/Fiji ROI set (see the module doc for the rules).

    Args:
        labels: Instance labels (H, W), non-negative integers, 0 = background.
        path: The ``.zip`` to write (atomically).

    Returns:
        The number of ROIs written (objects, plus one per extra part).

    Raises:
        ValueError: ``labels`` is not a label image or ``path`` is not a ``.zip``.
    """
    outlines = label_outlines(labels)
    write_roi_set(path, outlines_to_rois(outlines))
    return len(outlines)


# ----------------------------------------------------------------------------- import


def read_roi_set(path: str | Path) -> list:
    """Read an ImageJ ROI set (``.zip``) or a single ``.roi`` file.

    Returns:
        The ``roifile.ImagejRoi`` objects in file order.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RoiFileError: The file is not a ROI set (corrupt zip, not ImageJ ROIs), naming it.
    """
    import roifile

    path = Path(path)
    if path.is_dir():
        raise RoiFileError(f"{path} is a folder: give a ROI set (.zip) or one .roi file")
    if not path.is_file():
        raise FileNotFoundError(f"ROI set not found: {path}")
    try:
        if path.suffix.lower() == ".zip":
            with zipfile.ZipFile(path) as zf:
                bad = zf.testzip()
                entries = [n for n in zf.namelist() if not n.endswith("/")]
            if bad is not None:
                raise RoiFileError(f"{path}: corrupt zip entry {bad!r}")
            if not entries:
                return []
        rois = roifile.roiread(path)
    except RoiFileError:
        raise
    except Exception as exc:
        raise RoiFileError(f"{path} is not an ImageJ ROI set: {type(exc).__name__}: {exc}") from exc
    return [rois] if isinstance(rois, roifile.ImagejRoi) else list(rois)


def rois_to_labels(rois: Sequence, shape: tuple[int, int], source: str = "ROI set") -> np.ndarray:
    """Fill ImageJ area ROIs into a label image (see the module doc for the rules).

    Polygon, freehand, traced, rectangle, oval and composite (ShapeRoi: its subpaths, even-odd)
    ROIs are filled by pixel centres. Labels: taken from names ``label_<n>[_part_<k>]`` when
    every ROI is named so, else 1..N in order. Where ROIs overlap, the smaller (polygon area)
    wins; equal areas: the later ROI. A ROI that covers no pixel centre leaves no trace.

    Args:
        rois: ``roifile.ImagejRoi`` objects.
        shape: (H, W) of the label image.
        source: Name of the ROI set, for error messages.

    Returns:
        uint32 labels (H, W), 0 = background.

    Raises:
        RoiFileError: A ROI is not an area (line, point, angle), naming it and ``source``; or
            every ROI lies wholly outside ``shape`` (the size of another image was given).
        ValueError: ``shape`` is not two positive ints.

    Warns:
        UserWarning: Some, not all, ROIs lie wholly outside ``shape`` (they are left out),
            reach beyond its edges (they are cut), or leave no pixel in the label image
            (hidden under overlapping ROIs, or covering no pixel centre).
    """
    if len(shape) != 2 or any(int(s) < 1 for s in shape):
        raise ValueError(f"shape must be (H, W) with H, W >= 1, got {tuple(shape)}")
    shape = (int(shape[0]), int(shape[1]))
    names = [str(getattr(r, "name", "") or "") for r in rois]
    matches = [_NAME.match(n) for n in names]
    by_name = bool(rois) and all(matches)
    drawn = []
    outside: list[str] = []  # ROIs wholly outside the image
    outside_index: set[int] = set()
    cut: list[str] = []  # ROIs reaching more than 1 px beyond an edge
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)  # (x, y) extent of all ROIs
    for i, roi in enumerate(rois):
        polygons = _polygons(roi, names[i] or f"#{i + 1}", source)
        points = np.concatenate(polygons) if polygons else np.zeros((0, 2))
        box, mask = _fill_in_box(polygons, points, shape)  # the ROI's box only: memory ~ its size
        area = sum(abs(_shoelace(poly)) for poly in polygons)
        if len(points):
            lo, hi = np.minimum(lo, points.min(axis=0)), np.maximum(hi, points.max(axis=0))
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0)
            if x1 <= 0 or y1 <= 0 or x0 >= shape[1] or y0 >= shape[0]:
                outside.append(names[i] or f"#{i + 1}")
                outside_index.add(i)
            elif min(x0, y0) < -1 or x1 > shape[1] + 1 or y1 > shape[0] + 1:
                cut.append(names[i] or f"#{i + 1}")
        label = int(matches[i].group(1)) if by_name else i + 1  # type: ignore[union-attr]
        if not 1 <= label <= np.iinfo(np.uint32).max:
            raise RoiFileError(
                f"{source}: ROI {names[i]!r} names label {label}, outside 1..{np.iinfo(np.uint32).max}"
                " (0 is background; labels are uint32)"
            )
        drawn.append((area, i, label, box, mask))
    where = (
        f"the {shape[0]}x{shape[1]} (HxW) image; the ROIs span x {lo[0]:g}..{hi[0]:g}, "
        f"y {lo[1]:g}..{hi[1]:g} pixels"
    )
    if outside and len(outside) == len(rois):
        raise RoiFileError(
            f"{source}: all {len(rois)} ROIs lie outside {where}: give the size of the image "
            "they were drawn on"
        )
    for found, how in ((outside, "lie outside"), (cut, "reach beyond the edges of")):
        if found:
            warnings.warn(
                f"{source}: {len(found)} of {len(rois)} ROIs {how} {where}"
                + ("; left out: " if found is outside else "; cut at the edge: ")
                + ", ".join(repr(n) for n in found[:5])
                + (", ..." if len(found) > 5 else ""),
                stacklevel=2,
            )
    dtype = np.uint32
    labels = np.zeros(shape, dtype=dtype)
    for _, _, label, box, mask in sorted(drawn, key=lambda d: (-d[0], d[1])):
        labels[box][mask] = label
    hidden = [
        names[i] or f"#{i + 1}"
        for _, i, label, box, mask in drawn
        if i not in outside_index and not (labels[box][mask] == label).any()
    ]
    if hidden:
        warnings.warn(
            f"{source}: {len(hidden)} of {len(rois)} ROIs leave no pixel in the label image "
            "(covered by a smaller or later ROI that overlaps it, e.g. the same outline twice, "
            "or covering no pixel centre): "
            + ", ".join(repr(n) for n in hidden[:5])
            + (", ..." if len(hidden) > 5 else ""),
            stacklevel=2,
        )
    return labels


def _fill_in_box(
    polygons: Sequence[np.ndarray], points: np.ndarray, shape: tuple[int, int]
) -> tuple[tuple[slice, slice], np.ndarray]:
    """:func:`fill_polygon` of one ROI's polygons (even-odd), within their bounding box.

    ``points`` are all the polygons' vertices, (n, 2) x, y (they give the box).

    Returns:
        The box (row and column slices of ``shape``) and the mask inside it; the same pixels as
        filling the whole image, since the polygons are moved by whole pixels.
    """
    if not len(points):
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), dtype=bool)
    r0 = min(max(0, math.floor(float(points[:, 1].min()))), shape[0])
    r1 = max(min(shape[0], math.ceil(float(points[:, 1].max())) + 1), r0)
    c0 = min(max(0, math.floor(float(points[:, 0].min()))), shape[1])
    c1 = max(min(shape[1], math.ceil(float(points[:, 0].max())) + 1), c0)
    mask = np.zeros((r1 - r0, c1 - c0), dtype=bool)
    for poly in polygons:
        mask ^= fill_polygon(np.asarray(poly, dtype=np.float64) - (c0, r0), mask.shape)
    return (slice(r0, r1), slice(c0, c1)), mask


def import_roi_set(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read an ImageJ ROI set and fill it into a label image (:func:`rois_to_labels`).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RoiFileError: Not a ROI set, or a ROI that is not an area (the file named).

    Warns:
        UserWarning: The set holds no ROIs; and as :func:`rois_to_labels`.
    """
    rois = read_roi_set(path)
    if not rois:
        warnings.warn(f"{path} holds no ROIs: the label image is all background", stacklevel=2)
    return rois_to_labels(rois, shape, source=str(path))


def _polygons(roi, name: str, source: str) -> list[np.ndarray]:
    import roifile

    kind = roifile.ROI_TYPE(roi.roitype).name if roi.roitype in set(roifile.ROI_TYPE) else "?"
    if roi.multi_coordinates is not None:
        return [np.asarray(c, dtype=np.float64) for c in roi.coordinates(multi=True)]
    if kind not in _AREA_TYPES:
        raise RoiFileError(
            f"{source}: ROI {name!r} is a {kind} ROI, not an area; only polygon, freehand, "
            "traced, rectangle, oval and composite ROIs become objects"
        )
    if kind == "OVAL":
        return [_oval(roi)]
    return [np.asarray(roi.coordinates(), dtype=np.float64)]


def _oval(roi) -> np.ndarray:
    """An oval ROI's bounding-box ellipse as a fine polygon (centres inside the ellipse)."""
    cx, cy = (roi.left + roi.right) / 2.0, (roi.top + roi.bottom) / 2.0
    rx, ry = (roi.right - roi.left) / 2.0, (roi.bottom - roi.top) / 2.0
    t = np.linspace(0.0, 2.0 * np.pi, 8 * max(8, int(rx + ry)), endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _shoelace(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


# ----------------------------------------------------------------------------- suggestions

SUGGESTION_COLUMNS = ["id", "x", "y", "label", "area", "n_vertices", "roi", "reason"]
"""Columns of the suggestions table (``reason`` empty when an outline was found)."""


def read_points(path: str | Path) -> pd.DataFrame:
    """Read a points CSV: columns ``x``, ``y`` (pixels, ImageJ coordinates), optional ``id``.

    The separator (comma, semicolon, tab) is detected, and column names are matched without
    regard to case when there is no exact match (Fiji's Results tables have ``X``, ``Y``).

    Returns:
        DataFrame with ``id`` (str; the 1-based row number when there is no id column), ``x``,
        ``y`` (float64).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RoiFileError: Missing columns, no points, non-numeric or non-finite coordinates (the
            CSV line named), empty or duplicate ids, an id with a path separator; the file is
            named.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"points file not found: {path}")
    try:  # the separator is sniffed: comma, semicolon or tab (Fiji's Results tables)
        table = pd.read_csv(
            path, dtype=str, keep_default_na=False, sep=None, engine="python", encoding="utf-8-sig"
        )
    except Exception as exc:
        raise RoiFileError(f"{path}: cannot read the points CSV: {exc}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    for name in ("x", "y", "id"):  # Fiji writes X, Y
        upper = [c for c in table.columns if c.lower() == name]
        if name not in table.columns and len(upper) == 1:
            table = table.rename(columns={upper[0]: name})
    missing = [c for c in ("x", "y") if c not in table.columns]
    if missing:
        raise RoiFileError(
            f"{path} must have columns x and y (pixels); missing {missing}, found "
            f"{list(table.columns)}"
        )
    if table.empty:
        raise RoiFileError(f"{path} has no points: only the header row")
    out = pd.DataFrame(index=table.index)
    if "id" in table.columns:
        out["id"] = table["id"].str.strip()
    else:
        out["id"] = [str(i + 1) for i in range(len(table))]
    for axis in ("x", "y"):
        values = pd.to_numeric(table[axis].str.strip(), errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise RoiFileError(
                f"{path} line {row + 2}: {axis} must be a finite number, got "
                f"{table[axis].iloc[row]!r}"
            )
        out[axis] = values.astype(np.float64)
    ids = out["id"]
    if (ids == "").any():
        raise RoiFileError(f"{path} line {int(np.flatnonzero(ids == '')[0]) + 2}: empty id")
    slashed = ids.str.contains(r"[/\\]").to_numpy()
    if slashed.any():
        row = int(np.flatnonzero(slashed)[0])
        raise RoiFileError(
            f"{path} line {row + 2}: id {ids.iloc[row]!r} contains / or \\ (ids name ROIs in a zip)"
        )
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise RoiFileError(f"{path}: duplicate ids {duplicated[:5]}")
    return out.reset_index(drop=True)


def suggest_outlines(
    labels: np.ndarray, points: pd.DataFrame, probabilities: np.ndarray | None = None
) -> tuple[pd.DataFrame, list]:
    """The object outline under each point of a segmentation, for annotation.

    A point (x, y) falls in the pixel (row floor(y), column floor(x)). When that pixel holds
    object n, the point's suggestion is n's outer outline (:func:`trace_outline`; for an object
    in several parts, the part under the point). Otherwise the entry is empty with a
    ``reason``: ``outside the image``; ``background`` (no nucleus found there); or, with
    ``probabilities``, ``no object kept`` when the model calls the pixel nucleus but no object
    was kept there (the object filters or the threshold left it out).

    Args:
        labels: Instance labels (H, W) of the image (e.g. from ``segment_nuclei``).
        points: Table from :func:`read_points` (``id``, ``x``, ``y``).
        probabilities: Optional class probabilities (3, H, W) (background, interior,
            boundary) behind ``labels``, e.g. ``Segmentation.probabilities``.

    Returns:
        The table (:data:`SUGGESTION_COLUMNS`, one row per point, in order; ``label`` 0,
        ``area``/``n_vertices`` 0 and ``roi`` empty for an empty entry) and the polygons
        (one per point: int64 (n, 2) x, y arrays, or None for an empty entry).
    """
    lab = check_label_image(labels, "labels")
    h, w = lab.shape
    _, compact, boxes = _object_boxes(lab)  # each outline is traced in its object's box
    rows, polygons = [], []
    for point in points.itertuples(index=False):
        x, y = float(point.x), float(point.y)
        c, r = math.floor(x), math.floor(y)
        entry = {"id": point.id, "x": x, "y": y, "label": 0, "area": 0, "n_vertices": 0}
        if not (0 <= r < h and 0 <= c < w):
            rows.append({**entry, "roi": "", "reason": f"outside the image ({h}x{w} px, HxW)"})
            polygons.append(None)
            continue
        label = int(lab[r, c])
        if label == 0:
            nucleus = None if probabilities is None else 1.0 - float(probabilities[0, r, c])
            reason = (
                f"no object kept: the model calls this pixel nucleus (p = {nucleus:.2f}), but "
                "the object filters (--min-diameter / --max-diameter) or --threshold left it out"
                if nucleus is not None and nucleus >= 0.5
                else "background: no nucleus found there"
            )
            rows.append({**entry, "roi": "", "reason": reason})
            polygons.append(None)
            continue
        index = int(compact[r, c])
        box = boxes[index - 1]
        parts, _ = ndi.label(compact[box] == index, structure=np.ones((3, 3), dtype=bool))
        part = parts == parts[r - box[0].start, c - box[1].start]
        outline = trace_outline(part) + np.array([box[1].start, box[0].start], dtype=np.int64)
        rows.append(
            {
                **entry,
                "label": label,
                "area": int(part.sum()),
                "n_vertices": len(outline),
                "roi": str(point.id),
                "reason": "",
            }
        )
        polygons.append(outline)
    return pd.DataFrame(rows, columns=SUGGESTION_COLUMNS), polygons
