"""Cross-validation of every modality on shared folds, late fusion, refit and prediction.

Modality names (Moshkov et al., Nat Commun 2023):

==============  ==========================================================================
``cs``          chemical structure: Chemprop MPNN on the SMILES
``mo``          morphology: FFN on the Cell Painting profiles
``ge``          gene expression (or any second profile modality): FFN
``cell_count``  baseline: logistic regression on log(1 + mean cells per well)
``early_cs_mo`` early fusion: Chemprop MPNN with the MO profile as extra descriptors
``early_cs_ge`` early fusion with the GE profile
``late_max_*``  late fusion: per compound and assay, the maximum probability over the models
``late_mean_*`` late fusion variant: the mean probability
==============  ==========================================================================

Late fusions are computed from the out-of-fold predictions (no training): ``late_max_cs_mo``
fuses CS and MO, ``late_max_all`` every single profile/structure modality present (CS, MO, GE;
never the baseline).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.activity.inputs import TREATMENT, ActivityData
from morphoflow.activity.models import (
    CellCountBaseline,
    ModelConfig,
    predict_chemprop,
    predict_profile_classifier,
    train_chemprop,
    train_profile_classifier,
)

SINGLE_MODALITIES = ("cs", "mo", "ge")
BASELINE = "cell_count"
PREDICTION_COLUMNS = [
    "split",
    "fold",
    TREATMENT,
    "assay",
    "modality",
    "probability",
    "label",
]


def available_modalities(data: ActivityData, requested: Sequence[str] | None) -> list[str]:
    """The trained modalities to run: ``requested``, or every one whose input exists.

    Default: ``cs``, then ``mo``/``ge`` for each profile modality present, ``cell_count``
    when the MO table has cell counts, ``early_cs_mo`` / ``early_cs_ge`` with their profiles.

    Raises:
        ValueError: A requested modality is unknown or its input is missing (named).
    """
    known = {"cs", "mo", "ge", BASELINE, "early_cs_mo", "early_cs_ge"}
    if requested:
        out = []
        for m in requested:
            if m not in known:
                raise ValueError(
                    f"activity.modalities: unknown modality {m!r}; known {sorted(known)}"
                )
            profile = m.removeprefix("early_cs_") if m.startswith("early_cs_") else m
            if profile in ("mo", "ge") and profile not in data.profiles:
                raise ValueError(
                    f"activity.modalities: {m!r} needs {profile} profiles (none given)"
                )
            if m == BASELINE and data.cells_per_well is None:
                raise ValueError(
                    "activity.modalities: cell_count needs Metadata_CellCount in the mo profiles"
                )
            out.append(m)
        return out
    out = ["cs"]
    out += [m for m in ("mo", "ge") if m in data.profiles]
    if data.cells_per_well is not None:
        out.append(BASELINE)
    out += [f"early_cs_{m}" for m in ("mo", "ge") if m in data.profiles]
    return out


def fit_predict(
    modality: str,
    data: ActivityData,
    train: Sequence[str],
    test: Sequence[str],
    config: ModelConfig,
    seed: int,
) -> tuple[np.ndarray, Any]:
    """Train one modality on ``train`` compounds and predict ``test`` compounds.

    Returns:
        ``(probabilities (len(test), n_assays) float32, model)``.
    """
    y = data.labels.loc[list(train)].to_numpy(dtype=np.float32)
    smiles = data.compounds[
        "Metadata_SMILES"
    ]  # labelled and unlabelled compounds are both in compounds
    if modality == "cs":
        model = train_chemprop(list(smiles.loc[train]), y, None, config, seed)
        return predict_chemprop(model, list(smiles.loc[test])), model
    if modality.startswith("early_cs_"):
        prof = data.profiles[modality.removeprefix("early_cs_")]
        model = train_chemprop(list(smiles.loc[train]), y, prof.loc[train].to_numpy(), config, seed)
        return predict_chemprop(model, list(smiles.loc[test]), prof.loc[test].to_numpy()), model
    if modality in ("mo", "ge"):
        prof = data.profiles[modality]
        model = train_profile_classifier(prof.loc[train].to_numpy(), y, config, seed)
        return predict_profile_classifier(model, prof.loc[test].to_numpy()), model
    if modality == BASELINE:
        assert data.cells_per_well is not None
        model = CellCountBaseline().fit(data.cells_per_well.loc[train].to_numpy(), y)
        return model.predict(data.cells_per_well.loc[test].to_numpy()), model
    raise ValueError(f"unknown modality {modality!r}")


def _long(
    probabilities: np.ndarray,
    treatments: Sequence[str],
    assays: Sequence[str],
    labels: np.ndarray | None,
    **constant: Any,
) -> pd.DataFrame:
    n, a = probabilities.shape
    frame = pd.DataFrame(
        {
            TREATMENT: np.repeat(np.asarray(treatments, dtype=object), a),
            "assay": np.tile(np.asarray(assays, dtype=object), n),
            "probability": probabilities.reshape(-1).astype(np.float32),
            "label": (
                np.full(n * a, np.nan, np.float32)
                if labels is None
                else labels.reshape(-1).astype(np.float32)
            ),
        }
    )
    for key, value in constant.items():
        frame[key] = value
    return frame


def cross_validate(
    data: ActivityData,
    splits: pd.DataFrame,
    modalities: Sequence[str],
    config: ModelConfig,
    folds: Sequence[int] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Out-of-fold predictions of every modality on every split (same folds for all).

    Args:
        data: Validated inputs.
        splits: :func:`morphoflow.activity.splits.split_table` of the labelled compounds.
        modalities: Trained modalities (:func:`available_modalities`).
        config: Model settings; fold ``k`` trains with seed ``config.seed + k``.
        folds: Only these fold numbers (default: all); the others are not predicted.
        progress: Called with one line per trained model.

    Returns:
        ``(predictions, log)``: predictions in the long format of
        :data:`PREDICTION_COLUMNS` (label NaN where not measured) including late fusions, and
        one dict per trained model (split, fold, modality, seconds, n_train, n_test).
    """
    frames: list[pd.DataFrame] = []
    log: list[dict[str, Any]] = []
    assays = data.assays
    for split, table in splits.groupby("split", sort=True):
        fold_numbers = sorted(int(f) for f in table["fold"].unique())
        for fold in fold_numbers:
            if folds is not None and fold not in folds:
                continue
            test = list(table.loc[table["fold"] == fold, TREATMENT])
            train = list(table.loc[table["fold"] != fold, TREATMENT])
            labels = data.labels.loc[test].to_numpy(dtype=np.float32)
            for modality in modalities:
                start = time.perf_counter()
                probs, _ = fit_predict(modality, data, train, test, config, int(config.seed) + fold)
                seconds = time.perf_counter() - start
                frames.append(
                    _long(probs, test, assays, labels, split=split, fold=fold, modality=modality)
                )
                log.append(
                    {
                        "split": split,
                        "fold": fold,
                        "modality": modality,
                        "seconds": round(seconds, 2),
                        "n_train": len(train),
                        "n_test": len(test),
                    }
                )
                if progress:
                    progress(f"{split} fold {fold} {modality}: {seconds:.1f} s")
    predictions = pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS]
    return add_late_fusion(predictions), log


def late_fusion_sets(modalities: Sequence[str]) -> dict[str, list[str]]:
    """Late-fusion members by name: ``cs_mo`` (and ``cs_ge``, ``all`` when GE is present)."""
    singles = [m for m in SINGLE_MODALITIES if m in modalities]
    sets: dict[str, list[str]] = {}
    if "cs" in singles and "mo" in singles:
        sets["cs_mo"] = ["cs", "mo"]
    if "cs" in singles and "ge" in singles:
        sets["cs_ge"] = ["cs", "ge"]
    if len(singles) >= 3:
        sets["all"] = singles
    return sets


def add_late_fusion(predictions: pd.DataFrame) -> pd.DataFrame:
    """Append ``late_max_<set>`` and ``late_mean_<set>`` rows (see :func:`late_fusion_sets`).

    Args:
        predictions: Long predictions (:data:`PREDICTION_COLUMNS`); ``split`` and ``fold`` may
            be constant placeholders (prediction of new compounds).

    Returns:
        ``predictions`` with the fused rows appended.
    """
    sets = late_fusion_sets(list(predictions["modality"].unique()))
    if not sets:
        return predictions
    keys = ["split", "fold", TREATMENT, "assay"]
    wide = predictions.pivot_table(
        index=keys, columns="modality", values="probability", aggfunc="first", dropna=False
    )
    labels = predictions.groupby(keys, dropna=False)["label"].first()
    fused = []
    for name, members in sets.items():
        values = wide[members]
        for how, reduce in (("max", values.max(axis=1)), ("mean", values.mean(axis=1))):
            frame = reduce.rename("probability").reset_index()
            frame["label"] = labels.reindex(values.index).to_numpy()
            frame["modality"] = f"late_{how}_{name}"
            fused.append(frame)
    return pd.concat([predictions, *fused], ignore_index=True)[PREDICTION_COLUMNS]


def refit_and_predict(
    data: ActivityData,
    modalities: Sequence[str],
    config: ModelConfig,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Refit every modality on all labelled compounds; predict the unlabelled ones.

    Returns:
        ``(predictions, models)``: long predictions (``split`` = ``"refit"``, ``fold`` =
        -1, label NaN) for :attr:`ActivityData.unlabelled` compounds, late fusions included
        (empty frame when every compound is labelled; the models are refit all the same), and
        modality -> refit model (:class:`ProfileClassifier` for ``mo``/``ge``).
    """
    train = list(data.labels.index)
    new = data.unlabelled
    frames = []
    models: dict[str, Any] = {}
    for modality in modalities:
        start = time.perf_counter()
        probs, model = fit_predict(modality, data, train, new, config, int(config.seed))
        models[modality] = model
        if new:
            frames.append(
                _long(probs, new, data.assays, None, split="refit", fold=-1, modality=modality)
            )
        if progress:
            progress(f"refit {modality}: {time.perf_counter() - start:.1f} s")
    if not frames:
        return pd.DataFrame(columns=PREDICTION_COLUMNS), models
    predictions = pd.concat(frames, ignore_index=True)[PREDICTION_COLUMNS]
    return add_late_fusion(predictions), models
