"""netdiag: where does the time go when clinicians log on?

The Python API under the CLI, usable from a notebook:

    import netdiag
    cap = netdiag.read_capture(["switch.pcapng"])        # packets table + payload
    conns = netdiag.tcp.connections(cap)                 # polars DataFrame
    tx = netdiag.transactions(["switch.pcapng"])         # GIOP/HTTP/TLS/DNS request-response pairs
    logons = netdiag.logons(["switch.pcapng"])           # one row per logon, with its wait budget
    result = netdiag.analyze(["switch.pcapng"], out="netdiag-report")   # everything, plus the report
    diff = netdiag.compare("before.pcapng", "after.pcapng")           # before/after statistics
    days = netdiag.trend(["mon-report/", "tue-report/", "wed.pcapng"])   # p50/p95/budget per period

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
    "transactions": ("netdiag.transactions", "transactions"),
    "messages": ("netdiag.transactions", "messages"),
    "logons": ("netdiag.logons", "logons"),
    "findings": ("netdiag.logons", "findings"),
    "analyze": ("netdiag.analyze", "analyze"),
    "compare": ("netdiag.compare", "compare"),
    "trend": ("netdiag.trend", "trend"),
    "load_profile": ("netdiag.profile", "load_profile"),
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
