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
    # one float32 copy scaled in place: (x - low) * (2 / span) - 1 per crop channel, with
    # factor and offset 0 for a constant channel (5 passes over memory instead of 9 with
    # temporaries; the factor form differs from 2 (x - low) / span - 1 by at most 1 ulp)
    out = np.array(crops, dtype=np.float32, copy=True)
    low = out.min(axis=(-2, -1), keepdims=True)
    span = out.max(axis=(-2, -1), keepdims=True) - low
    varies = span > 0
    factor = np.divide(2.0, span, out=np.zeros_like(span), where=varies)
    out -= low
    out *= factor
    out -= varies.astype(np.float32)
    np.minimum(out, 1.0, out=out)  # rounding may land 1 ulp above 1
    return out


__all__ = ["BLOCK6A_CHANNELS", "scale_crops"]
