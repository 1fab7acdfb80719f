"""What `check`, `matrix` and `list` share in printing: the console and the report files."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

VERDICT_COLOURS = {"pass": "green", "fail": "bold red", "inconclusive": "yellow"}


def console(width: int = 160) -> Console:
    """The terminal's width on a terminal; `width` columns in a log, where nothing wraps them."""
    return Console(width=None if sys.stdout.isatty() else width)


def write(path: Path | None, text: Callable[[], str]) -> None:
    """`text()` into `path` (its folders made), when a path is given."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text())
