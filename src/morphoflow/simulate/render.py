"""Pixels of one simulated Cell Painting site: cells, the five stains, optics and noise.

A site is rendered in two steps: a noise-free signal in units of each channel's target
brightness (cells drawn from the well's latent phenotype, :mod:`morphoflow.simulate.design`),
then the optics.

**Stains.** DNA: nuclei with chromatin texture, darker nucleoli and faint cytoplasmic DNA. ER:
a reticular network, denser around the nucleus, with a bright nuclear envelope. RNA: nucleoli,
nucleoplasm and granular cytoplasm. AGP: cortical actin at the cell edge, stress fibres and a
perinuclear Golgi. Mito: puncta and short filaments whose density decays away from the nucleus.

**Optics.** Clean signal -> Gaussian blur (focus; longer wavelengths blur more) ->
illumination field -> Poisson shot noise -> Gaussian read noise + camera offset -> rounded and
clipped to a 12-bit range (0..4095) stored as uint16. Saturation happens, rarely (bright
mitotic nuclei on bright plates).

**Labels.** Nucleus labels are 1..n in drawing order; where two nuclei overlap, the label of
the one drawn last wins (the DNA signal of overlapping nuclei adds up, as fluorescence does).

The order of the random draws is part of what a seed means: reorganising this code must keep
every draw in its place (the simulated screens of a seed stay byte-identical).

Example:
    >>> from morphoflow.simulate.render import render_site
    >>> image, labels = render_site(0, size=128, n_cells=6)
    >>> image.shape, image.dtype.name, int(labels.max()) == 6
    ((5, 128, 128), 'uint16', True)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from morphoflow.simulate.design import (
    _D,
    _E,
    _HETEROGENEITY,
    _I,
    _POPULATION_DIMS,
    CellLine,
    Optics,
    _check_int,
    _fits,
)

__all__ = ["render_site"]

#: ADU of one unit of clean signal, per channel (before the stain brightness and camera gain).
_TARGET_ADU = np.array([1300.0, 450.0, 420.0, 500.0, 550.0])
_MAX_ADU = 4095


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


@dataclass
class _Site:
    """Per-pixel maps of one site shared by the channels (index 0 of a padded array = none)."""

    cells: _Cells
    centres: np.ndarray  # (n, 2) (y, x)
    e: np.ndarray  # (n, D) multiplicative effects exp(E * z)
    labels: np.ndarray  # nucleus labels
    nuc: np.ndarray  # inside a nucleus
    rho_map: np.ndarray  # normalised radius inside the top nucleus (1 outside)
    dist_out: np.ndarray  # distance to the nearest nucleus pixel
    ddy: np.ndarray  # offset from the owning cell's centre, y
    ddx: np.ndarray  # offset from the owning cell's centre, x
    cell_mask: np.ndarray  # inside a cell body
    cells_img: np.ndarray  # cell label per pixel (0 = background)
    cyto: np.ndarray  # cytoplasm: cell body minus nuclei

    @property
    def n(self) -> int:
        return len(self.cells.a)

    @property
    def size(self) -> int:
        return self.labels.shape[0]

    def per_pixel(self, values: np.ndarray) -> np.ndarray:
        """Per-cell ``values`` painted on each cell's pixels (0 outside cells), float32."""
        return _pad(values)[self.cells_img]


def _pad(values: np.ndarray) -> np.ndarray:
    """``values`` with a leading 0 (the background label), float32."""
    return np.concatenate([[0.0], values]).astype(np.float32)


def _render_clean(
    rng: np.random.Generator, size: int, n: int, z_well: np.ndarray, line: CellLine
) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free signal (5, H, W) in units of each channel's target and the nucleus labels."""
    cells = _sample_cells(rng, n, z_well, line)
    centres = _place(rng, cells, size, line)
    keep = np.flatnonzero(~np.isnan(centres[:, 0]))
    # Drop cells that found no room (rare; only with extreme densities).
    if len(keep) < n:
        cells = _Cells(**{f.name: getattr(cells, f.name)[keep] for f in dataclasses.fields(_Cells)})
        centres = centres[keep]
        n = len(keep)
    e = np.exp(_E[None, :] * cells.z)

    labels, dna, rho_map, nucleoli_pts = _draw_nuclei(rng, cells, centres, e, size, line)
    site = _cell_bodies(rng, cells, centres, e, labels, rho_map, line)
    dna, nucleoli = _dna_channel(rng, site, dna, nucleoli_pts, line)
    er = _er_channel(rng, site)
    rna = _rna_channel(rng, site, nucleoli)
    agp = _agp_channel(rng, site, line)
    mito = _mito_channel(rng, site, line)

    clean = np.stack([dna, er, rna, agp, mito]).astype(np.float32)
    # Placement keeps overlaps partial, so no label is ever hidden; relabel 1..n just in case.
    present = np.bincount(labels.ravel(), minlength=n + 1) > 0
    if not present[1:].all():
        relabel = np.cumsum(present).astype(np.uint32) - 1
        labels = relabel[labels]
    return clean, labels


def _draw_nuclei(
    rng: np.random.Generator,
    cells: _Cells,
    centres: np.ndarray,
    e: np.ndarray,
    size: int,
    line: CellLine,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Nuclei in drawing order: labels, raw DNA density, normalised radius, nucleoli points."""
    shape = (size, size)
    labels = np.zeros(shape, dtype=np.uint32)
    dna = np.zeros(shape, dtype=np.float32)
    rho_map = np.ones(shape, dtype=np.float32)  # normalised radius inside the top nucleus
    nucleoli_pts: list[np.ndarray] = []
    for k in range(len(cells.a)):
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
    return labels, dna, rho_map, nucleoli_pts


def _cell_bodies(
    rng: np.random.Generator,
    cells: _Cells,
    centres: np.ndarray,
    e: np.ndarray,
    labels: np.ndarray,
    rho_map: np.ndarray,
    line: CellLine,
) -> _Site:
    """Cell bodies: Voronoi on the nearest nucleus pixel, limited by an irregular radius."""
    size = labels.shape[0]
    shape = (size, size)
    nuc = labels > 0
    if len(cells.a):
        dist_out, (iy, ix) = ndi.distance_transform_edt(~nuc, return_indices=True)
        dist_out = dist_out.astype(np.float32)
        owner = labels[iy, ix]
    else:
        dist_out = np.full(shape, np.inf, dtype=np.float32)
        owner = np.zeros(shape, dtype=np.uint32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    oy, ox = _pad(centres[:, 0])[owner], _pad(centres[:, 1])[owner]
    ddy, ddx = yy - oy, xx - ox
    dist_c = np.hypot(ddy, ddx)
    angle = np.arctan2(ddy, ddx)
    reach = np.ones(shape, dtype=np.float32)
    for i in range(4):
        reach += _pad(cells.cell_harm[:, i])[owner] * np.cos(
            (i + 1) * angle + _pad(cells.cell_harm_phase[:, i])[owner]
        )
    reach *= _pad(cells.cell_radius)[owner] * np.exp(
        0.12 * _smooth(rng, size, 2.0 * line.nucleus_radius)
    )
    cell_mask = ((dist_c < reach) | (dist_out < 2.5)) & (owner > 0)
    cells_img = np.where(cell_mask, owner, 0)
    return _Site(
        cells=cells,
        centres=centres,
        e=e,
        labels=labels,
        nuc=nuc,
        rho_map=rho_map,
        dist_out=dist_out,
        ddy=ddy,
        ddx=ddx,
        cell_mask=cell_mask,
        cells_img=cells_img,
        cyto=cell_mask & ~nuc,
    )


def _dna_channel(
    rng: np.random.Generator,
    site: _Site,
    dna: np.ndarray,
    nucleoli_pts: list[np.ndarray],
    line: CellLine,
) -> tuple[np.ndarray, np.ndarray]:
    """DNA: chromatin texture, darker nucleoli, faint cytoplasmic (mitochondrial) DNA.

    Returns the DNA channel and the nucleoli map (the RNA channel shows them bright).
    """
    size = site.size
    shape = (size, size)
    chromatin = _bandpass(rng, shape, line.chromatin_scale)
    tex = _pad(site.cells.texture)[site.labels]
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
        nucleoli = np.minimum(nucleoli, 1.5) * site.nuc
    dna *= np.clip(1.0 + tex * chromatin, 0.15, None) * (1.0 - 0.35 * np.minimum(nucleoli, 1.0))
    dna += 0.03 * site.cyto
    return dna, nucleoli


def _er_channel(rng: np.random.Generator, site: _Site) -> np.ndarray:
    """ER: reticular network, denser around the nucleus, bright nuclear envelope."""
    nuc, cyto, dist_out = site.nuc, site.cyto, site.dist_out
    shape = nuc.shape
    gran = site.per_pixel(site.e[:, _I["granularity"]])
    cell_r = site.per_pixel(site.cells.cell_radius)
    envelope_in = np.where(nuc, np.exp(-(((1.0 - site.rho_map) * 4.0) ** 2)), 0.0)
    envelope_out = np.where(cyto, np.exp(-(dist_out**2) / 2.0), 0.0)
    network = _bandpass(rng, shape, 1.1, 3.0)
    reticulum = np.exp(-((network / 0.4) ** 2)) / 0.3
    contrast = np.clip(0.55 * gran, 0.0, 0.9)
    er_i = site.per_pixel(site.e[:, _I["er_intensity"]])
    perinuclear = 0.3 + 0.7 * np.exp(-dist_out / np.maximum(0.35 * cell_r, 1.0))
    return er_i * (
        cyto * perinuclear * ((1 - contrast) + contrast * reticulum)
        + 0.6 * (envelope_in + envelope_out)
        + 0.08 * nuc
    )


def _rna_channel(rng: np.random.Generator, site: _Site, nucleoli: np.ndarray) -> np.ndarray:
    """RNA: nucleoli, nucleoplasm, granular cytoplasm."""
    gran = site.per_pixel(site.e[:, _I["granularity"]])
    cell_r = site.per_pixel(site.cells.cell_radius)
    rna_i = site.per_pixel(site.e[:, _I["rna_intensity"]])
    fine = _bandpass(rng, site.nuc.shape, 0.8)
    return rna_i * (
        0.25 * site.nuc
        + 1.4 * nucleoli
        + site.cyto
        * (0.15 + 0.45 * np.exp(-site.dist_out / np.maximum(0.6 * cell_r, 1.0)))
        * np.clip(1.0 + 0.45 * np.clip(gran, 0, 2) * fine, 0.0, None)
    )


def _agp_channel(rng: np.random.Generator, site: _Site, line: CellLine) -> np.ndarray:
    """AGP: membrane/cortical actin at the cell edge, stress fibres, a perinuclear Golgi."""
    size, n, cells = site.size, site.n, site.cells
    shape = (size, size)
    cells_img, cell_mask, per_pixel = site.cells_img, site.cell_mask, site.per_pixel
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
    across = -site.ddx * per_pixel(np.sin(fibre_angle)) + site.ddy * per_pixel(np.cos(fibre_angle))
    start = per_pixel(rng.integers(2 * size, 6 * size, n).astype(float))
    fibres = profile[(across + start).astype(np.int64) % len(profile)].astype(np.float32)
    fibres = np.clip(fibres, 0.0, None) * np.clip(0.6 + 0.5 * _bandpass(rng, shape, 3.0), 0.0, None)
    golgi = np.zeros(shape, dtype=np.float32)
    if n:
        centres = site.centres
        g_angle = rng.uniform(0, 2 * math.pi, n)
        g_dist = cells.radius * 1.25
        gy = np.clip((centres[:, 0] + g_dist * np.sin(g_angle)).astype(int), 0, size - 1)
        gx = np.clip((centres[:, 1] + g_dist * np.cos(g_angle)).astype(int), 0, size - 1)
        np.add.at(golgi, (gy, gx), (cells.phase != 2).astype(np.float32))
        sigma_g = max(1.0, 0.35 * line.nucleus_radius)
        golgi = ndi.gaussian_filter(golgi, sigma_g) * (2 * math.pi * sigma_g**2) * site.cyto
    agp_i = per_pixel(site.e[:, _I["agp_intensity"]])
    edge = per_pixel(site.e[:, _I["agp_edge"]])
    agp = agp_i * (
        cell_mask * (0.22 + 0.3 * fibres) * np.where(site.nuc, 0.4, 1.0)
        + 0.7 * edge * membrane * cell_mask
        + 0.6 * golgi
    )
    mitotic_px = per_pixel((cells.phase == 2).astype(float)) > 0
    return np.where(mitotic_px, agp * 0.6 + 0.3 * agp_i * cell_mask, agp)  # rounded-up cells


def _mito_channel(rng: np.random.Generator, site: _Site, line: CellLine) -> np.ndarray:
    """Mito: puncta and short filaments, density decaying away from the nucleus."""
    size, n, cells, cyto = site.size, site.n, site.cells, site.cyto
    cells_img, per_pixel = site.cells_img, site.per_pixel
    gran = per_pixel(site.e[:, _I["granularity"]])
    lam = per_pixel(
        line.mito_spread
        * cells.cell_radius
        * np.exp(-_E[_I["mito_perinuclear"]] * cells.z[:, _I["mito_perinuclear"]])
    )
    mito_i = per_pixel(site.e[:, _I["mito_intensity"]])
    # The perinuclear parameter moves mitochondria, it does not change their amount: the
    # profile is normalised to a mean of 0.5 over each cell's cytoplasm.
    spread = np.where(cyto, np.exp(-site.dist_out / np.maximum(lam, 1.0)), 0.0)
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
    return 0.3 * density + puncta * site.cell_mask


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
