"""A progress bar on stderr for work that takes more than a moment.

Long steps accept an `advance(n)` callable; the CLI passes one that drives a rich progress bar
on stderr and names the stage the work is in (`stage(advance, "logons and findings")`), the
Python API passes a no-op. Nothing is drawn when stderr is not a terminal, so
piped output (--json, --csv) stays clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Advance = Callable[[int], None]


def _noop(_: int) -> None:
    return None


NO_PROGRESS: Advance = _noop


def stage(progress: Advance, name: str) -> None:
    """Say which stage the work is in (the bar's label becomes "analyze: <name>"); a no-op for a
    plain callable (the Python API's NO_PROGRESS, a caller's own counter)."""
    set_stage = getattr(progress, "stage", None)
    if set_stage is not None:
        set_stage(name)


class _Bar:
    """The `advance(n)` callable of a drawn bar, with `stage(name)` to relabel it."""

    def __init__(self, bar: Any, task: Any, label: str) -> None:
        self.bar, self.task, self.label = bar, task, label
        self.description = label

    def __call__(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def stage(self, name: str) -> None:
        self.description = f"{self.label}: {name}"
        self.bar.update(self.task, description=self.description)


@contextmanager
def progress_bar(total: int, label: str, *, min_total: int = 20_000_000,
                 first_stage: str = "reading") -> Iterator[Advance]:
    """Yield an `advance(n)` callable; draws a bar when stderr is a TTY and total >= min_total.

    The bar is labelled "<label>: <stage>", starting at `first_stage`; `stage(advance, name)`
    moves it on (the bytes read drive the bar, the later stages run with it full).
    """
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
        advance = _Bar(bar, task, label)
        advance.stage(first_stage)
        yield advance
