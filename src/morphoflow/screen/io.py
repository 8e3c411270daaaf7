"""Reading microscope images: single-channel TIFF/PNG files and multi-channel sites.

Microscope TIFFs come uncompressed or compressed (LZW, deflate, zstd, JPEG, ...), in 8, 12 or
16 bit; :func:`read_image` reads them all through tifffile + imagecodecs. 12-bit data stored in
16-bit containers is returned unchanged (no rescaling): intensity scaling is the job of the
feature extractors and of illumination correction, never of the reader.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from morphoflow.atomic import atomic_path
from morphoflow.screen.constants import CHANNELS
from morphoflow.screen.errors import ImageReadError

_TIFF_SUFFIXES = {".tif", ".tiff"}


def read_image(path: str | Path) -> np.ndarray:
    """Read one 2D (or multi-page / multi-channel) image file.

    Args:
        path: A TIFF (any common compression, 8/12/16/32 bit) or PNG file.

    Returns:
        The pixel array as stored (``(H, W)`` or ``(C, H, W)``), dtype unchanged.

    Raises:
        ImageReadError: The file does not exist, is truncated or corrupt, or is not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image file not found: {path}")
    try:
        if path.suffix.lower() in _TIFF_SUFFIXES:
            import tifffile

            array = tifffile.imread(path)
        else:
            import skimage.io

            array = skimage.io.imread(path)
    except Exception as exc:  # tifffile/imagecodecs raise many types for corrupt data
        raise ImageReadError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    array = np.asarray(array)
    if array.ndim < 2 or array.size == 0:
        raise ImageReadError(f"image {path} has no pixels (shape {array.shape})")
    return array


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
