"""Kedro datasets of morphoflow objects: models stored as files, the per-plate partition store,
and folders given to nodes as paths (the screen, report and model folders)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from morphoflow.execution.store import PartitionStore
from morphoflow.segmentation.unet import NucleusUNet, load_unet, save_unet


class UNetModelDataset(AbstractDataset[NucleusUNet, NucleusUNet]):
    """A nucleus U-Net saved with :func:`morphoflow.segmentation.unet.save_unet`.

    Metadata given in the catalog (``metadata``) is stored inside the file; the loaded model
    carries the file's metadata as ``model.metadata``.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _load(self) -> NucleusUNet:
        try:
            model, meta = load_unet(Path(self._filepath))
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(str(exc)) from exc
        model.metadata = meta  # type: ignore[attr-defined]
        return model

    def _save(self, data: NucleusUNet) -> None:
        save_unet(data, Path(self._filepath), getattr(data, "metadata", None))

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}


class FolderDataset(AbstractDataset[None, Path]):
    """A folder owned by the catalog and given to nodes as its :class:`~pathlib.Path`.

    Loading reads and creates nothing. Two uses: an input folder that nodes read with their
    own readers (the screen, from ``--params screen.root``: the data validation pipeline
    names what is missing in it), and a folder a node writes files into (atomically, file by
    file) where the output is a set of files a library writes (Great Expectations' Data Docs,
    one model file per variant) rather than one object. Nothing is saved through it.
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = str(path)
        self.metadata = metadata

    def _load(self) -> Path:
        return Path(self._path)

    def _save(self, data: None) -> None:
        raise DatasetError(
            f"{self._path}: a folder given to nodes, never saved through the catalog"
        )

    def _exists(self) -> bool:
        return True

    def _describe(self) -> dict[str, Any]:
        return {"path": self._path}


class PartitionStoreDataset(FolderDataset):
    """The folder of per-partition (per-plate) outputs, as a
    :class:`~morphoflow.execution.store.PartitionStore` handle.

    Loading returns the handle (nothing is read): the profiling pipeline's workers write
    each plate's partition into it atomically, and later nodes read partitions lazily, one
    plate at a time. The catalog owns the location (``path``); nothing saves through it.
    """

    def _load(self) -> PartitionStore:  # type: ignore[override]
        return PartitionStore(Path(self._path))


class WSLModelDataset(AbstractDataset[tuple, tuple]):
    """A WSL Cell Painting CNN file (:func:`morphoflow.learning.save_wsl_model` format).

    Saves and loads ``(model, classes, metadata)``; written atomically.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = PurePosixPath(filepath)
        self.metadata = metadata

    def _load(self) -> tuple:
        from morphoflow.learning import load_wsl_model

        try:
            return load_wsl_model(Path(self._filepath))
        except (FileNotFoundError, ValueError) as exc:
            raise DatasetError(str(exc)) from exc

    def _save(self, data: tuple) -> None:
        from morphoflow.learning import save_wsl_model

        model, classes, metadata = data
        save_wsl_model(model, classes, Path(self._filepath), metadata)

    def _exists(self) -> bool:
        return Path(self._filepath).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
