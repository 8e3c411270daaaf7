"""One ONNX exporter for every morphoflow model: export, check against torch, then publish.

:func:`export_onnx_with_parity` writes the graph to a temporary file next to the destination,
runs it with onnxruntime on the caller's check inputs, compares every output with the torch
module's, and renames the file into place only when the largest absolute difference is within
the tolerance. A failed check leaves no file behind.

Neutral module (torch, onnx and onnxruntime only; no kedro/mlflow), like
:mod:`morphoflow.torch_files`: the science packages (``learning``) and ``lifecycle`` both use it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from morphoflow.atomic import atomic_path

#: Default largest absolute difference allowed between onnxruntime and torch outputs.
DEFAULT_TOLERANCE = 1e-4

CheckInput = np.ndarray | Sequence[np.ndarray]
"""One check case: an array for a single-input graph, or one array per graph input."""


def _as_tuple(value: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    if isinstance(value, torch.Tensor):
        return (value,)
    return tuple(value)


def _case_arrays(case: CheckInput, n_inputs: int, index: int) -> list[np.ndarray]:
    arrays = [case] if isinstance(case, np.ndarray) else list(case)
    if len(arrays) != n_inputs:
        raise ValueError(
            f"check_inputs[{index}] holds {len(arrays)} arrays; the graph has {n_inputs} inputs"
        )
    return [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]


def _torch_export(
    module: nn.Module,
    example: tuple[torch.Tensor, ...],
    path: Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int,
) -> None:
    """TorchScript exporter (fast, honours ``opset``); the torch.export one as a fallback."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
            torch.onnx.export(
                module,
                example,
                str(path),
                opset_version=opset,
                dynamo=False,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                do_constant_folding=True,
            )
    except Exception:  # the legacy exporter is gone: use the torch.export-based one
        dims: dict[str, Any] = {}
        shapes = []
        for name in input_names:
            axes = dynamic_axes.get(name, {})
            shapes.append(
                {
                    axis: dims.setdefault(label, torch.export.Dim(label, min=1))
                    for axis, label in axes.items()
                }
            )
        torch.onnx.export(
            module,
            example,
            str(path),
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=tuple(shapes),
            external_data=False,
            input_names=list(input_names),
            output_names=list(output_names),
        )


def _set_metadata(path: Path, metadata: Mapping[str, Any]) -> None:
    import onnx

    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = str(key), str(value)
    onnx.save(model, str(path))


def export_onnx_with_parity(
    module: nn.Module,
    example: torch.Tensor | Sequence[torch.Tensor],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    check_inputs: Sequence[CheckInput],
    tolerance: float = DEFAULT_TOLERANCE,
    opset: int = 17,
    model_name: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> float:
    """Export a torch module to one ONNX file, checked against torch with onnxruntime.

    A CPU float32 copy of ``module`` in eval mode is exported (the caller's module is not
    modified). Every check case runs through both torch and onnxruntime; outputs must have the
    same shapes and differ by at most ``tolerance`` (absolute). Check cases should differ from
    the export example in the dynamic axes (batch size, image size), so that a graph that froze
    a shape fails here rather than in production.

    Args:
        module: The model; its ``forward`` takes the inputs in ``input_names`` order.
        example: Tracing input(s).
        path: Destination ``.onnx`` file (parent folders are created).
        input_names: Graph input names.
        output_names: Graph output names, in ``forward``'s return order.
        dynamic_axes: Graph name -> {axis: symbolic name}, e.g. ``{"x": {0: "batch"}}``.
        check_inputs: Check cases: one array per case for a one-input graph, else a sequence
            of arrays (one per input). At least one.
        tolerance: Largest absolute difference allowed.
        opset: ONNX opset of the TorchScript exporter.
        model_name: Name used in error messages (default: the module's class name).
        metadata: Key -> value strings stored in the ONNX file's ``metadata_props``.

    Returns:
        The largest absolute difference between onnxruntime and torch over all check cases and
        outputs.

    Raises:
        ValueError: No check input, a check case that does not match the inputs, an output
            shape that differs from torch, or a difference above ``tolerance`` (the message
            names the model and the difference). The file is not written.
    """
    import onnxruntime as ort

    name = model_name or type(module).__name__
    if not check_inputs:
        raise ValueError(f"check_inputs is empty: {name} needs at least one parity check case")
    if not float(tolerance) >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    cases = [_case_arrays(c, len(input_names), i) for i, c in enumerate(check_inputs)]
    exported = copy.deepcopy(module).cpu().float().eval()
    example_inputs = tuple(t.detach().cpu().float() for t in _as_tuple(example))
    path = Path(path)
    with atomic_path(path, suffix=".onnx") as tmp:
        with torch.no_grad():
            _torch_export(
                exported, example_inputs, tmp, input_names, output_names, dynamic_axes, opset
            )
        if metadata:
            _set_metadata(tmp, metadata)
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        diffs: list[float] = []
        for index, arrays in enumerate(cases):
            with torch.no_grad():
                expected = _as_tuple(exported(*(torch.from_numpy(a) for a in arrays)))
            got = session.run(list(output_names), dict(zip(input_names, arrays, strict=True)))
            for out_name, want, have in zip(output_names, expected, got, strict=True):
                want_np = want.numpy()
                if have.shape != want_np.shape:
                    raise ValueError(
                        f"ONNX export of {name}: output {out_name!r} has shape {have.shape} for "
                        f"check case {index}, torch gives {want_np.shape}"
                    )
                diffs.append(float(np.max(np.abs(have.astype(np.float64) - want_np))))
        diff = float(np.max(diffs))  # NaN propagates
        if not diff <= float(tolerance):  # also catches NaN
            raise ValueError(
                f"ONNX export of {name} differs from torch by max abs diff {diff:.3g} "
                f"(> tolerance {tolerance:g}); {path} was not written"
            )
    return diff
