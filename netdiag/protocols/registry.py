"""The one list of protocols netdiag reads, and the questions the rest of netdiag asks of it.

The built-in protocols (GIOP, HTTP, DNS, TLS) are registered here, in the order their pairing
runs (which is also the order of transactions with equal timestamps). A new protocol is a package
with a `SPEC` (netdiag.protocols.spec) and one `register(SPEC)`; `unregister(name)` takes it out
again (tests). Consumers ask by role, not by name: `stream_specs()` (recognised on TCP byte
streams), `udp_specs()`, `request_protocols()` (transactions.protocol values that are
application requests: a logon waits on their answers), `transaction_protocols()`.
"""

from __future__ import annotations

from netdiag.protocols import dns, giop, http, tls
from netdiag.protocols.spec import ProtocolSpec, TxnKind

_SPECS: list[ProtocolSpec] = [giop.SPEC, http.SPEC, dns.SPEC, tls.SPEC]


def register(spec: ProtocolSpec) -> ProtocolSpec:
    """Add a protocol (after the built-in ones); a spec of the same name is replaced in place."""
    for i, old in enumerate(_SPECS):
        if old.name == spec.name:
            _SPECS[i] = spec
            return spec
    _SPECS.append(spec)
    return spec


def unregister(name: str) -> None:
    """Remove the protocol of that name (nothing when it is not registered)."""
    _SPECS[:] = [s for s in _SPECS if s.name != name]


def specs() -> tuple[ProtocolSpec, ...]:
    """Every registered protocol, in pairing order."""
    return tuple(_SPECS)


def get(name: str) -> ProtocolSpec | None:
    """The protocol of that name, or None."""
    return next((s for s in _SPECS if s.name == name), None)


def stream_specs() -> tuple[ProtocolSpec, ...]:
    """Protocols recognised on TCP by their first bytes, in the order they are tried."""
    return tuple(sorted((s for s in _SPECS if "tcp" in s.transports and s.detect == "looks_like"),
                        key=lambda s: s.detect_order))


def port_specs() -> tuple[ProtocolSpec, ...]:
    """Protocols recognised on TCP by the server port."""
    return tuple(s for s in _SPECS if "tcp" in s.transports and s.detect == "port")


def udp_specs() -> tuple[ProtocolSpec, ...]:
    """Protocols parsed from UDP datagrams (by port)."""
    return tuple(s for s in _SPECS if "udp" in s.transports)


def txn_kinds() -> tuple[TxnKind, ...]:
    """Every kind of transaction the registered pairings make (transactions.protocol values)."""
    return tuple(k for s in _SPECS for k in s.transactions)


def transaction_protocols() -> tuple[str, ...]:
    """The values transactions.protocol can take."""
    return tuple(k.name for k in txn_kinds())


def request_protocols() -> tuple[str, ...]:
    """transactions.protocol values that are application requests (GIOP, HTTP, TLS turns): a
    client waits on their answers, so logons count them and their waits are server time."""
    return tuple(k.name for k in txn_kinds() if k.app_request)


def set_sanitize(name: str, keeper: object) -> None:
    """Fill a protocol's `sanitize` slot: the sanitizer registers its field keepers here, so the
    import goes sanitize -> protocols, never the reverse. KeyError when no such protocol."""
    spec = get(name)
    if spec is None:
        raise KeyError(f"no protocol {name!r} registered")
    spec.sanitize = keeper
