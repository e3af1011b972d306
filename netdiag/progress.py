"""A progress bar on stderr for work that takes more than a moment.

Long steps accept an `advance(n)` callable; the CLI passes one that drives a rich progress bar
on stderr, the Python API passes a no-op. Nothing is drawn when stderr is not a terminal, so
piped output (--json, --csv) stays clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


def _noop(_: int) -> None:
    return None


NO_PROGRESS: Advance = _noop


@contextmanager
def progress_bar(total: int, label: str, *, min_total: int = 20_000_000) -> Iterator[Advance]:
    """Yield an `advance(n)` callable; draws a bar when stderr is a TTY and total >= min_total."""
    if total < min_total or not sys.stderr.isatty():
        yield _noop
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
