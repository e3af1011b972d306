"""DNS over UDP and TCP: parser (parser.py), pairing rules (pairing.py) and its spec. Recognised by
port (53, 5353, 5355): twelve header bytes say too little on their own."""

from __future__ import annotations

from netdiag.protocols.dns import parser
from netdiag.protocols.dns.pairing import pair
from netdiag.protocols.spec import ProtocolSpec, TxnKind

SPEC = ProtocolSpec(
    name="dns",
    parser=parser,
    pair=pair,
    transactions=(TxnKind("dns"),),
    transports=("tcp", "udp"),
    ports=parser.PORTS,
    detect="port",
    context_by_transport=True,
    pair_sort=("first_ts_ns", "row"),   # lookups across sockets: retries come from new sockets
    request_kinds=("query",),
    reply_kinds=("response",),
)
