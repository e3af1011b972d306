"""HTTP/1.x: parser (parser.py), pairing rules (pairing.py) and its spec."""

from __future__ import annotations

from typing import Any

import polars as pl

from netdiag.protocols.http import parser
from netdiag.protocols.http.pairing import pair
from netdiag.protocols.spec import ProtocolColumn, ProtocolSpec, TxnKind


def declared_size(detail: dict[str, Any]) -> int | None:
    """An HTTP message's length by its header: header bytes + Content-Length (None when chunked)."""
    if detail.get("chunked"):
        return None
    cl, hb = detail.get("content_length"), detail.get("header_bytes")
    return hb + cl if isinstance(cl, int) and isinstance(hb, int) else None


SPEC = ProtocolSpec(
    name="http",
    parser=parser,
    pair=pair,
    transactions=(TxnKind("http", app_request=True),),
    detect_order=2,
    request_kinds=("request",),
    reply_kinds=("response",),
    declared_size=declared_size,
    columns=(ProtocolColumn("user_agent", pl.String, "HTTP request User-Agent (the client's Java version lives here)",
                            after="forward_port"),),
)
