"""Shared fixtures of the activity tests: a small simulated compound library (real RDKit,
real Chemprop, no mocks), kept to a few hundred compounds so the tests stay fast."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 simulated compounds (library preset, seed 0): profiles from the latent phenotype."""
    from morphoflow.simulate.compounds import simulate_compound_library

    out = tmp_path_factory.mktemp("activity") / "library"
    simulate_compound_library(out, n_compounds=400, seed=0)
    return out
