"""Nucleus segmentation settings, their defaults per entry point, and the one segmenter factory.

Every way of segmenting a DNA image (``morphoflow segment``, the profiling pipeline's
``segment_nuclei_per_site`` node, the segmentation pipeline's evaluation, a Triton server's
``nuclei_tta`` model) takes its settings from a :class:`SegmenterSettings` built by
:meth:`SegmenterSettings.from_params`, and its ``image -> Segmentation`` function from
:func:`make_segmenter`.

Defaults, declared here side by side (and nowhere else):

- :data:`CLI_DEFAULTS` (``morphoflow segment``, a ``nuclei_tta`` request without options):
  8 TTA views; one image at a time, so TTA's 8x compute is affordable.
- :data:`PIPELINE_DEFAULTS` (profiling pipeline, ``conf/base/parameters_profiling.yml``
  ``nuclei:`` repeats it; a test holds them equal): 1 view (no TTA), since a screen has
  thousands of sites.

TTA views follow one rule, :func:`morphoflow.segmentation.tta.select_views`: an int n in 1..8
(the first n views of ``VIEW_ORDER``), one view name, or distinct view names.

Example:
    >>> s = SegmenterSettings.from_params({"views": 2}, defaults=PIPELINE_DEFAULTS)
    >>> s.views, s.threshold, s.min_size
    (('identity', 'flip_lr'), 0.5, 16)
    >>> SegmenterSettings.from_params({"view": 2})
    Traceback (most recent call last):
    ...
    ValueError: segmenter settings have unknown keys ['view']; known: ['batch_size', 'min_size', 'model', 'threshold', 'views']
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from morphoflow.segmentation.tta import ViewsArg, select_views

if TYPE_CHECKING:  # the segmenter (pandas, scipy, scikit-image) loads when a segmenter is made
    from morphoflow.segmentation.segmenter import ProbabilityFn, Segmentation

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "default"
"""``model`` value meaning the U-Net shipped with morphoflow."""

SegmentFn = Callable[[np.ndarray], "Segmentation"]
"""2-D image (H, W), any bit depth -> :class:`~morphoflow.segmentation.segmenter.Segmentation`."""


@dataclass(frozen=True)
class SegmenterSettings:
    """How one DNA image is segmented into nuclei.

    Attributes:
        model: ``"default"`` (the shipped U-Net), a ``.pt`` / ``.onnx`` file or an MLflow
            ``models:/NAME@ALIAS`` URI; a local backend loads it, a Triton backend ignores it
            (the server's ``nuclei_tta`` model segments).
        views: TTA views as names, normalised by
            :func:`~morphoflow.segmentation.tta.select_views` (an int n gives the first n
            views of ``VIEW_ORDER``; 1 = no TTA).
        threshold: Probability threshold of the post-processing, in (0, 1).
        min_size: Smallest nucleus kept, in pixels (>= 0).
        batch_size: Images (or tiles) per call of a local model (>= 1).

    Raises:
        ValueError: A value out of range, named by its field.
    """

    model: str = DEFAULT_MODEL
    views: tuple[str, ...] = select_views(8)
    threshold: float = 0.5
    min_size: int = 16
    batch_size: int = 8

    def __post_init__(self) -> None:
        model = DEFAULT_MODEL if self.model is None else str(self.model)
        object.__setattr__(self, "model", model or DEFAULT_MODEL)
        try:
            views = select_views(self.views)  # type: ignore[arg-type]
        except ValueError as err:
            raise ValueError(str(err).replace("n_or_names", "views")) from None
        object.__setattr__(self, "views", views)
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
            raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        object.__setattr__(self, "threshold", float(threshold))
        for name, low in (("min_size", 0), ("batch_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))

    @property
    def uses_default_model(self) -> bool:
        """Whether ``model`` names the shipped U-Net."""
        return self.model == DEFAULT_MODEL

    @classmethod
    def from_params(
        cls, params: Mapping[str, Any], defaults: SegmenterSettings | None = None
    ) -> SegmenterSettings:
        """Settings from parameters (YAML block, CLI options), missing keys from ``defaults``.

        Args:
            params: Any subset of the fields (``views`` may be an int, a name or a list of
                names; ``model`` None means ``"default"``).
            defaults: The entry point's defaults (:data:`CLI_DEFAULTS` or
                :data:`PIPELINE_DEFAULTS`); None = :data:`CLI_DEFAULTS`.

        Returns:
            The validated settings.

        Raises:
            ValueError: Unknown keys (all named), or a value out of range (its field named).
        """
        known = sorted(f.name for f in dataclasses.fields(cls))
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise ValueError(f"segmenter settings have unknown keys {unknown}; known: {known}")
        base = CLI_DEFAULTS if defaults is None else defaults
        return dataclasses.replace(base, **dict(params))

    def to_params(self) -> dict[str, Any]:
        """Plain dict (views as a list of names), accepted back by :meth:`from_params`."""
        values = dataclasses.asdict(self)
        values["views"] = list(self.views)
        return values


CLI_DEFAULTS = SegmenterSettings(views=select_views(8))
"""Defaults of ``morphoflow segment`` and of a ``nuclei_tta`` request: 8 views (full TTA)."""

PIPELINE_DEFAULTS = SegmenterSettings(views=select_views(1))
"""Defaults of the profiling pipeline (``nuclei:`` in parameters_profiling.yml): no TTA."""


@runtime_checkable
class RemoteSegmenter(Protocol):
    """A server that segments whole images (e.g. ``morphoflow.serving.client.TritonClient``)."""

    def segment(
        self, image: np.ndarray, views: ViewsArg, threshold: float, min_size: int
    ) -> Segmentation: ...


def make_segmenter(
    settings: SegmenterSettings, backend: ProbabilityFn | RemoteSegmenter
) -> SegmentFn:
    """The ``image -> Segmentation`` function of an entry point: local model or a server.

    Args:
        settings: Views, threshold, minimum size (``model`` and ``batch_size`` were used to
            build a local backend; a remote backend ignores ``model``, with a warning when it
            is not the default).
        backend: A local model as a ``predict`` function ((N, 1, H, W) float32 normalised
            batch -> (N, 3, H, W) probabilities, e.g. from
            :func:`morphoflow.segmentation.onnx_model.load_predictor`), or an object with a
            ``segment(image, views=, threshold=, min_size=)`` method (a Triton client).

    Returns:
        A function of one 2-D image (H, W), any bit depth, returning a
        :class:`~morphoflow.segmentation.segmenter.Segmentation` (uint32 labels).

    Raises:
        ValueError: ``settings`` is not a SegmenterSettings, or ``backend`` is neither.
    """
    from morphoflow.segmentation.segmenter import segment_nuclei

    if not isinstance(settings, SegmenterSettings):
        raise ValueError(f"settings must be a SegmenterSettings, got {type(settings).__name__}")
    if isinstance(backend, RemoteSegmenter):
        if not settings.uses_default_model:
            logger.warning(
                "model=%s is ignored with a remote backend: the server's nuclei_tta model "
                "segments (deploy a model with `morphoflow triton deploy`)",
                settings.model,
            )
        return partial(
            backend.segment,
            views=settings.views,
            threshold=settings.threshold,
            min_size=settings.min_size,
        )
    if not callable(backend):
        raise ValueError(
            "backend must be a predict function or have a segment method, "
            f"got {type(backend).__name__}"
        )
    return partial(
        segment_nuclei,
        backend,
        views=settings.views,
        threshold=settings.threshold,
        min_size=settings.min_size,
    )
