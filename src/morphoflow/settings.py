"""Kedro project settings for morphoflow."""

from __future__ import annotations

import os
from pathlib import Path

from kedro.config import OmegaConfigLoader

from morphoflow.hooks import (
    AllOrNothingOutputsHook,
    KnownParametersHook,
    LineageHook,
    MemoryHook,
)
from morphoflow.runtime import configure_process

# kedro loads this file first: the entry point of `kedro run` applies the process settings
configure_process()

# MLflow: a local sqlite store in the project folder unless MLFLOW_TRACKING_URI says otherwise.
# (kedro runs from the project root; kedro-mlflow reads the variable when mlflow.yml leaves
# server.mlflow_tracking_uri null.)
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}")

HOOKS = (KnownParametersHook(), LineageHook(), MemoryHook(), AllOrNothingOutputsHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Soft merge: an environment's parameters file (conf/local, conf/benchmark) overrides only
    # the keys it names. With kedro's default (destructive) merge, once conf/local holds any
    # parameters file, `--params segmentation.train.epochs=2` replaced the whole `segmentation`
    # block and every sibling key (holdout, postprocess, ...) vanished.
    "merge_strategy": {"parameters": "soft"},
}
