"""netdiag: where does the time go when clinicians log on?

The Python API under the CLI, usable from a notebook:

    import netdiag
    cap = netdiag.read_capture(["switch.pcapng"])        # packets table + payload
    conns = netdiag.tcp.connections(cap)                 # polars DataFrame
    tx = netdiag.transactions(cap)                       # GIOP/HTTP/TLS/DNS request-response pairs
    logons = netdiag.logons(cap)                         # one row per logon, with its wait budget
    result = netdiag.analyze(["switch.pcapng"], out="netdiag-report")   # everything, plus the report
    diff = netdiag.compare("before.pcapng", "after.pcapng")           # before/after statistics

Every table's columns are declared once in `netdiag.schema`.
Names are imported lazily so `import netdiag` stays fast for the CLI.
"""

from __future__ import annotations

import importlib
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
    "load_profile": ("netdiag.profile", "load_profile"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'netdiag' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


__all__ = sorted(_LAZY)
