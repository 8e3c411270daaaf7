"""ONNX export of the morphology (MO) activity model, parity-checked against torch.

The graph is :class:`~morphoflow.activity.models.ProfileClassifier` with its standardisation:
input ``profiles`` (N, F) float32 raw treatment profiles (the feature columns named in the
metadata ``features``, in that order), output ``probabilities`` (N, A) float32, one column per
assay named in the metadata ``assays``. The batch axis is dynamic. The exporter is
:func:`morphoflow.onnx_export.export_onnx_with_parity` (shared by every morphoflow model): a
difference above the tolerance raises and writes no file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morphoflow.activity.models import ProfileClassifier
from morphoflow.onnx_export import DEFAULT_TOLERANCE, export_onnx_with_parity

ACTIVITY_INPUT = "profiles"
ACTIVITY_OUTPUT = "probabilities"
MODEL_KIND = "activity"


def export_activity_onnx(
    model: ProfileClassifier,
    profiles: np.ndarray,
    path: str | Path,
    features: Sequence[str],
    assays: Sequence[str],
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = 17,
) -> dict[str, Any]:
    """Export a profile classifier to ONNX, checked on real profiles.

    Args:
        model: The trained classifier.
        profiles: (n, F) float profiles used as parity inputs (first rows, two batch sizes).
        path: Destination ``.onnx`` (written atomically, only when parity holds).
        features: Feature names in input order (stored in the ONNX metadata).
        assays: Assay names in output order (stored in the ONNX metadata).
        tolerance: Largest absolute probability difference allowed.
        opset: ONNX opset.

    Returns:
        ``{"path", "model_kind", "parity_max_abs_diff", "parity_tolerance", "opset", "input",
        "output", "n_features", "n_assays"}``.

    Raises:
        ValueError: Shapes do not match the model, or parity fails (no file written).
    """
    x = np.asarray(profiles, dtype=np.float32)
    n_features = int(model.mean.shape[0])
    if x.ndim != 2 or x.shape[1] != n_features or len(features) != n_features:
        raise ValueError(
            f"profiles must be (n, {n_features}) with {n_features} feature names; got "
            f"{x.shape} and {len(features)} names"
        )
    if len(x) < 2:
        raise ValueError("profiles: at least 2 rows are needed for the parity check")
    checks = [x[: min(len(x), 7)], x[-1:]]
    diff = export_onnx_with_parity(
        model,
        torch.from_numpy(x[:2]),
        path,
        input_names=[ACTIVITY_INPUT],
        output_names=[ACTIVITY_OUTPUT],
        dynamic_axes={ACTIVITY_INPUT: {0: "batch"}, ACTIVITY_OUTPUT: {0: "batch"}},
        check_inputs=checks,
        tolerance=tolerance,
        opset=opset,
        model_name="activity MO classifier",
        metadata={
            "model_kind": MODEL_KIND,
            "features": ",".join(features),
            "assays": ",".join(assays),
        },
    )
    return {
        "path": str(path),
        "model_kind": MODEL_KIND,
        "parity_max_abs_diff": diff,
        "parity_tolerance": float(tolerance),
        "opset": int(opset),
        "input": ACTIVITY_INPUT,
        "output": ACTIVITY_OUTPUT,
        "n_features": n_features,
        "n_assays": len(assays),
    }
