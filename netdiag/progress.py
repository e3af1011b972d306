"""A progress line on stderr for work that takes more than a moment.

Long steps accept an `advance(n)` callable (n: bytes of capture data read); the CLI passes one
that draws a rich progress line on stderr, the Python API passes a no-op. Two optional hooks
ride on the same callable and are no-ops for a plain one: `stage(advance, name)` says which
stage the work is in, `packets(advance, n)` counts packets read. Nothing is drawn when stderr is
not a terminal, so piped output (--json, --csv) stays clean.

The line shows the stage, the packets read and packets/s, the seconds each stage took so far,
and the time left. Reading is measured (bytes read of the total); the stages after reading
(closing connections and streams, logons and findings, writing the report) report no progress
of their own, so their length is estimated from the reading time with AFTER_READING (see there).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

Advance = Callable[[int], None]

# Seconds a stage after reading takes per second of reading, measured with netdiag.pipeline's
# stage names on bench/gen_capture.py captures of 100 k and 300 k packets (47 and 140 MB) on the
# 2-core VM: "connections" (closing the TCP state) 0.04-0.05, "pairing transactions" (closing the
# streams, pairing) 0.16-0.17, "logons and findings" 0.52-0.58, "writing the report" 0.03-0.09
# (a near-fixed ~0.15 s; on captures under 1 MB, where start-up dominates, the shares are far
# larger and meaningless). The model: time left = reading left (bytes left at the reading rate
# so far) + reading time x the sum of the shares of the stages still to come; a stage that runs
# past its estimate shows its elapsed seconds and "longer than estimated" instead of a made-up
# figure.
AFTER_READING = {"connections": 0.05, "pairing transactions": 0.17, "logons and findings": 0.55,
                 "writing the report": 0.05}
# the CLI draws no line for inputs smaller than this (bytes); NETDIAG_PROGRESS_MIN_BYTES overrides it
MIN_TOTAL = 20_000_000


def _noop(_: int) -> None:
    return None


NO_PROGRESS: Advance = _noop


def stage(progress: Advance, name: str) -> None:
    """Say which stage the work is in (the line's label becomes "<label>: <name>"); a no-op for a
    plain callable (the Python API's NO_PROGRESS, a caller's own counter)."""
    set_stage = getattr(progress, "stage", None)
    if set_stage is not None:
        set_stage(name)


def packets(progress: Advance) -> Advance:
    """The packet counter of `progress` (call it with packets read), a no-op for a plain callable."""
    return getattr(progress, "packets", _noop)


def _secs(s: float) -> str:
    return f"{s:.1f} s" if s < 60 else f"{int(s) // 60} min {int(s) % 60:02d} s"


def _count(n: float) -> str:
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e4 else f"{n:.0f}"


class _Bar:
    """The `advance(n)` callable of a drawn line, with `stage(name)` and `packets(n)`.

    The main thread updates the counters; rich's refresh thread reads them (`fraction`, `text`)
    ten times a second, so the elapsed times and the estimate move while a later stage runs."""

    def __init__(self, total: int, label: str, first_stage: str, then: Sequence[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.label, self.clock = max(total, 1), label, clock
        self.bytes = self.packets_read = 0
        self.reading = first_stage
        self.then = [s for s in then if s != first_stage]
        self.stages: list[tuple[str, float]] = [(first_stage, clock())]   # (name, start)
        self.read_s: float | None = None   # reading's seconds, once it ended
        self.description = f"{label}: {first_stage}"

    def __call__(self, n: int) -> None:
        self.bytes += n

    def packets(self, n: int) -> None:
        self.packets_read += n

    def stage(self, name: str) -> None:
        """Reading ends at the first stage that comes after it (in `then` or AFTER_READING); any
        other name while reading only names the reading more precisely ("reading, TCP")."""
        now = self.clock()
        if self.read_s is None and name not in self.then and name not in AFTER_READING:
            self.reading = name
            self.stages[0] = (name, self.stages[0][1])
        else:
            if self.read_s is None:
                self.read_s = now - self.stages[0][1]
            self.stages.append((name, now))
        self.description = f"{self.label}: {name}"

    def _estimate(self, now: float) -> tuple[float, float, bool]:
        """(seconds done, seconds in all by the model, whether the current stage ran past its estimate)."""
        if self.read_s is None:   # reading: its total from the share of bytes read so far
            done = now - self.stages[0][1]
            f = min(self.bytes / self.total, 1.0)
            read = done / f if f > 0 else float("inf")
            return done, read * (1 + sum(AFTER_READING.get(s, 0.0) for s in self.then)), False
        read = self.read_s
        done, whole, late = read, read, False
        after = self.stages[1:]
        for i, (name, start) in enumerate(after):
            end = after[i + 1][1] if i + 1 < len(after) else now
            est = read * AFTER_READING.get(name, 0.0)
            done += end - start
            whole += max(est, end - start)
            late = i + 1 == len(after) and end - start > est
        seen = {name for name, _ in after}
        whole += sum(read * AFTER_READING.get(s, 0.0) for s in self.then if s not in seen)
        return done, whole, late

    def fraction(self) -> float:
        """The share of the whole run done, by the model; never 1 before the run ends."""
        done, whole, _ = self._estimate(self.clock())
        return min(done / whole, 0.99) if whole > 0 and whole != float("inf") else 0.0

    def text(self) -> str:
        """Packets, packets/s, seconds per stage so far and the time left, e.g.
        "1.2 M packets, 250.3 k packets/s | reading, TCP 4.7 s, connections 0.2 s | ~0.1 s left"."""
        now = self.clock()
        read_s = self.read_s if self.read_s is not None else now - self.stages[0][1]
        rate = self.packets_read / read_s if read_s > 0 else 0.0
        parts = [f"{name} {_secs((self.stages[i + 1][1] if i + 1 < len(self.stages) else now) - start)}"
                 for i, (name, start) in enumerate(self.stages)]
        done, whole, late = self._estimate(now)
        if late:
            left = "longer than estimated"
        elif whole == float("inf"):
            left = "time left: estimating"
        else:
            left = f"~{_secs(max(whole - done, 0.0))} left"
        return f"{_count(self.packets_read)} packets, {_count(rate)} packets/s | {', '.join(parts)} | {left}"


def _columns(bar: _Bar) -> list[Any]:
    """rich columns that draw `bar`: label, a bar of the modelled share done, the text."""
    from rich.progress import BarColumn, ProgressColumn
    from rich.progress_bar import ProgressBar
    from rich.text import Text

    class ModelBar(BarColumn):
        def render(self, task: Any) -> ProgressBar:
            return ProgressBar(total=1000, completed=int(1000 * bar.fraction()), width=self.bar_width,
                               style=self.style, complete_style=self.complete_style,
                               finished_style=self.finished_style, pulse_style=self.pulse_style)

    class Label(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(bar.description)

    class Figures(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text(bar.text(), style="progress.remaining")

    return [Label(), ModelBar(bar_width=24), Figures()]


@contextmanager
def progress_bar(total: int, label: str, *, min_total: int | None = None, first_stage: str = "reading",
                 then: Sequence[str] = ()) -> Iterator[Advance]:
    """Yield an `advance(n)` callable; draws a progress line when stderr is a TTY and total >= min_total.

    `total` is the bytes to read; the line is labelled "<label>: <stage>", starting at
    `first_stage`, and `stage(advance, name)` moves it on. `then` names the stages that follow
    reading (netdiag.pipeline.STAGE_NAMES, "writing the report"): the time left includes them
    (AFTER_READING). `min_total` defaults to MIN_TOTAL, or NETDIAG_PROGRESS_MIN_BYTES when set.
    """
    if min_total is None:
        min_total = int(os.environ.get("NETDIAG_PROGRESS_MIN_BYTES", MIN_TOTAL))
    if total < min_total or not sys.stderr.isatty():
        yield _noop
        return
    from rich.console import Console
    from rich.progress import Progress

    advance = _Bar(total, label, first_stage, then)
    with Progress(*_columns(advance), console=Console(stderr=True), transient=True) as bar:
        bar.add_task(advance.description, total=1000)
        yield advance
