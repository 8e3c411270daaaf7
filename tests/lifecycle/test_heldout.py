"""Frozen held-out sets: deterministic freezing, verification, and the featurizer evaluator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from morphoflow.lifecycle.evaluate import evaluate_featurizer_onnx, evaluate_segmentation_onnx
from morphoflow.lifecycle.heldout import (
    HeldoutError,
    SegmentationHeldoutSettings,
    freeze_featurizer_heldout,
    freeze_segmentation_heldout,
    verify_heldout,
)
from tests.lifecycle.conftest import Blind, MeanPool, export_featurizer, write_crop_store


def test_segmentation_draw_defaults_are_declared_once() -> None:
    """12 images of 128 px, seed 2018: declared in SegmentationHeldoutSettings only; the
    function, ``morphoflow freeze-heldout`` and the evaluation pipeline's freeze_if_missing
    (whose YAML names only ``enabled``) take them from there (the YAML repeated them before)."""
    import inspect

    import yaml

    from morphoflow.cli import freeze_heldout_command
    from tests.conftest import PROJECT_ROOT

    defaults = SegmentationHeldoutSettings()
    assert (defaults.n_images, defaults.size, defaults.seed) == (12, 128, 2018)
    conf = PROJECT_ROOT / "conf" / "base" / "parameters_evaluation.yml"
    assert yaml.safe_load(conf.read_text())["evaluation"]["freeze_if_missing"] == {"enabled": True}
    for function in (freeze_segmentation_heldout, freeze_heldout_command):
        parameters = inspect.signature(function).parameters
        for name in ("n_images", "size", "seed"):
            assert parameters[name].default == getattr(defaults, name), (function, name)
    assert SegmentationHeldoutSettings.from_params({"size": "64"}).size == 64
    with pytest.raises(ValueError, match=r"unknown held-out parameter\(s\) \['images'\]"):
        SegmentationHeldoutSettings.from_params({"images": 4})
    with pytest.raises(ValueError, match="n_images must be >= 1"):
        SegmentationHeldoutSettings(n_images=0)


def test_segmentation_set_is_deterministic_and_verified(tmp_path: Path, seg_heldout) -> None:
    again = freeze_segmentation_heldout(tmp_path / "again", n_images=6, size=96, seed=5)
    assert again.files == seg_heldout.files  # byte-identical images and masks
    assert sorted(again.files)[:2] == ["images/000.tif", "images/001.tif"]
    assert len(again.files) == 12 and again.kind == "segmentation"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    with pytest.raises(HeldoutError, match="not empty"):
        freeze_segmentation_heldout(tmp_path / "again")
    with pytest.raises(HeldoutError, match="'featurizer' set is needed"):
        verify_heldout(again.root, "featurizer")
    with pytest.raises(HeldoutError, match="no manifest.json"):
        verify_heldout(tmp_path)
    # a manifest edited to hide a change is caught by the digest recorded with decisions
    manifest = json.loads((again.root / "manifest.json").read_text())
    manifest["source"]["note"] = "edited"
    (again.root / "manifest.json").write_text(json.dumps(manifest))
    assert verify_heldout(again.root).digest != seg_heldout.digest


def test_segmentation_evaluator_scores_the_onnx_unet(unet_onnx, random_unet_onnx, seg_heldout):
    good = evaluate_segmentation_onnx(unet_onnx[0], seg_heldout.root)
    bad = evaluate_segmentation_onnx(random_unet_onnx[0], seg_heldout.root)
    assert good.metric == "dsb_score" and good.n_items == 6 and good.details["views"] == 8
    assert good.score > 0.6 > 0.2 > bad.score
    assert good.heldout_digest == seg_heldout.digest


def test_featurizer_set_and_moa_map(tmp_path: Path) -> None:
    crops_dir, index = write_crop_store(tmp_path / "store")
    held = freeze_featurizer_heldout(
        crops_dir, tmp_path / "store" / "crop_index.parquet", tmp_path / "heldout"
    )
    assert held.source["plates"] == ["P2"]  # the last plate of the (only) source
    assert "crop_index.parquet" in held.files and "crops/P2/A01_s1.npz" in held.files
    assert not any(k.startswith("crops/P1") for k in held.files)
    both = freeze_featurizer_heldout(crops_dir, index, tmp_path / "both", plates=["P1", "P2"])
    seeing = export_featurizer(MeanPool(), tmp_path / "meanpool.onnx")
    blind = export_featurizer(Blind(), tmp_path / "blind.onnx")
    good = evaluate_featurizer_onnx(seeing, both.root)
    worse = evaluate_featurizer_onnx(blind, both.root)
    assert good.metric == "moa_map" and good.n_items == 9
    assert good.score == pytest.approx(1.0) and worse.score < 0.8
    assert evaluate_featurizer_onnx(seeing, held.root).score == pytest.approx(1.0)
    # tampering with one crop file is refused, naming it
    target = both.root / "crops" / "P1" / "B01_s1.npz"
    data = np.load(target)
    crops = data["crops"].copy()
    crops[0] += 1
    np.savez(target, crops=crops, masks=data["masks"], object_numbers=data["object_numbers"])
    with pytest.raises(HeldoutError, match="crops/P1/B01_s1.npz changed"):
        evaluate_featurizer_onnx(seeing, both.root)
    with pytest.raises(ValueError, match=r"plates \['P9'\]"):
        freeze_featurizer_heldout(crops_dir, index, tmp_path / "x", plates=["P9"])
    with pytest.raises(ValueError, match="crops.store=true"):
        freeze_featurizer_heldout(crops_dir, index.assign(Path_Crops=""), tmp_path / "x")
