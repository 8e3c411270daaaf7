"""Triton python-backend model: run this version's ``model.onnx`` with onnxruntime (CPU target).

Requests queued together by Triton's dynamic batcher are run as one onnxruntime call when
their shapes agree. Inputs and outputs are those of the ONNX graph (see ``config.pbtxt``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / str(args["model_version"])
        path = version_dir / params.get("onnx_file", "model.onnx")
        options = ort.SessionOptions()
        threads = int(params.get("intra_op_threads", "0") or 0)
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _arrays(self, request) -> dict[str, np.ndarray]:
        arrays = {}
        for name in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            arrays[name] = np.ascontiguousarray(tensor.as_numpy(), dtype=np.float32)
        return arrays

    def _respond(self, results: list[np.ndarray]):
        tensors = [
            pb_utils.Tensor(n, np.ascontiguousarray(r))
            for n, r in zip(self.outputs, results, strict=True)
        ]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def execute(self, requests: list) -> list:
        arrays = [self._arrays(r) for r in requests]
        shapes = {tuple(a[n].shape[1:] for n in self.inputs) for a in arrays}
        if len(arrays) > 1 and len(shapes) == 1:
            sizes = [len(a[self.inputs[0]]) for a in arrays]
            feed = {n: np.concatenate([a[n] for a in arrays]) for n in self.inputs}
            try:
                results = self.session.run(self.outputs, feed)
            except Exception:  # answer request by request below, each with its own error
                results = None
            if results is not None:
                bounds = np.cumsum([0, *sizes])
                return [
                    self._respond([r[lo:hi] for r in results])
                    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
                ]
        responses = []
        for feed in arrays:
            try:
                responses.append(self._respond(self.session.run(self.outputs, feed)))
            except Exception as exc:  # one bad request must not fail the others
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(f"onnxruntime: {exc}"))
                )
        return responses
