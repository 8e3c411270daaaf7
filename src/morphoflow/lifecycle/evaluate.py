"""Score exported (ONNX) models on a frozen held-out set, through the production code paths.

- Segmentation (``model_kind`` ``segmentation``): DSB 2018 score with 8-view TTA. The ONNX
  U-Net runs in onnxruntime behind :class:`morphoflow.segmentation.onnx_model.OnnxUNet`, a
  drop-in for :func:`morphoflow.segmentation.unet.predict_probabilities`, inside
  :func:`morphoflow.segmentation.segmenter.segment_nuclei` -- the function of
  ``morphoflow segment`` and of the profiling pipeline.
- Featurizer (``featurizer``): MoA retrieval mAP. Held-out crops -> ONNX features
  (:class:`morphoflow.profiling.cnn.OnnxFeaturizer`, which scales crops like profiling does)
  -> site median -> well mean -> per-plate standardisation fitted on negative controls
  -> treatment mean -> mean AP of MoA retrieval (:mod:`morphoflow.profiling.evaluation`).

Both verify the held-out set against its manifest first (:func:`.heldout.verify_heldout`).
Higher scores are better for both metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from morphoflow.lifecycle.heldout import (
    CROP_INDEX,
    Heldout,
    HeldoutError,
    segmentation_pairs,
    verify_heldout,
)

#: Metric of each model kind (higher is better).
METRICS = {"segmentation": "dsb_score", "featurizer": "moa_map"}


@dataclass(frozen=True)
class EvaluationScore:
    """Score of one model on one held-out set.

    Attributes:
        metric: ``dsb_score`` or ``moa_map``.
        score: The value (higher is better).
        heldout: The held-out folder.
        heldout_digest: SHA-256 of its manifest.
        n_items: Images (segmentation) or queried treatments (featurizer).
        seconds: Wall time of the evaluation.
        details: Further metrics (precision/recall at IoU 0.5, views, ...).
    """

    metric: str
    score: float
    heldout: str
    heldout_digest: str
    n_items: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


#: TTA views of the segmentation promotion metric (DSB 2018 score with all 8 dihedral views),
#: declared once for evaluate_segmentation_onnx, evaluate_onnx, promote and evaluate_version.
SEGMENTATION_METRIC_VIEWS = 8


def evaluate_segmentation_onnx(
    onnx_path: str | Path, heldout: str | Path | Heldout, views: int = SEGMENTATION_METRIC_VIEWS
) -> EvaluationScore:
    """DSB 2018 score of an ONNX U-Net on a frozen segmentation set, with TTA.

    Args:
        onnx_path: The exported U-Net.
        heldout: The held-out folder (verified here) or an already verified set.
        views: TTA views (8 = all dihedral views; 1 = none).

    Returns:
        The :class:`EvaluationScore` (metric ``dsb_score``).

    Raises:
        HeldoutError: The set is missing, not a segmentation set, or changed.
    """
    from morphoflow.screen.io import read_image, require_finite
    from morphoflow.segmentation.metrics import dsb_score
    from morphoflow.segmentation.onnx_model import OnnxUNet
    from morphoflow.segmentation.segmenter import segment_nuclei

    start = time.perf_counter()
    held = heldout if isinstance(heldout, Heldout) else verify_heldout(heldout, "segmentation")
    if held.kind != "segmentation":
        raise HeldoutError(f"heldout {held.root} is a {held.kind!r} set, not segmentation")
    predict = OnnxUNet(onnx_path)
    truths, preds = [], []
    for image_path, mask_path in segmentation_pairs(held):
        image = require_finite(read_image(image_path), image_path)
        truths.append(read_image(mask_path).astype(np.int64))
        preds.append(segment_nuclei(predict, image, views=views).labels)
    score = dsb_score(truths, preds)
    return EvaluationScore(
        metric=METRICS["segmentation"],
        score=float(score.score),
        heldout=str(held.root),
        heldout_digest=held.digest,
        n_items=score.n_images,
        seconds=time.perf_counter() - start,
        details={
            "views": int(views),
            "precision_50": float(score.precision_50),
            "recall_50": float(score.recall_50),
        },
    )


def featurizer_well_profiles(onnx_path: str | Path, heldout: Heldout, batch_size: int = 64) -> Any:
    """Well profiles (raw, before batch correction) of a held-out crop set.

    Returns:
        A pandas DataFrame: one row per well (metadata + features).
    """
    import pandas as pd

    from morphoflow.profiling.aggregate import well_profiles
    from morphoflow.profiling.cnn import OnnxFeaturizer
    from morphoflow.profiling.extract import profile_stored_crops

    def crop_file(relative: str) -> Path:
        listed = f"crops/{relative}"
        if listed not in heldout.files:
            raise HeldoutError(f"heldout {heldout.root}: {CROP_INDEX} names {listed}, unlisted")
        return heldout.path(listed)

    index = pd.read_parquet(heldout.path(CROP_INDEX))
    featurizer = OnnxFeaturizer(onnx_path, batch_size=batch_size)
    sites = profile_stored_crops(
        index,
        crop_file=crop_file,
        extractor=lambda crops, masks: featurizer(crops),
        label="Featurizing held-out sites",
    )
    return well_profiles(sites)


def evaluate_featurizer_onnx(
    onnx_path: str | Path, heldout: str | Path | Heldout, batch_size: int = 64
) -> EvaluationScore:
    """MoA retrieval mAP of an ONNX featurizer on a frozen crop set.

    Crops -> features -> site median -> well mean -> features selected on negative-control
    wells (finite, not constant) -> per-plate standardisation fitted on the controls ->
    treatment mean of the non-control wells -> mean AP of retrieving same-MoA treatments
    (``""``/``inactive`` never queries).

    Args:
        onnx_path: An ONNX featurizer (input ``crops``, output ``features``).
        heldout: The held-out folder (verified here) or an already verified set.
        batch_size: Crops per onnxruntime call.

    Returns:
        The :class:`EvaluationScore` (metric ``moa_map``).

    Raises:
        HeldoutError: The set is missing, not a featurizer set, or changed.
        ValueError: No treatment shares its MoA with another (mAP undefined).
    """
    from morphoflow.profiling.aggregate import metadata_columns, treatment_profiles
    from morphoflow.profiling.evaluation import DEFAULT_EXCLUDE_LABELS, retrieval_ap
    from morphoflow.profiling.normalize import batch_correct, control_mask, feature_select
    from morphoflow.profiling.wells import select_wells

    start = time.perf_counter()
    held = heldout if isinstance(heldout, Heldout) else verify_heldout(heldout, "featurizer")
    if held.kind != "featurizer":
        raise HeldoutError(f"heldout {held.root} is a {held.kind!r} set, not featurizer")
    wells = featurizer_well_profiles(onnx_path, held, batch_size)
    # profiling's non-finite rule (mostly non-finite wells out, then non-finite features);
    # no cell-count floor: which cells a frozen held-out set holds was decided when it was frozen
    wells = select_wells(wells, 0, name=f"heldout {held.root} well profiles").used
    kept = feature_select(wells, control_mask(wells))
    if not kept:
        raise ValueError(f"heldout {held.root}: every feature is constant or non-finite")
    wells = wells[metadata_columns(wells) + kept]
    corrected = batch_correct(wells, "standardize", "plate")
    treated = corrected[corrected["Metadata_ControlType"].fillna("") != "negcon"]
    treatments = treatment_profiles(treated)
    ap = retrieval_ap(treatments, exclude_labels=DEFAULT_EXCLUDE_LABELS)
    if ap.empty:
        raise ValueError(
            f"heldout {held.root}: no treatment shares its MoA with another; mAP is undefined"
        )
    return EvaluationScore(
        metric=METRICS["featurizer"],
        score=float(ap["ap"].mean()),
        heldout=str(held.root),
        heldout_digest=held.digest,
        n_items=len(ap),
        seconds=time.perf_counter() - start,
        details={"n_wells": len(wells), "n_features": len(kept), "n_treatments": len(treatments)},
    )


def evaluate_onnx(
    onnx_path: str | Path,
    model_kind: str,
    heldout: str | Path | Heldout,
    views: int = SEGMENTATION_METRIC_VIEWS,
) -> EvaluationScore:
    """Dispatch on the model kind (``segmentation`` or ``featurizer``).

    Raises:
        ValueError: Unknown ``model_kind``.
    """
    if model_kind == "segmentation":
        return evaluate_segmentation_onnx(onnx_path, heldout, views=views)
    if model_kind == "featurizer":
        return evaluate_featurizer_onnx(onnx_path, heldout)
    raise ValueError(f"model_kind must be one of {sorted(METRICS)}, got {model_kind!r}")
