"""netdiag: where does the time go when clinicians log on?

The Python API under the CLI, usable from a notebook. Captures are given as paths (a file, a
directory of files such as a ring buffer, or a list of them):

    import netdiag
    paths = ["switch.pcapng"]
    cap = netdiag.read_capture(paths)                    # packets table + payload, in memory
    conns = netdiag.tcp.connections(cap)                 # one row per TCP connection / UDP flow
    tx = netdiag.transactions(paths)                     # GIOP/HTTP/TLS/DNS request-response pairs
    logons = netdiag.logons(paths)                       # one row per logon, with its wait budget
    result = netdiag.analyze(paths, out="netdiag-report")   # a netdiag.pipeline.Analysis, plus the report
    diff = netdiag.compare("before.pcapng", "after.pcapng")           # before/after statistics
    days = netdiag.trend(["netdiag-report/", "after.pcapng"])         # p50/p95/budget per period

`transactions`, `messages`, `logons`, `findings`, `analyze`, `compare` and `trend` run the captures
through `netdiag.pipeline` (the one driver: connections -> transactions -> logons) as far as they
need; `netdiag.pipeline.run(paths)` returns every table at
once, and `netdiag.pipeline.Pipeline` can be fed packet chunks as they come.
`netdiag.Watcher(ring_dir, out_dir).poll()` follows a ring-buffer directory file by file, keeping
a report directory current (netdiag.watch; the CLI's `netdiag watch`).
Every table's columns are declared once in `netdiag.schema`.
Names are imported lazily so `import netdiag` stays fast for the CLI.

`transactions`, `logons`, `analyze`, `compare` and `trend` are both API functions and submodules of this
package. Python's import system binds a package attribute to a submodule whenever that submodule is
first imported, which would turn `netdiag.transactions(...)` into calling a module after any code
imported `netdiag.transactions`. The package's module class therefore keeps the API function bound
under such a name once it has been looked up, and resolves it lazily before that.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "read_capture": ("netdiag.capture", "read_capture"),
    "iter_chunks": ("netdiag.capture", "iter_chunks"),
    "tcp": ("netdiag.tcp", None),
    "schema": ("netdiag.schema", None),
    "transactions": ("netdiag.pipeline", "transactions"),
    "messages": ("netdiag.pipeline", "messages"),
    "logons": ("netdiag.logons", "logons"),
    "findings": ("netdiag.logons", "findings"),
    "analyze": ("netdiag.analyze", "analyze"),
    "compare": ("netdiag.compare", "compare"),
    "trend": ("netdiag.trend", "trend"),
    "load_profile": ("netdiag.profile", "load_profile"),
    "pipeline": ("netdiag.pipeline", None),
    "Watcher": ("netdiag.watch", "Watcher"),
}


def _resolve(name: str) -> Any:
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'netdiag' has no attribute {name!r}")
    value = _resolve(name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """The netdiag package: API functions win over same-named submodules (see module docstring)."""

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if isinstance(value, types.ModuleType) and _LAZY.get(name, (None, None))[1] is not None:
            value = _resolve(name)
            super().__setattr__(name, value)
        return value


sys.modules[__name__].__class__ = _Package


__all__ = sorted(_LAZY)
