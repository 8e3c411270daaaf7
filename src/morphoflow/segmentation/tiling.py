"""Tiled prediction of a semantic segmentation model with any backend (numpy in, numpy out).

Free of torch so that Triton's python backend (the ``nuclei_tta`` model) and the onnxruntime
path import it without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _pad_to_multiple(batch: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = batch.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
        batch = np.pad(batch, [(0, 0)] * (batch.ndim - 2) + [(0, ph), (0, pw)], mode=mode)
    return batch, (h, w)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step))
    return [*starts, size - tile]


ForwardFn = Callable[[np.ndarray], np.ndarray]
"""(n, C, h, w) float32 chunk, h and w multiples of the model's ``multiple`` -> (n, K, h, w)
softmax probabilities (numpy). A torch module, an onnxruntime session or a Triton model."""


def predict_tiled(
    forward: ForwardFn,
    batch: np.ndarray,
    n_classes: int,
    multiple: int,
    batch_size: int = 8,
    tile: int = 512,
    overlap: int = 64,
) -> np.ndarray:
    """Class probabilities of a batch of normalised images with any backend.

    Pads to a multiple of ``multiple`` (reflect), predicts images larger than ``tile`` in
    overlapping tiles whose probabilities are averaged, and sends at most ``batch_size``
    images (or tiles) per ``forward`` call. This is the one code path of the torch U-Net
    (:func:`morphoflow.segmentation.unet.predict_probabilities`), of its ONNX export (:class:`morphoflow.segmentation.onnx_model.OnnxUNet`)
    and of the ``nuclei_tta`` model served by Triton.

    Args:
        forward: The model on one padded chunk.
        batch: Float array (N, C, H, W), values roughly in [0, 1].
        n_classes: K, the number of output classes.
        multiple: Spatial sizes the model accepts are multiples of this.
        batch_size: Images (or tiles) per ``forward`` call.
        tile: Images larger than this on a side are predicted in tiles of this size.
        overlap: Overlap of neighbouring tiles.

    Returns:
        Float32 array (N, K, H, W).

    Raises:
        ValueError: ``batch`` is not 4-D, bad tiling, or ``forward`` returned a wrong shape.
    """
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim != 4:
        raise ValueError(f"batch must be (N, C, H, W), got shape {batch.shape}")
    if tile % multiple or overlap >= tile:
        raise ValueError(f"tile must be a multiple of {multiple} and > overlap")
    padded, (h, w) = _pad_to_multiple(batch, multiple)
    n, _, hp, wp = padded.shape
    out = np.zeros((n, n_classes, hp, wp), dtype=np.float32)
    weight = np.zeros((1, 1, hp, wp), dtype=np.float32)
    th, tw = min(tile, hp), min(tile, wp)
    windows = [(y, x) for y in _tile_starts(hp, th, overlap) for x in _tile_starts(wp, tw, overlap)]
    for y, x in windows:
        crop = padded[:, :, y : y + th, x : x + tw]
        for start in range(0, n, batch_size):
            chunk = np.ascontiguousarray(crop[start : start + batch_size])
            probs = np.asarray(forward(chunk), dtype=np.float32)
            if probs.shape != (len(chunk), n_classes, th, tw):
                raise ValueError(
                    f"the model returned shape {probs.shape} for a chunk of shape {chunk.shape}; "
                    f"expected ({len(chunk)}, {n_classes}, {th}, {tw})"
                )
            out[start : start + batch_size, :, y : y + th, x : x + tw] += probs
        weight[..., y : y + th, x : x + tw] += 1.0
    out /= weight
    return out[..., :h, :w]
