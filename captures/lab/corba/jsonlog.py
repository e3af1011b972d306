"""Append-only JSON-lines log shared by the lab peers (one object per line, written with one write()).

Several client processes may append to the same file at once (a logon storm); each line goes out
in a single os.write on an O_APPEND descriptor so lines never interleave on a local filesystem.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path


def now_ns() -> int:
    """Wall-clock UTC nanoseconds, the time base of every log line and of the capture."""
    return time.time_ns()


class JsonLog:
    """Thread-safe JSON-lines writer; every record gets ts_ns if it has none."""

    def __init__(self, path: Path | str, **fixed: object) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._fixed = fixed
        self._lock = threading.Lock()

    def write(self, event: str, **fields: object) -> dict:
        """Write one line {"event": event, **fixed, **fields, "ts_ns": ...}; return the record."""
        rec: dict = {"event": event, **self._fixed, **fields}
        rec.setdefault("ts_ns", now_ns())
        line = (json.dumps(rec, separators=(",", ":"), default=str) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)
        return rec

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
