"""The keeper registry: which keeper sanitises a TCP byte stream, registered by protocol name.

Why one registry: a new protocol (SMB, LDAP, Citrix ICA) gets its keeper module under
netdiag/sanitize/keepers/ and one `register` line here; the stream sanitisers (the streaming
writer's pass 1 and the whole-file reference) only ask the registry. Each keeper also fills its
protocol's `sanitize` slot in netdiag.protocols.registry (the import goes sanitize -> protocols,
never the reverse). The order of registration is the order in which a stream's first bytes are
tried (`looks_like` of the protocol's parser), so it is part of the policy: GIOP, then TLS, then
HTTP; DNS is chosen by its server port alone.

A keeper gets each whole message the protocol's own cutter (`parser.cut`) cut from one direction,
and writes what it keeps into `out` (a zeroed buffer of the message's length):

    keep(msg, out, ctx, state, direction, mapper) -> [(offset, length, little_endian), ...]

`ctx` is the parser's per-connection context (the cutter's too), `state` the keeper's own
(`new_state`), `direction` 0 from the client; the list names IIOP profiles to re-encode after the
text pass (GIOP only). `framed(msg)` says whether a cut the parser called malformed still starts
with the protocol's header (then its header fields are kept); `resync(head)` whether a stream
whose first bytes are unrecognised holds the protocol's marker further on (joined mid-message).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from netdiag.protocols import registry as protocols
from netdiag.protocols.dns import parser as dns_parser
from netdiag.protocols.giop import parser as giop_parser
from netdiag.protocols.http import parser as http_parser
from netdiag.protocols.tls import parser as tls_parser
from netdiag.sanitize.keepers import dns, giop, http, tls


def _none() -> None:
    return None


@dataclass(frozen=True)
class Keeper:
    """One protocol's payload policy over TCP byte streams (see the module docstring)."""

    name: str
    parser: Any                                   # module with cut(), looks_like(), new_context()
    keep: Callable[..., list]                     # keep(msg, out, ctx, state, direction, mapper)
    framed: Callable[[bytes], bool]
    new_context: Callable[[], Any]
    new_state: Callable[[], Any] = _none
    ports: frozenset[int] = frozenset()           # chosen by server port (no sniffing)
    sniff: bool = True                            # recognised by parser.looks_like on the first 256 bytes
    resync: Callable[[bytes], bool] | None = None


_KEEPERS: dict[str, Keeper] = {}


def register(keeper: Keeper) -> None:
    """Add (or replace) the keeper of a protocol; sniffing order is registration order. The
    protocol registry's `sanitize` slot of a protocol of that name points at it."""
    _KEEPERS[keeper.name] = keeper
    if protocols.get(keeper.name) is not None:
        protocols.set_sanitize(keeper.name, keeper)


def keeper(name: str) -> Keeper:
    """The keeper registered for protocol `name` (KeyError when none)."""
    return _KEEPERS[name]


def by_port(port: int) -> Keeper | None:
    """The keeper chosen by a server port alone (DNS), if any."""
    return next((k for k in _KEEPERS.values() if port in k.ports), None)


def sniffing() -> list[Keeper]:
    """Keepers recognised by their first bytes, in the order they are tried."""
    return [k for k in _KEEPERS.values() if k.sniff]


def resyncing() -> list[Keeper]:
    """Keepers whose parser finds its messages in a stream joined mid-message."""
    return [k for k in _KEEPERS.values() if k.resync is not None]


register(Keeper("giop", giop_parser, giop.keep, giop.framed, giop_parser.new_context, resync=giop.resync))
register(Keeper("tls", tls_parser, tls.keep, tls.framed, tls_parser.new_context, new_state=tls.TlsState))
register(Keeper("http", http_parser, http.keep, http.framed, http_parser.new_context))
register(Keeper("dns", dns_parser, dns.keep, dns.framed, lambda: dns_parser.new_context("tcp"),
                ports=frozenset(dns_parser.PORTS), sniff=False))
