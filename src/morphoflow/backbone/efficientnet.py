"""EfficientNet-B0 pieces shared by profiling and learning (imports torch).

- :func:`load_state_dict_file`: the one loader of local weight files (nothing is downloaded).
- :func:`efficientnet_b0`: torchvision's 3-channel EfficientNet-B0, ImageNet weights from a
  local file if given (the ImageNet baseline).
- :func:`build_efficientnet_b0`: the 5-channel WSL classifier (Moshkov et al.; DeepProfiler's
  Cell Painting CNN), optionally initialised from ImageNet weights.
- :class:`Block6aFeatures`: spatial mean of the block6a expansion activation (672 values), the
  Cell Painting CNN's features.
- :class:`ImageNetBlock6a`: the ImageNet baseline as one module (per channel: resize to 224,
  replicate to RGB, block6a features; channels concatenated), what the profiling step runs and
  what :func:`morphoflow.lifecycle.export.export_imagenet_featurizer_onnx` exports.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from morphoflow.backbone import BLOCK6A_CHANNELS
from morphoflow.torch_files import safe_torch_load


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a local torchvision state-dict file (optionally wrapped as ``{"state_dict": ...}``).

    The one weight loader of morphoflow's CNNs; nothing is ever downloaded.

    Args:
        path: A ``torch.save``d state dict.

    Returns:
        The state dict (CPU tensors).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable torch file or holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file not found: {path} (save torchvision's EfficientNet-B0 ImageNet state "
            "dict there; morphoflow never downloads weights)"
        )
    state = safe_torch_load(path, "weights_path (torchvision state dict)")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights_path {path} does not hold a state dict")
    return state


def efficientnet_b0(weights_path: str | Path | None) -> torchvision.models.EfficientNet:
    """torchvision's 3-channel EfficientNet-B0 in eval mode, ImageNet weights from a local file.

    Args:
        weights_path: torchvision ``efficientnet_b0`` ImageNet state-dict file, or None for
            random weights.

    Returns:
        The model (eval mode, CPU).

    Raises:
        FileNotFoundError: ``weights_path`` does not exist.
        ValueError: The file is not an EfficientNet-B0 state dict.
    """
    model = torchvision.models.efficientnet_b0(weights=None)
    if weights_path is not None:
        state = load_state_dict_file(weights_path)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, KeyError) as exc:
            raise ValueError(
                f"weights_path {weights_path} is not a torchvision EfficientNet-B0 state dict: "
                f"{exc}"
            ) from exc
    return model.eval()


def build_efficientnet_b0(
    n_classes: int, in_channels: int = 5, weights_path: str | Path | None = None
) -> torchvision.models.EfficientNet:
    """EfficientNet-B0 for ``in_channels``-channel crops and ``n_classes`` classes.

    With ``weights_path`` (a torchvision ``efficientnet_b0`` ImageNet state dict, optionally
    wrapped as ``{"state_dict": ...}``) every layer but the classifier's last ``Linear`` is
    initialised from it. The first convolution's RGB filters ``W`` (32, 3, 3, 3) are averaged
    over RGB and replicated to every input channel, times ``3 / in_channels``: an image whose
    ``in_channels`` channels all equal a grey image ``g`` then gives exactly the response of the
    ImageNet model to RGB ``(g, g, g)``, so activations keep the scale that the pretrained
    BatchNorm statistics expect (without the factor they would be 5/3 larger). The head is a new
    ``Linear(1280, n_classes)`` (PyTorch's default weight init, zero bias).

    Args:
        n_classes: Number of classes (>= 2).
        in_channels: Image channels (5 for Cell Painting).
        weights_path: Local ImageNet state-dict file, or None for random init.

    Returns:
        The model (train mode, CPU).

    Raises:
        ValueError: Bad ``n_classes``/``in_channels``, or a file that is not an
            EfficientNet-B0 state dict.
        FileNotFoundError: ``weights_path`` does not exist.
    """
    if int(n_classes) < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes!r}")
    if int(in_channels) < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
    model = torchvision.models.efficientnet_b0(weights=None)
    if weights_path is not None:
        path = Path(weights_path)
        state = load_state_dict_file(path)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, KeyError) as exc:
            raise ValueError(
                f"weights_path {path} is not a torchvision EfficientNet-B0 state dict: {exc}"
            ) from exc
    old = model.features[0][0]
    conv = nn.Conv2d(
        int(in_channels),
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=False,
    )
    if weights_path is None:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out")  # torchvision's EfficientNet init
    else:
        with torch.no_grad():
            mean = old.weight.mean(dim=1, keepdim=True) * (3.0 / int(in_channels))
            conv.weight.copy_(mean.expand(-1, int(in_channels), -1, -1))
    model.features[0][0] = conv
    head = model.classifier[1]
    model.classifier[1] = nn.Linear(head.in_features, int(n_classes))
    # nn.Linear's default init (bound ~ 1/sqrt(1280)), not torchvision's 1/sqrt(n_classes):
    # meant for 1000 classes, the latter gives logits of std ~6 and an initial loss of ~5 with
    # a few classes.
    nn.init.zeros_(model.classifier[1].bias)
    return model


class Block6aFeatures(nn.Module):
    """Spatial mean of the block6a expansion activation: (N, C, S, S) -> (N, 672).

    Runs ``features[0:6]`` then ``features[6][0].block[0]`` (1x1 expansion conv + BN + SiLU)
    only. Shares (does not copy) the modules of ``model``; use it in eval mode.

    Args:
        model: A torchvision EfficientNet-B0 (e.g. from :func:`build_efficientnet_b0`).

    Raises:
        ValueError: ``model`` is not an EfficientNet-B0 (block6a expansion != 672 channels).
    """

    def __init__(self, model: torchvision.models.EfficientNet) -> None:
        super().__init__()
        try:
            expand = model.features[6][0].block[0]
            channels = expand[0].out_channels
        except (AttributeError, IndexError, TypeError) as exc:
            raise ValueError(f"model is not a torchvision EfficientNet: {exc}") from exc
        if channels != BLOCK6A_CHANNELS:
            raise ValueError(
                f"model's block6a expansion has {channels} channels, EfficientNet-B0 has "
                f"{BLOCK6A_CHANNELS}"
            )
        self.stages = model.features[:6]
        self.expand = expand

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.expand(self.stages(crops)).mean(dim=(2, 3))


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
