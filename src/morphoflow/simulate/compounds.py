"""Simulated compounds and assays with known causes, for compound activity prediction.

Two uses, each with its **own random stream** (``SeedSequence([seed, 0xC0DE, ...])``), so the
simulated screen's images and numbers do not change:

- :func:`write_screen_compounds`: the compounds of a simulated screen (one per treatment; the
  controls get an empty SMILES) and an assay matrix derived from the screen's latent phenotype
  shifts (``truth.csv``), plus a gene-expression-like profile table. The demo screen has 17
  treatments: far too few for AUROC to mean anything; it exercises the pipeline only.
- :func:`simulate_compound_library`: the ``library`` preset, >= 1,000 compounds. Its
  treatment **profiles are generated from the latent phenotype directly (no images are
  rendered or segmented)**: running that many compounds through the image pipeline would take
  hours on 2 CPU cores. Hence the files are named ``profiles_mo_latent.parquet`` /
  ``profiles_ge_latent.parquet``.

Chemistry: SMILES are built from :data:`SCAFFOLDS` (two attachment points) x
:data:`SUBSTITUENTS`, all parseable by RDKit, so Bemis-Murcko scaffold splits separate
scaffold families while substituents recur across scaffolds.

Biology (latent phenotype = the simulated screen's 15 :data:`LATENT_DIMS`): a compound's
MoA (tied to its scaffold with probability ``p_scaffold_moa``, else random) sets a direction,
its potency the length; a separate cytotoxicity lowers the number of cells per well. The
morphology (MO) view is a fixed random linear map of the latent phenotype plus noise, in which
the cell count enters only weakly (:data:`COUNT_WEIGHT`; profiles are per-cell averages and
cytotoxicity is modelled as cell loss only); the gene-expression (GE)
view is a different random linear map with per-dimension sensitivities and twice the noise.

Assays and their causes (``assay_truth.csv``):

=============  =================================================================================
``phenotype``  active when the latent phenotype projects far onto one MoA direction
``structure``  active when the compound carries one substituent (invisible in images)
``both``       active when a phenotype score plus a substituent bonus is high
``count``      active when few cells survive (cytotoxicity; mean cells per well)
``noise``      actives drawn at random
=============  =================================================================================

Labels get a little noise (flips), each assay measures a random subset of compounds (missing =
empty), and some compounds are never assayed: the ones a screening team wants predicted.

Nothing here was tuned to favour one method: the causal structure is stated above and the
constants below; the modality views are random linear maps.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morphoflow.atomic import atomic_dir
from morphoflow.simulate.design import EFFECT_SIZES, LATENT_DIMS

#: Scaffolds with two attachment points ``{R1}``, ``{R2}`` (filled with a substituent SMILES).
SCAFFOLDS: tuple[str, ...] = (
    "c1cc({R1})ccc1{R2}",
    "c1ccc({R1})c({R2})c1",
    "c1cc({R1})cc({R2})n1",
    "c1nc({R1})sc1{R2}",
    "c1cc2cc({R1})ccc2n1{R2}",
    "C1CC({R1})CCN1{R2}",
    "c1cc({R1})c2ccccc2c1{R2}",
    "O=C(Nc1ccc({R1})cc1){R2}",
    "c1cnc({R1})nc1{R2}",
    "C1CN({R1})CCN1{R2}",
    "c1cc({R1})oc1{R2}",
    "c1cc2c(cc1{R1})OC({R2})O2",
    "O=c1cc({R1})oc2ccc({R2})cc12",
    "c1ccc2c(c1)nc({R1})n2{R2}",
    "C1CCC({R1})C({R2})C1",
    "c1cc({R1})c(-c2ccccc2)cc1{R2}",
    "O=S(=O)(c1ccc({R1})cc1)N1CCC({R2})C1",
    "c1cc({R1})n(C)c1{R2}",
    "c1ccc(Cc2ccc({R1})cc2)cc1{R2}",
    "C1COc2cc({R1})ccc2N1{R2}",
    "c1cc({R1})ccc1OCC{R2}",
    "n1c({R1})cc2ccccc2c1{R2}",
    "c1nnc({R1})n1{R2}",
    "C1=CC({R1})=CC(=O)N1{R2}",
)
#: Substituents (ring-closure digits >= 10 so they never clash with a scaffold's rings).
SUBSTITUENTS: tuple[str, ...] = (
    "C",
    "CC",
    "Cl",
    "F",
    "Br",
    "OC",
    "C#N",
    "C(F)(F)F",
    "C(=O)O",
    "C(=O)N",
    "S(=O)(=O)N",
    "[N+](=O)[O-]",
    "N(C)C",
    "C%11CC%11",
    "N%12CCOCC%12",
    "c%13ccncc%13",
    "OC(C)=O",
    "CO",
)

_STREAM = 0xC0DE  # key of this module's seed sequences (never used by design.py)
_TAG_CHEM, _TAG_BIO, _TAG_VIEW, _TAG_ASSAY, _TAG_SCREEN = range(1, 6)

CAUSES = ("phenotype", "structure", "both", "count", "noise")
LIBRARY_FORMAT = "morphoflow-compound-library/1"
#: Weight of the cell count (latent ``cell_count`` and log cells per well) in the profile views,
#: relative to the other latent dimensions: profiles are per-cell averages, which the number of
#: cells changes only through crowding (an assumption of this simulator, stated, not measured).
COUNT_WEIGHT = 0.05


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAM, *key]))


def build_smiles(scaffold: int, r1: int, r2: int) -> str:
    """Canonical SMILES of scaffold ``scaffold`` with substituents ``r1``, ``r2`` (indices).

    Raises:
        ValueError: The combination is not a valid molecule for RDKit.
    """
    from rdkit import Chem

    text = SCAFFOLDS[scaffold].format(R1=SUBSTITUENTS[r1], R2=SUBSTITUENTS[r2])
    mol = Chem.MolFromSmiles(text)
    if mol is None:
        raise ValueError(f"invalid simulated SMILES {text!r}")
    return Chem.MolToSmiles(mol)


def _chemistry(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """n distinct compounds: scaffold index, substituent indices, SMILES."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    seen: set[str] = set()
    rows = []
    # scaffold popularity is uneven (like a real library)
    weights = rng.dirichlet(np.full(len(SCAFFOLDS), 2.0))
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"could not draw {n} distinct valid compounds")
        s = int(rng.choice(len(SCAFFOLDS), p=weights))
        r1, r2 = (int(v) for v in rng.integers(0, len(SUBSTITUENTS), 2))
        try:
            smiles = build_smiles(s, r1, r2)
        except ValueError:
            continue
        if smiles in seen:
            continue
        seen.add(smiles)
        rows.append((s, r1, r2, smiles))
    RDLogger.EnableLog("rdApp.*")
    return pd.DataFrame(rows, columns=["scaffold", "r1", "r2", "Metadata_SMILES"])


def _views(seed: int, n_mo: int, n_ge: int) -> dict[str, np.ndarray]:
    rng = _rng(seed, _TAG_VIEW)
    d = len(LATENT_DIMS)
    count = LATENT_DIMS.index("cell_count")
    w_mo = rng.normal(0.0, 1.0, (d + 1, n_mo)) / np.sqrt(d)
    # per-cell averages see the number of cells only through crowding: weight COUNT_WEIGHT
    w_mo[count] *= COUNT_WEIGHT
    w_mo[d] *= COUNT_WEIGHT  # row d = log cells per well (cytotoxicity included)
    sensitivity = rng.uniform(0.2, 1.2, d + 1)
    w_ge = rng.normal(0.0, 1.0, (d + 1, n_ge)) / np.sqrt(d) * sensitivity[:, None]
    w_ge[count] *= COUNT_WEIGHT
    w_ge[d] *= COUNT_WEIGHT
    return {"mo": w_mo, "ge": w_ge}


def _view(
    rng: np.random.Generator, z: np.ndarray, log_cells: np.ndarray, w: np.ndarray, noise: float
) -> np.ndarray:
    centered = log_cells - log_cells.mean()
    latent = np.column_stack([z, centered / 0.25])
    return latent @ w + rng.normal(0.0, noise, (len(z), w.shape[1]))


def _assays(
    rng: np.random.Generator,
    z: np.ndarray,
    directions: np.ndarray,
    substituents: np.ndarray,
    log_cells: np.ndarray,
    counts: dict[str, int],
    rate: tuple[float, float],
    flip: float,
    measured: tuple[float, float],
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Assay matrix (n, A) with NaN for not measured, and one truth row per assay."""
    n = len(z)
    columns, truth = [], []
    used_moa, used_sub = 0, 0
    sub_order = rng.permutation(len(SUBSTITUENTS))
    moa_order = rng.permutation(len(directions))
    for cause in CAUSES:
        for _ in range(counts.get(cause, 0)):
            active_rate = float(rng.uniform(*rate))
            detail = ""
            if cause in ("phenotype", "both"):
                k = int(moa_order[used_moa % len(directions)])
                used_moa += 1
                score = z @ directions[k]
                score = (score - score.mean()) / (score.std() + 1e-9)
                detail = f"MOA{k + 1:02d}"
                if cause == "both":
                    s = int(sub_order[used_sub % len(SUBSTITUENTS)])
                    used_sub += 1
                    has = (substituents == s).any(axis=1)
                    score = score + 2.5 * has
                    detail += f"+{SUBSTITUENTS[s]}"
                score = score + rng.normal(0.0, 0.3, n)
            elif cause == "structure":
                s = int(sub_order[used_sub % len(SUBSTITUENTS)])
                used_sub += 1
                has = (substituents == s).any(axis=1)
                score = has + rng.normal(0.0, 0.2, n)
                detail = SUBSTITUENTS[s]
                active_rate = float(np.clip(has.mean(), 0.03, 0.3))
            elif cause == "count":
                score = -log_cells + rng.normal(0.0, 0.05, n)
                detail = "low cells per well"
            else:
                score = rng.random(n)
            threshold = np.quantile(score, 1.0 - active_rate)
            active = (score > threshold).astype(np.float32)
            flips = rng.random(n) < flip
            active[flips] = 1.0 - active[flips]
            keep = rng.random(n) < rng.uniform(*measured)
            active[~keep] = np.nan
            columns.append(active)
            name = f"{cause}_{len([t for t in truth if t['cause'] == cause]) + 1:02d}"
            truth.append(
                {"assay": name, "cause": cause, "detail": detail, "active_rate": active_rate}
            )
    return np.column_stack(columns), truth


def _biology(
    rng: np.random.Generator, scaffolds: np.ndarray, n_moas: int, p_scaffold_moa: float
) -> dict[str, np.ndarray]:
    d = len(LATENT_DIMS)
    directions = np.zeros((n_moas, d))
    for k in range(n_moas):
        dims = rng.choice(d, 5, replace=False)
        directions[k, dims] = rng.normal(0.0, 1.0, 5)
        directions[k] /= np.linalg.norm(directions[k])
    n = len(scaffolds)
    home = rng.integers(-1, n_moas, len(SCAFFOLDS))  # -1: scaffold family mostly inactive
    from_scaffold = rng.random(n) < p_scaffold_moa
    moa = np.where(from_scaffold, home[scaffolds], rng.integers(-1, n_moas, n))
    strength = np.where(moa >= 0, rng.uniform(0.5, 3.0, n), 0.0)
    z = np.zeros((n, d))
    active = moa >= 0
    z[active] = strength[active, None] * (
        directions[moa[active]] + rng.normal(0.0, 0.3 / np.sqrt(d), (active.sum(), d))
    )
    z += rng.normal(0.0, 0.15, (n, d))  # compound-to-compound variation
    toxic = rng.random(n) < 0.15
    toxicity = np.where(toxic, rng.uniform(0.3, 1.5, n), 0.0)
    count_effect = EFFECT_SIZES["cell_count"]
    log_cells = np.log(60.0) + count_effect * z[:, LATENT_DIMS.index("cell_count")] - toxicity
    return {
        "directions": directions,
        "moa": moa,
        "strength": strength,
        "z": z,
        "toxicity": toxicity,
        "log_cells": log_cells,
    }


def simulate_compound_library(
    out: str | Path,
    n_compounds: int = 1200,
    seed: int = 0,
    n_moas: int = 8,
    assays: dict[str, int] | None = None,
    unlabelled_fraction: float = 0.05,
    n_wells: int = 4,
) -> dict[str, Any]:
    """Write the ``library`` preset: compounds, assays and latent-generated profiles.

    Profiles are generated from the latent phenotype directly (no images): see the module
    docstring. Files written into ``out`` (atomically: the folder appears complete or not at
    all): ``compounds.csv``, ``assays.csv``, ``profiles_mo_latent.parquet`` (60 features,
    ``Metadata_CellCount`` = cells summed over ``n_wells`` wells, ``Metadata_WellCount``),
    ``profiles_ge_latent.parquet`` (40 features), ``truth.csv`` (per compound: scaffold,
    substituents, MoA, potency, cytotoxicity, latent phenotype), ``assay_truth.csv`` (per
    assay: cause, detail, active rate) and ``library.json``.

    Args:
        out: Destination folder (an existing one is replaced only when empty or a previous
            library).
        n_compounds: Number of compounds (>= 50).
        seed: Seed of this module's random stream.
        n_moas: Number of MoAs.
        assays: Assays per cause (default phenotype 8, structure 6, both 4, count 4, noise 4).
        unlabelled_fraction: Share of compounds never assayed.
        n_wells: Replicate wells per compound (for the cell counts).

    Returns:
        Summary dict (paths and counts).

    Raises:
        ValueError: ``n_compounds`` < 50, an unknown cause in ``assays``, or ``out`` is a
            non-empty folder that is not a library.
    """
    if int(n_compounds) < 50:
        raise ValueError(f"n_compounds must be >= 50, got {n_compounds!r}")
    counts = assays or {"phenotype": 8, "structure": 6, "both": 4, "count": 4, "noise": 4}
    unknown = sorted(set(counts) - set(CAUSES))
    if unknown:
        raise ValueError(f"assays: unknown cause(s) {unknown}; known {list(CAUSES)}")
    chem = _chemistry(_rng(seed, _TAG_CHEM), int(n_compounds))
    ids = [f"CPD{i + 1:05d}" for i in range(len(chem))]
    bio = _biology(_rng(seed, _TAG_BIO), chem["scaffold"].to_numpy(), n_moas, 0.6)
    views = _views(seed, 60, 40)
    vrng = _rng(seed, _TAG_VIEW, 1)
    mo = _view(vrng, bio["z"], bio["log_cells"], views["mo"], 0.5)
    ge = _view(vrng, bio["z"], bio["log_cells"], views["ge"], 1.0)
    observed_cells = np.exp(bio["log_cells"] + vrng.normal(0.0, 0.08, len(ids)))
    arng = _rng(seed, _TAG_ASSAY)
    substituents = chem[["r1", "r2"]].to_numpy()
    matrix, assay_truth = _assays(
        arng,
        bio["z"],
        bio["directions"],
        substituents,
        bio["log_cells"],
        counts,
        rate=(0.06, 0.15),
        flip=0.02,
        measured=(0.7, 0.95),
    )
    unlabelled = arng.random(len(ids)) < float(unlabelled_fraction)
    matrix[unlabelled] = np.nan

    def profile_table(values: np.ndarray, prefix: str, with_counts: bool) -> pd.DataFrame:
        frame = pd.DataFrame(
            values.astype(np.float32), columns=[f"{prefix}_{j:03d}" for j in range(values.shape[1])]
        )
        meta = {"Metadata_Treatment": ids}
        if with_counts:
            meta["Metadata_WellCount"] = np.full(len(ids), n_wells)
            meta["Metadata_CellCount"] = np.round(observed_cells * n_wells).astype(np.int64)
        return pd.concat([pd.DataFrame(meta), frame], axis=1)

    names = [t["assay"] for t in assay_truth]
    assay_frame = pd.DataFrame(matrix, columns=names).astype("Int64")
    assay_frame.insert(0, "Metadata_Treatment", ids)
    truth = pd.DataFrame(
        {
            "Metadata_Treatment": ids,
            "Metadata_SMILES": chem["Metadata_SMILES"],
            "scaffold": chem["scaffold"],
            "r1": [SUBSTITUENTS[i] for i in chem["r1"]],
            "r2": [SUBSTITUENTS[i] for i in chem["r2"]],
            "Metadata_MoA": [f"MOA{m + 1:02d}" if m >= 0 else "inactive" for m in bio["moa"]],
            "strength": bio["strength"].round(6),
            "toxicity": bio["toxicity"].round(6),
            "cells_per_well": np.exp(bio["log_cells"]).round(3),
            "unlabelled": unlabelled,
        }
    )
    truth = pd.concat(
        [truth, pd.DataFrame(bio["z"].round(6), columns=[f"latent_{d}" for d in LATENT_DIMS])],
        axis=1,
    )
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_library(out))):
        raise ValueError(
            f"out {out} exists and is not empty or a simulated compound library (library.json); "
            "refusing to overwrite it"
        )
    with atomic_dir(out) as tmp:
        pd.DataFrame(
            {"Metadata_Treatment": ids, "Metadata_SMILES": chem["Metadata_SMILES"]}
        ).to_csv(tmp / "compounds.csv", index=False)
        assay_frame.to_csv(tmp / "assays.csv", index=False)
        profile_table(mo, "MO", True).to_parquet(tmp / "profiles_mo_latent.parquet", index=False)
        profile_table(ge, "GE", False).to_parquet(tmp / "profiles_ge_latent.parquet", index=False)
        truth.to_csv(tmp / "truth.csv", index=False)
        pd.DataFrame(assay_truth).to_csv(tmp / "assay_truth.csv", index=False)
        summary = {
            "format": LIBRARY_FORMAT,
            "preset": "library",
            "profiles": "generated from the latent phenotype directly (no images rendered)",
            "seed": int(seed),
            "n_compounds": len(ids),
            "n_unlabelled": int(unlabelled.sum()),
            "n_scaffolds_used": int(chem["scaffold"].nunique()),
            "assays": {c: int(counts.get(c, 0)) for c in CAUSES},
            "n_moas": int(n_moas),
        }
        (tmp / "library.json").write_text(json.dumps(summary, indent=2) + "\n")
    return {"out": str(out), **summary}


def _is_library(folder: Path) -> bool:
    try:
        meta = json.loads((folder / "library.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == LIBRARY_FORMAT


def write_screen_compounds(root: str | Path, truth: pd.DataFrame, seed: int) -> dict[str, int]:
    """Compounds, assays and a GE-like profile table for a simulated screen's treatments.

    Called by :func:`morphoflow.simulate.write.simulate_screen` while it writes the screen
    (inside its temporary folder); draws only from this module's stream.

    Args:
        root: The screen folder being written.
        truth: The screen's ``truth.csv`` frame (``Metadata_Treatment``, ``Metadata_MoA``,
            ``strength``, ``kind``, ``shift_<latent dim>``).
        seed: The screen's seed.

    Writes ``compounds.csv`` (controls with an empty SMILES), ``assays.csv`` (two treatments
    without any label: the ones to predict),
    ``assay_truth.csv`` and ``profiles_ge.parquet`` (treatment level, from the latent shifts
    through the GE view). Cell counts and morphology come from the image pipeline.

    Returns:
        Counts: ``n_compounds``, ``n_assays``.
    """
    root = Path(root)
    treatments = truth[truth["kind"] != "control"].reset_index(drop=True)
    controls = truth.loc[truth["kind"] == "control", "Metadata_Treatment"].tolist()
    n = len(treatments)
    rng = _rng(seed, _TAG_SCREEN)
    chem = _chemistry(rng, n)
    z = treatments[[f"shift_{d}" for d in LATENT_DIMS]].to_numpy(dtype=np.float64)
    log_cells = np.log(60.0) + 0.25 * z[:, LATENT_DIMS.index("cell_count")]
    moas = sorted(m for m in treatments["Metadata_MoA"].unique() if m != "inactive")
    directions = []
    for m in moas:
        mean = z[treatments["Metadata_MoA"].to_numpy() == m].mean(axis=0)
        directions.append(mean / (np.linalg.norm(mean) + 1e-9))
    counts = {"phenotype": min(2, len(moas)), "structure": 1, "count": 1, "noise": 1}
    matrix, assay_truth = _assays(
        rng,
        z,
        np.array(directions),
        chem[["r1", "r2"]].to_numpy(),
        log_cells,
        counts,
        rate=(0.3, 0.4),
        flip=0.0,
        measured=(1.0, 1.0),
    )
    names = [t["assay"] for t in assay_truth]
    # two treatments are never assayed: the pipeline predicts them
    matrix[rng.choice(n, min(2, n), replace=False)] = np.nan
    ge = _view(rng, z, log_cells, _views(seed, 60, 40)["ge"], 1.0)
    ids = treatments["Metadata_Treatment"].tolist()
    compounds = pd.DataFrame(
        {
            "Metadata_Treatment": ids + controls,
            "Metadata_SMILES": list(chem["Metadata_SMILES"]) + [""] * len(controls),
        }
    )
    compounds.to_csv(root / "compounds.csv", index=False)
    assays = pd.DataFrame(matrix, columns=names).astype("Int64")
    assays.insert(0, "Metadata_Treatment", ids)
    assays.to_csv(root / "assays.csv", index=False)
    pd.DataFrame(assay_truth).to_csv(root / "assay_truth.csv", index=False)
    ge_frame = pd.DataFrame(ge.astype(np.float32), columns=[f"GE_{j:03d}" for j in range(40)])
    ge_frame.insert(0, "Metadata_Treatment", ids)
    ge_frame.to_parquet(root / "profiles_ge.parquet", index=False)
    return {"n_compounds": n, "n_assays": len(names)}


def scaffold_substituent_table() -> Sequence[tuple[str, str]]:  # pragma: no cover - docs aid
    """(scaffold, substituent) SMILES pairs, for documentation."""
    return [(s, r) for s in SCAFFOLDS for r in SUBSTITUENTS]
