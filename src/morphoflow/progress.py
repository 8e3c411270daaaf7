"""Progress bars for long loops: rich on an interactive terminal, silent otherwise."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items`` while showing a rich progress bar when stderr is a terminal.

    Args:
        items: What to iterate over.
        description: Label shown before the bar.
        total: Number of items when ``items`` has no ``len``.
    """
    if not sys.stderr.isatty():
        yield from items
        return
    from rich.progress import track as rich_track

    yield from rich_track(items, description=description, total=total, transient=True)
