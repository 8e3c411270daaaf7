"""The nucleus U-Net exported to ONNX, run with onnxruntime through the same tiling as torch.

The ONNX graph (see :func:`morphoflow.lifecycle.export.export_unet_onnx`) maps ``image``
(N, 1, H, W) float32, H and W multiples of 16, to ``probabilities`` (N, 3, H, W) (softmax
included). :class:`OnnxUNet` is a drop-in ``predict`` function for
:func:`morphoflow.segmentation.segmenter.segment_nuclei`; Triton's ``nuclei_tta`` model uses the
same :func:`~morphoflow.segmentation.tiling.predict_tiled` with the ONNX model served by Triton.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from morphoflow.onnx_session import open_onnx_session
from morphoflow.segmentation.tiling import predict_tiled

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
N_CLASSES = 3
MODEL_SUFFIXES = (".onnx", ".pt")
"""File types of a nucleus U-Net: ONNX (onnxruntime) or a morphoflow torch file."""
DEFAULT_MULTIPLE = 16
"""Spatial sizes must be multiples of this (4 poolings); recorded as ONNX metadata ``multiple``."""


def model_multiple(metadata: dict[str, str]) -> int:
    """The ``multiple`` recorded in an exported U-Net's ONNX metadata (16 when absent)."""
    return int(metadata.get("multiple", DEFAULT_MULTIPLE))


class OnnxUNet:
    """``predict`` function of an ONNX nucleus U-Net: normalised batch -> probabilities.

    Args:
        path: ``.onnx`` file with input ``image`` and output ``probabilities``.
        batch_size: Images (or tiles) per onnxruntime call.
        tile: Images larger than this on a side are predicted in overlapping tiles.
        overlap: Overlap of neighbouring tiles.
        threads: onnxruntime intra-op threads (0 = its default).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The graph lacks the ``image`` input or ``probabilities`` output.
    """

    def __init__(
        self,
        path: str | Path,
        batch_size: int = 8,
        tile: int = 512,
        overlap: int = 64,
        threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        self.session = open_onnx_session(self.path, "ONNX segmentation model", options)
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if INPUT_NAME not in inputs or OUTPUT_NAME not in outputs:
            raise ValueError(
                f"{self.path} must have input {INPUT_NAME!r} and output {OUTPUT_NAME!r} "
                f"(has inputs {inputs}, outputs {outputs})"
            )
        self.multiple = model_multiple(self.session.get_modelmeta().custom_metadata_map)
        self.batch_size, self.tile, self.overlap = int(batch_size), int(tile), int(overlap)

    def forward(self, chunk: np.ndarray) -> np.ndarray:
        """The graph on one padded chunk (n, 1, h, w) -> (n, 3, h, w)."""
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: chunk})[0]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 1:
            raise ValueError(f"batch must be (N, 1, H, W), got shape {batch.shape}")
        return predict_tiled(
            self.forward, batch, N_CLASSES, self.multiple, self.batch_size, self.tile, self.overlap
        )


def load_predictor(path: str | Path | None, batch_size: int = 8):
    """A ``predict`` function for a U-Net file: ``.onnx`` -> :class:`OnnxUNet`, else torch.

    Args:
        path: ``.onnx`` or ``.pt`` file; None = the shipped torch U-Net.
        batch_size: Images (or tiles) per model call.
    """
    if path is not None and Path(path).suffix == ".onnx":
        return OnnxUNet(path, batch_size=batch_size)
    from functools import partial

    from morphoflow.segmentation.unet import load_unet, predict_probabilities

    model, _ = load_unet(path)
    return partial(predict_probabilities, model, batch_size=batch_size)
