"""The evaluation workflow: lambda is chosen on treatments the reported scores never use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from morphoflow.profiling.workflow import (
    EvaluationSettings,
    evaluate_representations,
    split_treatments,
)


def _wells(seed: int = 0) -> pd.DataFrame:
    """3 plates with additive plate offsets; 3 MoAs x 4 treatments, 2 inactive, controls."""
    rng = np.random.default_rng(seed)
    n_features = 12
    moa_directions = {f"MOA{m}": rng.normal(0, 1, n_features) for m in range(3)}
    rows = []
    for p in range(3):
        offset = rng.normal(0, 3, n_features)
        treatments = [(f"T{m}{t}", f"MOA{m}", "") for m in range(3) for t in range(4)]
        treatments += [("N1", "inactive", ""), ("N2", "inactive", "")]
        treatments += [("DMSO", "", "negcon")] * 6
        for w, (name, moa, control) in enumerate(treatments):
            signal = 2.0 * moa_directions[moa] if moa.startswith("MOA") else 0.0
            values = offset + signal + rng.normal(0, 1, n_features)
            rows.append(
                {
                    "Metadata_Source": "s1",
                    "Metadata_Plate": f"P{p}",
                    "Metadata_Well": f"W{w:02d}",
                    "Metadata_Treatment": name,
                    "Metadata_MoA": moa,
                    "Metadata_ControlType": control,
                    **{f"f{i}": v for i, v in enumerate(values)},
                }
            )
    return pd.DataFrame(rows)


def test_split_is_disjoint_for_moa_treatments_and_shares_inactive() -> None:
    treatments = _wells().drop_duplicates("Metadata_Treatment")
    selection, report = split_treatments(treatments, ["", "inactive"], seed=0)
    annotated = selection & report
    assert annotated == {"N1", "N2"}  # inactive treatments are negatives in both halves
    assert "DMSO" not in selection | report
    for m in range(3):
        members = {f"T{m}{t}" for t in range(4)}
        assert len(members & report) == 2 and len(members & selection) == 2
    assert split_treatments(treatments, ["", "inactive"], seed=0) == (selection, report)


def test_reported_scores_ignore_selection_treatments() -> None:
    wells = _wells()
    settings = EvaluationSettings(lambdas=[1.0, 1e-2, 1e-6], null_size=200, shuffles=5)
    first = evaluate_representations(wells, settings)
    # scramble the features of every selection-only treatment: raw report scores must not move
    changed = wells.copy()
    only_selection = changed["Metadata_Treatment"].isin(first.selection - first.report)
    features = [c for c in wells.columns if c.startswith("f")]
    changed.loc[only_selection, features] = np.random.default_rng(9).normal(
        0, 5, (only_selection.sum(), len(features))
    )
    second = evaluate_representations(changed, settings)
    assert second.report == first.report
    assert second.metrics["raw"]["map"] == pytest.approx(first.metrics["raw"]["map"])


def test_correction_removes_plate_effects_and_beats_shuffled_labels() -> None:
    result = evaluate_representations(_wells(), EvaluationSettings(null_size=200, shuffles=10))
    for name in ("standardized", "sphered"):
        assert result.metrics[name]["map"] > result.metrics[name]["shuffled_map"] + 0.2
    assert result.chosen_lambda in [1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8]
    assert set(result.corrected_wells) == {"raw", "standardized", "sphered"}


def test_too_few_treatments_per_moa_is_named() -> None:
    """2 treatments per MoA leave 1 per MoA in the selection half: no retrieval to score."""
    wells = _wells()
    keep = ~wells["Metadata_Treatment"].str.match(r"T\d[23]$")
    settings = EvaluationSettings(lambdas=[1.0, 1e-2], null_size=50, shuffles=2)
    with pytest.raises(ValueError, match="no MoA has >= 2 treatments in the lambda-selection"):
        evaluate_representations(wells[keep], settings)
