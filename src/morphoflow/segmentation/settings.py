"""Nucleus segmentation settings, their defaults per entry point, and the one segmenter factory.

Every way of segmenting a DNA image (``morphoflow segment``, the profiling pipeline's
``segment_nuclei_per_site`` node, the segmentation pipeline's evaluation, a Triton server's
``nuclei_tta`` model) takes its settings from a :class:`SegmenterSettings` built by
:meth:`SegmenterSettings.from_params`, and its ``image -> Segmentation`` function from
:func:`make_segmenter`.

Defaults, declared here side by side (and nowhere else):

- :data:`CLI_DEFAULTS` (``morphoflow segment``, a ``nuclei_tta`` request without options):
  8 TTA views, one image at a time, so TTA's 8x compute is affordable; objects touching the
  image border are kept (a user looking at one image wants every nucleus in it).
- :data:`PIPELINE_DEFAULTS` (profiling pipeline, ``conf/base/parameters_profiling.yml``
  ``nuclei:`` repeats it; a test holds them equal): 1 view (no TTA), since a screen has
  thousands of sites; objects touching the border are discarded (their features would be
  truncated), as CellProfiler's IdentifyPrimaryObjects does by default.

Both keep objects of equivalent diameter >= 4.5 px (>= 16 pixels) with no upper bound, and do
not rescale (``diameter`` None).

Object filters follow CellProfiler IdentifyPrimaryObjects (see
:func:`morphoflow.segmentation.postprocess.filter_objects`): ``min_diameter`` /
``max_diameter`` ("typical diameter of objects, in pixel units", an object's equivalent
diameter ``sqrt(4 * area / pi)``, bounds inclusive) and ``discard_border_objects``.

TTA views follow one rule, :func:`morphoflow.segmentation.tta.select_views`: an int n in 1..8
(the first n views of ``VIEW_ORDER``), one view name, or distinct view names.

Example:
    >>> s = SegmenterSettings.from_params({"views": 2}, defaults=PIPELINE_DEFAULTS)
    >>> s.views, s.threshold, s.min_diameter, s.max_diameter, s.discard_border_objects
    (('identity', 'flip_lr'), 0.5, 4.5, None, True)
    >>> SegmenterSettings.from_params({"view": 2})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: segmenter settings have unknown keys ['view']; known: ['batch_size', ...]
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from morphoflow.segmentation.tta import (
    DEFAULT_SEMANTIC_MERGE,
    ViewsArg,
    check_merge,
    select_views,
)

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
        min_diameter: Smallest equivalent diameter kept, in pixels (>= 0; CellProfiler
            IdentifyPrimaryObjects' typical diameter minimum).
        max_diameter: Largest equivalent diameter kept, in pixels (>= min_diameter), or None
            for no upper bound (the typical diameter maximum).
        discard_border_objects: Discard objects touching the image border (CellProfiler's
            "Discard objects touching the border of the image?").
        diameter: Typical nucleus diameter in the images, in pixels (> 0): images are
            resized so that it becomes the model's
            :data:`~morphoflow.segmentation.segmenter.MODEL_DIAMETER` (22 px) and the
            probabilities resized back; None = no rescaling. Filters apply to the image's own
            pixels.
        batch_size: Images (or tiles) per call of a local model (>= 1).
        merge: How TTA views become instances, one of
            :data:`~morphoflow.segmentation.tta.SEMANTIC_MERGES` (``"mean"``: averaged
            probabilities, ``"logit"``: averaged logits, ``"vote"``: the TTA paper's instance
            majority vote, ``"seeds"``: vote objects grown over the averaged maps); default
            :data:`~morphoflow.segmentation.tta.DEFAULT_SEMANTIC_MERGE`, the best measured on
            real frames. Irrelevant with one view.

    Raises:
        ValueError: A value out of range, named by its field.
    """

    model: str = DEFAULT_MODEL
    views: tuple[str, ...] = select_views(8)
    threshold: float = 0.5
    min_diameter: float = 4.5
    max_diameter: float | None = None
    discard_border_objects: bool = False
    diameter: float | None = None
    batch_size: int = 8
    merge: str = DEFAULT_SEMANTIC_MERGE

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
        batch_size = self.batch_size
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        object.__setattr__(self, "batch_size", int(batch_size))
        for name, optional, positive in (
            ("min_diameter", False, False),
            ("max_diameter", True, False),
            ("diameter", True, True),
        ):
            value = getattr(self, name)
            if value is None and optional:
                continue
            bound = "> 0" if positive else ">= 0"
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ValueError(f"{name} must be a number of pixels {bound}, got {value!r}")
            value = float(value)
            if not np.isfinite(value) or value < 0 or (positive and value == 0):
                raise ValueError(f"{name} must be a finite number of pixels {bound}, got {value}")
            object.__setattr__(self, name, value)
        if self.max_diameter is not None and self.max_diameter < self.min_diameter:
            raise ValueError(
                f"max_diameter ({self.max_diameter}) must be >= min_diameter ({self.min_diameter})"
            )
        if not isinstance(self.discard_border_objects, bool | np.bool_):
            raise ValueError(
                f"discard_border_objects must be true or false, got {self.discard_border_objects!r}"
            )
        object.__setattr__(self, "discard_border_objects", bool(self.discard_border_objects))
        check_merge(self.merge)

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

    def segment_options(self) -> dict[str, Any]:
        """Keyword arguments of ``segment_nuclei`` / a remote ``segment`` for these settings
        (everything but ``model`` and ``batch_size``, which build a local backend)."""
        return {
            "views": self.views,
            "threshold": self.threshold,
            "min_diameter": self.min_diameter,
            "max_diameter": self.max_diameter,
            "discard_border_objects": self.discard_border_objects,
            "diameter": self.diameter,
            "merge": self.merge,
        }

    def to_params(self) -> dict[str, Any]:
        """Plain dict (views as a list of names), accepted back by :meth:`from_params`."""
        values = dataclasses.asdict(self)
        values["views"] = list(self.views)
        return values


CLI_DEFAULTS = SegmenterSettings(views=select_views(8), discard_border_objects=False)
"""Defaults of ``morphoflow segment``, ``suggest-contours`` and of a ``nuclei_tta`` request:
8 views (full TTA), border objects kept."""

PIPELINE_DEFAULTS = SegmenterSettings(views=select_views(1), discard_border_objects=True)
"""Defaults of the profiling pipeline (``nuclei:`` in parameters_profiling.yml): no TTA,
objects touching the image border discarded (their crops and features would be truncated)."""


@runtime_checkable
class RemoteSegmenter(Protocol):
    """A server that segments whole images (e.g. ``morphoflow.serving.client.TritonClient``)."""

    def segment(
        self,
        image: np.ndarray,
        views: ViewsArg,
        threshold: float,
        min_diameter: float,
        max_diameter: float | None,
        discard_border_objects: bool,
        diameter: float | None,
    ) -> Segmentation: ...


def make_segmenter(
    settings: SegmenterSettings, backend: ProbabilityFn | RemoteSegmenter
) -> SegmentFn:
    """The ``image -> Segmentation`` function of an entry point: local model or a server.

    Args:
        settings: Views, threshold, object filters, rescaling, TTA merge
            (:meth:`SegmenterSettings.segment_options`; ``model`` and ``batch_size`` were used
            to build a local backend; a remote backend ignores ``model``, with a warning when
            it is not the default).
        backend: A local model as a ``predict`` function ((N, 1, H, W) float32 normalised
            batch -> (N, 3, H, W) probabilities, e.g. from
            :func:`morphoflow.segmentation.onnx_model.load_predictor`), or an object with a
            ``segment(image, **settings.segment_options())`` method (a Triton client).

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
        return partial(backend.segment, **settings.segment_options())
    if not callable(backend):
        raise ValueError(
            "backend must be a predict function or have a segment method, "
            f"got {type(backend).__name__}"
        )
    return partial(segment_nuclei, backend, **settings.segment_options())
