"""Kedro datasets of the activity inputs (the catalog resolves their paths from runtime
parameters: ``activity.root``, ``activity.mo_profiles``, ``activity.ge_profiles``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError

from morphoflow.activity.inputs import (
    ActivityInputError,
    assay_file,
    read_assays,
    read_compounds,
)


class _ReadOnly(AbstractDataset[Any, Any]):
    def __init__(self, filepath: str) -> None:
        self._filepath = str(filepath)

    def _save(self, data: Any) -> None:
        raise DatasetError(f"{type(self).__name__} is read-only ({self._filepath})")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath}


class CompoundsDataset(_ReadOnly):
    """``compounds.csv`` -> ``{"compounds", "controls", "path"}`` (validated on load:
    :func:`morphoflow.activity.inputs.read_compounds`)."""

    def _load(self) -> dict[str, Any]:
        compounds, controls = read_compounds(self._filepath)
        return {"compounds": compounds, "controls": controls, "path": self._filepath}

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()


class AssaysDataset(_ReadOnly):
    """The assay matrix of a folder (``assays.parquet``, else ``assays.csv``) ->
    ``{"assays", "path"}`` (:func:`morphoflow.activity.inputs.read_assays`)."""

    def _load(self) -> dict[str, Any]:
        path = assay_file(self._filepath)
        return {"assays": read_assays(path), "path": str(path)}

    def _exists(self) -> bool:
        try:
            assay_file(self._filepath)
        except FileNotFoundError:
            return False
        except ActivityInputError:
            return True  # both files: loading says so
        return True


class OptionalProfilesDataset(_ReadOnly):
    """A treatment-level profile Parquet: ``{"table", "path"}``.

    ``given`` is the user's file (a runtime parameter; empty when not given): it must exist.
    Without it, ``filepath`` (the default) is read when it exists, and ``table`` is None
    otherwise (the modality is then not run, and the report says so). (``given`` is not named
    ``filepath`` because kedro turns an empty relative ``filepath`` into the project folder.)

    Raises:
        FileNotFoundError: A ``given`` file does not exist (named with its parameter).
    """

    def __init__(self, filepath: str = "", given: str = "", parameter: str = "") -> None:
        super().__init__(filepath)
        self._given = str(given or "")
        self._parameter = parameter or "profiles"

    def _load(self) -> dict[str, Any]:
        if self._given:
            path = Path(self._given)
            if not path.is_file():
                raise FileNotFoundError(f"{self._parameter}: file not found: {path}")
            return {"table": pd.read_parquet(path), "path": str(path)}
        path = Path(self._filepath) if self._filepath else None
        if path is None or not path.is_file():
            return {"table": None, "path": self._filepath}
        return {"table": pd.read_parquet(path), "path": str(path)}

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "given": self._given}

    def _exists(self) -> bool:
        return True
