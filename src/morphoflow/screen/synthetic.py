"""A simulated Cell Painting screen with known ground truth.

The simulated screen is morphoflow's embedded demo data and the benchmark every later stage is
measured against (segmentation, feature extraction, weakly supervised learning, batch
correction, MoA retrieval). It is written to be *realistic*, not to flatter any method:
single cells are noisy, batch effects are strong, some treatments are weak and some do nothing.

Model
-----
**Latent phenotype.** Every cell carries a vector ``z`` over :data:`LATENT_DIMS` (15
interpretable dimensions: nucleus area, DNA intensity, Mito perinuclear fraction, ...). A value
of 0 is the cell line's baseline; one unit is roughly one standard deviation of the natural
cell-to-cell variation of that property. ``z`` is rendered into pixels by fixed, documented
effect sizes (:data:`EFFECT_SIZES`).

``z_cell = plate drift + applied treatment shift + well noise + cell heterogeneity``

* Each MoA is a random unit direction loading on a few dimensions; a treatment's shift is
  ``strength * (MoA direction + treatment-specific noise)``. Strengths are ``strong``,
  ``moderate`` or ``weak`` (see :data:`STRENGTH_RANGES`); ``null`` treatments have strength 0.
* Compounds are dissolved in DMSO: a compound well gets ``dmso shift + sensitivity * shift``,
  a DMSO well the (tiny, fixed) DMSO shift, an untreated well nothing. ``sensitivity`` is a
  per (source, MoA) factor in [0.75, 1.25]: cell lines respond with different strength.
* Cell-cycle subpopulations: G1, S/G2 (bigger nucleus, twice the DNA) and mitotic cells (small,
  very bright, condensed, often elongated metaphase plates); the ``g2m_fraction`` dimension
  shifts their proportions. ``cell_count`` (toxicity/proliferation) changes cells per site.

**Experimental design.** Several sources, each a different cell line "look" (nucleus and cell
size, stain brightness, texture) imaged on a different microscope (per-channel gain and camera
offset) with its own plate layout (well positions shuffled per source, the same for all its
plates). Per plate: per-channel intensity scale and offset, an off-centre illumination
(vignetting) field, focus (blur), a cell-density shift and a small biological drift. Every plate
carries ``DMSO`` and ``untreated`` negative-control wells.

**Optics.** Clean signal -> Gaussian blur (focus; longer wavelengths blur more) ->
illumination field -> Poisson shot noise -> Gaussian read noise + camera offset -> rounded and
clipped to a 12-bit range (0..4095) stored as uint16. Saturation happens, rarely (bright
mitotic nuclei on bright plates).

Ground truth and conventions
----------------------------
* Nucleus labels are 1..n in drawing order; **where two nuclei overlap, the label of the one
  drawn last wins** (the DNA signal of overlapping nuclei adds up, as fluorescence does).
* ``Metadata_MoA``: negative controls (``DMSO``, ``untreated``) have an empty MoA; null
  treatments have the MoA ``"inactive"`` (not ``"null"``: pandas reads ``"null"`` as NaN).
  ``truth.csv`` tells them apart with ``kind`` (``strong``/``moderate``/``weak``/``null``/
  ``control``). Read the CSVs with ``keep_default_na=False`` to keep empty strings.
* ``truth.csv`` is for evaluation only; pipelines must never train on it. Its ``shift_<dim>``
  columns are the nominal shift of the compound relative to DMSO (before the per-source
  sensitivity); DMSO's row holds the DMSO shift itself.

Layout of a screen folder (paths in tables are relative to it, with forward slashes)::

    load_data.csv  platemap.csv  moa.csv  truth.csv  screen.json
    images/<source>/<plate>/<plate>_<well>_s<site>_<channel>.tif
    images/<source>/<plate>/<plate>_<well>_s<site>_nuclei_truth.tif

Example:
    >>> from morphoflow.screen.synthetic import render_site
    >>> image, labels = render_site(0, size=128, n_cells=6)
    >>> image.shape, image.dtype.name, int(labels.max()) == 6
    ((5, 128, 128), 'uint16', True)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from morphoflow.screen.constants import CHANNELS, well_name

__all__ = [
    "EFFECT_SIZES",
    "FORMAT",
    "INACTIVE_MOA",
    "LATENT_DIMS",
    "PRESETS",
    "STRENGTH_RANGES",
    "CellLine",
    "Optics",
    "ScreenPreset",
    "render_site",
    "simulate_screen",
]

#: Value of the ``format`` key of ``screen.json``.
FORMAT = "morphoflow-screen/1"

#: MoA label of null (phenotypically inactive) treatments.
INACTIVE_MOA = "inactive"

#: Interpretable dimensions of the latent phenotype, in the order of every shift vector.
LATENT_DIMS: tuple[str, ...] = (
    "nucleus_area",
    "nucleus_eccentricity",
    "dna_intensity",
    "dna_texture",
    "nucleoli",
    "cell_area",
    "er_intensity",
    "rna_intensity",
    "agp_intensity",
    "agp_edge",
    "mito_intensity",
    "mito_perinuclear",
    "granularity",
    "g2m_fraction",
    "cell_count",
)

#: Effect of one latent unit: the change of log(property) (``g2m_fraction``: of the logit of the
#: S/G2 fraction; ``nucleus_eccentricity``: of -log(minor/major axis ratio)).
EFFECT_SIZES: dict[str, float] = {
    "nucleus_area": 0.18,
    "nucleus_eccentricity": 0.12,
    "dna_intensity": 0.10,
    "dna_texture": 0.25,
    "nucleoli": 0.30,
    "cell_area": 0.22,
    "er_intensity": 0.15,
    "rna_intensity": 0.15,
    "agp_intensity": 0.15,
    "agp_edge": 0.30,
    "mito_intensity": 0.15,
    "mito_perinuclear": 0.30,
    "granularity": 0.25,
    "g2m_fraction": 0.60,
    "cell_count": 0.25,
}

#: Range of the shift norm (latent units) of each kind of treatment.
STRENGTH_RANGES: dict[str, tuple[float, float]] = {
    "strong": (2.0, 3.0),
    "moderate": (1.0, 1.6),
    "weak": (0.4, 0.8),
    "null": (0.0, 0.0),
}

_D = len(LATENT_DIMS)
_I = {name: i for i, name in enumerate(LATENT_DIMS)}
_E = np.array([EFFECT_SIZES[name] for name in LATENT_DIMS])
#: Population-level dimensions (no cell-to-cell heterogeneity).
_POPULATION_DIMS = (_I["g2m_fraction"], _I["cell_count"])
_HETEROGENEITY = 1.0  # sd of cell-to-cell variation, latent units
_WELL_NOISE = 0.12  # sd of well-to-well biological variation, latent units
_PLATE_DRIFT = 0.08  # sd of plate-to-plate biological drift, latent units
_DMSO_STRENGTH = 0.15  # norm of the DMSO shift
_KINDS = ("strong", "moderate", "weak")
_CONTROLS = ("DMSO", "untreated")

#: ADU of one unit of clean signal, per channel (before the stain brightness and camera gain).
_TARGET_ADU = np.array([1300.0, 450.0, 420.0, 500.0, 550.0])
_MAX_ADU = 4095
#: zlib (deflate) level 1: twice as fast as the default level, files ~2 % bigger.
_ZLIB = {"level": 1}
_WAVELENGTH_BLUR = np.array([1.0, 1.05, 1.1, 1.15, 1.2])  # DNA (blue) ... Mito (far red)

# Key tags of the seed sequences (keep them stable: they define what a seed means).
_TAG_MOA, _TAG_SOURCE, _TAG_LAYOUT, _TAG_PLATE, _TAG_WELL, _TAG_SITE = range(1, 7)


# --------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------


def _check_int(value: Any, name: str, minimum: int) -> int:
    """Return ``value`` as an int, or raise a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _fits(n_cells: int, nucleus_radius: float, size: int) -> bool:
    """Whether ``n_cells`` nuclei can be packed on a site without stalling the placement.

    Nuclei are kept >= 1.1 * (a_i + a_j) apart (a ~ 1.15 r): exclusion discs of radius ~1.3 r;
    random sequential packing of discs jams near 55 % coverage, so ask for at most 40 %.
    """
    return n_cells * math.pi * (1.3 * nucleus_radius) ** 2 <= 0.4 * size * size


def _usable_wells() -> list[tuple[int, int]]:
    """Interior wells of a 384-well plate (edge wells are avoided, as in most screens)."""
    return [(r, c) for r in range(1, 15) for c in range(1, 23)]


@dataclass(frozen=True)
class ScreenPreset:
    """Sizes of a simulated screen.

    Attributes:
        n_sources: Number of sources (cell line + microscope + plate layout each).
        plates_per_source: Plates per source; every treatment of a source is in one well of
            each of its plates, so this is also its replicate count per source.
        n_moas: Number of mechanisms of action.
        treatments_per_moa: Treatments of each MoA present in every source.
        n_null_treatments: Treatments with no phenotype (MoA ``"inactive"``), in every source.
        n_source_specific: Extra treatments per source (MoAs in turn) present only there.
        n_dmso_wells: DMSO negative-control wells per plate.
        n_untreated_wells: Untreated negative-control wells per plate.
        sites_per_well: Imaged sites (fields of view) per well.
        site_size: Height = width of a site, pixels.
        cells_per_site: Inclusive (min, max) number of nuclei per site.
        nucleus_radius: Typical nucleus radius (pixels) of a G1 cell; sources vary around it.
        moa_dims: Number of latent dimensions each MoA direction loads on.
        treatment_noise: Norm of a treatment's deviation from its MoA direction (relative).
    """

    n_sources: int = 3
    plates_per_source: int = 2
    n_moas: int = 4
    treatments_per_moa: int = 3
    n_null_treatments: int = 2
    n_source_specific: int = 1
    n_dmso_wells: int = 4
    n_untreated_wells: int = 2
    sites_per_well: int = 2
    site_size: int = 256
    cells_per_site: tuple[int, int] = (15, 30)
    nucleus_radius: float = 10.0
    moa_dims: int = 5
    treatment_noise: float = 0.3

    def __post_init__(self) -> None:
        positive = (
            "n_sources",
            "plates_per_source",
            "n_moas",
            "treatments_per_moa",
            "n_dmso_wells",
            "n_untreated_wells",
            "sites_per_well",
            "moa_dims",
        )
        for name in positive:
            _check_int(getattr(self, name), name, minimum=1)
        for name in ("n_null_treatments", "n_source_specific"):
            _check_int(getattr(self, name), name, minimum=0)
        _check_int(self.site_size, "site_size", minimum=64)
        if self.moa_dims > _D:
            raise ValueError(
                f"moa_dims must be at most {_D} (the latent dimensions), got {self.moa_dims}"
            )
        cells = self.cells_per_site
        if (
            not isinstance(cells, tuple)
            or len(cells) != 2
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in cells)
            or not 1 <= cells[0] <= cells[1]
        ):
            raise ValueError(
                f"cells_per_site must be a tuple (min, max) of ints with 1 <= min <= max, got {cells!r}"
            )
        if not (
            isinstance(self.nucleus_radius, (int, float))
            and 3.0 <= self.nucleus_radius <= self.site_size / 6
        ):
            raise ValueError(
                f"nucleus_radius must be between 3 and site_size / 6 = {self.site_size / 6:g} pixels, "
                f"got {self.nucleus_radius!r}"
            )
        if not _fits(cells[1], self.nucleus_radius, self.site_size):
            raise ValueError(
                f"cells_per_site max {cells[1]} does not fit nuclei of radius {self.nucleus_radius} "
                f"on a {self.site_size}-pixel site; lower cells_per_site or nucleus_radius"
            )
        if not (
            isinstance(self.treatment_noise, (int, float)) and 0.0 <= self.treatment_noise <= 2.0
        ):
            raise ValueError(f"treatment_noise must be in [0, 2], got {self.treatment_noise!r}")
        if self.wells_per_plate > len(_usable_wells()):
            raise ValueError(
                "n_moas * treatments_per_moa + n_null_treatments + n_source_specific + "
                f"n_dmso_wells + n_untreated_wells = {self.wells_per_plate} wells per plate, more "
                f"than the {len(_usable_wells())} interior wells of a 384-well plate"
            )

    @property
    def treatments_per_source(self) -> int:
        """Treatments (not controls) on every plate of a source."""
        return (
            self.n_moas * self.treatments_per_moa + self.n_null_treatments + self.n_source_specific
        )

    @property
    def wells_per_plate(self) -> int:
        """Wells used on each plate (treatments and controls)."""
        return self.treatments_per_source + self.n_dmso_wells + self.n_untreated_wells


#: Named presets. ``demo`` is small enough for the whole demo pipeline to run in minutes on
#: two CPU cores; ``benchmark`` is big enough for MoA retrieval mAP to mean something.
PRESETS: dict[str, ScreenPreset] = {
    "demo": ScreenPreset(),
    "benchmark": ScreenPreset(
        n_sources=3,
        plates_per_source=4,
        n_moas=8,
        treatments_per_moa=4,
        n_null_treatments=4,
        n_source_specific=2,
        n_dmso_wells=8,
        n_untreated_wells=4,
        sites_per_well=3,
        site_size=384,
        cells_per_site=(30, 60),
        nucleus_radius=10.0,
    ),
}


@dataclass(frozen=True)
class CellLine:
    """How one cell line looks (one per source).

    Attributes:
        nucleus_radius: Mean nucleus radius (sqrt of the semi-axes' product) of a G1 cell, px.
        axis_ratio: Typical minor/major axis ratio of an interphase nucleus.
        cell_ratio: Cell radius / nucleus radius.
        brightness: Stain brightness per channel (multiplies the signal), in CHANNELS order.
        chromatin_scale: Size (Gaussian sigma, px) of chromatin texture grains.
        texture: Chromatin texture contrast.
        nucleoli: Mean number of nucleoli per interphase nucleus.
        mito_spread: Decay length of mitochondria density away from the nucleus / cell radius.
        g2_fraction: Fraction of S/G2 cells at baseline.
        mitotic_fraction: Fraction of mitotic cells at baseline.
        touching: Probability that a nucleus is placed touching (or slightly overlapping) another.
    """

    nucleus_radius: float = 10.0
    axis_ratio: float = 0.78
    cell_ratio: float = 2.4
    brightness: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    chromatin_scale: float = 1.2
    texture: float = 0.18
    nucleoli: float = 2.5
    mito_spread: float = 0.45
    g2_fraction: float = 0.3
    mitotic_fraction: float = 0.03
    touching: float = 0.15


@dataclass(frozen=True)
class Optics:
    """Imaging of one plate: microscope, staining batch and focus.

    Attributes:
        gain: Per-channel intensity scale (ADU multiplier), CHANNELS order.
        offset: Per-channel camera offset, ADU.
        blur: Focus blur (Gaussian sigma, px) per channel.
        illumination_centre: Centre of the illumination field, as fractions of (height, width).
        vignetting: Per-channel relative intensity drop at 0.75 site widths from the centre.
        background: Per-channel autofluorescence (ADU before gain).
        electrons_per_adu: Photo-electrons per ADU (sets the shot noise).
        read_noise: Read noise, ADU.
    """

    gain: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    offset: tuple[float, ...] = (100.0, 100.0, 100.0, 100.0, 100.0)
    blur: tuple[float, ...] = (1.0, 1.05, 1.1, 1.15, 1.2)
    illumination_centre: tuple[float, float] = (0.5, 0.5)
    vignetting: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25, 0.25)
    background: tuple[float, ...] = (15.0, 25.0, 20.0, 20.0, 15.0)
    electrons_per_adu: float = 1.5
    read_noise: float = 2.5


# --------------------------------------------------------------------------------------------
# Rendering one site
# --------------------------------------------------------------------------------------------


def render_site(
    seed: int | np.random.Generator,
    *,
    size: int = 256,
    n_cells: int = 20,
    shift: Sequence[float] | np.ndarray | None = None,
    cell_line: CellLine | None = None,
    optics: Optics | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one 5-channel Cell Painting site and its ground-truth nucleus labels.

    Args:
        seed: Seed (non-negative int) or generator of all randomness of the site.
        size: Height = width of the site, pixels (at least 32).
        n_cells: Number of nuclei to place (some may be cut by the image border).
        shift: Latent phenotype of the well (length ``len(LATENT_DIMS)``); ``None`` = baseline.
            ``cell_count`` is ignored here (the caller turns it into ``n_cells``).
        cell_line: Look of the cells; ``None`` = a default line.
        optics: Imaging parameters; ``None`` = default optics.

    Returns:
        ``(image, labels)``: ``image`` of shape ``(5, size, size)``, uint16, channels in
        :data:`~morphoflow.screen.constants.CHANNELS` order (12-bit range); ``labels`` of shape
        ``(size, size)``, uint32, 0 = background, nuclei 1..n (the last drawn wins overlaps).

    Raises:
        ValueError: ``seed``, ``size``, ``n_cells`` or ``shift`` is invalid.
    """
    if isinstance(seed, np.random.Generator):
        rng = seed
    else:
        rng = np.random.default_rng(_check_int(seed, "seed", minimum=0))
    _check_int(size, "size", minimum=32)
    _check_int(n_cells, "n_cells", minimum=0)
    if shift is None:
        z_well = np.zeros(_D)
    else:
        z_well = np.asarray(shift, dtype=float)
        if z_well.shape != (_D,) or not np.all(np.isfinite(z_well)):
            raise ValueError(
                f"shift must be {_D} finite numbers (LATENT_DIMS), got shape {z_well.shape}"
            )
    line = cell_line if cell_line is not None else CellLine()
    opt = optics if optics is not None else Optics()
    if not _fits(n_cells, line.nucleus_radius, size):
        raise ValueError(
            f"n_cells={n_cells} nuclei of radius {line.nucleus_radius} do not fit a {size}-pixel site"
        )
    clean, labels = _render_clean(rng, size, n_cells, z_well, line)
    return _image(rng, clean, opt, line), labels


@dataclass
class _Cells:
    """Per-cell parameters (arrays of length n, index k is label k + 1)."""

    phase: np.ndarray  # 0 = G1, 1 = S/G2, 2 = mitotic
    z: np.ndarray  # (n, D) latent
    a: np.ndarray  # nucleus semi-major axis
    b: np.ndarray  # nucleus semi-minor axis
    theta: np.ndarray  # nucleus orientation
    harm: np.ndarray  # (n, 3) nucleus boundary harmonic amplitudes (k = 2, 3, 4)
    harm_phase: np.ndarray  # (n, 3)
    dna: np.ndarray  # DNA density
    texture: np.ndarray  # chromatin texture contrast
    cell_radius: np.ndarray
    cell_harm: np.ndarray  # (n, 4) cell boundary harmonics (k = 1..4)
    cell_harm_phase: np.ndarray

    @property
    def radius(self) -> np.ndarray:
        return np.sqrt(self.a * self.b)


def _sample_cells(rng: np.random.Generator, n: int, z_well: np.ndarray, line: CellLine) -> _Cells:
    z = z_well[None, :] + rng.normal(0.0, _HETEROGENEITY, (n, _D))
    z[:, _POPULATION_DIMS] = z_well[list(_POPULATION_DIMS)]
    # Big cells have big nuclei: a shared size factor (keeps the marginal sd near 1).
    size_factor = rng.normal(0.0, 1.0, n)
    for dim in ("nucleus_area", "cell_area"):
        i = _I[dim]
        z[:, i] = z_well[i] + 0.7 * (z[:, i] - z_well[i]) + 0.7 * size_factor

    # Cell cycle.
    g2m = z_well[_I["g2m_fraction"]] * _E[_I["g2m_fraction"]]
    p_g2 = 1.0 / (1.0 + math.exp(-(math.log(line.g2_fraction / (1 - line.g2_fraction)) + g2m)))
    p_m = min(0.3, line.mitotic_fraction * math.exp(g2m))
    u = rng.random(n)
    phase = np.where(u < p_m, 2, np.where(u < p_m + p_g2, 1, 0))
    mitotic = phase == 2

    e = np.exp(_E[None, :] * z)  # multiplicative effects
    area = e[:, _I["nucleus_area"]] * np.choose(phase, [1.0, 1.45, 0.42])
    radius = line.nucleus_radius * np.sqrt(area)
    ratio = np.clip(line.axis_ratio / e[:, _I["nucleus_eccentricity"]], 0.35, 1.0)
    ratio = np.where(mitotic, rng.uniform(0.3, 0.65, n), ratio)  # metaphase plates are bars
    a = radius / np.sqrt(ratio)
    b = radius * np.sqrt(ratio)
    harm = rng.normal(0.0, 0.035, (n, 3)) * np.where(mitotic, 0.3, 1.0)[:, None]
    dna = e[:, _I["dna_intensity"]] * np.choose(phase, [1.0, 1.38, 2.4])
    texture = line.texture * e[:, _I["dna_texture"]] * np.where(mitotic, 2.0, 1.0)
    cell_radius = (
        line.nucleus_radius
        * line.cell_ratio
        * np.sqrt(e[:, _I["cell_area"]])
        * np.where(mitotic, 0.65, 1.0)
    )
    cell_harm = rng.normal(0.0, 0.12, (n, 4)) * np.where(mitotic, 0.15, 1.0)[:, None]
    return _Cells(
        phase=phase,
        z=z,
        a=a,
        b=b,
        theta=rng.uniform(0.0, math.pi, n),
        harm=harm,
        harm_phase=rng.uniform(0.0, 2 * math.pi, (n, 3)),
        dna=dna,
        texture=texture,
        cell_radius=cell_radius,
        cell_harm=cell_harm,
        cell_harm_phase=rng.uniform(0.0, 2 * math.pi, (n, 4)),
    )


def _extent(cells: _Cells, k: int, angle: float) -> float:
    """Distance from nucleus k's centre to its ellipse boundary in direction ``angle``."""
    t = angle - cells.theta[k]
    a, b = cells.a[k], cells.b[k]
    return float(a * b / math.hypot(b * math.cos(t), a * math.sin(t)))


def _place(rng: np.random.Generator, cells: _Cells, size: int, line: CellLine) -> np.ndarray:
    """Place nuclei centres: clustered dart throwing, some touching pairs; returns (n, 2) (y, x)."""
    n = len(cells.a)
    centres = np.full((n, 2), np.nan)
    if n == 0:
        return centres
    # Clustering: candidates drawn from a smooth random density.
    coarse = ndi.zoom(rng.normal(size=(6, 6)), size / 6, order=1, mode="nearest")[:size, :size]
    weights = np.exp(0.8 * coarse / max(coarse.std(), 1e-9)).ravel()
    n_candidates = 80 * n
    flat = rng.choice(size * size, n_candidates, p=weights / weights.sum())
    candidates = np.column_stack([flat // size, flat % size]) + rng.random((n_candidates, 2))
    a = cells.a
    margin = 0.3 * cells.radius
    next_candidate = 0
    placed: list[int] = []
    for k in range(n):
        lo, hi = margin[k], size - margin[k]
        done = False
        if placed and rng.random() < line.touching:
            j = placed[int(rng.integers(len(placed)))]
            angle = float(rng.uniform(0, 2 * math.pi))
            dist = rng.uniform(0.85, 1.0) * (
                _extent(cells, k, angle + math.pi) + _extent(cells, j, angle)
            )
            pos = centres[j] + dist * np.array([math.sin(angle), math.cos(angle)])
            others = [i for i in placed if i != j]
            if (
                lo <= pos[0] <= hi
                and lo <= pos[1] <= hi
                and (
                    not others
                    or np.all(np.hypot(*(centres[others] - pos).T) >= 1.1 * (a[others] + a[k]))
                )
            ):
                centres[k] = pos
                done = True
        for factor in (1.1, 0.9):
            while not done and next_candidate < n_candidates:
                pos = candidates[next_candidate]
                next_candidate += 1
                if not (lo <= pos[0] <= hi and lo <= pos[1] <= hi):
                    continue
                if placed and np.any(
                    np.hypot(*(centres[placed] - pos).T) < factor * (a[placed] + a[k])
                ):
                    continue
                centres[k] = pos
                done = True
            if not done:  # ran out: draw fresh candidates once with a relaxed distance
                next_candidate = 0
        if done:
            placed.append(k)
    return centres


def _bandpass(
    rng: np.random.Generator,
    shape: tuple[int, int],
    sigma: float | tuple[float, float],
    sigma2: float | None = None,
) -> np.ndarray:
    """White noise filtered to a grain of ``sigma`` px (minus a coarser ``sigma2``), sd 1."""
    white = rng.standard_normal(shape, dtype=np.float32)
    out = ndi.gaussian_filter(white, sigma)
    if sigma2 is not None:
        out -= ndi.gaussian_filter(white, sigma2)
    return out / max(float(out.std()), 1e-9)


def _smooth(rng: np.random.Generator, size: int, spacing: float) -> np.ndarray:
    """Smooth random field of sd ~1 varying over ``spacing`` px: a cubic-zoomed coarse grid."""
    m = max(2, math.ceil(size / spacing) + 1)
    coarse = rng.standard_normal((m, m))
    return ndi.zoom(coarse, size / (m - 1), order=3, mode="nearest")[:size, :size].astype(
        np.float32
    )


def _render_clean(
    rng: np.random.Generator, size: int, n: int, z_well: np.ndarray, line: CellLine
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free signal (5, H, W) in units of each channel's target and the nucleus labels."""
    shape = (size, size)
    cells = _sample_cells(rng, n, z_well, line)
    centres = _place(rng, cells, size, line)
    keep = np.flatnonzero(~np.isnan(centres[:, 0]))
    # Drop cells that found no room (rare; only with extreme densities).
    if len(keep) < n:
        cells = _Cells(**{f.name: getattr(cells, f.name)[keep] for f in dataclasses.fields(_Cells)})
        centres = centres[keep]
        n = len(keep)
    z = cells.z
    e = np.exp(_E[None, :] * z)

    labels = np.zeros(shape, dtype=np.uint32)
    dna = np.zeros(shape, dtype=np.float32)
    rho_map = np.ones(shape, dtype=np.float32)  # normalised radius inside the top nucleus
    nucleoli_pts: list[np.ndarray] = []
    for k in range(n):
        cy, cx = centres[k]
        ak, bk = cells.a[k], cells.b[k]
        reach = int(math.ceil(ak * (1 + np.abs(cells.harm[k]).sum()))) + 2
        y0, y1 = max(0, int(cy) - reach), min(size, int(cy) + reach + 2)
        x0, x1 = max(0, int(cx) - reach), min(size, int(cx) + reach + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        dy = np.arange(y0, y1)[:, None] + 0.5 - cy
        dx = np.arange(x0, x1)[None, :] + 0.5 - cx
        cos, sin = math.cos(cells.theta[k]), math.sin(cells.theta[k])
        u = dx * cos + dy * sin
        v = -dx * sin + dy * cos
        phi = np.arctan2(v / bk, u / ak)
        wobble = 1.0 + sum(
            cells.harm[k, i] * np.cos((i + 2) * phi + cells.harm_phase[k, i]) for i in range(3)
        )
        rho = np.sqrt((u / ak) ** 2 + (v / bk) ** 2) / wobble
        inside = rho < 1.0
        profile = cells.dna[k] * (0.7 + 0.3 * np.sqrt(np.clip(1.0 - rho**2, 0.0, 1.0)))
        dna[y0:y1, x0:x1] += np.where(inside, profile, 0.0).astype(np.float32)
        labels[y0:y1, x0:x1][inside] = k + 1
        rho_map[y0:y1, x0:x1][inside] = rho[inside]
        # Nucleoli (interphase only), inside the inner part of the nucleus.
        if cells.phase[k] != 2:
            count = min(6, int(rng.poisson(line.nucleoli * e[k, _I["nucleoli"]])))
            if count:
                r = 0.55 * np.sqrt(rng.random(count))
                t = rng.uniform(0, 2 * math.pi, count)
                pu, pv = r * ak * np.cos(t), r * bk * np.sin(t)
                py, px = cy + pu * sin + pv * cos, cx + pu * cos - pv * sin
                amp = rng.uniform(0.6, 1.2, count) * e[k, _I["nucleoli"]] ** 0.5
                nucleoli_pts.append(np.column_stack([py, px, amp]))

    nuc = labels > 0
    pad = lambda values: np.concatenate([[0.0], values]).astype(np.float32)  # noqa: E731

    # Cell bodies: Voronoi on nearest nucleus pixel, limited by an irregular radius.
    if n:
        dist_out, (iy, ix) = ndi.distance_transform_edt(~nuc, return_indices=True)
        dist_out = dist_out.astype(np.float32)
        owner = labels[iy, ix]
    else:
        dist_out = np.full(shape, np.inf, dtype=np.float32)
        owner = np.zeros(shape, dtype=np.uint32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    oy, ox = pad(centres[:, 0])[owner], pad(centres[:, 1])[owner]
    ddy, ddx = yy - oy, xx - ox
    dist_c = np.hypot(ddy, ddx)
    angle = np.arctan2(ddy, ddx)
    reach = np.ones(shape, dtype=np.float32)
    for i in range(4):
        reach += pad(cells.cell_harm[:, i])[owner] * np.cos(
            (i + 1) * angle + pad(cells.cell_harm_phase[:, i])[owner]
        )
    reach *= pad(cells.cell_radius)[owner] * np.exp(
        0.12 * _smooth(rng, size, 2.0 * line.nucleus_radius)
    )
    cell_mask = ((dist_c < reach) | (dist_out < 2.5)) & (owner > 0)
    cells_img = np.where(cell_mask, owner, 0)
    cyto = cell_mask & ~nuc

    def per_pixel(values: np.ndarray) -> np.ndarray:
        return pad(values)[cells_img]

    gran = per_pixel(e[:, _I["granularity"]])
    cell_r = per_pixel(cells.cell_radius)
    mitotic_px = per_pixel((cells.phase == 2).astype(float)) > 0

    # DNA: chromatin texture, darker nucleoli, faint cytoplasmic (mitochondrial) DNA.
    chromatin = _bandpass(rng, shape, line.chromatin_scale)
    tex = pad(cells.texture)[labels]
    nucleoli = np.zeros(shape, dtype=np.float32)
    if nucleoli_pts:
        pts = np.concatenate(nucleoli_pts)
        iy_, ix_ = (
            np.clip(pts[:, 0].astype(int), 0, size - 1),
            np.clip(pts[:, 1].astype(int), 0, size - 1),
        )
        np.add.at(nucleoli, (iy_, ix_), pts[:, 2])
        sigma_n = max(0.8, 0.14 * line.nucleus_radius)
        nucleoli = ndi.gaussian_filter(nucleoli, sigma_n) * (2 * math.pi * sigma_n**2)
        nucleoli = np.minimum(nucleoli, 1.5) * nuc
    dna *= np.clip(1.0 + tex * chromatin, 0.15, None) * (1.0 - 0.35 * np.minimum(nucleoli, 1.0))
    dna += 0.03 * cyto

    # ER: reticular network, denser around the nucleus, bright nuclear envelope.
    envelope_in = np.where(nuc, np.exp(-(((1.0 - rho_map) * 4.0) ** 2)), 0.0)
    envelope_out = np.where(cyto, np.exp(-(dist_out**2) / 2.0), 0.0)
    network = _bandpass(rng, shape, 1.1, 3.0)
    reticulum = np.exp(-((network / 0.4) ** 2)) / 0.3
    contrast = np.clip(0.55 * gran, 0.0, 0.9)
    er_i = per_pixel(e[:, _I["er_intensity"]])
    perinuclear = 0.3 + 0.7 * np.exp(-dist_out / np.maximum(0.35 * cell_r, 1.0))
    er = er_i * (
        cyto * perinuclear * ((1 - contrast) + contrast * reticulum)
        + 0.6 * (envelope_in + envelope_out)
        + 0.08 * nuc
    )

    # RNA: nucleoli, nucleoplasm, granular cytoplasm.
    rna_i = per_pixel(e[:, _I["rna_intensity"]])
    fine = _bandpass(rng, shape, 0.8)
    rna = rna_i * (
        0.25 * nuc
        + 1.4 * nucleoli
        + cyto
        * (0.15 + 0.45 * np.exp(-dist_out / np.maximum(0.6 * cell_r, 1.0)))
        * np.clip(1.0 + 0.45 * np.clip(gran, 0, 2) * fine, 0.0, None)
    )

    # AGP: membrane/cortical actin at the cell edge, stress fibres, a perinuclear Golgi.
    boundary = cell_mask & (
        (cells_img != np.pad(cells_img, ((1, 0), (0, 0)), mode="edge")[:-1])
        | (cells_img != np.pad(cells_img, ((0, 1), (0, 0)), mode="edge")[1:])
        | (cells_img != np.pad(cells_img, ((0, 0), (1, 0)), mode="edge")[:, :-1])
        | (cells_img != np.pad(cells_img, ((0, 0), (0, 1)), mode="edge")[:, 1:])
    )
    if boundary.any():
        dist_edge = ndi.distance_transform_edt(~boundary).astype(np.float32)
    else:
        dist_edge = np.full(shape, np.inf, dtype=np.float32)
    membrane = np.exp(-dist_edge / 1.2)
    # Stress fibres: parallel lines at a per-cell angle (a 1D noise profile read across the
    # fibre direction), broken up along their length by a smooth 2D field.
    profile = ndi.gaussian_filter1d(rng.standard_normal(8 * size), 0.8)
    profile /= max(float(profile.std()), 1e-9)
    fibre_angle = rng.uniform(0, math.pi, n)
    across = -ddx * per_pixel(np.sin(fibre_angle)) + ddy * per_pixel(np.cos(fibre_angle))
    start = per_pixel(rng.integers(2 * size, 6 * size, n).astype(float))
    fibres = profile[(across + start).astype(np.int64) % len(profile)].astype(np.float32)
    fibres = np.clip(fibres, 0.0, None) * np.clip(0.6 + 0.5 * _bandpass(rng, shape, 3.0), 0.0, None)
    golgi = np.zeros(shape, dtype=np.float32)
    if n:
        g_angle = rng.uniform(0, 2 * math.pi, n)
        g_dist = cells.radius * 1.25
        gy = np.clip((centres[:, 0] + g_dist * np.sin(g_angle)).astype(int), 0, size - 1)
        gx = np.clip((centres[:, 1] + g_dist * np.cos(g_angle)).astype(int), 0, size - 1)
        np.add.at(golgi, (gy, gx), (cells.phase != 2).astype(np.float32))
        sigma_g = max(1.0, 0.35 * line.nucleus_radius)
        golgi = ndi.gaussian_filter(golgi, sigma_g) * (2 * math.pi * sigma_g**2) * cyto
    agp_i = per_pixel(e[:, _I["agp_intensity"]])
    edge = per_pixel(e[:, _I["agp_edge"]])
    agp = agp_i * (
        cell_mask * (0.22 + 0.3 * fibres) * np.where(nuc, 0.4, 1.0)
        + 0.7 * edge * membrane * cell_mask
        + 0.6 * golgi
    )
    agp = np.where(mitotic_px, agp * 0.6 + 0.3 * agp_i * cell_mask, agp)  # rounded-up cells

    # Mito: puncta and short filaments, density decaying away from the nucleus.
    lam = per_pixel(
        line.mito_spread
        * cells.cell_radius
        * np.exp(-_E[_I["mito_perinuclear"]] * z[:, _I["mito_perinuclear"]])
    )
    mito_i = per_pixel(e[:, _I["mito_intensity"]])
    # The perinuclear parameter moves mitochondria, it does not change their amount: the
    # profile is normalised to a mean of 0.5 over each cell's cytoplasm.
    spread = np.where(cyto, np.exp(-dist_out / np.maximum(lam, 1.0)), 0.0)
    cyto_labels = np.where(cyto, cells_img, 0)
    spread_mean = np.asarray(ndi.mean(spread, cyto_labels, np.arange(1, n + 1)), dtype=float)
    spread_mean = np.where(np.isfinite(spread_mean) & (spread_mean > 0), spread_mean, 1.0)
    density = mito_i * spread * (0.5 / np.concatenate([[1.0], spread_mean])[cells_img])
    # Granularity: fewer, brighter puncta (same mean intensity, coarser texture).
    rate = (0.05 * density / np.maximum(gran, 0.2)).ravel()
    where = np.flatnonzero(rate > 0)
    counts = rng.poisson(rate[where])
    where, counts = where[counts > 0], counts[counts > 0]
    brightness = gran.ravel()[where]
    # Each punctum is a dot, or a short filament along one image axis (rotation-free, cheap).
    shapes = np.zeros((3, size * size), dtype=np.float32)
    shapes[rng.integers(0, 3, len(where)), where] = counts * brightness
    shapes = shapes.reshape(3, size, size)
    line_kernel = np.ones(5, np.float32) / 2.5
    puncta = (
        shapes[0]
        + ndi.convolve1d(shapes[1], line_kernel, axis=0)
        + ndi.convolve1d(shapes[2], line_kernel, axis=1)
    )
    puncta = ndi.gaussian_filter(puncta, 0.7) * 6.0
    mito = 0.3 * density + puncta * cell_mask

    clean = np.stack([dna, er, rna, agp, mito]).astype(np.float32)
    # Placement keeps overlaps partial, so no label is ever hidden; relabel 1..n just in case.
    present = np.bincount(labels.ravel(), minlength=n + 1) > 0
    if not present[1:].all():
        relabel = np.cumsum(present).astype(np.uint32) - 1
        labels = relabel[labels]
    return clean, labels


def _illumination(optics: Optics, size: int) -> np.ndarray:
    """Per-channel multiplicative illumination (vignetting) field, (5, H, W)."""
    cy, cx = optics.illumination_centre
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    r2 = (coords[:, None] - cy) ** 2 + (coords[None, :] - cx) ** 2
    drop = np.asarray(optics.vignetting, dtype=np.float32)[:, None, None] * (r2[None] / 0.75**2)
    return np.clip(1.0 - drop, 0.3, 1.0)


def _image(
    rng: np.random.Generator, clean: np.ndarray, optics: Optics, line: CellLine
) -> np.ndarray:
    """Apply stain brightness, blur, illumination, shot and read noise; return uint16 ADU."""
    size = clean.shape[-1]
    scale = _TARGET_ADU * np.asarray(line.brightness) * np.asarray(optics.gain)
    background = np.asarray(optics.background) * np.asarray(optics.gain)
    illum = _illumination(optics, size)
    out = np.empty(clean.shape, dtype=np.uint16)
    for c in range(clean.shape[0]):
        signal = ndi.gaussian_filter(
            clean[c] * np.float32(scale[c]) + np.float32(background[c]), optics.blur[c]
        )
        signal = np.maximum(signal * illum[c], 0.0)
        # Shot noise: exact Poisson where few photo-electrons are counted, its normal limit
        # (indistinguishable at >= 50 e-, and much faster) elsewhere; plus read noise.
        e_per_adu = np.float32(optics.electrons_per_adu)
        noise = rng.standard_normal(signal.shape, dtype=np.float32)
        adu = signal + noise * np.sqrt(signal / e_per_adu + np.float32(optics.read_noise**2))
        dim = signal * e_per_adu < 50.0
        if dim.any():
            adu[dim] = rng.poisson(signal[dim] * e_per_adu) / e_per_adu + noise[dim] * np.float32(
                optics.read_noise
            )
        out[c] = np.clip(np.rint(adu + np.float32(optics.offset[c])), 0, _MAX_ADU)
    return out


# --------------------------------------------------------------------------------------------
# Experimental design
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Treatment:
    name: str
    moa: str
    kind: str
    strength: float
    shift: np.ndarray
    sources: tuple[int, ...]
    moa_index: int  # -1 for controls and null treatments


@dataclass(frozen=True)
class _Source:
    index: int
    name: str
    line: CellLine
    layout: tuple[tuple[str, str], ...]  # (well, treatment)
    sensitivity: np.ndarray  # per MoA


@dataclass(frozen=True)
class _Plate:
    source: int
    index: int  # within the source
    name: str
    optics: Optics
    drift: np.ndarray
    density: float


@dataclass(frozen=True)
class _Design:
    treatments: dict[str, _Treatment]
    sources: tuple[_Source, ...]
    plates: tuple[_Plate, ...]


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _design(preset: ScreenPreset, seed: int) -> _Design:
    rng = _rng(seed, _TAG_MOA)
    moas = [f"MOA{m + 1:02d}" for m in range(preset.n_moas)]
    directions = []
    for _ in moas:
        direction = np.zeros(_D)
        dims = rng.choice(_D, preset.moa_dims, replace=False)
        direction[dims] = rng.normal(0.0, 1.0, preset.moa_dims)
        directions.append(_unit(direction))

    def compound(moa_index: int, kind: str, sources: tuple[int, ...]) -> _Treatment:
        lo, hi = STRENGTH_RANGES[kind]
        strength = float(rng.uniform(lo, hi))
        noise = rng.normal(0.0, preset.treatment_noise / math.sqrt(_D), _D)
        shift = strength * (directions[moa_index] + noise)
        return _Treatment("", moas[moa_index], kind, strength, shift, sources, moa_index)

    all_sources = tuple(range(preset.n_sources))
    specs: list[_Treatment] = []
    for m in range(preset.n_moas):
        for j in range(preset.treatments_per_moa):
            specs.append(compound(m, _KINDS[(j + m) % 3], all_sources))
    for _ in range(preset.n_null_treatments):
        specs.append(_Treatment("", INACTIVE_MOA, "null", 0.0, np.zeros(_D), all_sources, -1))
    counter = 0
    for s in all_sources:
        for _ in range(preset.n_source_specific):
            specs.append(compound(counter % preset.n_moas, _KINDS[counter % 3], (s,)))
            counter += 1
    # Names do not reveal the MoA or the strength.
    order = rng.permutation(len(specs))
    treatments: dict[str, _Treatment] = {}
    for number, i in enumerate(order):
        name = f"TRT{number + 1:03d}"
        treatments[name] = dataclasses.replace(specs[i], name=name)
    treatments = dict(sorted(treatments.items()))
    dmso = _DMSO_STRENGTH * _unit(rng.normal(0.0, 1.0, _D))
    treatments["DMSO"] = _Treatment("DMSO", "", "control", _DMSO_STRENGTH, dmso, all_sources, -1)
    treatments["untreated"] = _Treatment(
        "untreated", "", "control", 0.0, np.zeros(_D), all_sources, -1
    )

    sources: list[_Source] = []
    plates: list[_Plate] = []
    for s in all_sources:
        srng = _rng(seed, _TAG_SOURCE, s)
        radius = preset.nucleus_radius * float(srng.uniform(0.85, 1.15))
        line = CellLine(
            nucleus_radius=radius,
            axis_ratio=float(srng.uniform(0.65, 0.85)),
            cell_ratio=float(srng.uniform(2.1, 2.6)),
            brightness=tuple(float(x) for x in np.exp(srng.normal(0.0, 0.2, 5))),
            chromatin_scale=float(srng.uniform(0.8, 1.6)) * radius / 10.0,
            texture=float(srng.uniform(0.12, 0.25)),
            nucleoli=float(srng.uniform(1.5, 3.0)),
            mito_spread=float(srng.uniform(0.3, 0.6)),
            g2_fraction=float(srng.uniform(0.2, 0.35)),
            mitotic_fraction=float(srng.uniform(0.02, 0.05)),
            touching=float(srng.uniform(0.1, 0.2)),
        )
        gain = np.exp(srng.normal(0.0, 0.25, 5))
        offset = srng.uniform(90.0, 130.0, 5)
        background = srng.uniform(10.0, 30.0, 5)
        electrons = float(srng.uniform(1.0, 2.0))
        sensitivity = srng.uniform(0.75, 1.25, preset.n_moas)

        lrng = _rng(seed, _TAG_LAYOUT, s)
        names = [t.name for t in treatments.values() if s in t.sources and t.kind != "control"]
        names += ["DMSO"] * preset.n_dmso_wells + ["untreated"] * preset.n_untreated_wells
        usable = _usable_wells()
        chosen = sorted(usable[i] for i in lrng.choice(len(usable), len(names), replace=False))
        assigned = [names[i] for i in lrng.permutation(len(names))]
        layout = tuple((well_name(r, c), t) for (r, c), t in zip(chosen, assigned, strict=True))
        sources.append(_Source(s, f"source_{s + 1}", line, layout, sensitivity))

        for p in range(preset.plates_per_source):
            prng = _rng(seed, _TAG_PLATE, s, p)
            focus = float(prng.uniform(0.7, 1.6))
            optics = Optics(
                gain=tuple(float(x) for x in gain * np.exp(prng.normal(0.0, 0.12, 5))),
                offset=tuple(float(x) for x in offset + prng.normal(0.0, 3.0, 5)),
                blur=tuple(
                    float(x) for x in focus * _WAVELENGTH_BLUR * np.exp(prng.normal(0, 0.05, 5))
                ),
                illumination_centre=(
                    float(0.5 + prng.normal(0, 0.12)),
                    float(0.5 + prng.normal(0, 0.12)),
                ),
                vignetting=tuple(
                    float(x) for x in prng.uniform(0.15, 0.4) * np.exp(prng.normal(0, 0.1, 5))
                ),
                background=tuple(float(x) for x in background),
                electrons_per_adu=electrons,
                read_noise=2.5,
            )
            plates.append(
                _Plate(
                    source=s,
                    index=p,
                    name=f"S{s + 1}_P{p + 1:02d}",
                    optics=optics,
                    drift=prng.normal(0.0, _PLATE_DRIFT, _D),
                    density=float(prng.normal(0.0, 0.12)),
                )
            )
    return _Design(treatments, tuple(sources), tuple(plates))


def _applied_shift(design: _Design, source: _Source, treatment: str) -> np.ndarray:
    t = design.treatments[treatment]
    if t.kind == "control":
        return t.shift
    dmso = design.treatments["DMSO"].shift
    sensitivity = source.sensitivity[t.moa_index] if t.moa_index >= 0 else 1.0
    return dmso + sensitivity * t.shift


# --------------------------------------------------------------------------------------------
# Writing a screen
# --------------------------------------------------------------------------------------------


def simulate_screen(
    out: str | Path,
    preset: str | ScreenPreset = "demo",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Simulate a Cell Painting screen and write it to a folder.

    The screen is generated into a hidden temporary sibling of ``out`` and moved into place at
    the end, so an interrupted run never leaves a half-written screen. An existing ``out`` is
    replaced only when it is empty or a previous simulated screen.

    Args:
        out: Destination folder.
        preset: A name in :data:`PRESETS` or a :class:`ScreenPreset`.
        seed: Non-negative seed; the same seed gives identical pixels and tables.
        progress: Print one line per plate to stderr.

    Returns:
        Summary: ``out``, ``preset``, ``seed``, and the counts ``n_sources``, ``n_plates``,
        ``n_wells``, ``n_sites``, ``n_images``, ``n_nuclei``, ``n_treatments`` (not controls),
        ``n_moas``, ``n_controls`` (control wells).

    Raises:
        ValueError: ``preset`` is unknown or not a ScreenPreset, ``seed`` is not a non-negative
            int, ``progress`` is not a bool, or ``out`` is a file or a non-empty folder that is
            not a simulated screen.

    Example:
        >>> summary = simulate_screen("data/01_raw/screen", "demo", seed=0)  # doctest: +SKIP
    """
    if isinstance(preset, ScreenPreset):
        preset_name, config = "custom", preset
    elif isinstance(preset, str) and preset in PRESETS:
        preset_name, config = preset, PRESETS[preset]
    else:
        raise ValueError(
            f"preset must be one of {sorted(PRESETS)} or a ScreenPreset, got {preset!r}"
        )
    seed = _check_int(seed, "seed", minimum=0)
    if not isinstance(progress, bool):
        raise ValueError(f"progress must be a bool, got {progress!r}")
    if not isinstance(out, (str, os.PathLike)) or str(out) == "":
        raise ValueError(f"out must be a folder path, got {out!r}")
    out = Path(out).absolute()
    _check_destination(out)

    design = _design(config, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        counts = _write_screen(tmp, design, config, seed, preset_name, progress)
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"out": str(out), "preset": preset_name, "seed": seed, **counts}


def _check_destination(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not _is_screen(out):
        raise ValueError(
            f"out {out} is a non-empty folder that is not a simulated screen (no screen.json "
            f"with format {FORMAT!r}); refusing to overwrite it"
        )


def _is_screen(folder: Path) -> bool:
    try:
        return json.loads((folder / "screen.json").read_text()).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _move_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; a previous screen at ``out`` is moved aside, then deleted."""
    if out.is_dir() and any(out.iterdir()):
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / "screen")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        if out.is_dir():
            out.rmdir()
        os.replace(tmp, out)


def _write_screen(
    root: Path, design: _Design, preset: ScreenPreset, seed: int, preset_name: str, progress: bool
) -> dict[str, int]:
    import tifffile

    lo, hi = preset.cells_per_site
    mid = 0.5 * (lo + hi)
    count_effect = _E[_I["cell_count"]]
    load_rows: list[dict[str, Any]] = []
    map_rows: list[dict[str, str]] = []
    n_nuclei = 0
    for plate in design.plates:
        source = design.sources[plate.source]
        rel = f"images/{source.name}/{plate.name}"
        folder = root / "images" / source.name / plate.name
        folder.mkdir(parents=True)
        for well, treatment in source.layout:
            t = design.treatments[treatment]
            map_rows.append(
                {
                    "Metadata_Plate": plate.name,
                    "Metadata_Well": well,
                    "Metadata_Treatment": treatment,
                    "Metadata_ControlType": "negcon" if t.kind == "control" else "",
                }
            )
            row, col = ord(well[0]) - ord("A"), int(well[1:]) - 1
            wrng = _rng(seed, _TAG_WELL, plate.source, plate.index, row, col)
            z_well = (
                plate.drift
                + _applied_shift(design, source, treatment)
                + wrng.normal(0.0, _WELL_NOISE, _D)
            )
            for site in range(1, preset.sites_per_well + 1):
                srng = _rng(seed, _TAG_SITE, plate.source, plate.index, row, col, site)
                log_n = (
                    count_effect * z_well[_I["cell_count"]] + plate.density + srng.normal(0.0, 0.1)
                )
                n_cells = int(np.clip(round(mid * math.exp(log_n)), lo, hi))
                clean, labels = _render_clean(srng, preset.site_size, n_cells, z_well, source.line)
                image = _image(srng, clean, plate.optics, source.line)
                n_nuclei += int(labels.max())
                stem = f"{plate.name}_{well}_s{site}"
                entry: dict[str, Any] = {
                    "Metadata_Source": source.name,
                    "Metadata_Plate": plate.name,
                    "Metadata_Well": well,
                    "Metadata_Site": site,
                }
                for c, channel in enumerate(CHANNELS):
                    name = f"{stem}_{channel}.tif"
                    tifffile.imwrite(
                        folder / name, image[c], compression="zlib", compressionargs=_ZLIB
                    )
                    entry[f"FileName_Orig{channel}"] = name
                    entry[f"PathName_Orig{channel}"] = rel
                name = f"{stem}_nuclei_truth.tif"
                truth_dtype = np.uint16 if labels.max() < 65535 else np.uint32
                tifffile.imwrite(
                    folder / name,
                    labels.astype(truth_dtype),
                    compression="zlib",
                    compressionargs=_ZLIB,
                )
                entry["FileName_NucleiTruth"] = name
                entry["PathName_NucleiTruth"] = rel
                load_rows.append(entry)
        if progress:
            print(
                f"[morphoflow] simulated plate {plate.name} ({source.name})",
                file=sys.stderr,
                flush=True,
            )

    load_columns = ["Metadata_Source", "Metadata_Plate", "Metadata_Well", "Metadata_Site"]
    for channel in CHANNELS:
        load_columns += [f"FileName_Orig{channel}", f"PathName_Orig{channel}"]
    load_columns += ["FileName_NucleiTruth", "PathName_NucleiTruth"]
    pd.DataFrame(load_rows, columns=load_columns).to_csv(root / "load_data.csv", index=False)
    pd.DataFrame(
        map_rows,
        columns=["Metadata_Plate", "Metadata_Well", "Metadata_Treatment", "Metadata_ControlType"],
    ).to_csv(root / "platemap.csv", index=False)
    pd.DataFrame(
        [(t.name, t.moa) for t in design.treatments.values()],
        columns=["Metadata_Treatment", "Metadata_MoA"],
    ).to_csv(root / "moa.csv", index=False)
    truth = pd.DataFrame(
        [(t.name, t.moa, round(t.strength, 6), t.kind) for t in design.treatments.values()],
        columns=["Metadata_Treatment", "Metadata_MoA", "strength", "kind"],
    )
    shifts = np.round(np.stack([t.shift for t in design.treatments.values()]), 6)
    truth = pd.concat(
        [truth, pd.DataFrame(shifts, columns=[f"shift_{d}" for d in LATENT_DIMS])], axis=1
    )
    truth.to_csv(root / "truth.csv", index=False)
    # compounds and assays for activity prediction (own random stream: pixels unchanged)
    from morphoflow.screen.compounds import write_screen_compounds

    write_screen_compounds(root, truth, seed)

    n_controls = sum(1 for r in map_rows if r["Metadata_ControlType"] == "negcon")
    counts = {
        "n_sources": len(design.sources),
        "n_plates": len(design.plates),
        "n_wells": len(map_rows),
        "n_sites": len(load_rows),
        "n_images": len(load_rows) * len(CHANNELS),
        "n_nuclei": n_nuclei,
        "n_treatments": sum(1 for t in design.treatments.values() if t.kind != "control"),
        "n_moas": preset.n_moas,
        "n_controls": n_controls,
    }
    meta = {
        "format": FORMAT,
        "preset": preset_name,
        "seed": seed,
        "version": _version(),
        "parameters": dataclasses.asdict(preset),
        "counts": counts,
        "channels": list(CHANNELS),
        "latent_dims": list(LATENT_DIMS),
        "effect_sizes": EFFECT_SIZES,
        "strength_ranges": {k: list(v) for k, v in STRENGTH_RANGES.items()},
        "inactive_moa": INACTIVE_MOA,
        "overlap_convention": "where nuclei overlap, the label drawn last wins",
        "bit_depth": 12,
        "sources": [
            {
                "name": s.name,
                "plates": [p.name for p in design.plates if p.source == s.index],
                "cell_line": _jsonable(dataclasses.asdict(s.line)),
            }
            for s in design.sources
        ],
        "plates": [
            {
                "name": p.name,
                "source": design.sources[p.source].name,
                "optics": _jsonable(dataclasses.asdict(p.optics)),
            }
            for p in design.plates
        ],
    }
    (root / "screen.json").write_text(json.dumps(meta, indent=2) + "\n")
    return counts


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    def fix(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [fix(x) for x in v]
        if isinstance(v, float):
            return round(v, 6)
        return v

    return {k: fix(v) for k, v in values.items()}


def _version() -> str:
    try:
        from morphoflow import __version__

        return str(__version__)
    except ImportError:  # pragma: no cover
        return "unknown"
