"""A toy protocol as a package of its own (parser, pairing, SPEC), for the protocol registry test."""

from __future__ import annotations

from netdiag.protocols.spec import ProtocolSpec, TxnKind
from toy_ping import parser
from toy_ping.pairing import pair

SPEC = ProtocolSpec(
    name="ping",
    parser=parser,
    pair=pair,
    transactions=(TxnKind("ping"),),
    detect_order=50,
    request_kinds=("PING",),
    reply_kinds=("PONG",),
)
