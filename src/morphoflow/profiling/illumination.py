"""Illumination correction (DeepProfiler ``prepare`` style) and optional 8-bit compression.

Per plate and channel, the illumination function is the mean of the plate's images after
downscaling, median-filtered, upsampled back and normalised to mean 1; corrected images are
divided by it. The 8-bit compression (optional, lossy) stretches each channel between per-plate
percentiles and rounds to uint8. The default path of the profiling pipeline is lossless
(illumination correction only, float32).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from morphoflow.screen.constants import CHANNELS
from morphoflow.screen.io import read_site


def illumination_function(
    images: Iterable[np.ndarray], downscale: int = 4, median_size: int = 21
) -> np.ndarray:
    """Illumination function of one plate from its sites.

    Args:
        images: Sites of one plate, each (C, H, W) (streamed; only a running sum is kept).
        downscale: Block-mean factor applied before averaging (speed, and noise suppression).
        median_size: Median filter size in downscaled pixels (odd, >= 1).

    Returns:
        Float32 (C, H, W) with per-channel mean 1 (divide images by it).

    Raises:
        ValueError: No image, images of different shapes, or bad sizes.
    """
    if downscale < 1 or median_size < 1:
        raise ValueError("downscale and median_size must be >= 1")
    total: np.ndarray | None = None
    shape: tuple[int, ...] | None = None
    count = 0
    for image in images:
        image = np.asarray(image, dtype=np.float64)
        if shape is None:
            shape = image.shape
        elif image.shape != shape:
            raise ValueError(f"images of one plate differ in shape: {image.shape} vs {shape}")
        c, h, w = image.shape
        hh, ww = h // downscale * downscale, w // downscale * downscale
        small = (
            image[:, :hh, :ww]
            .reshape(c, hh // downscale, downscale, ww // downscale, downscale)
            .mean(axis=(2, 4))
        )
        total = small if total is None else total + small
        count += 1
    if total is None or shape is None:
        raise ValueError("illumination_function needs at least one image")
    mean = total / count
    smooth = np.stack(
        [ndi.median_filter(plane, size=median_size, mode="nearest") for plane in mean]
    )
    zoom = (1, shape[1] / smooth.shape[1], shape[2] / smooth.shape[2])
    full = ndi.zoom(smooth, zoom, order=1)[:, : shape[1], : shape[2]]
    full = np.maximum(full, 1e-6)
    full /= full.mean(axis=(1, 2), keepdims=True)
    return full.astype(np.float32)


def correct(image: np.ndarray, illum: np.ndarray | None) -> np.ndarray:
    """Divide a (C, H, W) site by its plate's illumination function (float32)."""
    image = np.asarray(image, dtype=np.float32)
    if illum is None:
        return image
    if illum.shape != image.shape:
        raise ValueError(f"illumination function shape {illum.shape} != image shape {image.shape}")
    return image / illum


def compress_8bit(image: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Stretch each channel between ``low`` and ``high`` (per channel) and round to uint8."""
    low = np.asarray(low, np.float32)[:, None, None]
    high = np.asarray(high, np.float32)[:, None, None]
    scaled = (np.asarray(image, np.float32) - low) / np.maximum(high - low, 1e-6)
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def plate_illumination(
    table, root: str | Path, downscale: int = 4, median_size: int = 21
) -> np.ndarray:
    """Illumination function of the plate whose sites are the rows of ``table``."""
    root = Path(root)
    return illumination_function(
        (read_site(row, root=root, channels=CHANNELS) for row in table.to_dict("records")),
        downscale=downscale,
        median_size=median_size,
    )


def plate_percentiles(
    table,
    root: str | Path,
    illum: np.ndarray | None,
    low: float = 0.1,
    high: float = 99.9,
    max_sites: int = 16,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (low, high) intensity percentiles of a plate's corrected images, from up to
    ``max_sites`` evenly spaced sites (the stretch of :func:`compress_8bit`)."""
    root = Path(root)
    rows = table.to_dict("records")
    step = max(1, len(rows) // max_sites)
    stack = np.stack([correct(read_site(r, root=root), illum) for r in rows[::step][:max_sites]])
    values = stack.transpose(1, 0, 2, 3).reshape(stack.shape[1], -1)
    return np.percentile(values, low, axis=1), np.percentile(values, high, axis=1)
