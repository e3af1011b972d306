"""GIOP/IIOP (CORBA): parser (parser.py, CDR in cdr.py), pairing rules (pairing.py), its spec and
the reply/locate status groups every consumer reads (transactions' summary, logons, causes).

Status groups, named once (reply statuses of GIOP Reply, locate statuses of LocateReply):

- EXCEPTION_STATUSES: the server raised (system or user exception, or a locate that failed
  with a system exception).
- FORWARD_STATUSES: the object lives elsewhere (LOCATION_FORWARD[_PERM], OBJECT_FORWARD[_PERM]);
  not errors, counted apart.
- FAILED_STATUSES: the request did not get what it asked for: the exceptions, an addressing mode
  the server wants otherwise (NEEDS_ADDRESSING_MODE, LOC_NEEDS_ADDRESSING_MODE), an object the
  server does not know (UNKNOWN_OBJECT).
"""

from __future__ import annotations

from typing import Any

import polars as pl

from netdiag.protocols.giop import parser
from netdiag.protocols.giop.pairing import pair
from netdiag.protocols.spec import ProtocolColumn, ProtocolSpec, TxnKind

EXCEPTION_STATUSES: tuple[str, ...] = ("SYSTEM_EXCEPTION", "USER_EXCEPTION", "LOC_SYSTEM_EXCEPTION")
FORWARD_STATUSES: tuple[str, ...] = ("LOCATION_FORWARD", "LOCATION_FORWARD_PERM", "OBJECT_FORWARD",
                                     "OBJECT_FORWARD_PERM")
FAILED_STATUSES: tuple[str, ...] = EXCEPTION_STATUSES + ("NEEDS_ADDRESSING_MODE", "LOC_NEEDS_ADDRESSING_MODE",
                                                         "UNKNOWN_OBJECT")


def declared_size(detail: dict[str, Any]) -> int | None:
    """A GIOP message's length by its header: 12 header bytes + message_size."""
    size = detail.get("message_size")
    return 12 + size if isinstance(size, int) else None


SPEC = ProtocolSpec(
    name="giop",
    parser=parser,
    pair=pair,
    transactions=(TxnKind("giop", app_request=True),),
    detect_order=0,            # first: its magic is exact
    magic=parser.MAGIC,
    request_kinds=("Request", "LocateRequest"),
    reply_kinds=("Reply", "LocateReply"),
    declared_size=declared_size,
    columns=(
        ProtocolColumn("exception_id", pl.String, "GIOP system/user exception repository id (null otherwise)",
                       after="retransmission_stall_s"),
        ProtocolColumn("forward_host", pl.String, "GIOP: host of the IOR in a LOCATION_FORWARD reply / "
                       "OBJECT_FORWARD locate reply / naming result", after="last_frame"),
        ProtocolColumn("forward_port", pl.UInt16, "GIOP: port of that IOR (null otherwise)", after="forward_host"),
    ),
)
