"""TLS: record/handshake parser (parser.py), pairing of handshakes and turns (pairing.py),
decryption with a key log (decrypt.py) and the decrypted plaintext streams (plaintext.py)."""

from __future__ import annotations

from typing import Any

import polars as pl

from netdiag.protocols.spec import ProtocolColumn, ProtocolSpec, TxnKind
from netdiag.protocols.tls import parser
from netdiag.protocols.tls.pairing import pair


def decryptor(keylog: Any, parsers: dict[str, Any]) -> Any:
    """Per-connection decryption and inner parsing when a key log is given (plaintext.py).

    Imported here, not at the top: `cryptography` costs ~55 ms of start-up."""
    from netdiag.protocols.tls.plaintext import TlsPlaintext

    return TlsPlaintext(keylog, parsers)


SPEC = ProtocolSpec(
    name="tls",
    parser=parser,
    pair=pair,
    transactions=(
        # the handshake: its status is the pairing's own (ok, incomplete, alert:...)
        TxnKind("tls", status_from_reply=False, unanswered=False, incomplete_flag=False),
        # application data read without keys: a client turn answered by the server's records
        TxnKind("turn", app_request=True, status_from_reply=False, answered_status="answered",
                incomplete_flag=False),
    ),
    detect_order=1,
    request_kinds=("ClientHello",),
    reply_kinds=("ServerHello", "HelloRetryRequest"),
    decryptor=decryptor,
    columns=(ProtocolColumn("tls_version", pl.String, "TLS handshake: version the server chose (TLS1.2, TLS1.3, ...)",
                            after="user_agent"),),
)
