"""A compact U-Net for nuclei: 3-class per-pixel probabilities (background, interior, boundary).

Inputs are normalised single-channel images (``postprocess.normalize_image``), any size: the
image is reflect-padded to a multiple of ``2**depth`` and, above ``tile`` pixels per side,
predicted in overlapping tiles whose probabilities are blended. Models are saved as one file
holding the architecture, the weights (float16 by default, a few MB) and free-form metadata.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from morphoflow.segmentation.tiling import predict_tiled
from morphoflow.torch_files import load_payload, save_payload

#: The nucleus U-Net shipped with the package (trained on wide-domain synthetic nuclei).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "assets" / "nuclei_unet.pt"

_FORMAT = "morphoflow-unet/1"


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of :class:`NucleusUNet`.

    Attributes:
        in_channels: Image channels (1: the DNA / Hoechst / DAPI channel).
        n_classes: Output classes (3: background, interior, boundary).
        base: Feature maps at full resolution; doubled at every level.
        depth: Number of 2x down-samplings.
    """

    in_channels: int = 1
    n_classes: int = 3
    base: int = 12
    depth: int = 4

    def __post_init__(self) -> None:
        for name in ("in_channels", "n_classes", "base", "depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive int, got {value!r}")


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class NucleusUNet(nn.Module):
    """U-Net returning per-pixel class logits; H and W must be multiples of ``2**depth``."""

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        c = self.config
        widths = [c.base * 2**i for i in range(c.depth + 1)]
        self.down = nn.ModuleList([_block(c.in_channels, widths[0])])
        self.down.extend(_block(widths[i], widths[i + 1]) for i in range(c.depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
            for i in reversed(range(c.depth))
        )
        self.merge = nn.ModuleList(
            _block(2 * widths[i], widths[i]) for i in reversed(range(c.depth))
        )
        self.head = nn.Conv2d(widths[0], c.n_classes, 1)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2**self.config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, block in enumerate(self.down):
            x = block(x if index == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def predict_probabilities(
    model: NucleusUNet,
    batch: np.ndarray,
    batch_size: int = 8,
    tile: int = 512,
    overlap: int = 64,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Class probabilities for a batch of normalised images (torch; see :func:`predict_tiled`).

    Args:
        model: The U-Net (put in eval mode here).
        batch: Float array (N, C, H, W), values roughly in [0, 1].
        batch_size: Images (or tiles) per forward pass.
        tile: Images larger than this on a side are predicted in tiles of this size.
        overlap: Overlap of neighbouring tiles (their probabilities are averaged).
        device: Where to run (default: the model's device).

    Returns:
        Float32 array (N, n_classes, H, W) of softmax probabilities.

    Raises:
        ValueError: ``batch`` is not 4-D with the model's number of channels.
    """
    batch = np.asarray(batch, dtype=np.float32)
    if batch.ndim != 4 or batch.shape[1] != model.config.in_channels:
        raise ValueError(
            f"batch must be (N, {model.config.in_channels}, H, W), got shape {batch.shape}"
        )
    model.eval()
    device = torch.device(device) if device is not None else next(model.parameters()).device

    def forward(chunk: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            logits = model(torch.from_numpy(chunk).to(device)).float()
            return torch.softmax(logits, dim=1).cpu().numpy()

    return predict_tiled(
        forward, batch, model.config.n_classes, model.multiple, batch_size, tile, overlap
    )


def save_unet(
    model: NucleusUNet, path: str | Path, metadata: dict[str, Any] | None = None, half: bool = True
) -> Path:
    """Save architecture, weights and metadata to one file (atomically).

    Args:
        model: The trained U-Net.
        path: Destination ``.pt`` file.
        metadata: JSON-like facts to keep with the weights (training command, scores, ...).
        half: Store floating-point weights as float16 (halves the size; loaded back as float32).

    Returns:
        The written path.
    """
    path = Path(path)
    state = {
        k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
        for k, v in model.state_dict().items()
    }
    # JSON round trip: metadata must load with torch.load(weights_only=True) (plain types only)
    plain = json.loads(json.dumps(dict(metadata or {}), default=str))
    payload = {
        "format": _FORMAT,
        "config": asdict(model.config),
        "state_dict": state,
        "metadata": plain,
    }
    return save_payload(path, payload)


def load_unet(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> tuple[NucleusUNet, dict[str, Any]]:
    """Load a U-Net saved by :func:`save_unet` (default: the shipped nucleus model).

    Returns:
        The model in eval mode (float32) and its metadata.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: The file is not a morphoflow U-Net.
    """
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    payload = load_payload(path, _FORMAT, "U-Net")
    model = NucleusUNet(UNetConfig(**payload["config"]))
    model.load_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
    )
    model.eval().to(device)
    return model, dict(payload.get("metadata", {}))
