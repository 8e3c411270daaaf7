"""Tests of morphoflow.segmentation.unet: shapes, padding, tiling, save/load, the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from morphoflow.segmentation.postprocess import normalize_image
from morphoflow.segmentation.unet import (
    DEFAULT_MODEL_PATH,
    NucleusUNet,
    UNetConfig,
    load_unet,
    predict_probabilities,
    save_unet,
)
from morphoflow.simulate import render_site


@pytest.fixture(scope="module")
def shipped() -> NucleusUNet:
    model, _ = load_unet()
    return model


@pytest.fixture(scope="module")
def dna_150() -> np.ndarray:
    """A normalised 150 x 150 simulated DNA image as a (1, 1, H, W) batch."""
    image, _ = render_site(3, size=160, n_cells=12)
    return normalize_image(image[0, :150, :150])[None, None]


def _small_model(seed: int = 0) -> NucleusUNet:
    """A small random U-Net whose BatchNorm buffers are not the defaults (as after training)."""
    torch.manual_seed(seed)
    model = NucleusUNet(UNetConfig(base=4, depth=2))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


# ----------------------------------------------------------------------------- architecture


def test_config_rejects_non_positive_fields() -> None:
    with pytest.raises(ValueError, match="UNetConfig.depth"):
        UNetConfig(depth=0)
    with pytest.raises(ValueError, match="UNetConfig.base"):
        UNetConfig(base=-4)


def test_forward_returns_class_logits_at_full_resolution() -> None:
    model = _small_model()
    assert model.multiple == 4
    with torch.no_grad():
        logits = model(torch.rand(2, 1, 32, 48))
    assert logits.shape == (2, 3, 32, 48)


# ----------------------------------------------------------------------------- prediction


@pytest.mark.parametrize("shape", [(100, 70), (33, 47), (5, 3), (1, 1)])
def test_probabilities_keep_any_input_size(shipped: NucleusUNet, shape: tuple[int, int]) -> None:
    batch = np.random.default_rng(0).random((2, 1, *shape), dtype=np.float32)
    probs = predict_probabilities(shipped, batch)
    assert probs.shape == (2, 3, *shape)
    assert probs.dtype == np.float32
    assert probs.min() >= 0.0
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_tiled_prediction_matches_whole_image_prediction(
    shipped: NucleusUNet, dna_150: np.ndarray
) -> None:
    whole = predict_probabilities(shipped, dna_150)
    tiled = predict_probabilities(shipped, dna_150, tile=64, overlap=16)
    assert tiled.shape == whole.shape == (1, 3, 150, 150)
    np.testing.assert_allclose(tiled.sum(axis=1), 1.0, atol=1e-5)
    # The network is fully convolutional and BatchNorm runs on its running statistics in eval
    # mode, so a tile sees the same function as the whole image. What differs is the zero
    # padding of every 3x3 convolution at a tile border: near the seams the receptive field
    # meets zeros instead of image. Tiles start at multiples of 48 (a multiple of 2**depth),
    # so pooling stays aligned. Measured: mean |diff| 0.0014, argmax disagreement 0.12 % of
    # pixels (the errors sit on seam pixels and are partly averaged away by the overlap).
    diff = np.abs(tiled - whole)
    assert diff.mean() < 0.02
    assert (tiled.argmax(axis=1) != whole.argmax(axis=1)).mean() < 0.01


def test_tile_larger_than_image_is_the_whole_image(
    shipped: NucleusUNet, dna_150: np.ndarray
) -> None:
    np.testing.assert_array_equal(
        predict_probabilities(shipped, dna_150, tile=160, overlap=16),
        predict_probabilities(shipped, dna_150),
    )


def test_prediction_does_not_depend_on_batch_composition(
    shipped: NucleusUNet, dna_150: np.ndarray
) -> None:
    other = np.random.default_rng(1).random(dna_150.shape, dtype=np.float32)
    together = predict_probabilities(shipped, np.concatenate([dna_150, other]))
    alone = predict_probabilities(shipped, dna_150)
    np.testing.assert_allclose(together[:1], alone, atol=1e-5)


@pytest.mark.parametrize(
    "shape", [(1, 64, 64), (64, 64), (1, 2, 64, 64), (1, 1, 1, 64, 64)], ids=str
)
def test_bad_batch_shape_raises(shipped: NucleusUNet, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"batch must be \(N, 1, H, W\)"):
        predict_probabilities(shipped, np.zeros(shape, np.float32))


def test_bad_tiling_raises(shipped: NucleusUNet) -> None:
    batch = np.zeros((1, 1, 64, 64), np.float32)
    with pytest.raises(ValueError, match="tile must be a multiple of 16"):
        predict_probabilities(shipped, batch, tile=60, overlap=8)
    with pytest.raises(ValueError, match="> overlap"):
        predict_probabilities(shipped, batch, tile=64, overlap=64)


# ----------------------------------------------------------------------------- save / load


def test_save_load_round_trip_is_exact_in_float32(tmp_path: Path) -> None:
    model = _small_model()
    metadata = {"steps": 3, "validation": {"dsb": 0.5}, "source": tmp_path / "data"}
    path = save_unet(model, tmp_path / "sub" / "unet.pt", metadata=metadata, half=False)
    assert path == tmp_path / "sub" / "unet.pt"
    assert sorted(p.name for p in path.parent.iterdir()) == ["unet.pt"]  # no temporary left

    loaded, meta = load_unet(path)
    assert loaded.config == model.config
    assert not loaded.training
    # JSON-like metadata comes back; non-JSON values (a Path) as their string
    assert meta == {"steps": 3, "validation": {"dsb": 0.5}, "source": str(tmp_path / "data")}
    batch = np.random.default_rng(0).random((2, 1, 40, 36), dtype=np.float32)
    np.testing.assert_array_equal(
        predict_probabilities(loaded, batch), predict_probabilities(model, batch)
    )


def test_half_precision_file_is_smaller_and_close(tmp_path: Path) -> None:
    model = _small_model()
    full = save_unet(model, tmp_path / "full.pt", half=False)
    half = save_unet(model, tmp_path / "half.pt")
    assert half.stat().st_size < full.stat().st_size
    loaded, meta = load_unet(half)
    assert meta == {}
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    batch = np.random.default_rng(0).random((1, 1, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(
        predict_probabilities(loaded, batch), predict_probabilities(model, batch), atol=1e-2
    )
    # a model loaded from a float16 file survives another float16 round trip unchanged
    again, _ = load_unet(save_unet(loaded, tmp_path / "again.pt"))
    np.testing.assert_array_equal(
        predict_probabilities(again, batch), predict_probabilities(loaded, batch)
    )


def test_load_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_unet(tmp_path / "nope.pt")


def test_load_foreign_torch_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}, "format": "someone-else/1"}, path)
    with pytest.raises(ValueError, match="not a morphoflow U-Net"):
        load_unet(path)


def test_load_non_torch_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "notes.pt"
    path.write_text("not a model\n")
    with pytest.raises(ValueError, match="notes.pt is not a readable U-Net model file"):
        load_unet(path)


def test_a_pickle_with_code_is_refused_without_advising_to_unpickle_it(tmp_path: Path) -> None:
    # torch's own message advises weights_only=False, which would run the file's code
    path = tmp_path / "evil.pt"
    torch.save({"format": "morphoflow-unet/1", "hook": Path("x")}, path)
    with pytest.raises(ValueError, match="evil.pt is not a readable U-Net model file") as info:
        load_unet(path)
    assert "never unpickles" in str(info.value)
    assert "weights_only=False" not in str(info.value) and "succeed" not in str(info.value)


# ----------------------------------------------------------------------------- shipped model


def test_shipped_model_loads_with_its_validation_scores() -> None:
    assert DEFAULT_MODEL_PATH.is_file()
    assert DEFAULT_MODEL_PATH.stat().st_size < 10 * 2**20  # float16: a few MB in the wheel
    model, meta = load_unet()
    assert model.config == UNetConfig()
    assert not model.training
    validation = meta["validation"]
    assert validation["n_images"] > 0
    for key in ("dsb_map_views1", "dsb_map_views8", "precision_50_views1", "recall_50_views1"):
        assert 0.0 < validation[key] <= 1.0, key
