"""Shared helpers for morphoflow's torch model files and devices (no kedro/mlflow)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def safe_torch_load(path: str | Path, what: str) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with one clear error.

    Every model, weights and checkpoint file morphoflow reads goes through here, so no file is
    ever unpickled beyond tensors and plain values.

    Args:
        path: An existing file.
        what: What the file should be, for the message, e.g. ``"U-Net model"``.

    Returns:
        What the file holds (CPU tensors).

    Raises:
        ValueError: torch cannot load the file safely (corrupt, not a torch file, or holding
            arbitrary objects); the message names the file and never advises
            ``weights_only=False`` (that would run code from the file).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc).strip()
        if isinstance(exc, pickle.UnpicklingError) and "weights_only" in text:
            reason = (
                "it is corrupt, or holds objects other than tensors and plain values, which "
                "morphoflow never unpickles"
            )
        else:
            reason = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        raise ValueError(
            f"{path} is not a readable {what} file (torch.load with weights_only=True failed: "
            f"{reason})"
        ) from exc


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
    payload = safe_torch_load(path, f"{what} model")
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
