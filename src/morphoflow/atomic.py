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
