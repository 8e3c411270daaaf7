"""Opening ONNX model files with onnxruntime, with one clear error for a file it cannot load."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_onnx_session(path: str | Path, what: str, options: Any = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU for ``path``.

    Args:
        path: The ``.onnx`` file.
        what: What the file should be, for messages, e.g. ``"ONNX segmentation model"``.
        options: Optional ``onnxruntime.SessionOptions``.

    Returns:
        The session (``CPUExecutionProvider``).

    Raises:
        FileNotFoundError: No file at ``path``.
        ValueError: onnxruntime cannot load it (corrupt, truncated, not ONNX, or using
            operators this onnxruntime lacks); the message names the file and onnxruntime's
            first line of explanation.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own pybind11 exception types
        text = str(exc).strip()
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ValueError(f"{path} is not a loadable {what}: {first}") from exc
