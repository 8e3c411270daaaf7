"""cp_measure run directly, by feature name: the reference the classical extractor is checked
against (tests/profiling/test_classical_cellprofiler.py, benchmarks/classical_cellprofiler.py).

Private module of :mod:`morphoflow.profiling.classical`. It shares no code with the extractor
(``_classical_site``): it parses each feature name itself and calls cp_measure's functions with
CellProfiler's settings spelled out (their defaults), so a wrong mapping in the extractor
(compartment, channel, direction, scaling, object order) shows as a disagreement.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np


def cp_measure_reference(
    image: np.ndarray,
    nuclei: np.ndarray,
    cells: np.ndarray,
    names: Sequence[str],
    channels: Sequence[str],
    intensity_divisor: float = 65535.0,
    timings: dict[str, float] | None = None,
) -> dict[str, np.ndarray]:
    """cp_measure 0.3.0's value of every named feature, one per nucleus label (sorted).

    Args:
        image: ``(C, H, W)`` raw intensities; divided by ``intensity_divisor`` (CellProfiler
            reads uint16 as value / 65535).
        nuclei: Nucleus labels; ``cells``: cell labels (cell k holds nucleus k).
        names: Feature names of :func:`morphoflow.profiling.classical.feature_names`.
        channels: Channel names of ``image``'s axis 0.
        timings: When given, receives the seconds cp_measure spends per feature group.

    Returns:
        Name -> ``(n_nuclei,)`` float64, NaN where the compartment lacks the object.
    """
    from cp_measure.bulk import get_core_measurements, get_correlation_measurements

    core = get_core_measurements(legacy=True)  # sanitize=True: any labels
    corr = get_correlation_measurements()
    objects = np.unique(nuclei[nuclei > 0])
    masks = {
        "Nuclei": nuclei,
        "Cells": cells,
        "Cytoplasm": np.where(nuclei > 0, 0, cells),
    }
    pixels = image.astype(np.float64) / intensity_divisor  # CellProfiler: uint16 as [0, 1]
    cache: dict[tuple, dict] = {}

    order = list(channels)
    # only what is asked for is computed (so that timings compare the same features)
    zernike = any("_AreaShape_Zernike_" in n for n in names)
    colocalisation = any("_Correlation_Manders_" in n or "_Correlation_RWC_" in n for n in names)
    edges = any("IntensityEdge_" in n for n in names)
    # each spectrum value depends only on the smaller scales: computing up to the largest
    # requested scale gives CellProfiler's 16-scale values for those scales
    spectrum = max(
        (int(n.split("_")[2]) for n in names if n.split("_")[1] == "Granularity"), default=16
    )

    def run(comp: str, group: str, *names_: str) -> tuple[dict, np.ndarray]:
        key = (comp, group, *names_)
        labels = masks[comp]
        present = np.unique(labels[labels > 0])
        if key not in cache:
            start = time.perf_counter()
            px = [pixels[order.index(ch)] for ch in names_]
            if group == "AreaShape":
                result = core["sizeshape"](labels, None) | core["feret"](labels, None)
                if zernike:
                    result |= core["zernike"](labels, None)
            elif group == "Intensity":
                result = core["intensity"](labels, px[0], edge_measurements=edges)
            elif group == "Granularity":
                result = core["granularity"](  # subsampling 0.25, element size 10
                    labels, px[0], granular_spectrum_length=spectrum
                )
            elif group == "RadialDistribution":
                result = core["radial_distribution"](labels, px[0])  # 4 bins
            elif group == "Texture":
                result = core["texture"](labels, np.clip(px[0], 0, 1))  # scale 3, 256 levels
            elif group == "Correlation":
                result = corr["pearson"](px[0], px[1], labels)
                if colocalisation:
                    result |= corr["manders_fold"](px[0], px[1], labels)
                    result |= corr["rwc"](px[0], px[1], labels)
            cache[key] = result
            if timings is not None:
                timings[group] = timings.get(group, 0.0) + time.perf_counter() - start
        return cache[key], present

    values = {}
    for name in names:
        comp, group, rest = name.split("_", 2)
        parts = rest.split("_")
        if group == "AreaShape":
            result, present = run(comp, group)
            key = rest
        elif group == "Intensity":
            result, present = run(comp, group, parts[-1])
            key = f"Intensity_{parts[0]}"
        elif group == "Granularity":
            result, present = run(comp, group, parts[1])
            key = f"Granularity_{parts[0]}"
        elif group == "RadialDistribution":
            result, present = run(comp, group, parts[1])
            key = f"RadialDistribution_{parts[0]}_{parts[2]}"
        elif group == "Texture":
            result, present = run(comp, group, parts[1])
            key = f"{parts[0]}_{'_'.join(parts[2:])}"
        elif group == "Correlation":
            feature, a, b = parts
            first, second = sorted((a, b), key=order.index)
            result, present = run(comp, group, first, second)
            which = "1" if a == first else "2"
            key = {
                "Correlation": "Correlation_Pearson",
                "Slope": "Correlation_Slope",
                "Manders": f"Correlation_Manders_{which}",
                "RWC": f"Correlation_RWC_{which}",
            }[feature]
        out = np.full(objects.size, np.nan)
        out[np.searchsorted(objects, present)] = np.asarray(result[key], dtype=np.float64)
        values[name] = out
    return values
