"""Speed and agreement of morphoflow's retrieval mAP against copairs on random profiles.

Builds ``--n-labels x --per-label`` random profiles (default 50 x 200 = 10,000) with
``--n-features`` features (default 100) and a weak label signal, then times

- morphoflow: :func:`retrieval_ap` (``mode="exact"`` and ``mode="copairs"``) and
  :func:`mean_average_precision` grouped by label;
- copairs: ``copairs.map.average_precision`` (``pos_sameby=[label]``, ``neg_diffby=[label]``)
  and ``copairs.map.mean_average_precision`` (``sameby=[label]``), with a fresh null cache
  directory (copairs otherwise reuses null distributions cached under ``~/.copairs``);

and reports how well they agree (per-query AP, per-label mAP and p-values). Prints one JSON
document. Not a test: times depend on the machine and its load.

Usage::

    .venv/bin/python benchmarks/profiling_map.py [--n-labels 50] [--per-label 200]
        [--n-features 100] [--null-size 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import pandas as pd

from morphoflow.profiling.evaluation import mean_average_precision, retrieval_ap

LABEL = "Metadata_MoA"


def _profiles(n_labels: int, per_label: int, n_features: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_labels, n_features))
    labels = np.repeat(np.arange(n_labels), per_label)
    signal = 0.4 * rng.uniform(0.0, 1.0, size=(n_labels, 1))  # some labels retrievable
    features = rng.normal(size=(labels.size, n_features)) + signal[labels] * centers[labels]
    table = pd.DataFrame(features, columns=[f"feature_{i:03d}" for i in range(n_features)])
    table.insert(0, LABEL, [f"moa_{i:02d}" for i in labels])
    table.insert(0, "Metadata_Treatment", [f"trt_{i:05d}" for i in range(labels.size)])
    return table


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-labels", type=int, default=50)
    parser.add_argument("--per-label", type=int, default=200)
    parser.add_argument("--n-features", type=int, default=100)
    parser.add_argument("--null-size", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from importlib.metadata import version

    import copairs.map as copairs_map

    profiles = _profiles(args.n_labels, args.per_label, args.n_features, args.seed)
    features = [c for c in profiles.columns if not c.startswith("Metadata_")]
    feats = profiles[features].to_numpy(np.float64)
    meta = profiles[["Metadata_Treatment", LABEL]]

    ours_exact, t_ours_exact = _timed(retrieval_ap, profiles, LABEL, ())
    ours_copairs, t_ours_copairs = _timed(retrieval_ap, profiles, LABEL, (), mode="copairs")
    (summary, ours_map), t_ours_map = _timed(
        mean_average_precision,
        ours_exact,
        null_size=args.null_size,
        seed=args.seed,
        group_by=[LABEL],
    )

    theirs, t_theirs_ap = _timed(
        copairs_map.average_precision,
        meta,
        feats,
        pos_sameby=[LABEL],
        pos_diffby=[],
        neg_sameby=[],
        neg_diffby=[LABEL],
        progress_bar=False,
    )
    with tempfile.TemporaryDirectory() as cache_dir:
        their_map, t_theirs_map = _timed(
            copairs_map.mean_average_precision,
            theirs,
            sameby=[LABEL],
            null_size=args.null_size,
            threshold=0.05,
            seed=args.seed,
            progress_bar=False,
            cache_dir=cache_dir,
        )

    their_ap = theirs["average_precision"].to_numpy()
    diff_exact = np.abs(ours_exact["ap"].to_numpy() - their_ap)
    diff_copairs = np.abs(ours_copairs["ap"].to_numpy() - their_ap)
    merged = ours_map.merge(their_map, on=LABEL, suffixes=("_ours", "_copairs"))
    result = {
        "benchmark": "profiling_map",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "copairs_version": version("copairs"),
        "n_profiles": len(profiles),
        "n_labels": args.n_labels,
        "n_features": args.n_features,
        "null_size": args.null_size,
        "seconds": {
            "morphoflow_retrieval_ap_exact": round(t_ours_exact, 3),
            "morphoflow_retrieval_ap_copairs_mode": round(t_ours_copairs, 3),
            "morphoflow_mean_average_precision": round(t_ours_map, 3),
            "morphoflow_total": round(t_ours_exact + t_ours_map, 3),
            "copairs_average_precision": round(t_theirs_ap, 3),
            "copairs_mean_average_precision": round(t_theirs_map, 3),
            "copairs_total": round(t_theirs_ap + t_theirs_map, 3),
        },
        "agreement": {
            "same_n_pos_n_total": bool(
                (ours_exact["n_pos"].to_numpy() == theirs["n_pos_pairs"].to_numpy()).all()
                and (ours_exact["n_total"].to_numpy() == theirs["n_total_pairs"].to_numpy()).all()
            ),
            "ap_max_abs_diff_exact_mode": float(diff_exact.max()),
            "ap_fraction_within_1e-9_exact_mode": float((diff_exact <= 1e-9).mean()),
            "ap_max_abs_diff_copairs_mode": float(diff_copairs.max()),
            "ap_fraction_within_1e-9_copairs_mode": float((diff_copairs <= 1e-9).mean()),
            "label_map_max_abs_diff": float(
                np.abs(merged["map"] - merged["mean_average_precision"]).max()
            ),
            "label_p_value_max_abs_diff": float(
                np.abs(merged["p_value_ours"] - merged["p_value_copairs"]).max()
            ),
            "n_labels_significant_ours": int(merged["below_corrected_p_ours"].sum()),
            "n_labels_significant_copairs": int(merged["below_corrected_p_copairs"].sum()),
        },
        "summary": summary,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    from morphoflow.runtime import configure_process

    configure_process()
    main()
