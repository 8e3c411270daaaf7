"""Tests of morphoflow.segmentation.maskrcnn (model, training, inference modules): targets,
weights, training, prediction, TTA, files.

Models are tiny on purpose (resnet18 backbone, 64-96 px images, few detections): the point is
the plumbing, not accuracy. No weights are downloaded.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from torch import nn
from torchvision.models import resnet18
from torchvision.models.detection import maskrcnn_resnet50_fpn

from morphoflow.segmentation.maskrcnn import (
    MaskRCNNConfig,
    NucleusMaskRCNN,
    build_maskrcnn,
    labels_to_targets,
    load_maskrcnn,
    load_weights,
    predict_labels,
    save_maskrcnn,
    segment_instances,
    train_maskrcnn,
)
from morphoflow.segmentation.maskrcnn import inference as maskrcnn_inference
from morphoflow.simulate.nuclei import random_nuclei_image

# Random weights + score threshold 0: every image gets detections, capped to keep it fast.
TINY = MaskRCNNConfig(
    backbone="resnet18",
    score_threshold=0.0,
    box_detections_per_img=12,
    min_object_size=0,
    box_batch_size_per_image=32,
)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, 2 threads spin-wait and run 5-10x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny_model(seed: int = 0, config: MaskRCNNConfig = TINY) -> NucleusMaskRCNN:
    torch.manual_seed(seed)
    return build_maskrcnn(config).eval()


# ----------------------------------------------------------------------------- targets


def test_labels_to_targets_two_rectangles() -> None:
    lab = np.zeros((10, 12), dtype=np.uint16)
    lab[1:4, 2:6] = 7  # rows 1..3, cols 2..5
    lab[5:9, 0:1] = 3  # a one-pixel-wide column: still a valid (1 px wide) box
    t = labels_to_targets(lab)
    assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
    assert t["masks"].dtype == torch.uint8
    # objects in increasing label order (3, then 7); boxes are pixel edges, xyxy
    assert t["boxes"].tolist() == [[0.0, 5.0, 1.0, 9.0], [2.0, 1.0, 6.0, 4.0]]
    assert t["labels"].tolist() == [1, 1]
    assert t["masks"].shape == (2, 10, 12)
    np.testing.assert_array_equal(t["masks"][0].numpy(), lab == 3)
    np.testing.assert_array_equal(t["masks"][1].numpy(), lab == 7)
    widths = t["boxes"][:, 2] - t["boxes"][:, 0]
    heights = t["boxes"][:, 3] - t["boxes"][:, 1]
    assert (widths > 0).all() and (heights > 0).all()


def test_labels_to_targets_empty_image() -> None:
    t = labels_to_targets(np.zeros((8, 9), dtype=np.int32))
    assert t["boxes"].shape == (0, 4) and t["boxes"].dtype == torch.float32
    assert t["labels"].shape == (0,) and t["labels"].dtype == torch.int64
    assert t["masks"].shape == (0, 8, 9) and t["masks"].dtype == torch.uint8


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 4), dtype=np.float32),
        np.zeros((2, 4, 4), dtype=np.int32),
        -np.ones((4, 4), dtype=np.int32),
    ],
)
def test_labels_to_targets_rejects_bad_labels(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="labels"):
        labels_to_targets(bad)


# ----------------------------------------------------------------------------- config


def test_config_validation_and_round_trip() -> None:
    cfg = MaskRCNNConfig.from_dict({"anchor_sizes": [4, 8, 16, 32, 64], "aspect_ratios": [1]})
    assert cfg.anchor_sizes == (4, 8, 16, 32, 64) and cfg.aspect_ratios == (1.0,)
    assert MaskRCNNConfig.from_dict(cfg.to_dict()) == cfg
    for kwargs, name in [
        ({"num_classes": 1}, "num_classes"),
        ({"backbone": "vgg16"}, "backbone"),
        ({"anchor_sizes": (8, 16)}, "anchor_sizes"),
        ({"score_threshold": 1.5}, "score_threshold"),
        ({"mask_threshold": 1.0}, "mask_threshold"),
        ({"trainable_backbone_layers": 6}, "trainable_backbone_layers"),
        ({"max_size": 512}, "max_size"),
        ({"min_size": 256}, "max_size"),
        ({"min_size": 256, "max_size": 128}, "max_size"),
        ({"min_object_size": -1}, "min_object_size"),
    ]:
        with pytest.raises(ValueError, match=name):
            MaskRCNNConfig(**kwargs)
    with pytest.raises(ValueError, match="unknown"):
        MaskRCNNConfig.from_dict({"bogus": 1})


# ----------------------------------------------------------------------------- build / weights


def test_build_matches_torchvision_maskrcnn_resnet50_fpn() -> None:
    model = build_maskrcnn()  # default: resnet50, random weights, nothing downloaded
    assert isinstance(model, NucleusMaskRCNN)
    assert model.transform.native  # no resizing by default
    assert model.roi_heads.detections_per_img == 300
    sizes = model.rpn.anchor_generator.sizes
    assert sizes == ((8,), (16,), (32,), (64,), (128,))
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2)
    ours = {k: v.shape for k, v in model.state_dict().items()}
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert ours == theirs  # same tensors: torchvision checkpoints load key for key


def test_native_size_and_single_channel_forward() -> None:
    model = _tiny_model()
    x = torch.rand(1, 40, 72)
    with torch.inference_mode():
        images, _ = model.transform([x.expand(3, -1, -1)])
        (out,) = model([x])
    assert images.image_sizes == [(40, 72)]  # not upscaled (torchvision would go to 800 px)
    assert out["masks"].shape[-2:] == (40, 72)
    with pytest.raises(ValueError, match=r"images\[0\]"):
        model([torch.rand(2, 8, 8)])


def test_coco_style_checkpoint_skips_class_heads(tmp_path: Path, caplog: Any) -> None:
    torch.manual_seed(3)
    coco_like = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)  # 91 classes
    path = tmp_path / "coco.pth"
    torch.save(coco_like.state_dict(), path)
    with caplog.at_level(logging.WARNING, logger="morphoflow.segmentation.maskrcnn"):
        model = build_maskrcnn(MaskRCNNConfig(), path)
    heads = {
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.mask_predictor.mask_fcn_logits.weight",
        "roi_heads.mask_predictor.mask_fcn_logits.bias",
    }
    assert all(k in caplog.text for k in heads)
    reference = coco_like.state_dict()
    for key, value in model.state_dict().items():
        if key not in heads:
            assert torch.equal(value, reference[key]), key
    # frozen batch norm (recommended for fine-tuning) takes the same file
    report = load_weights(
        build_maskrcnn(MaskRCNNConfig(frozen_batchnorm=True, trainable_backbone_layers=3)), path
    )
    assert set(report.skipped) == heads and not report.missing and not report.unexpected


def test_local_weights_round_trip(tmp_path: Path) -> None:
    source = _tiny_model(seed=0)
    path = tmp_path / "weights.pt"
    torch.save(source.state_dict(), path)
    torch.manual_seed(1)  # a different init, overwritten by the file
    model = build_maskrcnn(TINY, path)
    for (k, a), (_, b) in zip(source.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    report = load_weights(build_maskrcnn(TINY), path)
    assert not report.skipped and not report.missing and not report.unexpected


def test_plain_resnet_checkpoint_goes_into_backbone(tmp_path: Path) -> None:
    torch.manual_seed(5)
    net = resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    model = build_maskrcnn(TINY, path)
    body = model.backbone.body.state_dict()
    for key, value in net.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(body[key], value), key


def test_missing_or_unusable_weights_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_maskrcnn(TINY, missing)
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_maskrcnn(missing)
    other = tmp_path / "other.pth"
    torch.save({"some.layer.weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match="no tensor matching"):
        build_maskrcnn(TINY, other)
    with pytest.raises(ValueError, match="not a morphoflow Mask R-CNN"):
        load_maskrcnn(other)


# ----------------------------------------------------------------------------- training


def _synthetic(seed: int, n: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [random_nuclei_image(rng, (size, size)) for _ in range(n)]


@pytest.mark.slow
def test_training_reduces_loss_on_a_fixed_batch() -> None:
    samples = _synthetic(2, 2, 96)
    seen: list[int] = []
    model, history = train_maskrcnn(
        itertools.cycle(samples),
        TINY,
        steps=8,
        batch_size=2,
        lr=2e-4,
        seed=0,
        on_step=lambda step, metrics: seen.append(step),
    )
    assert seen == list(range(1, 9)) and len(history) == 8
    losses = [h["loss"] for h in history]
    assert all(math.isfinite(v) for v in losses)
    assert {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
        "n_objects",
        "lr",
    } <= set(history[0])
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    assert not model.training and next(model.parameters()).device.type == "cpu"


def test_training_is_deterministic_and_accepts_empty_images() -> None:
    image, labels = _synthetic(4, 1, 64)[0]
    empty = (np.full((64, 64), 100, dtype=np.uint16), np.zeros((64, 64), dtype=np.uint32))
    runs = [
        train_maskrcnn(
            iter([(image, labels), empty] * 2), TINY, steps=2, batch_size=2, lr=1e-4, seed=7
        )[1]
        for _ in range(2)
    ]
    assert [h["loss"] for h in runs[0]] == [h["loss"] for h in runs[1]]
    assert all(math.isfinite(h["loss"]) for h in runs[0])
    with pytest.raises(ValueError, match="samples_iterator ran out"):
        train_maskrcnn(iter([empty]), TINY, steps=1, batch_size=2, lr=1e-4, seed=0)
    with pytest.raises(ValueError, match="steps"):
        train_maskrcnn(iter([empty]), TINY, steps=0, batch_size=2, lr=1e-4, seed=0)
    with pytest.raises(ValueError, match="lr"):
        train_maskrcnn(iter([empty]), TINY, steps=1, batch_size=1, lr=-1.0, seed=0)


# ----------------------------------------------------------------------------- prediction


class _FakeDetector(nn.Module):
    """Stands in for Mask R-CNN: returns given detections, or objects of (image > 0.5)."""

    def __init__(self, outputs: list[dict[str, torch.Tensor]] | None = None) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.roi_heads = SimpleNamespace(score_thresh=0.05, detections_per_img=100)
        self.outputs = outputs
        self.calls: list[int] = []
        self.seen_thresh: list[float] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        self.calls.append(len(images))
        self.seen_thresh.append(self.roi_heads.score_thresh)
        if self.outputs is not None:
            return self.outputs[: len(images)]
        results = []
        for img in images:  # equivariant under every dihedral view
            lab, n = ndi.label(img[0].numpy() > 0.5)
            masks = torch.from_numpy(
                np.stack([lab == i for i in range(1, n + 1)])
                if n
                else np.zeros((0, *lab.shape), dtype=bool)
            )
            results.append({"scores": torch.full((n,), 0.9), "masks": masks[:, None].float()})
        return results


def test_predict_labels_paints_by_score_and_drops_small_remnants() -> None:
    masks = torch.zeros(4, 1, 10, 10)
    masks[0, 0, 0:6, 0:6] = 0.9  # score 0.6: mostly covered by the next one
    masks[1, 0, 2:8, 2:8] = 0.9  # score 0.95: wins the overlap
    masks[2, 0, 0:2, 8:10] = 0.4  # score 0.8, but its mask is below mask_threshold
    masks[3, 0, 8:10, 0:3] = 0.9  # score 0.3 < score_threshold
    scores = torch.tensor([0.6, 0.95, 0.8, 0.3])
    fake = _FakeDetector([{"scores": scores, "masks": masks}])
    cfg = MaskRCNNConfig(score_threshold=0.5, mask_threshold=0.5, min_object_size=0)
    (labels,) = predict_labels(fake, np.zeros((1, 1, 10, 10), np.float32), cfg)
    expected = np.zeros((10, 10), np.uint32)
    expected[0:6, 0:6] = 2  # lower score: label 2
    expected[2:8, 2:8] = 1  # highest score: label 1, on top
    np.testing.assert_array_equal(labels, expected)
    assert fake.roi_heads.score_thresh == 0.05  # settings restored after the call
    assert 0.4999 < fake.seen_thresh[0] < 0.5  # ... and applied during it (scores >= 0.5)
    # the first object keeps 20 px (36 - 16 covered): below min_object_size=21 it goes
    cfg_big = MaskRCNNConfig(score_threshold=0.5, min_object_size=21)
    (labels,) = predict_labels(fake, np.zeros((1, 1, 10, 10), np.float32), cfg_big)
    np.testing.assert_array_equal(labels, np.where(expected == 1, 1, 0).astype(np.uint32))


def test_predict_labels_real_model_batches() -> None:
    model = _tiny_model()
    cfg = MaskRCNNConfig(**{**TINY.to_dict(), "inference_batch_size": 2})
    batch = np.random.default_rng(0).random((3, 1, 48, 64), dtype=np.float32)
    out = predict_labels(model, batch, cfg)
    assert len(out) == 3
    for labels in out:
        assert labels.dtype == np.uint32 and labels.shape == (48, 64)
        n = int(labels.max())
        assert 1 <= n <= cfg.box_detections_per_img
        assert set(np.unique(labels).tolist()) <= set(range(n + 1))
        assert set(range(1, n + 1)) <= set(np.unique(labels).tolist())
    with pytest.raises(ValueError, match="batch"):
        predict_labels(model, batch[:, 0], cfg)


def _blobs(shape: tuple[int, int] = (40, 48)) -> np.ndarray:
    img = np.zeros(shape, dtype=np.uint16)
    img[3:12, 5:20] = 1000  # asymmetric objects, away from each other
    img[20:35, 30:38] = 800
    img[25:30, 4:9] = 900
    return img


@pytest.mark.parametrize("views", [8, 1])
def test_segment_instances_one_model_call_per_image(views: int, monkeypatch: Any) -> None:
    batches: list[tuple[int, ...]] = []
    original = maskrcnn_inference.predict_labels

    def counting(model: Any, batch: np.ndarray, config: MaskRCNNConfig) -> list[np.ndarray]:
        batches.append(batch.shape)
        return original(model, batch, config)

    monkeypatch.setattr(maskrcnn_inference, "predict_labels", counting)
    fake = _FakeDetector()
    cfg = MaskRCNNConfig(inference_batch_size=8)
    labels, agreement = segment_instances(fake, _blobs(), cfg, views=views)
    s = 48 if views == 8 else 40  # views that swap H and W pad to a square
    assert batches == [(views, 1, s, 48)]
    assert fake.calls == [views]
    assert labels.dtype == np.uint32 and labels.shape == (40, 48)
    assert sorted(agreement) == [1, 2, 3]
    assert all(0.0 < a <= 1.0 for a in agreement.values())
    assert all(a == 1.0 for a in agreement.values())  # the fake detector is equivariant


def test_segment_instances_real_model_and_validation() -> None:
    model = _tiny_model()
    image = random_nuclei_image(np.random.default_rng(0), (48, 48))[0]
    labels, agreement = segment_instances(model, image, TINY, views=2)
    assert labels.shape == (48, 48) and labels.dtype == np.uint32
    assert set(agreement) == set(np.unique(labels[labels > 0]).tolist())
    assert all(0.0 < a <= 1.0 for a in agreement.values())
    with pytest.raises(ValueError, match="image2d"):
        segment_instances(model, image[None], TINY)


# ----------------------------------------------------------------------------- files


def test_save_load_round_trip_identical_predictions(tmp_path: Path) -> None:
    model = _tiny_model(seed=2)
    cfg = MaskRCNNConfig(**{**TINY.to_dict(), "mask_threshold": 0.4})  # inference setting
    path = save_maskrcnn(model, cfg, tmp_path / "sub" / "nuclei_maskrcnn.pt", {"steps": 3})
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    loaded, loaded_cfg, metadata = load_maskrcnn(path)
    assert loaded_cfg == cfg and metadata == {"steps": 3} and not loaded.training
    batch = np.random.default_rng(1).random((2, 1, 48, 48), dtype=np.float32)
    for a, b in zip(
        predict_labels(model, batch, cfg), predict_labels(loaded, batch, loaded_cfg), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "morphoflow-maskrcnn/1"
    other_arch = MaskRCNNConfig(**{**TINY.to_dict(), "backbone": "resnet34"})
    with pytest.raises(ValueError, match="backbone"):
        save_maskrcnn(model, other_arch, tmp_path / "bad.pt")
