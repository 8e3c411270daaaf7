"""Extract the one manually annotated DSB 2018 nucleus image that the ``stardist`` wheel ships,
as an *independent* real test image for the segmentation benchmark (never trained on).

The Cell Tracking Challenge HeLa frames of the shared data are one field of view, one
microscope and one (computer-generated) annotation convention; a fine-tune scored only there
cannot be told apart from one that learned that field of view. This image is another lab's
fluorescence nuclei with human annotation: a second, independent opinion.

Source: ``stardist/data/images/img2d.tif`` and ``mask2d.tif`` of the PyPI wheel
``stardist==0.9.2`` (package licence BSD-3-Clause; the package documents them as "Fluorescence
microscopy image and mask from the 2018 kaggle DSB challenge", i.e. BBBC038v1, Caicedo et al.,
Nat Methods 2019, which the Broad Bioimage Benchmark Collection distributes under CC0 1.0).
A one-off preparation step: morphoflow never downloads it, never imports stardist and never
ships the image. Get the wheel from the package registry and extract::

    pip download stardist==0.9.2 --no-deps -d /tmp/wheels
    .venv/bin/python benchmarks/prepare_dsb2018_image.py /tmp/wheels/stardist-0.9.2-*.whl

It writes ``data/01_raw/real_nuclei_extra/dsb2018_stardist/{image.tif,image_mask.tif,PROVENANCE.json}``
(ignored by git), which ``benchmarks/segmentation_real.py`` scores as ``real_independent`` when
present; the names pair for ``morphoflow score-segmentation`` (``image_labels.tif`` of a
``morphoflow segment`` run against ``image_mask.tif``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared_data import REPO_ROOT  # noqa: E402

from morphoflow.atomic import atomic_dir  # noqa: E402

OUT = REPO_ROOT / "data" / "01_raw" / "real_nuclei_extra" / "dsb2018_stardist"
MEMBERS = {
    "image.tif": "stardist/data/images/img2d.tif",
    "image_mask.tif": "stardist/data/images/mask2d.tif",
}
PROVENANCE = {
    "dataset": "2018 Data Science Bowl (BBBC038v1) fluorescence nuclei, one 512 x 512 image with "
    "manual instance masks (125 nuclei)",
    "source": "PyPI wheel stardist==0.9.2, stardist/data/images/img2d.tif and mask2d.tif "
    "(package licence BSD-3-Clause, Schmidt & Weigert)",
    "terms": "BBBC038v1 is distributed by the Broad Bioimage Benchmark Collection under CC0 1.0; "
    "cite Caicedo et al., Nat Methods 2019. Used only to test; never trained on, never shipped.",
}


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", type=Path, help="stardist-0.9.2-*.whl")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        archive = zipfile.ZipFile(args.wheel)
    except (OSError, zipfile.BadZipFile) as error:
        raise SystemExit(f"{args.wheel}: not a readable wheel ({error})") from error
    with archive, atomic_dir(args.out) as staging:
        digests = {}
        for name, member in MEMBERS.items():
            try:
                data = archive.read(member)
            except KeyError:
                raise SystemExit(f"{args.wheel}: has no {member} (need stardist==0.9.2)") from None
            array = tifffile.imread(io.BytesIO(data))
            if array.shape != (512, 512):
                raise SystemExit(f"{args.wheel}: {member} has shape {array.shape}, not 512 x 512")
            (staging / name).write_bytes(data)
            digests[name] = hashlib.sha256(data).hexdigest()
            if name == "image_mask.tif":
                n_nuclei = len(np.unique(array)) - 1
        provenance = {
            **PROVENANCE,
            "wheel": args.wheel.name,
            "sha256": digests,
            "n_nuclei": n_nuclei,
        }
        (staging / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    print(json.dumps({"written": str(args.out), **provenance}, indent=2))
    return args.out


if __name__ == "__main__":
    main()
