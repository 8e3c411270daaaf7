"""Per-modality multitask activity classifiers (Moshkov et al., Nat Commun 2023).

Every model maps one compound to a probability per assay, trained on all assays at once with
missing labels (NaN) masked out of the binary cross-entropy:

- **CS** (chemical structure): a Chemprop 2 message-passing network (directed bond messages,
  mean aggregation) with a multitask binary classification head
  (:func:`train_chemprop`). Chemprop masks non-finite targets in its loss.
- **Early fusion**: the same network with a profile appended to the learned molecule
  fingerprint as extra descriptors ``x_d`` (standardised on the training compounds).
- **MO / GE** (profiles): :class:`ProfileClassifier`, a feed-forward network on standardised
  profiles (Chemprop 2 has no ``features_only`` mode; a profile-only model is a plain FFN).
- **Cell-count baseline**: per assay, a logistic regression on log(1 + mean cells per well)
  (:class:`CellCountBaseline`); the mean, not the sum, so the number of replicate wells does
  not leak into the feature.

Shapes: ``y`` is float (n_compounds, n_assays) with 1 / 0 / NaN; predictions are float32
(n_compounds, n_assays) probabilities in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class ModelConfig:
    """Training settings of the activity models.

    Attributes:
        epochs: Epochs of the profile FFNs.
        hidden: Hidden layer widths of the profile FFNs.
        dropout: Dropout of the FFNs (profile models and Chemprop's head).
        lr: Adam learning rate of the profile FFNs.
        weight_decay: Adam weight decay of the profile FFNs.
        batch_size: Mini-batch size (all models).
        mpnn_epochs: Epochs of the Chemprop models.
        mpnn_hidden: Message-passing hidden size ``d_h``.
        mpnn_depth: Message-passing steps.
        mpnn_ffn_hidden: Hidden width of Chemprop's classification head.
        mpnn_max_lr: Peak learning rate of Chemprop's Noam-like schedule.
        seed: Seed of weight initialisation and batch order (each fold adds its number).

    The defaults are the pipeline's: ``conf/base/parameters_activity.yml`` (``activity.model``)
    repeats them for users to see, and a test holds the two equal.
    """

    epochs: int = 60
    hidden: Sequence[int] = (256,)
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    batch_size: int = 32
    mpnn_epochs: int = 40
    mpnn_hidden: int = 300
    mpnn_depth: int = 3
    mpnn_ffn_hidden: int = 300
    mpnn_max_lr: float = 1e-3
    seed: int = 0

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> ModelConfig:
        """Build from a parameter dict; unknown keys raise ``ValueError`` naming them."""
        params = dict(params or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"activity.model: unknown setting(s) {unknown}; known: {sorted(known)}"
            )
        if "hidden" in params:
            params["hidden"] = tuple(int(h) for h in params["hidden"])
        return cls(**params)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: unchanged), then restore.

    The activity models are small: one thread is several times faster than two on a loaded
    2-core machine (measured: 1.6 s vs 9.0 s for one MO model).
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the finite targets only (0 when none is finite)."""
    mask = torch.isfinite(targets)
    safe = torch.where(mask, targets, torch.zeros_like(targets))
    losses = nn.functional.binary_cross_entropy_with_logits(logits, safe, reduction="none")
    return (losses * mask).sum() / mask.sum().clamp(min=1)


class ProfileClassifier(nn.Module):
    """Feed-forward multitask classifier on one profile modality, standardisation included.

    ``forward`` takes raw profiles (N, F) float32 and returns probabilities (N, A): the
    training mean and scale are buffers, so the exported ONNX graph takes the same input as
    the pipeline.
    """

    def __init__(
        self,
        n_features: int,
        n_assays: int,
        hidden: Sequence[int] = (256,),
        dropout: float = 0.2,
        mean: np.ndarray | None = None,
        scale: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer(
            "mean", torch.as_tensor(np.zeros(n_features) if mean is None else mean).float()
        )
        self.register_buffer(
            "scale", torch.as_tensor(np.ones(n_features) if scale is None else scale).float()
        )
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(), nn.Dropout(dropout)]
            width = int(h)
        layers.append(nn.Linear(width, n_assays))
        self.net = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, A) of raw profiles (N, F)."""
        return self.net((x - self.mean) / self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))


def _standardisation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[~(scale > 1e-8)] = 1.0
    return mean, scale


def train_profile_classifier(
    x: np.ndarray, y: np.ndarray, config: ModelConfig | None = None, seed: int | None = None
) -> ProfileClassifier:
    """Train a :class:`ProfileClassifier` (Adam, masked BCE, fixed epochs).

    Args:
        x: (n, F) float profiles, finite.
        y: (n, A) float labels, 1 / 0 / NaN.
        config: Settings (``epochs``, ``hidden``, ``dropout``, ``lr``, ``weight_decay``,
            ``batch_size``).
        seed: Overrides ``config.seed``.

    Returns:
        The trained model in eval mode (CPU).

    Raises:
        ValueError: Shapes do not match or ``x`` is not finite.
    """
    config = config or ModelConfig()
    x = np.array(x, dtype=np.float32)  # copies: torch wants writable arrays
    y = np.array(y, dtype=np.float32)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"x (n, F) and y (n, A) must have the same n; got {x.shape}, {y.shape}")
    if not np.isfinite(x).all():
        raise ValueError("x holds NaN/inf values")
    generator = torch.Generator().manual_seed(int(config.seed if seed is None else seed))
    torch.manual_seed(int(config.seed if seed is None else seed))
    mean, scale = _standardisation(x)
    model = ProfileClassifier(x.shape[1], y.shape[1], config.hidden, config.dropout, mean, scale)
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model.train()
    for _ in range(int(config.epochs)):
        order = torch.randperm(len(xt), generator=generator)
        for start in range(0, len(xt), int(config.batch_size)):
            batch = order[start : start + int(config.batch_size)]
            optimiser.zero_grad()
            loss = masked_bce(model.logits(xt[batch]), yt[batch])
            loss.backward()
            optimiser.step()
    return model.eval()


def predict_profile_classifier(model: ProfileClassifier, x: np.ndarray) -> np.ndarray:
    """Probabilities (n, A) float32 of a :class:`ProfileClassifier` on raw profiles (n, F)."""
    with torch.no_grad():
        return model(torch.from_numpy(np.array(x, dtype=np.float32))).numpy()


@dataclass
class ChempropModel:
    """A trained Chemprop MPNN and the standardisation of its extra descriptors (if any)."""

    mpnn: Any
    xd_mean: np.ndarray | None = None
    xd_scale: np.ndarray | None = None
    history: list[float] = field(default_factory=list)


def _datapoints(smiles: Sequence[str], y: np.ndarray | None, x_d: np.ndarray | None) -> list:
    from chemprop import data

    points = []
    for i, smi in enumerate(smiles):
        points.append(
            data.MoleculeDatapoint.from_smi(
                smi,
                y=None if y is None else y[i].astype(np.float32),
                x_d=None if x_d is None else x_d[i].astype(np.float32),
            )
        )
    return points


def _quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)


def train_chemprop(
    smiles: Sequence[str],
    y: np.ndarray,
    x_d: np.ndarray | None = None,
    config: ModelConfig | None = None,
    seed: int | None = None,
) -> ChempropModel:
    """Train a multitask Chemprop 2 MPNN (bond message passing, mean aggregation, BCE head).

    Args:
        smiles: n SMILES (parseable by RDKit).
        y: (n, A) float labels, 1 / 0 / NaN (NaN masked out of the loss by Chemprop).
        x_d: Optional (n, D) extra descriptors (early fusion); standardised with the training
            mean and standard deviation and concatenated to the learned fingerprint.
        config: Settings (``mpnn_*``, ``batch_size``, ``dropout``).
        seed: Overrides ``config.seed``.

    Returns:
        :class:`ChempropModel` (model in eval mode, CPU).

    Raises:
        ValueError: Shapes do not match or ``x_d`` is not finite.
    """
    import warnings

    from chemprop import data, models
    from chemprop import nn as cnn
    from lightning import pytorch as pl

    config = config or ModelConfig()
    seed = int(config.seed if seed is None else seed)
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 2 or len(y) != len(smiles):
        raise ValueError(f"y must be (n, A) with n = {len(smiles)} SMILES, got {y.shape}")
    xd_mean = xd_scale = None
    if x_d is not None:
        x_d = np.asarray(x_d, dtype=np.float32)
        if x_d.shape[0] != len(smiles) or not np.isfinite(x_d).all():
            raise ValueError(f"x_d must be finite (n={len(smiles)}, D), got {x_d.shape}")
        xd_mean, xd_scale = _standardisation(x_d)
        x_d = ((x_d - xd_mean) / xd_scale).astype(np.float32)
    _quiet_lightning()
    pl.seed_everything(seed, workers=True, verbose=False)
    dataset = data.MoleculeDataset(_datapoints(smiles, y, x_d))
    dataset.cache = True
    loader = data.build_dataloader(
        dataset, batch_size=int(config.batch_size), shuffle=True, seed=seed, num_workers=0
    )
    mp = cnn.BondMessagePassing(d_h=int(config.mpnn_hidden), depth=int(config.mpnn_depth))
    d_xd = 0 if x_d is None else x_d.shape[1]
    head = cnn.BinaryClassificationFFN(
        n_tasks=y.shape[1],
        input_dim=mp.output_dim + d_xd,
        hidden_dim=int(config.mpnn_ffn_hidden),
        dropout=float(config.dropout),
    )
    mpnn = models.MPNN(
        mp, cnn.MeanAggregation(), head, batch_norm=False, max_lr=float(config.mpnn_max_lr)
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=int(config.mpnn_epochs),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        # lightning's advice on dataloader workers does not apply to these small sets
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*number of training batches.*")
        warnings.filterwarnings("ignore", message=".*no `val_dataloader`.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(mpnn, loader)
    mpnn.eval()
    return ChempropModel(mpnn, xd_mean, xd_scale)


def predict_chemprop(
    model: ChempropModel, smiles: Sequence[str], x_d: np.ndarray | None = None
) -> np.ndarray:
    """Probabilities (n, A) float32 of a :class:`ChempropModel`.

    Raises:
        ValueError: ``x_d`` is missing for an early-fusion model, or given for a structure-only
            model.
    """
    from chemprop import data

    if (x_d is None) != (model.xd_mean is None):
        raise ValueError("x_d must be given exactly when the model was trained with x_d")
    if x_d is not None:
        x_d = ((np.asarray(x_d, np.float32) - model.xd_mean) / model.xd_scale).astype(np.float32)
    n_tasks = int(model.mpnn.n_tasks)
    if len(smiles) == 0:
        return np.zeros((0, n_tasks), dtype=np.float32)
    dataset = data.MoleculeDataset(_datapoints(smiles, None, x_d))
    loader = data.build_dataloader(
        dataset, batch_size=256, shuffle=False, num_workers=0, drop_last=False
    )
    outs = []
    mpnn = model.mpnn.eval()
    with torch.no_grad():
        for batch in loader:
            bmg, v_d, xd, *_ = batch
            outs.append(mpnn(bmg, v_d, xd).reshape(len(bmg), -1).cpu().numpy())
    return np.concatenate(outs).astype(np.float32)


class CellCountBaseline:
    """Per-assay logistic regression on log(1 + mean cells per well).

    Assays with a single class among the training compounds predict that class's training
    rate (constant). ``predict`` returns (n, A) float32 probabilities.
    """

    def __init__(self) -> None:
        self.models: list[Any] = []
        self.center = 0.0
        self.width = 1.0

    def _feature(self, cells: np.ndarray) -> np.ndarray:
        x = np.log1p(np.asarray(cells, dtype=np.float64).reshape(-1, 1))
        return (x - self.center) / self.width

    def fit(self, cells: np.ndarray, y: np.ndarray) -> CellCountBaseline:
        """Fit on (n,) mean cells per well and (n, A) labels (1 / 0 / NaN)."""
        from sklearn.linear_model import LogisticRegression

        cells = np.asarray(cells, dtype=np.float64)
        if not np.isfinite(cells).all():
            raise ValueError("cells per well hold NaN/inf values")
        raw = np.log1p(cells)
        self.center = float(raw.mean())
        self.width = float(raw.std()) or 1.0
        x = self._feature(cells)
        self.models = []
        for j in range(y.shape[1]):
            known = np.isfinite(y[:, j])
            labels = y[known, j]
            if len(np.unique(labels)) < 2:
                self.models.append(float(labels.mean()) if len(labels) else 0.5)
                continue
            self.models.append(LogisticRegression(C=1.0).fit(x[known], labels.astype(int)))
        return self

    def predict(self, cells: np.ndarray) -> np.ndarray:
        """(n, A) float32 probabilities."""
        x = self._feature(cells)
        out = np.empty((len(x), len(self.models)), dtype=np.float32)
        if len(x) == 0:
            return out
        for j, m in enumerate(self.models):
            out[:, j] = m if isinstance(m, float) else m.predict_proba(x)[:, 1]
        return out
