"""The CNN backbone shared by profiling and learning: EfficientNet-B0 and its block6a features.

One home, below both :mod:`morphoflow.profiling` (the ImageNet baseline featurizer) and
:mod:`morphoflow.learning` (the weakly supervised Cell Painting CNN), so neither imports the
other. This package level is numpy-only (crop scaling, feature size); the torch modules are in
:mod:`morphoflow.backbone.efficientnet` (import it lazily where torch is optional).

Every CNN featurizer in morphoflow feeds the network crops scaled by :func:`scale_crops`
(explicitly, never hidden in a loader).

Example:
    >>> import numpy as np
    >>> scale_crops(np.array([[[[0.0, 5.0], [10.0, 10.0]]]])).tolist()
    [[[[-1.0, 0.0], [1.0, 1.0]]]]
"""

from __future__ import annotations

import numpy as np

#: Channels of EfficientNet-B0's block6a expansion: the size of a CNN feature vector.
BLOCK6A_CHANNELS = 672


def scale_crops(crops: np.ndarray) -> np.ndarray:
    """Scale each crop channel to [-1, 1] by its own min and max.

    ``x = 2 * (x - min) / (max - min) - 1`` per crop and channel; a constant channel becomes 0.

    Args:
        crops: Array (..., H, W) of any real dtype, e.g. (N, 5, S, S) crops.

    Returns:
        float32 array of the same shape, values in [-1, 1].
    """
    crops = np.asarray(crops, dtype=np.float32)
    low = crops.min(axis=(-2, -1), keepdims=True)
    high = crops.max(axis=(-2, -1), keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    scaled = 2.0 * (crops - low) / span - 1.0
    return np.where(high > low, scaled, 0.0).astype(np.float32)


__all__ = ["BLOCK6A_CHANNELS", "scale_crops"]
