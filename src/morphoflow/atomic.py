"""Atomic file writes: write to a temporary file beside the destination, then rename.

A reader (or a Triton server watching a model repository) sees either the old file or the
complete new one, and a failed write leaves neither a partial destination nor a temp file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path in ``path``'s folder, renamed over ``path`` when the block succeeds.

    Args:
        path: The destination (its folder is created).
        suffix: Suffix of the temporary name (some writers choose the format from it).

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600: give the file a normal mode
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write text to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """A staging folder beside ``path``, renamed over it when the block succeeds.

    Fill the yielded folder; on success an existing ``path`` is removed and the staging folder
    takes its place (readers see the old tree or the complete new one, never a half-written
    one); on failure the staging folder is removed and ``path`` is left as it was.

    Args:
        path: The destination folder (its parent is created).

    Yields:
        The staging folder.
    """
    import shutil

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    os.chmod(staging, 0o777 & ~_umask())  # mkdtemp creates 0700: others of a shared store read it
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file (same resolved path, or hard links to it)."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _check_parent_folder(path: Path, option: str) -> None:
    """Refuse a path whose nearest existing parent is a file or is not writable."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{option} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise ValueError(f"{option} {path}: folder {parent} is not writable")
            return


def check_output_file(
    path: str | Path, option: str, suffixes: tuple[str, ...], kind: str = "a file"
) -> None:
    """Refuse an output file path before any work: wrong suffix, a folder, or unwritable.

    Args:
        path: The output file.
        option: The argument that gave it, for messages (e.g. ``"--out"``).
        suffixes: Accepted suffixes, lower case (e.g. ``(".tif", ".tiff")``).
        kind: What is written there, for messages (e.g. ``"a label TIFF"``).

    Raises:
        ValueError: ``path`` is a folder, has another suffix, lies under a file, or its folder
            is not writable (the message names ``option`` and the path).
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder: give a file path ending in {suffixes[0]}")
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"{option} {path} must end in {' or '.join(suffixes)} (it gets {kind})")
    _check_parent_folder(path, option)


def check_output_folder(path: str | Path, option: str) -> None:
    """Refuse an output folder path before any work: an existing file, under a file, or
    unwritable.

    Raises:
        ValueError: The message names ``option`` and the path.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file: give a folder for the outputs")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {path}: folder {path} is not writable")
        return
    _check_parent_folder(path, option)
