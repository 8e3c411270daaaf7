"""The ImageNet baseline featurizer as one torch module (imports torch; load it lazily).

:class:`ImageNetBlock6a` maps scaled crops (N, C, S, S) to (N, C x 672) features: each channel
is resized to ``image_size`` (bilinear), replicated to 3 (RGB), passed through EfficientNet-B0
up to the block6a expansion, and averaged spatially; the channels' vectors are concatenated in
channel order. :class:`morphoflow.profiling.cnn.ImageNetFeaturizer` runs it batch by batch and
:func:`morphoflow.lifecycle.export.export_imagenet_featurizer_onnx` exports it, so the profiling
step and the ONNX model compute the same function.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from morphoflow.learning.model import Block6aFeatures


class ImageNetBlock6a(nn.Module):
    """Per-channel EfficientNet-B0 block6a features of scaled crops.

    Args:
        model: A torchvision EfficientNet-B0 (3-channel input); its modules are shared, not
            copied.
        image_size: Side the crops are resized to (224: ImageNet's input size).

    Raises:
        ValueError: ``model`` is not an EfficientNet-B0 or ``image_size`` < 32.
    """

    def __init__(self, model: torchvision.models.EfficientNet, image_size: int = 224) -> None:
        super().__init__()
        if int(image_size) < 32:
            raise ValueError(f"image_size must be >= 32, got {image_size!r}")
        self.block6a = Block6aFeatures(model)
        self.image_size = int(image_size)

    def channel_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, S, S) one scaled channel -> (N, 672)."""
        x = F.interpolate(
            x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
        )
        return self.block6a(x.expand(-1, 3, -1, -1))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, C, S, S) crops scaled to [-1, 1] per channel -> (N, C x 672) features."""
        return torch.cat(
            [self.channel_features(crops[:, c : c + 1]) for c in range(crops.shape[1])], dim=1
        )
