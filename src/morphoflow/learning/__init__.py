"""morphoflow.learning: weakly supervised learning (WSL) of a Cell Painting CNN.

Data (:mod:`.data`), the 5-channel EfficientNet-B0 and its block6a featurizer (:mod:`.model`)
and the training loop (:mod:`.train`). Imports no kedro, mlflow, great_expectations or
tritonclient.
"""

from morphoflow.learning.data import (
    Augment,
    BalancedEpochSampler,
    CropDataset,
    split_leave_cells_out,
    split_leave_plates_out,
)
from morphoflow.learning.model import (
    Block6aFeatures,
    build_efficientnet_b0,
    export_featurizer_onnx,
    load_wsl_model,
    save_wsl_model,
)
from morphoflow.learning.train import WSLConfig, confusion_matrix, plot_confusion, train_wsl

__all__ = [
    "Augment",
    "BalancedEpochSampler",
    "Block6aFeatures",
    "CropDataset",
    "WSLConfig",
    "build_efficientnet_b0",
    "confusion_matrix",
    "export_featurizer_onnx",
    "load_wsl_model",
    "plot_confusion",
    "save_wsl_model",
    "split_leave_cells_out",
    "split_leave_plates_out",
    "train_wsl",
]
