"""Cell bodies from nuclei: seeded watershed on the cytoplasmic stains (CellProfiler
IdentifySecondaryObjects-like), so that every nucleus k gets a cell k."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from morphoflow.screen.constants import CHANNELS

#: Channels whose sum outlines the cell body (actin/membrane, ER, RNA).
CELL_CHANNELS: tuple[str, ...] = ("AGP", "ER", "RNA")


def segment_cells(
    image: np.ndarray,
    nuclei: np.ndarray,
    max_distance: float | None = None,
    smoothing: float = 1.5,
) -> np.ndarray:
    """Cell labels grown from nucleus labels over the cytoplasm stains.

    The cell signal is the mean of the percentile-normalised AGP, ER and RNA channels, smoothed;
    foreground = signal above half its Otsu threshold (or any nucleus pixel); cells are the
    watershed of the negated signal from the nuclei, restricted to the foreground and to
    ``max_distance`` pixels from a nucleus (default: 3 x the median nucleus equivalent radius).

    Args:
        image: Site (5, H, W) in canonical channel order.
        nuclei: Nucleus labels (H, W), 0 = background.
        max_distance: Largest distance of a cell pixel from its nucleus, pixels.
        smoothing: Gaussian sigma applied to the cell signal.

    Returns:
        Cell labels (H, W), int32, with cell k containing nucleus k.
    """
    image = np.asarray(image)
    nuclei = np.asarray(nuclei)
    if image.ndim != 3 or image.shape[0] != len(CHANNELS) or image.shape[1:] != nuclei.shape:
        raise ValueError(
            f"image must be ({len(CHANNELS)}, H, W) matching nuclei {nuclei.shape}, got {image.shape}"
        )
    n = int(nuclei.max(initial=0))
    if n == 0:
        return np.zeros(nuclei.shape, np.int32)
    planes = []
    for name in CELL_CHANNELS:
        plane = image[CHANNELS.index(name)].astype(np.float32)
        low, high = np.percentile(plane, (1, 99.5))
        planes.append(np.clip((plane - low) / max(high - low, 1e-6), 0, 1))
    signal = ndi.gaussian_filter(np.mean(planes, axis=0), smoothing)
    try:
        threshold = 0.5 * threshold_otsu(signal)
    except ValueError:  # constant image
        threshold = np.inf
    foreground = (signal > threshold) | (nuclei > 0)
    if max_distance is None:
        areas = np.bincount(nuclei.ravel())[1:]
        radius = float(np.sqrt(np.median(areas[areas > 0]) / np.pi)) if np.any(areas) else 10.0
        max_distance = 3.0 * radius
    distance = ndi.distance_transform_edt(nuclei == 0)
    foreground &= distance <= max_distance
    # Nuclei are the markers; their own pixels get the lowest value so that every nucleus starts
    # flooding at once (skimage pops marker pixels at their image value: a dim-cytoplasm nucleus
    # would otherwise be surrounded by a brighter neighbour's flood before it starts).
    landscape = -signal
    landscape[nuclei > 0] = landscape.min() - 1.0
    cells = watershed(landscape, markers=nuclei.astype(np.int32), mask=foreground)
    return cells.astype(np.int32)
