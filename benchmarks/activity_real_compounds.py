"""The structure model (Chemprop, as in the activity pipeline) on real ChEMBL activity data,
beside a Morgan fingerprint + random forest baseline computed in the same run.

Data: the ChEMBL target sets that ship inside the ``MoleculeACE`` wheel on PyPI (van Tilborg
et al., JCIM 2022; ``MoleculeACE/Data/benchmark_data/CHEMBL*_{Ki,EC50}.csv``: ``smiles``,
``exp_mean [nM]``). Get them once, outside the repository, and pass the folder; nothing is
downloaded at run time and MoleculeACE is not a project dependency::

    pip download MoleculeACE==3.0.0 --no-deps -d /tmp/x && unzip -q /tmp/x/*.whl -d /tmp/x/unz
    python benchmarks/activity_real_compounds.py /tmp/x/unz/MoleculeACE/Data/benchmark_data \
        [--targets CHEMBL2047_EC50,CHEMBL4203_Ki,CHEMBL262_Ki] [--threshold-nm 100]

Per target: active = potency <= ``--threshold-nm`` (default 100 nM, i.e. pKi / pEC50 >= 7);
5-fold Bemis-Murcko scaffold split (:func:`morphoflow.activity.splits.scaffold_folds`, whole
scaffold groups, largest first into the smallest fold); per fold a single-task Chemprop MPNN
(:func:`morphoflow.activity.models.train_chemprop`) and a random forest (500 trees) on Morgan
fingerprints (radius 2, 2,048 bits); AUROC and average precision per fold and their medians.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from morphoflow.activity.models import ModelConfig, predict_chemprop, torch_threads, train_chemprop
from morphoflow.activity.splits import murcko_scaffold, scaffold_folds


def morgan(smiles: list[str], radius: int = 2, bits: int = 2048) -> np.ndarray:
    """Morgan (ECFP-like) bit vectors, (n, bits) uint8."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    return np.stack(
        [generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles]
    ).astype(np.uint8)


def run_target(path: Path, threshold_nm: float, config: ModelConfig, folds: int) -> dict:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import average_precision_score, roc_auc_score

    frame = pd.read_csv(path)
    if "smiles" not in frame.columns or "exp_mean [nM]" not in frame.columns:
        raise ValueError(f"{path}: expected columns 'smiles' and 'exp_mean [nM]'")
    smiles = frame["smiles"].astype(str).tolist()
    y = (frame["exp_mean [nM]"].to_numpy(dtype=float) <= threshold_nm).astype(np.float32)
    fold_of = scaffold_folds(smiles, n_folds=5)
    x = morgan(smiles)
    rows = []
    for fold in range(folds):
        test = fold_of == fold
        train = ~test
        if len(np.unique(y[test])) < 2:
            rows.append({"fold": fold, "skipped": "one class in the test fold"})
            continue
        start = time.perf_counter()
        model = train_chemprop(
            [s for s, t in zip(smiles, train, strict=True) if t],
            y[train, None],
            config=config,
            seed=config.seed + fold,
        )
        p_cs = predict_chemprop(model, [s for s, t in zip(smiles, test, strict=True) if t])[:, 0]
        cs_seconds = time.perf_counter() - start
        start = time.perf_counter()
        forest = RandomForestClassifier(n_estimators=500, n_jobs=1, random_state=fold)
        p_rf = forest.fit(x[train], y[train]).predict_proba(x[test])[:, 1]
        rf_seconds = time.perf_counter() - start
        rows.append(
            {
                "fold": fold,
                "n_test": int(test.sum()),
                "n_active_test": int(y[test].sum()),
                "chemprop_auroc": round(float(roc_auc_score(y[test], p_cs)), 4),
                "chemprop_ap": round(float(average_precision_score(y[test], p_cs)), 4),
                "morgan_rf_auroc": round(float(roc_auc_score(y[test], p_rf)), 4),
                "morgan_rf_ap": round(float(average_precision_score(y[test], p_rf)), 4),
                "chemprop_seconds": round(cs_seconds, 1),
                "morgan_rf_seconds": round(rf_seconds, 1),
            }
        )
    scored = pd.DataFrame([r for r in rows if "skipped" not in r])
    return {
        "file": path.name,
        "n_compounds": len(smiles),
        "n_scaffolds": len({murcko_scaffold(s) for s in smiles}),
        "active_fraction": round(float(y.mean()), 3),
        "median": {
            c: round(float(scored[c].median()), 4)
            for c in ("chemprop_auroc", "morgan_rf_auroc", "chemprop_ap", "morgan_rf_ap")
        },
        "folds": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="MoleculeACE benchmark_data folder")
    parser.add_argument("--targets", default="CHEMBL2047_EC50,CHEMBL4203_Ki,CHEMBL262_Ki")
    parser.add_argument("--threshold-nm", type=float, default=100.0)
    parser.add_argument("--folds", type=int, default=5, help="folds run of the 5")
    parser.add_argument("--mpnn-epochs", type=int, default=30)
    parser.add_argument("--mpnn-hidden", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"error: data folder not found: {args.data}")
    config = ModelConfig(
        mpnn_epochs=args.mpnn_epochs,
        mpnn_hidden=args.mpnn_hidden,
        mpnn_ffn_hidden=args.mpnn_hidden,
        batch_size=32,
    )
    start = time.perf_counter()
    targets = {}
    with torch_threads(args.threads):
        for name in args.targets.split(","):
            path = args.data / f"{name}.csv"
            if not path.is_file():
                raise SystemExit(f"error: no {path}")
            targets[name] = run_target(path, args.threshold_nm, config, args.folds)
            print(f"{name}: {targets[name]['median']}", flush=True, file=__import__("sys").stderr)
    result = {
        "benchmark": "activity_real_compounds",
        "command": "python benchmarks/activity_real_compounds.py DATA "
        + " ".join(
            f"--{k.replace('_', '-')} {v}"
            for k, v in vars(args).items()
            if k not in ("data", "out")
        ),
        "data": "MoleculeACE 3.0.0 wheel (PyPI), MoleculeACE/Data/benchmark_data (ChEMBL)",
        "label": f"active = exp_mean <= {args.threshold_nm:g} nM",
        "split": "5-fold Bemis-Murcko scaffold split (morphoflow.activity.splits.scaffold_folds)",
        "models": {
            "chemprop": f"Chemprop 2 MPNN, single task, hidden {args.mpnn_hidden}, depth 3, "
            f"{args.mpnn_epochs} epochs, batch 32",
            "morgan_rf": "random forest, 500 trees, Morgan radius 2, 2048 bits",
        },
        "targets": targets,
        "seconds_total": round(time.perf_counter() - start, 1),
        "machine": {
            "platform": platform.platform(),
            "cpu_threads_torch": args.threads,
            "torch": torch.__version__,
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
