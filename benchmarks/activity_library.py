"""Compound activity prediction on the simulated ``library`` preset: full cross-validation.

Simulates the library (1,200 compounds, profiles generated from the latent phenotype directly,
no images; see :mod:`morphoflow.simulate.compounds`), runs every modality on the scaffold split
and the same-size k-means splits in MO and GE space (5 folds each), and prints JSON: per split
and modality the counts of assays with median AUROC > 0.5 / 0.7 / 0.9, the median AUROC, the
retrospective union, and the mean AUROC per simulated cause (``assay_truth.csv``). The same
science code as the ``activity`` Kedro pipeline (``morphoflow.activity``); no MLflow.

    python benchmarks/activity_library.py [--n-compounds 1200] [--folds 5] \
        [--mpnn-epochs 30] [--mpnn-hidden 128] [--out benchmarks/results/activity_library.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path

import pandas as pd
import torch

from morphoflow.activity.crossval import cross_validate
from morphoflow.activity.evaluation import median_auroc, score_folds, summarize
from morphoflow.activity.inputs import load_activity_data, read_assays, read_compounds
from morphoflow.activity.models import ModelConfig, torch_threads
from morphoflow.activity.splits import make_splits, split_hash
from morphoflow.simulate.compounds import simulate_compound_library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-compounds", type=int, default=1200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folds", type=int, default=5, help="folds run of the 5 of each split")
    parser.add_argument("--splits", default="scaffold,kmeans_mo,kmeans_ge")
    parser.add_argument("--modalities", default="cs,mo,ge,cell_count,early_cs_mo")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--mpnn-epochs", type=int, default=30)
    parser.add_argument("--mpnn-hidden", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "library"
        simulate_compound_library(root, n_compounds=args.n_compounds, seed=args.seed)
        compounds, controls = read_compounds(root / "compounds.csv")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = load_activity_data(
                compounds,
                read_assays(root / "assays.csv"),
                {
                    "mo": pd.read_parquet(root / "profiles_mo_latent.parquet"),
                    "ge": pd.read_parquet(root / "profiles_ge_latent.parquet"),
                },
                controls=controls,
            )
        causes = pd.read_csv(root / "assay_truth.csv").set_index("assay")["cause"]
    splits = make_splits(
        data.compounds.loc[data.labels.index, "Metadata_SMILES"],
        data.profiles,
        args.splits.split(","),
        n_folds=5,
        seed=args.seed,
    )
    config = ModelConfig(
        epochs=args.epochs,
        mpnn_epochs=args.mpnn_epochs,
        mpnn_hidden=args.mpnn_hidden,
        mpnn_ffn_hidden=args.mpnn_hidden,
        batch_size=32,
        seed=args.seed,
    )
    with torch_threads(args.threads):
        predictions, log = cross_validate(
            data,
            splits,
            args.modalities.split(","),
            config,
            folds=list(range(args.folds)),
            progress=lambda line: print(line, flush=True, file=__import__("sys").stderr),
        )
    scores = score_folds(predictions)
    summary = summarize(scores, predictions)
    medians = median_auroc(scores)
    by_cause = {}
    for split in medians.index.get_level_values(0).unique():
        table = medians.loc[split]
        table = table.assign(cause=table.index.map(causes))
        by_cause[split] = {
            cause: {m: round(float(v), 3) for m, v in group.drop(columns="cause").mean().items()}
            for cause, group in table.groupby("cause")
        }
    counts = {
        split: {
            m: {k: v for k, v in entry.items() if k.startswith("count_gt") or k == "median_auroc"}
            for m, entry in block["modalities"].items()
        }
        for split, block in summary["splits"].items()
    }
    result = {
        "benchmark": "activity_library",
        "command": "python benchmarks/activity_library.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"),
        "data": "simulated library preset: profiles generated from the latent phenotype "
        "directly (no images)",
        "n_compounds": int(len(data.compounds)),
        "n_labelled": int(len(data.labels)),
        "n_assays": len(data.assays),
        "assays_per_cause": {c: int(n) for c, n in causes.value_counts().items()},
        "folds_run": f"{args.folds} of 5 per split",
        "reductions": f"Chemprop hidden size {args.mpnn_hidden} (Chemprop default 300), "
        f"{args.mpnn_epochs} epochs; modalities run: {args.modalities} (early fusion is left out "
        "where not listed); to fit ~15 min per run on 2 shared CPU cores",
        "splits_hash": split_hash(splits),
        "counts": counts,
        "retrospective_union": {
            s: b.get("retrospective_union") for s, b in summary["splits"].items()
        },
        "overlap_0.9": {s: b.get("overlap_0.9") for s, b in summary["splits"].items()},
        "baseline_best_on": {
            s: b.get("assays_where_baseline_is_best") for s, b in summary["splits"].items()
        },
        "mean_auroc_by_cause": by_cause,
        "seconds_total": round(time.perf_counter() - start, 1),
        "seconds_training": round(sum(e["seconds"] for e in log), 1),
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
