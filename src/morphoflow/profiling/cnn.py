"""CNN feature extractors for single-cell crops: the ImageNet baseline and trained 5-channel
models (ONNX).

Both scale every crop channel to [-1, 1] by its own min and max (explicitly, here, not hidden in
a loader): ``x = 2 * (x - min) / (max - min) - 1`` (a constant channel becomes 0).

- ``imagenet``: torchvision EfficientNet-B0 with ImageNet weights read from a local file (nothing
  is downloaded); each channel is replicated to 3, resized 128 -> 224, and described by the
  spatial mean of the block6a expansion activation (672 values); the 5 channels' vectors are
  concatenated (5 x 672 = 3,360 features, ``ImageNet_<channel>_<i>``).
- ``cnn``: an ONNX model with input ``crops`` (N, 5, S, S) float32 and output ``features``
  (N, D) (``CNN_<i>``), e.g. the weakly supervised Cell Painting CNN; run with onnxruntime.

Inference is batched and runs under ``torch.inference_mode`` (or onnxruntime).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from morphoflow.backbone import BLOCK6A_CHANNELS, scale_crops
from morphoflow.screen.constants import CHANNELS

__all__ = ["BLOCK6A_CHANNELS", "ImageNetFeaturizer", "OnnxFeaturizer", "scale_crops"]


class ImageNetFeaturizer:
    """EfficientNet-B0 block6a features per channel (the ImageNet baseline).

    The computation is :class:`morphoflow.backbone.efficientnet.ImageNetBlock6a` (also what the
    ONNX export of the baseline runs), applied batch by batch to :func:`scale_crops` output.
    """

    def __init__(
        self,
        weights_path: str | Path | None,
        batch_size: int = 64,
        device: str = "cpu",
        image_size: int = 224,
    ) -> None:
        import torch

        from morphoflow.backbone.efficientnet import ImageNetBlock6a, efficientnet_b0

        if weights_path is None:
            raise ValueError(
                "features.weights_path must name a local ImageNet EfficientNet-B0 state-dict file "
                "for the imagenet extractor (no weights are downloaded)"
            )
        self.device = torch.device(device)
        self.module = ImageNetBlock6a(efficientnet_b0(weights_path), image_size).to(self.device)
        self.module.eval()
        self.batch_size = int(batch_size)
        self.image_size = int(image_size)
        self.columns = [f"ImageNet_{c}_{i}" for c in CHANNELS for i in range(BLOCK6A_CHANNELS)]

    def __call__(self, crops: np.ndarray, masks: np.ndarray | None = None) -> pd.DataFrame:
        import torch

        scaled = scale_crops(crops)
        n, c = scaled.shape[:2]
        out = np.zeros((n, c * BLOCK6A_CHANNELS), np.float32)
        with torch.inference_mode():
            for ch in range(c):
                for start in range(0, n, self.batch_size):
                    x = torch.from_numpy(scaled[start : start + self.batch_size, ch : ch + 1]).to(
                        self.device
                    )
                    vec = self.module.channel_features(x)
                    out[
                        start : start + len(x), ch * BLOCK6A_CHANNELS : (ch + 1) * BLOCK6A_CHANNELS
                    ] = vec.cpu().numpy()
        return pd.DataFrame(out, columns=self.columns)


class OnnxFeaturizer:
    """Features of a trained 5-channel model exported to ONNX (input ``crops``, output ``features``)."""

    def __init__(self, model_path: str | Path, batch_size: int = 128) -> None:
        from morphoflow.onnx_session import open_onnx_session

        path = Path(model_path)
        self.session = open_onnx_session(path, "CNN model file")
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        if "crops" not in inputs or "features" not in outputs:
            raise ValueError(
                f"{path} must have an input named 'crops' and an output named 'features' "
                f"(has inputs {sorted(inputs)}, outputs {sorted(outputs)})"
            )
        self.batch_size = int(batch_size)
        self.columns: list[str] | None = None
        self.path = path
        self.input_shape = list(inputs["crops"].shape)

    def __call__(self, crops: np.ndarray, masks: np.ndarray | None = None) -> pd.DataFrame:
        expected = self.input_shape[1:]
        for axis, (want, got) in enumerate(zip(expected, crops.shape[1:], strict=False), start=1):
            if isinstance(want, int) and want != got:
                raise ValueError(
                    f"{self.path} expects crops of shape (N, {', '.join(map(str, expected))}); "
                    f"got {tuple(crops.shape)} (axis {axis}): set crops.size to the model's crop size"
                )
        scaled = scale_crops(crops)
        chunks = [
            self.session.run(["features"], {"crops": scaled[start : start + self.batch_size]})[0]
            for start in range(0, len(scaled), self.batch_size)
        ]
        values = np.concatenate(chunks).astype(np.float32)
        if self.columns is None:
            self.columns = [f"CNN_{i}" for i in range(values.shape[1])]
        return pd.DataFrame(values, columns=self.columns)
