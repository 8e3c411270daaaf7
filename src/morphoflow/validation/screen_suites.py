"""Great Expectations suites for a screen: the image table and per-site image QC.

Two suites run in one checkpoint of a throw-away file context, whose Data Docs HTML is then
moved into the report folder (atomically, with the JSON summary). On failure the run stops with
one :class:`~morphoflow.screen.errors.DataValidationError` that lists each failing expectation
with the offending rows (``load_data.csv`` lines) or files.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from morphoflow.atomic import atomic_dir
from morphoflow.screen.constants import (
    CONTROL_TYPES,
    METADATA_COLUMNS,
    PATH_COLUMNS,
    WELL_PATTERN,
)
from morphoflow.screen.errors import DataValidationError
from morphoflow.screen.table import annotation_rows, fingerprint

logger = logging.getLogger(__name__)

_MAX_EXAMPLES = 10


@dataclass(frozen=True)
class ValidationConfig:
    """Thresholds of the site QC suite.

    Attributes:
        max_saturation_fraction: Largest allowed fraction of pixels at an image's maximum.
        min_focus_ratio: Smallest allowed focus score relative to the median of the site's
            plate and channel (catches out-of-focus sites whatever the stain's brightness).
        allowed_dtypes: Pixel types accepted from the microscope.
        annotation_mismatch: What a mismatch between ``moa.csv`` and the platemap is:
            ``"fail"`` (default: a ``moa.csv`` row that matches no treatment is almost always
            a typo, and it silently costs the treatment its MoA) or ``"warn"`` (listed in the
            report and the log; for screens whose compounds are partly unannotated).
    """

    max_saturation_fraction: float = 0.05
    min_focus_ratio: float = 0.2
    allowed_dtypes: tuple[str, ...] = ("uint8", "uint16", "float32")
    annotation_mismatch: str = "fail"

    def __post_init__(self) -> None:
        if self.annotation_mismatch not in ("fail", "warn"):
            raise ValueError(
                "data_validation.annotation_mismatch must be 'fail' or 'warn', got "
                f"{self.annotation_mismatch!r}"
            )

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> ValidationConfig:
        """Build from a parameters dict; unknown keys are an error naming them."""
        params = dict(params or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(
                f"unknown data_validation parameter(s) {unknown}; known: {sorted(known)}"
            )
        if "allowed_dtypes" in params:
            params["allowed_dtypes"] = tuple(params["allowed_dtypes"])
        return cls(**params)


@dataclass
class Failure:
    """One failing expectation and where it failed."""

    suite: str
    expectation: str
    column: str | None
    unexpected_count: int
    examples: list[str] = field(default_factory=list)

    def describe(self) -> str:
        where = f" on {self.column}" if self.column else ""
        head = f"[{self.suite}] {self.expectation}{where}: {self.unexpected_count} failing"
        return head + "".join(f"\n    - {e}" for e in self.examples)


def table_checks_frame(table: pd.DataFrame, root: Path) -> pd.DataFrame:
    """The image table plus derived columns the image-table suite checks.

    Adds ``Check_MissingFiles`` (space-separated missing channel files, empty when all exist)
    and ``Check_PlateNegconWells`` (number of negative-control wells on the row's plate).
    """
    frame = table.copy()
    path_columns = [c for c in PATH_COLUMNS if c in frame.columns]
    frame["Check_MissingFiles"] = [
        " ".join(p for p in (row[c] for c in path_columns) if not (root / p).is_file())
        for _, row in frame[path_columns].iterrows()
    ]
    if {"Metadata_Plate", "Metadata_Well", "Metadata_ControlType"} <= set(frame.columns):
        negcon = frame[frame["Metadata_ControlType"] == "negcon"]
        per_plate = negcon.groupby("Metadata_Plate")["Metadata_Well"].nunique()
        frame["Check_PlateNegconWells"] = (
            frame["Metadata_Plate"].map(per_plate).fillna(0).astype("int64")
        )
    return frame


def _image_table_expectations(gxe: Any) -> list[Any]:
    required = [*METADATA_COLUMNS, *PATH_COLUMNS]
    expectations: list[Any] = [gxe.ExpectColumnToExist(column=c) for c in required]
    expectations += [
        gxe.ExpectColumnValuesToMatchRegex(column="Metadata_Well", regex=WELL_PATTERN.pattern),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["Metadata_Plate", "Metadata_Well", "Metadata_Site"]
        ),
        gxe.ExpectColumnValuesToBeInSet(column="Check_MissingFiles", value_set=[""]),
        gxe.ExpectColumnValuesToBeInSet(
            column="Metadata_ControlType", value_set=list(CONTROL_TYPES)
        ),
        gxe.ExpectColumnValuesToBeBetween(column="Check_PlateNegconWells", min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="Metadata_Treatment"),
    ]
    return expectations


def _site_qc_expectations(gxe: Any, config: ValidationConfig) -> list[Any]:
    return [
        gxe.ExpectColumnValuesToBeInSet(column="QC_Readable", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="QC_ShapeConsistent", value_set=[True]),
        gxe.ExpectColumnValuesToBeInSet(column="QC_Empty", value_set=[False]),
        gxe.ExpectColumnValuesToBeInSet(
            column="QC_DType",
            value_set=list(config.allowed_dtypes),
            mostly=1.0,
            row_condition="QC_Readable==True",
            condition_parser="pandas",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="QC_SaturationFraction", max_value=config.max_saturation_fraction
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="QC_FocusRatio",
            min_value=config.min_focus_ratio,
            row_condition="QC_Readable==True",
            condition_parser="pandas",
        ),
    ]


def _annotation_expectations(gxe: Any) -> list[Any]:
    return [gxe.ExpectColumnValuesToBeInSet(column="Check_Matched", value_set=[True])]


def _describe_annotation_row(frame: pd.DataFrame, index: int) -> str:
    row = frame.loc[index]
    where = str(row["Check_Where"])
    if where.startswith("moa.csv"):
        text = f"{where}: treatment {row['Metadata_Treatment']!r} is in no platemap well"
    else:
        text = f"{where}: treatment {row['Metadata_Treatment']!r} has no moa.csv row"
    if row.get("Check_Suggestion"):
        text += f" (closest on the other side: {row['Check_Suggestion']!r})"
    name = str(row["Metadata_Treatment"])
    if name != name.strip():
        text += " [leading/trailing whitespace in the name]"
    return text


def _describe_table_row(frame: pd.DataFrame, index: int) -> str:
    row = frame.loc[index]
    keys = "/".join(
        str(row.get(k, "?")) for k in ("Metadata_Plate", "Metadata_Well", "Metadata_Site")
    )
    text = f"image table line {int(index) + 2} ({keys})"
    missing = row.get("Check_MissingFiles", "")
    if isinstance(missing, str) and missing:
        text += f": missing {missing}"
    return text


def _describe_qc_row(frame: pd.DataFrame, index: int, column: str | None) -> str:
    row = frame.loc[index]
    text = f"{row['QC_Path']} ({row['Metadata_Plate']}/{row['Metadata_Well']}/s{row['Metadata_Site']} {row['Channel']})"
    if row.get("QC_Error"):
        return f"{text}: {row['QC_Error']}"
    if column and column in row.index:
        text += f": {column}={row[column]}"
    return text


def _collect_failures(result: Any, frames: dict[str, pd.DataFrame]) -> list[Failure]:
    failures: list[Failure] = []
    for suite_result in result.run_results.values():
        suite = suite_result.suite_name
        frame = frames[suite]
        for item in suite_result.results:
            if item.success:
                continue
            config = item.expectation_config
            column = config.kwargs.get("column") or (
                ",".join(config.kwargs["column_list"]) if "column_list" in config.kwargs else None
            )
            if item.exception_info and item.exception_info.get("raised_exception"):
                failures.append(
                    Failure(
                        suite,
                        config.type,
                        column,
                        0,
                        [str(item.exception_info.get("exception_message"))],
                    )
                )
                continue
            indices = item.result.get("unexpected_index_list") or []
            count = int(item.result.get("unexpected_count") or len(indices))
            examples = []
            for entry in indices[:_MAX_EXAMPLES]:
                index = entry if not isinstance(entry, dict) else next(iter(entry.values()))
                if suite == "site_qc":
                    examples.append(_describe_qc_row(frame, index, column))
                elif suite == "annotations":
                    examples.append(_describe_annotation_row(frame, index))
                else:
                    examples.append(_describe_table_row(frame, index))
            if count > _MAX_EXAMPLES:
                examples.append(f"... and {count - _MAX_EXAMPLES} more")
            if not indices and config.type == "expect_column_to_exist":
                examples.append(f"column {column!r} is absent")
            if config.type == "expect_column_values_to_match_regex" and column == "Metadata_Well":
                examples.append(
                    "expected: a row letter A-P and a two-digit column 01-24 (B06, not B6 or b06)"
                )
            failures.append(Failure(suite, config.type, column, count, examples))
    return failures


def _write_reports(report_dir: Path, docs_source: Path | None, summary: dict[str, Any]) -> None:
    """Replace ``report_dir`` with the summary JSON and the Data Docs site, atomically."""
    with atomic_dir(report_dir) as staging:
        (staging / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        if docs_source is not None and docs_source.is_dir():
            shutil.copytree(docs_source, staging / "data_docs")


def validate_screen(
    table: pd.DataFrame,
    qc: pd.DataFrame,
    root: str | Path,
    report_dir: str | Path,
    config: ValidationConfig | None = None,
) -> dict[str, Any]:
    """Run the image-table and site-QC suites; write Data Docs + ``summary.json``; stop on failure.

    Args:
        table: Canonical image table.
        qc: Per-site QC statistics (:func:`morphoflow.screen.qc.site_qc`).
        root: Screen folder.
        report_dir: Folder that receives ``summary.json`` and ``data_docs/index.html``
            (replaced as a whole).
        config: QC thresholds.

    Returns:
        The summary written to ``summary.json``.

    Raises:
        DataValidationError: Any expectation failed; the message names each one and its rows.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    config = config or ValidationConfig()
    root = Path(root)
    report_dir = Path(report_dir)
    frames = {
        "image_table": table_checks_frame(table, root).reset_index(drop=True),
        "site_qc": qc.reset_index(drop=True),
    }
    suites = {
        "image_table": _image_table_expectations(gxe),
        "site_qc": _site_qc_expectations(gxe, config),
    }
    annotations = annotation_rows(root)
    if len(annotations):  # a screen without moa.csv has nothing to cross-check
        frames["annotations"] = annotations.reset_index(drop=True)
        suites["annotations"] = _annotation_expectations(gxe)
    with tempfile.TemporaryDirectory(prefix="morphoflow-gx-") as workdir:
        context = gx.get_context(mode="file", project_root_dir=workdir)
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("screen")
        results = []
        for name, expectations in suites.items():
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
            suite = context.suites.add(gx.ExpectationSuite(name=name))
            for expectation in expectations:
                suite.add_expectation(expectation)
            definition = context.validation_definitions.add(
                gx.ValidationDefinition(data=batch, suite=suite, name=name)
            )
            checkpoint = context.checkpoints.add(
                gx.Checkpoint(
                    name=f"{name}_checkpoint",
                    validation_definitions=[definition],
                    actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
                    result_format={"result_format": "COMPLETE"},
                )
            )
            results.append(checkpoint.run(batch_parameters={"dataframe": frames[name]}))
        failures = [f for r in results for f in _collect_failures(r, frames)]
        warned = []
        if config.annotation_mismatch == "warn":
            warned = [f for f in failures if f.suite == "annotations"]
            failures = [f for f in failures if f.suite != "annotations"]
        docs = Path(workdir) / "gx" / "uncommitted" / "data_docs" / "local_site"
        summary = {
            "success": not failures,
            "screen_root": str(root),
            "data_fingerprint": fingerprint(table, root),
            "n_sites": int(len(table)),
            "n_plates": int(table["Metadata_Plate"].nunique()) if len(table) else 0,
            "n_wells": int(table.groupby(["Metadata_Plate", "Metadata_Well"]).ngroups)
            if len(table)
            else 0,
            "n_treatments": int(table["Metadata_Treatment"].nunique()) if len(table) else 0,
            "thresholds": asdict(config),
            "expectations_evaluated": sum(
                len(r.results) for res in results for r in res.run_results.values()
            ),
            "failures": [asdict(f) for f in failures],
            "warnings": [asdict(f) for f in warned],
            "qc_medians": qc.groupby("Channel")[["QC_FocusScore", "QC_SaturationFraction"]]
            .median()
            .to_dict(orient="index")
            if len(qc)
            else {},
        }
        _write_reports(report_dir, docs, summary)
    for warning in warned:
        logger.warning("data validation warning for screen %s: %s", root, warning.describe())
    if failures:
        details = "\n".join(f.describe() for f in failures)
        raise DataValidationError(
            f"data validation failed for screen {root}: {len(failures)} expectation(s) failed "
            f"(report: {report_dir / 'data_docs' / 'index.html'})\n{details}"
        )
    return summary
