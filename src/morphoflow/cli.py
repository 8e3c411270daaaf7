"""The ``morphoflow`` command.

Pipelines run with ``kedro run --pipeline=...``; this command covers what a user does around
them: make a simulated screen, inspect or validate a screen folder.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import click
import typer

import morphoflow
from morphoflow.atomic import check_output_file, check_output_folder, same_file
from morphoflow.lifecycle.heldout import SEGMENTATION_HELDOUT
from morphoflow.segmentation.settings import CLI_DEFAULTS, SegmenterSettings

#: Kedro imports ``<package>.cli`` and merges its ``cli`` click group into the ``kedro``
#: command; morphoflow adds no kedro sub-commands, so the group is empty.
cli = click.Group(name="morphoflow-kedro-commands")

app = typer.Typer(
    name="morphoflow",
    help="Image-based profiling (Cell Painting) and nucleus segmentation, as a managed model "
    "lifecycle. Pipelines run with `kedro run --pipeline=<name>`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _json(value: Any, **kwargs: Any) -> str:
    """JSON for stdout; non-ASCII paths stay readable (no \\u escapes)."""
    return json.dumps(value, ensure_ascii=False, **kwargs)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@contextmanager
def _warnings_to_stderr() -> Iterator[None]:
    """Show the UserWarnings raised in the block as one ``warning:`` line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for warning in caught:
                if issubclass(warning.category, UserWarning):
                    typer.echo(f"warning: {warning.message}", err=True)


def _output_file(
    out: Path, inputs: Sequence[Path | None], suffixes: tuple[str, ...], kind: str
) -> None:
    """Refuse an output file with the wrong suffix, that is a folder or an input, or whose
    folder cannot be written."""
    check_output_file(out, "--out", suffixes, kind)
    for path in inputs:
        if path is not None and out.exists() and path.exists() and same_file(out, path):
            raise ValueError(f"--out {out} is the input {path}: choose another file")


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(morphoflow.__version__)
        raise typer.Exit()


@app.command("simulate-screen")
def simulate_screen(
    out: Annotated[
        Path, typer.Option("--out", help="Folder to create (must not exist or be empty).")
    ],
    preset: Annotated[
        str,
        typer.Option(
            help="Size of the screen: demo (minutes on 2 cores) or benchmark; library: 1,200 "
            "compounds with assays and profiles generated from the latent phenotype directly "
            "(no images), for compound activity prediction."
        ),
    ] = "demo",
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same screen.")
    ] = 0,
) -> None:
    """Generate a simulated Cell Painting screen with ground truth (masks, MoAs, strengths)."""
    from morphoflow.simulate import SIMULATE_PRESETS, simulate_compound_library
    from morphoflow.simulate import simulate_screen as simulate

    if preset not in SIMULATE_PRESETS:
        _fail(f"--preset must be one of {list(SIMULATE_PRESETS)}, got {preset!r}")
    try:
        if preset == "library":  # compound activity: no images (see morphoflow.simulate.compounds)
            summary = simulate_compound_library(out, seed=seed)
        else:
            summary = simulate(out, preset=preset, seed=seed, progress=True)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(_json(summary, indent=2, default=str))


@app.command("inspect-screen")
def inspect_screen(
    root: Annotated[
        Path, typer.Argument(help="Screen folder (load_data.csv + platemap.csv, or index.csv).")
    ],
) -> None:
    """Read a screen folder and print what it holds (sources, plates, wells, sites, treatments)."""
    from morphoflow.screen.table import fingerprint, load_screen

    try:
        table = load_screen(root)
    except ValueError as exc:
        _fail(str(exc))
    summary = {
        "root": str(root),
        "sources": sorted(table["Metadata_Source"].unique().tolist()),
        "plates": int(table["Metadata_Plate"].nunique()),
        "wells": int(table.groupby(["Metadata_Plate", "Metadata_Well"]).ngroups),
        "sites": len(table),
        "treatments": int(table["Metadata_Treatment"].nunique()),
        "negcon_wells": int(
            table[table["Metadata_ControlType"] == "negcon"]
            .groupby(["Metadata_Plate", "Metadata_Well"])
            .ngroups
        ),
        "fingerprint": fingerprint(table, root),
    }
    typer.echo(_json(summary, indent=2))


@app.command("validate-screen")
def validate_screen_command(
    root: Annotated[Path, typer.Argument(help="Screen folder.")],
    report_dir: Annotated[Path, typer.Option(help="Where summary.json and data_docs/ go.")] = Path(
        "data/08_reporting/data_validation"
    ),
    annotation_mismatch: Annotated[
        str,
        typer.Option(
            help="moa.csv rows matching no treatment / treatments without an MoA row: fail or warn."
        ),
    ] = "fail",
) -> None:
    """Validate a screen with the Great Expectations suites (same as the data_validation pipeline)."""
    from morphoflow.screen.qc import site_qc
    from morphoflow.screen.table import load_screen
    from morphoflow.validation import ValidationConfig, validate_screen

    try:
        config = ValidationConfig(annotation_mismatch=annotation_mismatch)
        table = load_screen(root)
        summary = validate_screen(table, site_qc(table, root), root, report_dir, config)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(
        _json({k: summary[k] for k in ("success", "n_sites", "data_fingerprint", "warnings")})
    )


def _segmenter(triton_url: str | None, **options: Any):
    """image -> Segmentation for the command's options (``SegmenterSettings`` fields, missing
    ones from ``CLI_DEFAULTS``): a local U-Net (``.pt``/``.onnx`` file, ``models:/`` URI, the
    shipped default) or the ``nuclei_tta`` model of a Triton server."""
    from morphoflow.segmentation.settings import make_segmenter

    try:
        settings = SegmenterSettings.from_params(options, defaults=CLI_DEFAULTS)
    except ValueError as exc:  # the settings' names -> the command's options
        message = str(exc)
        for name in options:
            message = re.sub(rf"(?<![-\w]){name}\b", "--" + name.replace("_", "-"), message)
        raise ValueError(message) from None
    if triton_url:
        if not settings.uses_default_model:
            raise ValueError("give either --model or --triton-url, not both")
        from morphoflow.serving.client import TritonClient, served_views

        served_views(settings.views)  # refused before the first image, not after
        return make_segmenter(settings, TritonClient(triton_url))
    from morphoflow.lifecycle.resolve import resolve_model_file
    from morphoflow.segmentation.onnx_model import MODEL_SUFFIXES, load_predictor

    model_file = resolve_model_file(settings.model, suffix=MODEL_SUFFIXES)
    return make_segmenter(settings, load_predictor(model_file, batch_size=settings.batch_size))


_MERGE = typer.Option(
    help="How the TTA views become instances: mean | logit | seeds | vote "
    "(README: TTA merges on real nuclei)."
)
_MIN_DIAMETER = typer.Option(
    help="Smallest nucleus kept: equivalent diameter sqrt(4 area / pi), in pixels "
    "(CellProfiler IdentifyPrimaryObjects' typical diameter minimum)."
)
_MAX_DIAMETER = typer.Option(
    help="Largest nucleus kept: equivalent diameter in pixels; default: no upper bound."
)
_BORDER = typer.Option(
    "--discard-border-objects/--keep-border-objects",
    help="Discard nuclei touching the image border (the profiling pipeline does; "
    "morphoflow segment keeps them unless asked).",
)
_DIAMETER = typer.Option(
    help="Typical nucleus diameter in the images, in pixels: images are resized so that it "
    "becomes the model's training scale (22 px) and the result resized back; default: "
    "no rescaling (the model was trained on nuclei of 8-60 px diameter)."
)


@app.command("segment")
def segment(
    images: Annotated[
        list[Path],
        typer.Argument(
            help="Image files or folders (2D TIFF/PNG, or multi-channel TIFF with --channel)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option("--out", help="Output folder for <stem>_labels.tif and <stem>_nuclei.csv."),
    ],
    tta: Annotated[
        bool,
        typer.Option(
            "--tta/--no-tta", help="Test-time augmentation: merge predictions over dihedral views."
        ),
    ] = True,
    views: Annotated[
        int | None,
        typer.Option(
            help="Number of TTA views, 1..8 (1, 2, 4 or 8 are exact symmetry groups). "
            f"Default: {len(CLI_DEFAULTS.views)}; --no-tta means 1.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="U-Net file (.pt or .onnx), or an MLflow models:/NAME@ALIAS URI; default: "
            "the shipped model."
        ),
    ] = None,
    triton_url: Annotated[
        str | None,
        typer.Option(
            help="Segment on a Triton server's nuclei_tta model instead (host:port gRPC, or "
            "http://host:port)."
        ),
    ] = None,
    channel: Annotated[
        int | None, typer.Option(help="Channel index of a multi-channel image (e.g. 0 for DNA).")
    ] = None,
    min_diameter: Annotated[float, _MIN_DIAMETER] = CLI_DEFAULTS.min_diameter,
    max_diameter: Annotated[float | None, _MAX_DIAMETER] = CLI_DEFAULTS.max_diameter,
    discard_border_objects: Annotated[bool, _BORDER] = CLI_DEFAULTS.discard_border_objects,
    diameter: Annotated[float | None, _DIAMETER] = CLI_DEFAULTS.diameter,
    threshold: Annotated[
        float, typer.Option(help="Probability threshold of the post-processing, in (0, 1).")
    ] = CLI_DEFAULTS.threshold,
    merge: Annotated[str, _MERGE] = CLI_DEFAULTS.merge,
) -> None:
    """Segment nuclei: writes instance labels (uint16/uint32, 0 = background) and a nuclei CSV.

    Objects are filtered as CellProfiler's IdentifyPrimaryObjects does (typical diameter
    range, objects touching the border) and renumbered 1..n; the CSV lists the objects kept.
    """
    from morphoflow.progress import track
    from morphoflow.segmentation.files import (
        collect_images,
        load_channel,
        unique_stems,
        write_csv_atomic,
        write_labels,
    )
    from morphoflow.segmentation.segmenter import nuclei_table

    files: list[Path] = []
    summary = []
    try:
        check_output_folder(out, "--out")
        with _warnings_to_stderr():
            files = collect_images(images)
        unique_stems(files)
        if not tta and views not in (None, 1):
            raise ValueError(
                f"--no-tta segments one view, but --views {views} asks for {views}: "
                "drop one of the two options"
            )
        n_views = (len(CLI_DEFAULTS.views) if views is None else views) if tta else 1
        segment_image = _segmenter(
            triton_url,
            model=model,
            views=n_views,
            threshold=threshold,
            min_diameter=min_diameter,
            max_diameter=max_diameter,
            discard_border_objects=discard_border_objects,
            diameter=diameter,
            merge=merge,
        )
        for path in track(files, "Segmenting", total=len(files)):
            image = load_channel(path, channel)
            result = segment_image(image)
            write_labels(out / f"{path.stem}_labels.tif", result.labels)
            write_csv_atomic(
                out / f"{path.stem}_nuclei.csv", nuclei_table(result.labels, result.agreement)
            )
            summary.append({"image": str(path), "nuclei": int(result.labels.max())})
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: files, connections
        done = f" ({len(summary)} of {len(files)} images were written to {out} before)"
        _fail(str(exc) + (done if summary else ""))
    typer.echo(_json({"out": str(out), "views": n_views, "images": summary}, indent=2))


@app.command("suggest-contours")
def suggest_contours(
    image: Annotated[
        Path, typer.Argument(help="Image (2-D TIFF/PNG, or multi-channel with --channel).")
    ],
    points: Annotated[
        Path,
        typer.Option(
            "--points", help="CSV with columns x, y (pixels, ImageJ coordinates) and optional id."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Output folder for <stem>_suggestions.zip (ImageJ ROI set), "
            "<stem>_suggestions.csv and <stem>_suggestions.json.",
        ),
    ],
    views: Annotated[
        int,
        typer.Option(help="Number of TTA views, 1..8 (1, 2, 4 or 8 are exact symmetry groups)."),
    ] = len(CLI_DEFAULTS.views),
    model: Annotated[
        str | None,
        typer.Option(help="U-Net file (.pt or .onnx) or models:/NAME@ALIAS; default: shipped."),
    ] = None,
    triton_url: Annotated[
        str | None,
        typer.Option(help="Segment on a Triton server's nuclei_tta model (host:port or http://)."),
    ] = None,
    channel: Annotated[
        int | None, typer.Option(help="Channel index of a multi-channel image (e.g. 0 for DNA).")
    ] = None,
    min_diameter: Annotated[float, _MIN_DIAMETER] = CLI_DEFAULTS.min_diameter,
    max_diameter: Annotated[float | None, _MAX_DIAMETER] = CLI_DEFAULTS.max_diameter,
    diameter: Annotated[float | None, _DIAMETER] = CLI_DEFAULTS.diameter,
    threshold: Annotated[
        float, typer.Option(help="Probability threshold of the post-processing, in (0, 1).")
    ] = CLI_DEFAULTS.threshold,
    merge: Annotated[str, _MERGE] = CLI_DEFAULTS.merge,
) -> None:
    """Suggest nucleus outlines at points, for annotation (AnnotatorJ-style contour assist).

    Segments the image as `morphoflow segment` does (border objects kept) and writes, for each
    point, the outline of the object under it: one polygon ROI per point (named by its id) in
    an ImageJ/Fiji ROI set, and a CSV/JSON row with the id. A point on background or outside
    the image gets an empty entry with the reason.
    """
    from morphoflow.atomic import write_text_atomic
    from morphoflow.segmentation.files import load_channel, write_csv_atomic
    from morphoflow.segmentation.rois import (
        Outline,
        outlines_to_rois,
        read_points,
        suggest_outlines,
        write_roi_set,
    )

    try:
        check_output_folder(out, "--out")
        table = read_points(points)
        segment_image = _segmenter(
            triton_url,
            model=model,
            views=views,
            threshold=threshold,
            min_diameter=min_diameter,
            max_diameter=max_diameter,
            diameter=diameter,
            merge=merge,
        )
        plane = load_channel(image, channel)
        result = segment_image(plane)
        labels = result.labels
        rows, polygons = suggest_outlines(labels, table, result.probabilities)
        found = [
            (Outline(int(row.label), 0, poly), str(row.id))
            for row, poly in zip(rows.itertuples(index=False), polygons, strict=True)
            if poly is not None
        ]
        rois = outlines_to_rois([o for o, _ in found])
        for roi, (_, name) in zip(rois, found, strict=True):
            roi.name = name
        stem = image.stem
        write_roi_set(out / f"{stem}_suggestions.zip", rois)
        write_csv_atomic(out / f"{stem}_suggestions.csv", rows)
        entries = [
            {**row, "polygon": None if poly is None else poly.tolist()}
            for row, poly in zip(rows.to_dict(orient="records"), polygons, strict=True)
        ]
        document = {"image": str(image), "shape": list(labels.shape), "points": entries}
        write_text_atomic(out / f"{stem}_suggestions.json", json.dumps(document, indent=1))
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: files, connections
        _fail(str(exc))
    summary = {
        "out": str(out),
        "points": len(rows),
        "outlines": len(found),
        "empty": int((rows["reason"] != "").sum()),
    }
    typer.echo(_json(summary, indent=2))


@app.command("export-rois")
def export_rois(
    labels: Annotated[
        list[Path], typer.Argument(help="Label images (2-D integer TIFF/PNG, 0 = background).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Output folder for <stem>_rois.zip (ImageJ/Fiji) and <stem>_labels.tif."
        ),
    ],
) -> None:
    """Export label images as ImageJ/Fiji ROI sets (.zip) and napari-readable label TIFFs.

    Each object becomes one traced polygon ROI named label_<n> (an object in several parts:
    one ROI per part, label_<n>_part_<k>); holes are not exported. <stem>_labels.tif is the
    label image as uint16/uint32 (napari: viewer.open(path, layer_type="labels")).
    """
    import numpy as np

    from morphoflow.segmentation.files import base_stem, read_labels, write_labels
    from morphoflow.segmentation.rois import export_roi_set

    summary = []
    try:
        check_output_folder(out, "--out")
        stems: dict[str, Path] = {}
        for path in labels:
            if base_stem(path) in stems:
                raise ValueError(
                    f"{path} and {stems[base_stem(path)]} would both write "
                    f"{base_stem(path)}_rois.zip"
                )
            stems[base_stem(path)] = path
        for path in labels:
            image = read_labels(path)
            stem = base_stem(path)
            target = out / f"{stem}_labels.tif"
            if target.resolve() == path.resolve():
                raise ValueError(f"{path} would be overwritten; choose another --out")
            n = export_roi_set(image, out / f"{stem}_rois.zip")
            write_labels(target, image)
            objects = int(np.count_nonzero(np.unique(image)))
            summary.append({"labels": str(path), "objects": objects, "rois": n})
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    typer.echo(_json({"out": str(out), "images": summary}, indent=2))


@app.command("import-rois")
def import_rois(
    rois: Annotated[Path, typer.Argument(help="ImageJ/Fiji ROI set (.zip) or one .roi file.")],
    out: Annotated[Path, typer.Option("--out", help="Label TIFF to write (uint16/uint32).")],
    like: Annotated[
        Path | None, typer.Option(help="Image whose height and width the labels take.")
    ] = None,
    shape: Annotated[
        str | None, typer.Option(help="Height and width instead of --like, e.g. 512x640.")
    ] = None,
) -> None:
    """Import an ImageJ/Fiji ROI set as a label image (e.g. annotations for fine-tuning).

    Area ROIs (polygon, freehand, traced, rectangle, oval, composite) are filled by pixel
    centres; ROIs named label_<n>[_part_<k>] keep label n, others are numbered 1..N in file
    order; where ROIs overlap the smaller one wins.
    """
    import numpy as np

    from morphoflow.screen.io import read_image
    from morphoflow.segmentation.files import write_labels
    from morphoflow.segmentation.rois import import_roi_set

    try:
        _output_file(out, [rois, like], (".tif", ".tiff"), "a label TIFF")
        if (like is None) == (shape is None):
            raise ValueError("give the label image's size with exactly one of --like or --shape")
        if like is not None:
            size = tuple(read_image(like).shape[-2:])
        else:
            parts = str(shape).lower().replace(",", "x").split("x")
            if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"--shape must be HEIGHTxWIDTH, e.g. 512x640, got {shape!r}")
            size = (int(parts[0]), int(parts[1]))
        with _warnings_to_stderr():
            labels = import_roi_set(rois, size)
        write_labels(out, labels)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    n = int(np.count_nonzero(np.unique(labels)))
    typer.echo(_json({"rois": str(rois), "out": str(out), "objects": n, "shape": list(size)}))


@app.command("score-segmentation")
def score_segmentation(
    pred: Annotated[
        Path,
        typer.Option(
            "--pred",
            help="Folder of predicted label images, e.g. segment's <stem>_labels.tif.",
        ),
    ],
    truth: Annotated[
        Path,
        typer.Option(
            "--truth",
            help="Folder of ground-truth label images, paired by name: x.tif, x_label(s).tif, "
            "x_mask(s).tif, x_cp_masks.png, x_truth.tif and x_nuclei_truth.tif all pair with x "
            "(TIFF or PNG).",
        ),
    ],
) -> None:
    """Print the DSB 2018 score (mean over IoU thresholds 0.50-0.95) of predictions as JSON.

    Every truth image needs a prediction; predictions without a truth image are left out of the
    score and listed under "unpaired_predictions" (and on stderr).
    """
    from morphoflow.segmentation.files import label_file_index, pair_label_index, read_labels
    from morphoflow.segmentation.metrics import dsb_score

    try:
        preds = label_file_index(pred)  # each folder is listed once
        pairs = pair_label_index(preds, label_file_index(truth), pred)
        paired = {p for _, p, _ in pairs}
        unpaired = [p.name for p in preds.values() if p not in paired]
        if unpaired:
            typer.echo(
                f"warning: {len(unpaired)} prediction(s) in {pred} have no truth image and are "
                "not scored: " + ", ".join(unpaired[:5]) + (", ..." if len(unpaired) > 5 else ""),
                err=True,
            )
        truths, preds = [], []
        for _, pred_file, truth_file in pairs:
            truths.append(read_labels(truth_file))
            preds.append(read_labels(pred_file))
            if truths[-1].shape != preds[-1].shape:
                raise ValueError(
                    f"{pred_file} has shape {preds[-1].shape} but its truth {truth_file} has "
                    f"shape {truths[-1].shape}"
                )
        score = dsb_score(truths, preds)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    report = {
        "dsb_score": score.score,
        "per_threshold": {f"{t:.2f}": v for t, v in score.per_threshold.items()},
        "precision_50": score.precision_50,
        "recall_50": score.recall_50,
        "n_images": score.n_images,
        "unpaired_predictions": unpaired,
        "images": {
            stem: round(s.score, 6) for (stem, _, _), s in zip(pairs, score.images, strict=True)
        },
    }
    typer.echo(_json(report, indent=2))


@app.command("measure")
def measure(
    channels: Annotated[
        list[str],
        typer.Argument(
            help="Channel images as NAME=FILE, e.g. DNA=dna.tif ER=er.tif RNA=rna.tif "
            "AGP=agp.tif Mito=mito.tif (column order; one plane per file)."
        ),
    ],
    nuclei: Annotated[
        Path, typer.Option("--nuclei", help="Nucleus label image (integer TIFF, 0 = background).")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", help="Parquet file to write (.parquet; one row per nucleus; not an input)."
        ),
    ],
    cells: Annotated[
        Path | None,
        typer.Option("--cells", help="Cell label image; cell k must carry the label of nucleus k."),
    ] = None,
    cells_out: Annotated[
        Path | None,
        typer.Option(
            "--cells-out", help="Without --cells: save the grown cells here (.tif; not an input)."
        ),
    ] = None,
    feature_set: Annotated[
        str, typer.Option("--set", help="Feature set: default or extended.")
    ] = "default",
) -> None:
    """Measure CellProfiler's features of your own images and masks (Nuclei_, Cells_,
    Cytoplasm_ columns; see the README's classical features). Without --cells, cells are grown
    from the nuclei as the profiling pipeline does."""
    from morphoflow.profiling.measure import measure_files, parse_channel_args

    try:
        table = measure_files(
            parse_channel_args(channels),
            nuclei,
            out,
            cells=cells,
            cells_out=cells_out,
            feature_set=feature_set,
        )
    except (ValueError, OSError) as exc:  # OSError: a write refused by the system
        _fail(str(exc))
    typer.echo(_json({"out": str(out), "objects": len(table), "features": table.shape[1] - 2}))


# --- model lifecycle: registry, gated promotion, rollback ---------------------------------


def _use_registry() -> str:
    """The MLflow tracking URI: MLFLOW_TRACKING_URI, else ./mlflow.db (as the Kedro project)."""
    import os

    import mlflow

    uri = os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{Path.cwd() / 'mlflow.db'}")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one-line errors
    mlflow.set_tracking_uri(uri)
    return uri


def _refused(message: str) -> None:
    typer.secho(message.splitlines()[0], fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@app.command("register-unet")
def register_unet_command(
    model: Annotated[
        Path | None,
        typer.Option(help="U-Net file (.pt, e.g. fine-tuned); default: the shipped model."),
    ] = None,
    name: Annotated[str, typer.Option(help="Registered model name.")] = "nuclei-unet",
    heldout: Annotated[
        Path | None,
        typer.Option(help="Frozen segmentation held-out set to score the model on (optional)."),
    ] = None,
) -> None:
    """Export a nucleus U-Net to ONNX (parity-checked) and register it in MLflow."""
    from morphoflow.lifecycle.registry import register_unet

    _use_registry()
    try:
        result = register_unet(model, name=name, heldout=heldout)
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    typer.echo(_json(result, indent=2, default=str))


@app.command("promote")
def promote_command(
    model: Annotated[str, typer.Argument(help="Registered model name, e.g. nuclei-unet.")],
    version: Annotated[
        int | None, typer.Option(help="Candidate version; default: the challenger alias.")
    ] = None,
    margin: Annotated[
        float, typer.Option(help="Largest held-out score drop below the champion still promoted.")
    ] = 0.01,
    heldout: Annotated[
        Path | None,
        typer.Option(
            help="Frozen held-out set; default: data/05_model_input/heldout/<model kind>."
        ),
    ] = None,
) -> None:
    """Promote a version to champion if it passes the parity and held-out score gates.

    Exit code 1, with one line on stderr, when the candidate is refused.
    """
    from morphoflow.lifecycle.promotion import PromotionRefused, promote

    _use_registry()
    try:
        decision = promote(model, version=version, margin=margin, heldout=heldout)
    except PromotionRefused as exc:
        _refused(f"refused: {exc.decision.line()}")
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(_json(decision.to_dict(), indent=2))


@app.command("rollback")
def rollback_command(
    model: Annotated[str, typer.Argument(help="Registered model name.")],
) -> None:
    """Make the previous champion the champion again (exit code 1 when there is none)."""
    from morphoflow.lifecycle.promotion import RollbackImpossible, rollback

    _use_registry()
    try:
        decision = rollback(model)
    except RollbackImpossible as exc:
        _refused(f"refused: {exc}")
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(_json(decision.to_dict(), indent=2))


@app.command("freeze-heldout")
def freeze_heldout_command(
    kind: Annotated[str, typer.Argument(help="segmentation or featurizer.")],
    out: Annotated[
        Path | None,
        typer.Option(help="Folder to create; default: data/05_model_input/heldout/<kind>."),
    ] = None,
    # defaults: lifecycle.heldout.SegmentationHeldoutSettings, as the evaluation pipeline's
    n_images: Annotated[
        int, typer.Option(help="segmentation: number of images.")
    ] = SEGMENTATION_HELDOUT.n_images,
    size: Annotated[
        int, typer.Option(help="segmentation: image side in pixels.")
    ] = SEGMENTATION_HELDOUT.size,
    seed: Annotated[
        int, typer.Option(help="segmentation: random seed.")
    ] = SEGMENTATION_HELDOUT.seed,
    crops_dir: Annotated[
        Path,
        typer.Option(
            help="featurizer: the profiling pipeline's plate store (Path_Crops is relative to it)."
        ),
    ] = Path("data/04_feature/plates"),
    crop_index: Annotated[Path, typer.Option(help="featurizer: the crop index.")] = Path(
        "data/05_model_input/crop_index.parquet"
    ),
    plate: Annotated[
        list[str] | None,
        typer.Option(help="featurizer: plate to keep (repeat); default: last plate per source."),
    ] = None,
) -> None:
    """Write a frozen held-out set (files + manifest.json with their SHA-256) for promotion."""
    from morphoflow.lifecycle.heldout import (
        DEFAULT_HELDOUT_DIRS,
        freeze_featurizer_heldout,
        freeze_segmentation_heldout,
    )

    if kind not in DEFAULT_HELDOUT_DIRS:
        _fail(f"kind must be one of {sorted(DEFAULT_HELDOUT_DIRS)}, got {kind!r}")
    target = out if out is not None else DEFAULT_HELDOUT_DIRS[kind]
    try:
        if kind == "segmentation":
            held = freeze_segmentation_heldout(target, n_images=n_images, size=size, seed=seed)
        else:
            held = freeze_featurizer_heldout(
                crops_dir, crop_index, target, plates=plate or "last_plate_per_source"
            )
    except (ValueError, OSError) as exc:
        _fail(str(exc))
    summary = {"heldout": str(held.root), "kind": held.kind, "files": len(held.files)}
    typer.echo(_json({**summary, "manifest_sha256": held.digest, "source": held.source}))


def _add_triton_commands() -> None:
    from morphoflow.serving.cli import triton_app

    app.add_typer(triton_app, name="triton")


_add_triton_commands()


def main() -> None:
    """Console-script entry point."""
    from morphoflow.runtime import configure_process

    configure_process()
    app()


if __name__ == "__main__":
    main()
