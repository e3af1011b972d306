"""Typed errors that carry where the problem is (file, frame, byte offset).

The CLI turns every `NetdiagError` into one clear line on stderr and an exit code; no
traceback reaches the user. Library callers (notebooks) can catch them by type.
"""

from __future__ import annotations


class NetdiagError(Exception):
    """Base class: a problem the user can act on, described in one line."""

    exit_code: int = 2

    def __init__(self, message: str, *, path: str | None = None, frame: int | None = None,
                 offset: int | None = None) -> None:
        self.path = path
        self.frame = frame
        self.offset = offset
        where = []
        if path is not None:
            where.append(str(path))
        if frame is not None:
            where.append(f"frame {frame}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        self.message = message
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class CaptureError(NetdiagError):
    """A capture file cannot be read at all (not a capture, empty, unknown format)."""


class ConfigError(NetdiagError):
    """A profile or option is invalid; names the line and the reason."""


class UsageError(NetdiagError):
    """The command was asked for something that does not exist (unknown logon id, ...)."""


class CaptureWarning:
    """A problem in part of a capture; analysis of everything readable goes on.

    Kept as data (not raised) so the CLI can print them and reports can list them.
    """

    __slots__ = ("path", "frame", "offset", "message")

    def __init__(self, message: str, *, path: str | None = None, frame: int | None = None,
                 offset: int | None = None) -> None:
        self.message = message
        self.path = path
        self.frame = frame
        self.offset = offset

    def __str__(self) -> str:
        where = []
        if self.path is not None:
            where.append(str(self.path))
        if self.frame is not None:
            where.append(f"frame {self.frame}")
        if self.offset is not None:
            where.append(f"byte offset {self.offset}")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def __repr__(self) -> str:
        return f"CaptureWarning({str(self)!r})"


class PartitionError(NetdiagError):
    """A partition of a parallel run failed (its worker raised or died): the run has no tables.

    Exit 3 (an internal error): the capture was readable, the analysis of a part of it was not
    completed, so nothing is presented as the capture's tables."""

    exit_code = 3

    def __init__(self, message: str, *, partition: int | None = None) -> None:
        self.partition = partition
        super().__init__(message)
