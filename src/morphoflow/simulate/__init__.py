"""Simulation: data with known ground truth, for demos, tests, training and benchmarks.

- :mod:`~morphoflow.simulate.design`: the latent phenotype, presets, cell lines, optics and the
  experimental design of a simulated Cell Painting screen.
- :mod:`~morphoflow.simulate.render`: the pixels of one site (five stains, optics, noise) and
  its nucleus labels.
- :mod:`~morphoflow.simulate.write`: :func:`simulate_screen`, a whole screen written to a
  folder (images, ``load_data.csv``, platemap, MoAs, ``truth.csv``, ``screen.json``).
- :mod:`~morphoflow.simulate.compounds`: compounds and assays with known causes (for compound
  activity prediction), for a screen or as the ``library`` preset.
- :mod:`~morphoflow.simulate.nuclei`: wide-domain fluorescence nucleus images with instance
  labels, for training and checking nucleus models.

Same seed, same arguments: byte-identical files.

Example:
    >>> from morphoflow.simulate import render_site
    >>> image, labels = render_site(0, size=128, n_cells=6)
    >>> image.shape, int(labels.max())
    ((5, 128, 128), 6)
"""

from __future__ import annotations

from morphoflow.simulate.compounds import simulate_compound_library, write_screen_compounds
from morphoflow.simulate.design import (
    EFFECT_SIZES,
    INACTIVE_MOA,
    LATENT_DIMS,
    PRESETS,
    STRENGTH_RANGES,
    CellLine,
    Optics,
    ScreenPreset,
)
from morphoflow.simulate.nuclei import empty_field, nuclei_images, random_nuclei_image
from morphoflow.simulate.render import render_site
from morphoflow.simulate.write import FORMAT, simulate_screen

#: Preset names of ``morphoflow simulate-screen --preset``: the screen presets and ``library``
#: (compounds, assays and latent-generated profiles; no images).
SIMULATE_PRESETS: tuple[str, ...] = (*PRESETS, "library")

__all__ = [
    "EFFECT_SIZES",
    "FORMAT",
    "INACTIVE_MOA",
    "LATENT_DIMS",
    "PRESETS",
    "SIMULATE_PRESETS",
    "STRENGTH_RANGES",
    "CellLine",
    "Optics",
    "ScreenPreset",
    "empty_field",
    "nuclei_images",
    "random_nuclei_image",
    "render_site",
    "simulate_compound_library",
    "simulate_screen",
    "write_screen_compounds",
]
