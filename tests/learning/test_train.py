"""WSL training: loss goes down, checkpoints resume exactly, confusion matrix and plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from morphoflow.learning.data import CropDataset
from morphoflow.learning.train import (
    WSLConfig,
    confusion_matrix,
    latest_checkpoint,
    plot_confusion,
    train_wsl,
)
from tests.conftest import PROJECT_ROOT
from tests.learning import write_crop_set


@pytest.fixture(scope="module")
def crop_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    # 3 classes x 2 plates x 6 cells of 64 x 64: leave-cells-out trains on 8 cells per class
    crops_dir = tmp_path_factory.mktemp("crops")
    return write_crop_set(crops_dir, cells_per_well=6, size=64), crops_dir


def _config(**changes: object) -> WSLConfig:
    base = {"epochs": 3, "batch_size": 8, "lr": 0.02, "seed": 0, "device": "cpu"}
    return WSLConfig(**{**base, **changes})  # type: ignore[arg-type]


def _parameters(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / "conf" / "base" / f"parameters_{name}.yml").read_text())


def test_pipeline_yaml_names_only_its_deliberate_differences_from_wslconfig() -> None:
    """Each WSL default is declared once: WSLConfig holds the library's (the paper's 30
    epochs), training.config only the keys where the pipeline differs on purpose (3 epochs for
    the CPU demo), so a value repeated in the YAML, or a key WSLConfig does not know, fails."""
    defaults = WSLConfig().to_dict()
    assert defaults["epochs"] == 30  # the paper's
    config = _parameters("training")["training"]["config"]
    assert set(config) <= set(defaults), sorted(set(config) - set(defaults))
    repeated = sorted(k for k, v in config.items() if v == defaults[k])
    assert not repeated, f"training.config repeats WSLConfig's defaults: {repeated}"
    assert config == {
        "epochs": 3,
        "label_col": "Metadata_Label",
        "checkpoint_dir": "data/06_models/wsl_checkpoints",
    }
    assert WSLConfig.from_params(config).epochs == 3
    wsl = _parameters("representation_comparison")["representation_comparison"]["wsl"]
    assert wsl["epochs"] == config["epochs"]  # the comparison trains as long as the pipeline
    assert set(wsl["config"] or {}) <= set(defaults)


def test_config_from_params_names_unknown_keys() -> None:
    assert WSLConfig.from_params(None) == WSLConfig()
    assert WSLConfig.from_params({"lr": 0.01}) == WSLConfig(lr=0.01)
    with pytest.raises(ValueError, match=r"unknown WSLConfig parameter\(s\) \['epoch'\]"):
        WSLConfig.from_params({"epoch": 3})


def test_config_validates_arguments() -> None:
    with pytest.raises(ValueError, match="split"):
        WSLConfig(split="random")
    with pytest.raises(ValueError, match="batch_size"):
        WSLConfig(batch_size=0)


@pytest.mark.slow
def test_tiny_training_run_decreases_loss(
    crop_set: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    index, crops_dir = crop_set
    seen: list[int] = []
    model, classes, history = train_wsl(
        index,
        crops_dir,
        _config(epochs=4, checkpoint_dir=str(tmp_path / "ckpt")),
        on_epoch=lambda epoch, _metrics: seen.append(epoch),
    )
    assert classes == ["cpd_a", "cpd_b", "cpd_c"] and seen == [1, 2, 3, 4]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    keys = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "crops_per_s"}
    assert keys <= set(history[0])
    assert history[0]["val_cells"] == 12  # 2 of every well's 6 cells validate
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert not model.training and next(model.parameters()).device.type == "cpu"
    # only the latest checkpoint is kept
    assert latest_checkpoint(tmp_path / "ckpt").name == "wsl_epoch_0004.pt"
    assert len(list((tmp_path / "ckpt").iterdir())) == 1

    dataset = CropDataset(index, crops_dir, classes=classes)
    matrix = confusion_matrix(model, DataLoader(dataset, batch_size=16))
    assert matrix.shape == (3, 3) and matrix.sum() == len(index)
    assert isinstance(plot_confusion(matrix, classes), Figure)
    with pytest.raises(ValueError, match="matrix"):
        plot_confusion(matrix, classes[:2])


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(
    crop_set: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    index, crops_dir = crop_set
    config = _config(epochs=2, split="leave_plates_out", val_plates=["P2"])
    full, _, full_history = train_wsl(index, crops_dir, config)

    ckpt = str(tmp_path / "ckpt")
    train_wsl(
        index, crops_dir, _config(**{**config.to_dict(), "epochs": 1, "checkpoint_dir": ckpt})
    )
    epochs: list[int] = []
    resumed, _, history = train_wsl(
        index,
        crops_dir,
        _config(**{**config.to_dict(), "checkpoint_dir": ckpt}),
        on_epoch=lambda epoch, _m: epochs.append(epoch),
    )
    assert epochs == [2]  # continued at the next epoch
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["train_loss"] == full_history[1]["train_loss"]
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # a checkpoint of another configuration is refused
    with pytest.raises(ValueError, match="config"):
        train_wsl(
            index, crops_dir, _config(**{**config.to_dict(), "lr": 0.1, "checkpoint_dir": ckpt})
        )
    # and so is a checkpoint of other training data (same config and classes)
    fewer = index.drop(index.index[-1])
    with pytest.raises(ValueError, match="another crop index"):
        train_wsl(fewer, crops_dir, _config(**{**config.to_dict(), "checkpoint_dir": ckpt}))


def test_confusion_matrix_counts() -> None:
    class Fixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot(x[:, 0].long(), 3).float() + self.w

    x = torch.tensor([[0.0], [1.0], [1.0], [2.0]])
    y = torch.tensor([0, 1, 2, 2])
    matrix = confusion_matrix(Fixed(), [(x, y)])
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [0, 1, 0], [0, 1, 1]])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_training_checkpoints_and_resumes(
    crop_set: tuple[pd.DataFrame, Path], tmp_path: Path
) -> None:
    index, crops_dir = crop_set
    ckpt = str(tmp_path / "ckpt")
    config = _config(epochs=2, device="cuda", amp=True, checkpoint_dir=ckpt)
    train_wsl(index, crops_dir, config)
    epochs: list[int] = []
    model, _, history = train_wsl(
        index,
        crops_dir,
        _config(**{**config.to_dict(), "epochs": 3}),
        on_epoch=lambda epoch, _m: epochs.append(epoch),
    )
    assert epochs == [3] and len(history) == 3
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in history)
    assert next(model.parameters()).device.type == "cpu"
