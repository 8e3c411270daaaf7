"""What a simulated screen is made of: the latent phenotype, presets, cell lines, optics, design.

**Latent phenotype.** Every cell carries a vector ``z`` over :data:`LATENT_DIMS` (15
interpretable dimensions: nucleus area, DNA intensity, Mito perinuclear fraction, ...). A value
of 0 is the cell line's baseline; one unit is roughly one standard deviation of the natural
cell-to-cell variation of that property. ``z`` is rendered into pixels by fixed, documented
effect sizes (:data:`EFFECT_SIZES`; see :mod:`morphoflow.simulate.render`).

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

Every random draw comes from a seed sequence keyed by the seed and a fixed tag (MoA, source,
layout, plate, well, site): the same seed gives the same design, whatever else changes.

Example:
    >>> from morphoflow.simulate.design import PRESETS
    >>> PRESETS["demo"].wells_per_plate, PRESETS["demo"].treatments_per_source
    (21, 15)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from morphoflow.screen.constants import well_name

__all__ = [
    "EFFECT_SIZES",
    "INACTIVE_MOA",
    "LATENT_DIMS",
    "PRESETS",
    "STRENGTH_RANGES",
    "CellLine",
    "Optics",
    "ScreenPreset",
]

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
    treatments = _treatments(preset, seed)
    sources: list[_Source] = []
    plates: list[_Plate] = []
    for s in range(preset.n_sources):
        source, source_plates = _source(preset, seed, s, treatments)
        sources.append(source)
        plates += source_plates
    return _Design(treatments, tuple(sources), tuple(plates))


def _treatments(preset: ScreenPreset, seed: int) -> dict[str, _Treatment]:
    """MoA directions, then every treatment and the two controls (the MoA stream)."""
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
    return treatments


def _source(
    preset: ScreenPreset, seed: int, s: int, treatments: dict[str, _Treatment]
) -> tuple[_Source, list[_Plate]]:
    """Source ``s``: its cell line, microscope, plate layout and plates (its own streams)."""
    plates: list[_Plate] = []
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
    source = _Source(s, f"source_{s + 1}", line, layout, sensitivity)

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
    return source, plates


def _applied_shift(design: _Design, source: _Source, treatment: str) -> np.ndarray:
    t = design.treatments[treatment]
    if t.kind == "control":
        return t.shift
    dmso = design.treatments["DMSO"].shift
    sensitivity = source.sensitivity[t.moa_index] if t.moa_index >= 0 else 1.0
    return dmso + sensitivity * t.shift
