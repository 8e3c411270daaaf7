"""The ``morphoflow`` command.

Pipelines run with ``kedro run --pipeline=...``; this command covers what a user does around
them: make a simulated screen, inspect or validate a screen folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import click
import typer

import morphoflow

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
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        typer.echo(morphoflow.__version__)
        raise typer.Exit()


@app.command("simulate-screen")
def simulate_screen(
    out: Annotated[Path, typer.Option("--out", help="Folder to create (must not exist or be empty).")],
    preset: Annotated[str, typer.Option(help="Size of the screen: demo (minutes on 2 cores) or benchmark.")] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same screen.")] = 0,
) -> None:
    """Generate a simulated Cell Painting screen with ground truth (masks, MoAs, strengths)."""
    from morphoflow.screen.synthetic import simulate_screen as simulate

    try:
        summary = simulate(out, preset=preset, seed=seed, progress=True)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command("inspect-screen")
def inspect_screen(
    root: Annotated[Path, typer.Argument(help="Screen folder (load_data.csv + platemap.csv, or index.csv).")],
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
    typer.echo(json.dumps(summary, indent=2))


@app.command("validate-screen")
def validate_screen_command(
    root: Annotated[Path, typer.Argument(help="Screen folder.")],
    report_dir: Annotated[Path, typer.Option(help="Where summary.json and data_docs/ go.")] = Path(
        "data/08_reporting/data_validation"
    ),
) -> None:
    """Validate a screen with the Great Expectations suites (same as the data_validation pipeline)."""
    from morphoflow.screen.qc import site_qc
    from morphoflow.screen.table import load_screen
    from morphoflow.validation import validate_screen

    try:
        table = load_screen(root)
        summary = validate_screen(table, site_qc(table, root), root, report_dir)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps({k: summary[k] for k in ("success", "n_sites", "data_fingerprint")}))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
