"""Triton python-backend (BLS) model ``nuclei_tta``: nucleus segmentation with TTA.

Takes a raw 2-D image (any bit depth, sent as float32), normalises it, sends the dihedral views
as one batch to the segmentation model served beside it (``segmentation_model`` parameter,
normally ``nuclei_unet``), de-augments, merges and post-processes. All of that is
:func:`morphoflow.segmentation.segmenter.segment_nuclei` with
:func:`morphoflow.segmentation.tiling.predict_tiled` — the code ``morphoflow segment`` runs
offline — with the model call replaced by a BLS request.

Optional inputs (each one value): ``views`` (INT32, a count n in 1..8: the first n views of
``VIEW_ORDER``), ``threshold`` (FP32), the CellProfiler-style object filters
``min_diameter`` / ``max_diameter`` (FP64, equivalent diameter in pixels) and
``discard_border_objects`` (BOOL), ``merge`` (BYTES, the TTA merge), and ``diameter`` (FP64, rescaling: the typical nucleus
diameter in pixels). A missing input takes its value from
:data:`morphoflow.segmentation.settings.CLI_DEFAULTS` (8 views, 0.5, min 4.5 px, no maximum,
border objects kept, no rescaling), and the values are validated by
:class:`~morphoflow.segmentation.settings.SegmenterSettings` (the rule of every other entry
point).
Outputs: ``probabilities`` (3, H, W), ``labels`` (H, W) uint32, ``agreement`` (n objects).
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from morphoflow.segmentation.onnx_model import INPUT_NAME, N_CLASSES, OUTPUT_NAME
from morphoflow.segmentation.segmenter import MODEL_DIAMETER
from morphoflow.segmentation.settings import CLI_DEFAULTS, SegmenterSettings, make_segmenter
from morphoflow.segmentation.tiling import predict_tiled


def _text(value) -> str:
    """A BYTES tensor element (bytes, or str) as text."""
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


class BadRequest(ValueError):
    """The request cannot be served (reported to the client, the server keeps serving)."""


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.segmentation_model = params.get("segmentation_model", "nuclei_unet")
        self.max_side = int(params.get("max_image_side", "4096"))
        self.tile = int(params.get("tile", "512"))
        self.overlap = int(params.get("overlap", "64"))
        self.batch_size = int(params.get("batch_size", "16"))
        self.multiple = int(params.get("multiple", "16"))

    def _forward(self, chunk: np.ndarray) -> np.ndarray:
        request = pb_utils.InferenceRequest(
            model_name=self.segmentation_model,
            inputs=[pb_utils.Tensor(INPUT_NAME, np.ascontiguousarray(chunk, dtype=np.float32))],
            requested_output_names=[OUTPUT_NAME],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{self.segmentation_model}: {response.error().message()}")
        return pb_utils.get_output_tensor_by_name(response, OUTPUT_NAME).as_numpy()

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return predict_tiled(
            self._forward, batch, N_CLASSES, self.multiple, self.batch_size, self.tile, self.overlap
        )

    @staticmethod
    def _scalar(request, name: str, default, cast):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            return default
        values = tensor.as_numpy().ravel()
        if values.size != 1:
            raise BadRequest(f"{name} must hold one value, got {values.size}")
        return cast(values[0])

    def _segment(self, request):
        image = pb_utils.get_input_tensor_by_name(request, "image").as_numpy()
        if image.ndim != 2 or min(image.shape) < 1:
            raise BadRequest(f"image must be a non-empty 2-D array (H, W), got shape {image.shape}")
        if max(image.shape) > self.max_side:
            raise BadRequest(
                f"image of shape {image.shape} exceeds max_image_side {self.max_side}: "
                "split it into tiles on the client"
            )
        if not np.isfinite(image).all():
            raise BadRequest("image holds NaN or infinite values")
        try:
            d = CLI_DEFAULTS
            settings = SegmenterSettings(
                views=self._scalar(request, "views", len(d.views), int),
                threshold=self._scalar(request, "threshold", d.threshold, float),
                min_diameter=self._scalar(request, "min_diameter", d.min_diameter, float),
                max_diameter=self._scalar(request, "max_diameter", d.max_diameter, float),
                discard_border_objects=self._scalar(
                    request, "discard_border_objects", d.discard_border_objects, bool
                ),
                diameter=self._scalar(request, "diameter", d.diameter, float),
                merge=self._scalar(request, "merge", d.merge, _text),
            )
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if settings.diameter is not None:
            scale = MODEL_DIAMETER / settings.diameter
            if max(image.shape) * scale > self.max_side:
                raise BadRequest(
                    f"diameter {settings.diameter} rescales an image of shape {image.shape} by "
                    f"{scale:.3g}, beyond max_image_side {self.max_side}"
                )
        result = make_segmenter(settings, self._predict)(image)
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("probabilities", result.probabilities.astype(np.float32)),
                pb_utils.Tensor("labels", result.labels.astype(np.uint32)),
                pb_utils.Tensor("agreement", result.agreement.astype(np.float32)),
            ]
        )

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                responses.append(self._segment(request))
            except Exception as exc:  # reported to that client; the model keeps serving
                responses.append(
                    pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"nuclei_tta: {type(exc).__name__}: {exc}")
                    )
                )
        return responses
