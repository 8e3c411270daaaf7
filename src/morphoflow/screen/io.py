"""Reading microscope images: single-channel TIFF/PNG files and multi-channel sites.

Microscope TIFFs come uncompressed or compressed (LZW, deflate, zstd, JPEG, ...), in 8, 12 or
16 bit; :func:`read_image` reads them all through tifffile + imagecodecs. 12-bit data stored in
16-bit containers is returned unchanged (no rescaling): intensity scaling is the job of the
feature extractors and of illumination correction, never of the reader.

Every image with channels is read by :func:`read_image`, which returns channels first,
``(C, H, W)``, taking the axis order from the file's metadata (tifffile series axes: ImageJ
hyperstacks, OME, samples per pixel) and guessing from the sizes only when the file has none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from morphoflow.atomic import atomic_path
from morphoflow.screen.constants import CHANNELS
from morphoflow.screen.errors import ImageReadError

_TIFF_SUFFIXES = {".tif", ".tiff"}


MAX_GUESSED_CHANNELS = 16
"""Largest channel count the reader guesses from array sizes alone (files without axis
metadata); a larger axis needs metadata (ImageJ ``axes``, OME, or TIFF samples per pixel)."""

_CHANNEL_AXES = frozenset("CS")
"""tifffile axis codes that name channels: ``C`` (ImageJ / OME channel), ``S`` (TIFF samples per
pixel, e.g. an RGB or a contiguous multi-sample page)."""

_UNNAMED_AXES = frozenset("QI")
"""tifffile axis codes that say nothing about what an axis is: ``Q`` (tifffile's own "shaped"
metadata records a numpy shape, not axis names) and ``I`` (a plain sequence of pages)."""


def read_image(path: str | Path) -> np.ndarray:
    """Read one image file as a 2-D plane or a channels-first ``(C, H, W)`` stack.

    The axis order comes from the file's own metadata wherever it has some:

    - TIFF: tifffile's axes of the first series (``series[0].axes``), which reflect ImageJ
      hyperstack metadata (``CYX``, ``ZCYX``, ...), OME-XML and the TIFF samples-per-pixel tag
      (``YXS`` for a contiguous multi-sample page, ``SYX`` for planar samples). ``C`` and ``S``
      are channel axes; ``Y`` and ``X`` the plane.
    - PNG and other formats read by scikit-image: ``(H, W)`` or ``(H, W, C)`` by definition of
      the format.

    Axes of length 1 (a single Z plane, time point or channel) are dropped. Only when the file
    names no channel axis (a plain page sequence, tifffile's ``Q``/``I`` axes, e.g. an array
    written by ``tifffile.imwrite`` without ``photometric``/``metadata``) is the channel axis
    guessed from the sizes: the first or last axis when it is the only one of the two with at
    most :data:`MAX_GUESSED_CHANNELS` elements and shorter than both other axes.

    Pixel values and dtype are returned as stored (no rescaling).

    Args:
        path: A TIFF (any common compression, 8/12/16/32 bit) or PNG file.

    Returns:
        ``(H, W)`` for a single-channel image, else ``(C, H, W)`` with channels first; the
        file's dtype.

    Raises:
        ImageReadError: The file does not exist, is truncated or corrupt, is not an image, holds
            more than one non-channel axis longer than 1 (a Z stack, a time series), or its
            channel axis cannot be told (shape and axes are named in the message).

    Example:
        >>> import tempfile, tifffile
        >>> site = np.zeros((64, 64, 5), np.uint16)  # channels last: tifffile axes "YXS"
        >>> with tempfile.TemporaryDirectory() as d:
        ...     tifffile.imwrite(f"{d}/s.tif", site, photometric="minisblack", planarconfig="contig")
        ...     read_image(f"{d}/s.tif").shape
        (5, 64, 64)
    """
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image file")
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                array = np.asarray(series.asarray())
                axes = str(series.axes)
        else:
            import skimage.io

            array = np.asarray(skimage.io.imread(path))
            axes = "YXS"[: array.ndim] if array.ndim <= 3 else ""
    except Exception as exc:  # tifffile/imagecodecs raise many types for corrupt data
        text = str(exc).strip()
        first = text.splitlines()[0] if text else ""  # imageio appends install advice
        raise ImageReadError(
            f"cannot read image {path} (corrupt, truncated, or not a TIFF/PNG file): "
            f"{type(exc).__name__}: {first}"
        ) from exc
    if array.ndim < 2 or array.size == 0:
        raise ImageReadError(f"image {path} has no pixels (shape {array.shape})")
    return channels_first(array, axes, path)


def channels_first(array: np.ndarray, axes: str, source: str | Path) -> np.ndarray:
    """Put an image array with named axes into ``(H, W)`` or ``(C, H, W)`` order.

    Args:
        array: The pixels, one axis per letter of ``axes``.
        axes: tifffile axis codes (``"YX"``, ``"CYX"``, ``"YXS"``, ``"QYX"``, ``"TZCYX"``, ...);
            an empty string or one of another length means "unknown" (the sizes decide, as
            described in :func:`read_image`).
        source: The file (or other origin) named in error messages.

    Returns:
        ``(H, W)`` when there is at most one channel, else ``(C, H, W)``; no copy when the
        order is already right.

    Raises:
        ImageReadError: More than one non-channel axis longer than 1, or the channel axis cannot
            be told.
    """
    arr = np.asarray(array)
    axes = axes.upper()
    if len(axes) != arr.ndim or "Y" not in axes or "X" not in axes:
        axes = "?" * arr.ndim  # no usable metadata
    keep = [i for i, a in enumerate(axes) if arr.shape[i] > 1 or a in "YX"]
    if len(keep) < arr.ndim:
        arr = arr.reshape([arr.shape[i] for i in keep])
        axes = "".join(axes[i] for i in keep)
    if "Y" in axes and "X" in axes:
        others = [i for i, a in enumerate(axes) if a not in "YX"]
        named = [axes[i] for i in others if axes[i] not in _UNNAMED_AXES]
        if any(a not in _CHANNEL_AXES for a in named) or len(others) > 1:
            raise ImageReadError(
                f"image {source} has shape {array.shape} with axes {axes!r}: expected one plane "
                "(YX) with at most one channel axis (C or S); split Z stacks and time series "
                "into 2-D files first"
            )
        if not others:
            return arr if axes.index("Y") < axes.index("X") else arr.T
        if named:  # a named channel axis (C or S)
            order = [others[0], axes.index("Y"), axes.index("X")]
            return np.transpose(arr, order) if order != [0, 1, 2] else arr
    # No axis says what it is: guess from the sizes.
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3:
        candidates = [
            k
            for k in (0, 2)
            if arr.shape[k] <= MAX_GUESSED_CHANNELS
            and all(arr.shape[k] < arr.shape[j] for j in range(3) if j != k)
        ]
        if len(candidates) == 1:
            return arr if candidates[0] == 0 else np.moveaxis(arr, 2, 0)
    raise ImageReadError(
        f"cannot tell the channel axis of image {source}: shape {array.shape}, axes "
        f"{axes!r} (no metadata names a channel axis, and no single first or last axis of at "
        f"most {MAX_GUESSED_CHANNELS} elements is shorter than the others); write it with axis "
        "metadata, e.g. tifffile.imwrite(path, data, imagej=True, metadata={'axes': 'CYX'})"
    )


def require_finite(image: np.ndarray, source: str | Path) -> np.ndarray:
    """Refuse an image with NaN or infinite pixels, naming its file.

    Args:
        image: Pixels of any real dtype (integer images always pass).
        source: The file the pixels came from (named in the error).

    Returns:
        ``image`` unchanged.

    Raises:
        ImageReadError: ``image`` holds NaN or +/-inf values (the message gives how many).
    """
    arr = np.asarray(image)
    if np.issubdtype(arr.dtype, np.inexact):
        bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ImageReadError(
                f"image {source} holds {bad} NaN or infinite pixel(s) of {arr.size}; "
                "replace them (e.g. by the background level) before segmenting"
            )
    return image


LABEL_MIXING_LIMIT = 0.75
"""Largest fraction of neighbouring foreground pixel pairs with different values that
:func:`check_label_file` accepts. In an instance label image only pairs across the line where
two objects touch differ (a few percent for touching nuclei or cells, about 0.5 for a dense
field of 2 x 2 pixel objects); in a microscope intensity image nearly every pair differs."""


BINARY_MASK_PARTS = 3
"""Separate parts (8-connected) from which :func:`check_label_file` calls an image holding a
single non-zero value a binary mask (one object in two parts is still accepted)."""


def check_label_file(labels: np.ndarray, source: str | Path) -> np.ndarray:
    """Refuse an integer array read from a file that cannot be an instance label image.

    For label images users hand in (``score-segmentation``, ``export-rois``, ``measure``);
    arrays made in memory are checked by :func:`morphoflow.segmentation.metrics.check_label_image`.
    Three faults are caught: negative values; an intensity image given where labels are
    expected (it is integer too, so the dtype alone does not tell), recognised by how often
    neighbouring foreground pixels carry different values (more than
    :data:`LABEL_MIXING_LIMIT` of the horizontally and vertically adjacent pairs of non-zero
    pixels, over at least 1,000 pairs); and a binary mask (0/1 or 0/255) of several objects,
    which would be read as one object: a single non-zero value in
    :data:`BINARY_MASK_PARTS` or more separate parts.

    Args:
        labels: Integer array, (H, W) (any number of dimensions is checked axis by axis).
        source: The file the array came from (named in the error).

    Returns:
        ``labels`` unchanged.

    Raises:
        ImageReadError: ``labels`` holds negative values, or looks like an intensity image or
            a binary mask.
    """
    arr = np.asarray(labels)
    if arr.size and arr.min() < 0:
        raise ImageReadError(f"label image {source} holds negative values (min {arr.min()})")
    nonzero = arr != 0
    pairs = differ = 0
    for axis in range(arr.ndim):
        a, fg = np.moveaxis(arr, axis, 0), np.moveaxis(nonzero, axis, 0)
        both = fg[1:] & fg[:-1]
        pairs += int(np.count_nonzero(both))
        differ += int(np.count_nonzero(both & (a[1:] != a[:-1])))
    if pairs >= 1000 and differ > LABEL_MIXING_LIMIT * pairs:
        raise ImageReadError(
            f"{source} does not look like a label image: {differ / pairs:.0%} of neighbouring "
            "object pixels carry different values, where an instance label image gives each "
            "object one value (0 = background). Was an intensity image given instead of labels?"
        )
    foreground = arr[nonzero]
    if foreground.size and foreground.min() == foreground.max():  # a single object value
        from scipy import ndimage as ndi

        n_parts = ndi.label(nonzero, structure=np.ones((3,) * arr.ndim, dtype=bool))[1]
        if n_parts >= BINARY_MASK_PARTS:
            raise ImageReadError(
                f"{source} looks like a binary mask, not instance labels: one value "
                f"({foreground[0]}) for {n_parts} separate objects. Number the objects 1..n "
                "first (e.g. skimage.measure.label)"
            )
    return labels


def read_site(
    paths: Mapping[str, str | Path] | Sequence[str | Path],
    root: str | Path | None = None,
    channels: Sequence[str] = CHANNELS,
) -> np.ndarray:
    """Read one multi-channel site into a ``(C, H, W)`` array in canonical channel order.

    Args:
        paths: One file per channel, either a mapping ``channel -> path`` (e.g. a row of the image
            table with ``Path_<channel>`` keys, or plain channel names) or a sequence in
            ``channels`` order.
        root: Folder the paths are relative to (absolute paths are used as they are).
        channels: Channel names, in output order.

    Returns:
        Array of shape ``(len(channels), H, W)`` with the files' common dtype.

    Raises:
        ImageReadError: A file is missing/corrupt, not 2D, or its shape differs from the others.
    """
    resolved: list[Path] = []
    for index, channel in enumerate(channels):
        if isinstance(paths, Mapping):
            value = paths.get(f"Path_{channel}", paths.get(channel))
            if value is None:
                raise ImageReadError(f"no file given for channel {channel!r}")
        else:
            value = paths[index]
        p = Path(value)
        resolved.append(p if root is None or p.is_absolute() else Path(root) / p)

    planes: list[np.ndarray] = []
    for channel, path in zip(channels, resolved, strict=True):
        plane = read_image(path)
        if plane.ndim != 2:
            raise ImageReadError(
                f"channel {channel} file {path} is not a single 2D plane (shape {plane.shape})"
            )
        if planes and plane.shape != planes[0].shape:
            raise ImageReadError(
                f"channel {channel} file {path} has shape {plane.shape}, but channel "
                f"{channels[0]} file {resolved[0]} has shape {planes[0].shape}"
            )
        planes.append(plane)
    dtype = np.result_type(*planes)
    return np.stack(planes).astype(dtype, copy=False)


def write_tiff_atomic(
    path: str | Path, array: np.ndarray, compression: str | None = "zlib"
) -> None:
    """Write a TIFF through a temporary file in the same folder, then rename it into place.

    Args:
        path: Destination file.
        array: Pixels to write.
        compression: tifffile compression name (``None`` for uncompressed).
    """
    import tifffile

    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, array, compression=compression)
