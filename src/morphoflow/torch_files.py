"""Shared helpers for morphoflow's torch model files and devices (no kedro/mlflow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_payload(path: str | Path, file_format: str, what: str) -> dict[str, Any]:
    """Read a morphoflow model file (a dict with a ``format`` key) with ``weights_only=True``.

    Args:
        path: The file.
        file_format: Expected ``format`` value, e.g. ``"morphoflow-unet/1"``.
        what: Model kind for messages, e.g. ``"U-Net"``.

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: Not a readable torch file, or not of ``file_format``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} model file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"path {path} is not a readable torch file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ValueError(f"path {path} is not a morphoflow {what} file (format {file_format})")
    return payload


def save_payload(path: str | Path, payload: dict[str, Any]) -> Path:
    """``torch.save`` through a temporary file in the same folder, then rename (atomic).

    Nothing is left behind when saving fails.
    """
    from morphoflow.atomic import atomic_path

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)
