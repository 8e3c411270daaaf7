"""Clients of morphoflow's Triton models (gRPC or HTTP) with timeouts, retries and clear errors.

- :class:`TritonClient`: ``segment`` (``nuclei_tta``), ``featurize`` (``featurizer``), model
  control (``load_model``, ``model_version``), readiness.
- :class:`TritonFeaturizer`: the profiling pipeline's ``cnn`` extractor, served.
- :func:`triton_segmenter`: ``image -> Segmentation`` on the server for given settings
  (:func:`morphoflow.segmentation.settings.make_segmenter` with this client as backend).

Connection failures (server starting, restarting, briefly overloaded) are retried with
exponential backoff; an error the server gives for a request (wrong shape, wrong dtype, bad
value) is raised at once as :class:`TritonRequestError` with the server's message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.backbone import scale_crops
from morphoflow.segmentation.segmenter import Segmentation
from morphoflow.segmentation.settings import CLI_DEFAULTS, SegmenterSettings, make_segmenter
from morphoflow.segmentation.tta import VIEW_ORDER, ViewsArg, select_views

PROTOCOLS = ("grpc", "http")
_TRANSIENT_STATUS = {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "503"}
_TRANSIENT = (
    "connection refused",
    "failed to connect",
    "connect failed",
    "deadline exceeded",
    "timed out",
    "timeout",
    "broken pipe",
    "connection reset",
    "socket closed",
)
_NUMPY_TO_TRITON = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.int32): "INT32",
    np.dtype(np.uint32): "UINT32",
    np.dtype(np.object_): "BYTES",  # strings, as numpy object arrays of bytes
}


class TritonRequestError(RuntimeError):
    """The server refused or failed a request (its message is included)."""


class TritonUnavailableError(ConnectionError):
    """The server could not be reached after all retries."""


def parse_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """Split ``[grpc://|http://]host:port`` into (host:port, protocol).

    Without a scheme the protocol is ``protocol`` or gRPC.

    Raises:
        ValueError: Unknown scheme/protocol or no port.
    """
    scheme, sep, rest = url.partition("://")
    if sep:
        if scheme not in PROTOCOLS:
            raise ValueError(f"inference url scheme must be grpc:// or http://, got {url!r}")
        if protocol is not None and protocol != scheme:
            raise ValueError(f"url {url!r} contradicts protocol {protocol!r}")
        protocol, address = scheme, rest
    else:
        protocol, address = protocol or "grpc", url
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be grpc or http, got {protocol!r}")
    host, _, port = address.rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"inference url must be host:port, got {url!r}")
    return address.rstrip("/"), protocol


class TritonClient:
    """A connection to a Triton server serving morphoflow models.

    Args:
        url: ``host:port`` (gRPC unless ``protocol="http"``), or ``grpc://`` / ``http://`` URL.
        protocol: ``grpc`` or ``http``.
        timeout_s: Per-request timeout.
        retries: Extra attempts on connection failures.
        backoff_s: First retry delay; doubled each attempt.
    """

    def __init__(
        self,
        url: str,
        protocol: str | None = None,
        timeout_s: float = 120.0,
        retries: int = 4,
        backoff_s: float = 0.25,
    ) -> None:
        self.url, self.protocol = parse_url(url, protocol)
        self.timeout_s = float(timeout_s)
        self.retries = int(retries)
        self.backoff_s = float(backoff_s)
        if self.protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        self._module = module
        if self.protocol == "http":
            self._client = module.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
            )
        else:
            self._client = module.InferenceServerClient(self.url)

    # -- plumbing -------------------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from tritonclient.utils import InferenceServerException

        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except InferenceServerException as exc:
                status, text = str(exc.status() or ""), str(exc.message() or "").lower()
                transient = status in _TRANSIENT_STATUS or (
                    not status and any(t in text for t in _TRANSIENT)
                )
                if not transient:
                    raise TritonRequestError(f"{what} at {self.url}: {exc.message()}") from exc
                error: Exception = exc
            except (ConnectionError, OSError, TimeoutError) as exc:
                error = exc
            if attempt < self.retries:
                time.sleep(delay)
                delay *= 2
        raise TritonUnavailableError(
            f"{what}: Triton at {self.url} ({self.protocol}) unreachable after "
            f"{self.retries + 1} attempts: {error}"
        ) from error

    def infer(
        self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]
    ) -> dict[str, np.ndarray]:
        """One inference request; returns the requested outputs as numpy arrays.

        Raises:
            TritonRequestError: The server refused the request (message included).
            TritonUnavailableError: The server could not be reached.
        """
        m = self._module
        tensors = []
        for name, array in inputs.items():
            array = np.ascontiguousarray(array)
            dtype = _NUMPY_TO_TRITON.get(array.dtype)
            if dtype is None:
                raise TypeError(f"{model}.{name}: unsupported dtype {array.dtype}")
            tensor = m.InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        requested = [m.InferRequestedOutput(name) for name in outputs]
        kwargs: dict[str, Any] = {}
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout_s

        def run():
            return self._client.infer(model, tensors, outputs=requested, **kwargs)

        result = self._call(f"inference on {model}", run)
        return {name: result.as_numpy(name) for name in outputs}

    # -- server and model control ---------------------------------------------------------
    def is_ready(self) -> bool:
        """Whether the server is up and ready (no retries)."""
        try:
            return bool(self._client.is_server_ready())
        except Exception:
            return False

    def is_live(self) -> bool:
        """Whether the server answers at all (no retries). Unlike readiness, liveness holds
        while a model version is loading or unloading (strict readiness does not)."""
        try:
            return bool(self._client.is_server_live())
        except Exception:
            return False

    def is_model_ready(self, model: str) -> bool:
        return bool(self._call(f"readiness of {model}", lambda: self._client.is_model_ready(model)))

    def load_model(self, model: str) -> None:
        """Load (or reload, picking up new versions) a model.

        Raises:
            TritonRequestError: The load failed; Triton keeps serving what it served before.
        """
        self._call(f"loading {model}", lambda: self._client.load_model(model))

    def unload_model(self, model: str) -> None:
        self._call(f"unloading {model}", lambda: self._client.unload_model(model))

    def model_versions(self, model: str) -> list[int]:
        """Versions of a model that are loaded and ready."""

        def index():
            return self._client.get_model_repository_index(
                **({"as_json": True} if self.protocol == "grpc" else {})
            )

        entries = self._call("repository index", index)
        if isinstance(entries, dict):
            entries = entries.get("models", [])
        return sorted(
            int(e["version"])
            for e in entries
            if e.get("name") == model and e.get("state") == "READY" and e.get("version")
        )

    def model_config(self, model: str) -> dict[str, Any]:
        def get():
            if self.protocol == "grpc":
                return self._client.get_model_config(model, as_json=True)["config"]
            return self._client.get_model_config(model)

        return self._call(f"config of {model}", get)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- morphoflow models ----------------------------------------------------------------
    def segment(
        self,
        image: np.ndarray,
        views: ViewsArg = CLI_DEFAULTS.views,
        threshold: float = CLI_DEFAULTS.threshold,
        min_diameter: float = CLI_DEFAULTS.min_diameter,
        max_diameter: float | None = CLI_DEFAULTS.max_diameter,
        discard_border_objects: bool = CLI_DEFAULTS.discard_border_objects,
        diameter: float | None = CLI_DEFAULTS.diameter,
        merge: str = CLI_DEFAULTS.merge,
        model: str = "nuclei_tta",
    ) -> Segmentation:
        """Segment nuclei in one 2-D image on the server (normalisation, TTA, instances).

        Args:
            image: 2-D image (H, W) of any bit depth (sent as float32).
            views: TTA views, by the rule of
                :func:`~morphoflow.segmentation.tta.select_views`. The server takes a count n
                (the first n views of ``VIEW_ORDER``), so named views are served only when
                they are such a prefix, in that order.
            threshold: Probability threshold, in (0, 1).
            min_diameter: Smallest equivalent diameter kept, in pixels.
            max_diameter: Largest equivalent diameter kept, in pixels; None = no bound (the
                input is not sent).
            discard_border_objects: Discard objects touching the image border.
            diameter: Typical nucleus diameter for rescaling, in pixels; None = no rescaling
                (not sent).
            merge: How the TTA views become instances
                (:data:`~morphoflow.segmentation.tta.SEMANTIC_MERGES`).
            model: Served model name.

        Object filters are CellProfiler IdentifyPrimaryObjects' (see
        :func:`morphoflow.segmentation.postprocess.filter_objects`); the server validates all
        values with :class:`~morphoflow.segmentation.settings.SegmenterSettings`.

        Returns:
            The :class:`Segmentation` (labels (H, W) uint32, probabilities (3, H, W) float32).

        Raises:
            ValueError: ``image`` is not a non-empty 2-D array, or ``views`` is invalid or
                names views the server cannot take (named in the message).
            TritonRequestError: The server refused it (e.g. larger than its max_image_side).
        """
        image = np.asarray(image)
        if image.ndim != 2 or image.size == 0:
            raise ValueError(f"image must be a non-empty 2-D array (H, W), got shape {image.shape}")
        names = served_views(views)
        inputs = {
            "image": image.astype(np.float32),
            "views": np.array([len(names)], np.int32),
            "threshold": np.array([threshold], np.float32),
            "min_diameter": np.array([min_diameter], np.float64),
            "discard_border_objects": np.array([bool(discard_border_objects)], np.bool_),
            "merge": np.array([str(merge).encode()], np.object_),
        }
        for name, value in (("max_diameter", max_diameter), ("diameter", diameter)):
            if value is not None:
                inputs[name] = np.array([value], np.float64)
        out = self.infer(model, inputs, ["probabilities", "labels", "agreement"])
        return Segmentation(
            labels=out["labels"].astype(np.uint32),
            probabilities=out["probabilities"],
            agreement=out["agreement"],
            views=names,
        )

    def featurize(
        self, scaled_crops: np.ndarray, batch_size: int = 64, model: str = "featurizer"
    ) -> np.ndarray:
        """Features of scaled crops (N, 5, S, S) float32, sent in batches of ``batch_size``.

        Raises:
            ValueError: Not a non-empty 4-D float32 batch.
        """
        crops = np.asarray(scaled_crops)
        if crops.ndim != 4 or len(crops) == 0:
            raise ValueError(f"crops must be a non-empty (N, C, S, S) batch, got {crops.shape}")
        if crops.dtype != np.float32:
            raise ValueError(f"crops must be float32 (scaled to [-1, 1]), got {crops.dtype}")
        chunks = [
            self.infer(model, {"crops": crops[i : i + batch_size]}, ["features"])["features"]
            for i in range(0, len(crops), batch_size)
        ]
        return np.concatenate(chunks).astype(np.float32, copy=False)


class TritonFeaturizer:
    """The profiling ``cnn`` extractor with the model served by Triton (``featurizer``).

    Same contract as :class:`morphoflow.profiling.cnn.OnnxFeaturizer`: raw crops in,
    ``CNN_<i>`` feature columns out (crops are scaled here, as offline).
    """

    def __init__(
        self, client: TritonClient, batch_size: int = 64, model: str = "featurizer"
    ) -> None:
        self.client, self.batch_size, self.model = client, int(batch_size), model
        self.columns: list[str] | None = None

    def __call__(self, crops: np.ndarray, masks: np.ndarray | None = None) -> pd.DataFrame:
        if len(crops) == 0:
            return pd.DataFrame(columns=self.columns or [])
        values = self.client.featurize(scale_crops(crops), self.batch_size, self.model)
        if self.columns is None:
            self.columns = [f"CNN_{i}" for i in range(values.shape[1])]
        return pd.DataFrame(values, columns=self.columns)


def served_views(views: ViewsArg) -> tuple[str, ...]:
    """Views the ``nuclei_tta`` model can serve: validated, then refused unless a prefix.

    The server takes a count n and runs the first n views of ``VIEW_ORDER``; a named selection
    is sent as its count only when it is exactly those views in that order, so that named
    views are never silently replaced by others.

    Args:
        views: A count, a view name or view names (rule of
            :func:`~morphoflow.segmentation.tta.select_views`).

    Returns:
        The view names the server will run.

    Raises:
        ValueError: Invalid ``views``, or named views that are not the first n of VIEW_ORDER.

    Example:
        >>> served_views(["identity", "flip_lr"])
        ('identity', 'flip_lr')
        >>> served_views(["rot90"])
        Traceback (most recent call last):
        ...
        ValueError: views ['rot90'] cannot be served: nuclei_tta runs the first n views of VIEW_ORDER (n=1: ['identity']); pass a count or those names
    """
    try:
        names = select_views(views)
    except ValueError as err:
        raise ValueError(str(err).replace("n_or_names", "views")) from None
    prefix = VIEW_ORDER[: len(names)]
    if names != prefix:
        raise ValueError(
            f"views {list(names)} cannot be served: nuclei_tta runs the first n views of "
            f"VIEW_ORDER (n={len(names)}: {list(prefix)}); pass a count or those names"
        )
    return names


def triton_segmenter(
    client: TritonClient, settings: SegmenterSettings = CLI_DEFAULTS
) -> Callable[[np.ndarray], Segmentation]:
    """A function image -> :class:`Segmentation` served by ``nuclei_tta``.

    The same as ``make_segmenter(settings, client)``; kept for callers of this name.
    """
    return make_segmenter(settings, client)
