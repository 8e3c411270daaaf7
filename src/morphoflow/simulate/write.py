"""Writing a simulated screen to a folder: images, ground truth, tables and ``screen.json``.

Ground truth and conventions
----------------------------
* Nucleus labels are 1..n in drawing order; **where two nuclei overlap, the label of the one
  drawn last wins** (:mod:`morphoflow.simulate.render`).
* ``Metadata_MoA``: negative controls (``DMSO``, ``untreated``) have an empty MoA; null
  treatments have the MoA ``"inactive"`` (not ``"null"``: pandas reads ``"null"`` as NaN).
  ``truth.csv`` tells them apart with ``kind`` (``strong``/``moderate``/``weak``/``null``/
  ``control``). Read the CSVs with ``keep_default_na=False`` to keep empty strings.
* ``truth.csv`` is for evaluation only; pipelines must never train on it. Its ``shift_<dim>``
  columns are the nominal shift of the compound relative to DMSO (before the per-source
  sensitivity); DMSO's row holds the DMSO shift itself.
* Compounds and assays for activity prediction (``compounds.csv``, ``assays.csv``, ...) come
  from :func:`morphoflow.simulate.compounds.write_screen_compounds`, with their own random
  stream: the images and tables above do not depend on them.

Layout of a screen folder (paths in tables are relative to it, with forward slashes)::

    load_data.csv  platemap.csv  moa.csv  truth.csv  screen.json
    images/<source>/<plate>/<plate>_<well>_s<site>_<channel>.tif
    images/<source>/<plate>/<plate>_<well>_s<site>_nuclei_truth.tif
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.screen.constants import CHANNELS
from morphoflow.simulate.compounds import write_screen_compounds
from morphoflow.simulate.design import (
    _D,
    _E,
    _I,
    _TAG_SITE,
    _TAG_WELL,
    _WELL_NOISE,
    EFFECT_SIZES,
    INACTIVE_MOA,
    LATENT_DIMS,
    PRESETS,
    STRENGTH_RANGES,
    ScreenPreset,
    _applied_shift,
    _check_int,
    _Design,
    _design,
    _Plate,
    _rng,
)
from morphoflow.simulate.render import _image, _render_clean

__all__ = ["FORMAT", "simulate_screen"]

#: Value of the ``format`` key of ``screen.json``.
FORMAT = "morphoflow-screen/1"

#: zlib (deflate) level 1: twice as fast as the default level, files ~2 % bigger.
_ZLIB = {"level": 1}


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
    load_rows: list[dict[str, Any]] = []
    map_rows: list[dict[str, str]] = []
    n_nuclei = 0
    for plate in design.plates:
        n_nuclei += _write_plate(root, design, plate, preset, seed, load_rows, map_rows)
        if progress:
            print(
                f"[morphoflow] simulated plate {plate.name} ({design.sources[plate.source].name})",
                file=sys.stderr,
                flush=True,
            )
    truth = _write_tables(root, design, load_rows, map_rows)
    # compounds and assays for activity prediction (own random stream: pixels unchanged)
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
    meta = _screen_meta(design, preset, seed, preset_name, counts)
    (root / "screen.json").write_text(json.dumps(meta, indent=2) + "\n")
    return counts


def _write_plate(
    root: Path,
    design: _Design,
    plate: _Plate,
    preset: ScreenPreset,
    seed: int,
    load_rows: list[dict[str, Any]],
    map_rows: list[dict[str, str]],
) -> int:
    """Render and write every site of ``plate``; append its load_data and platemap rows.

    Returns:
        The number of nuclei drawn on the plate.
    """
    import tifffile

    lo, hi = preset.cells_per_site
    mid = 0.5 * (lo + hi)
    count_effect = _E[_I["cell_count"]]
    n_nuclei = 0
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
            log_n = count_effect * z_well[_I["cell_count"]] + plate.density + srng.normal(0.0, 0.1)
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
                tifffile.imwrite(folder / name, image[c], compression="zlib", compressionargs=_ZLIB)
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
    return n_nuclei


def _write_tables(
    root: Path,
    design: _Design,
    load_rows: list[dict[str, Any]],
    map_rows: list[dict[str, str]],
) -> pd.DataFrame:
    """Write load_data.csv, platemap.csv, moa.csv and truth.csv; return the truth frame."""
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
    return truth


def _screen_meta(
    design: _Design, preset: ScreenPreset, seed: int, preset_name: str, counts: dict[str, int]
) -> dict[str, Any]:
    """The content of ``screen.json``."""
    return {
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
