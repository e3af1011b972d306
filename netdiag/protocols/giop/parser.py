"""GIOP 1.0-1.3 message framing and header decoding (OMG CORBA 3.0 chapter 15, "GIOP").

Why: the WebSphere thick-client logon is a series of IIOP Requests and Replies (naming
bootstrap, `resolve`, CSIv2 authentication, application calls). Framing them gives each
message's bytes on the stream; their headers give the request id that pairs them, the
operation name, the reply status (a SYSTEM_EXCEPTION, a LOCATION_FORWARD to another host)
and the IOR host/port a client will connect to next. Payload bodies are never kept, only
their sizes.

Sources: OMG CORBA 3.0 Part 2 sections 15.3 (CDR; 15.3.3 encapsulations), 15.4.1 (header),
15.4.2 (Request), 15.4.3 (Reply), 15.4.4 (CancelRequest), 15.4.5/15.4.6 (LocateRequest,
LocateReply), 15.4.7/15.4.8 (CloseConnection, MessageError), 15.4.9 (Fragment), 13.6 (IOR,
IIOP profile, tagged components), 24.2 (CSIv2 SAS context). docs/domain.md section 2
summarises them; Wireshark's packet-giop.c is the cross-check (tests compare with tshark).

Contract (netdiag/protocols/__init__.py): `looks_like`, `cut`, `parse`, `new_context`.

- `cut()` frames one GIOP message (every Fragment is its own message): 12-byte header, PDU =
  12 + message_size. O(1) once a header is present. The magic identifies GIOP, not the port.
- `parse()` decodes one message into one Record (protocol "giop"; msg_type Request, Reply,
  CancelRequest, LocateRequest, LocateReply, CloseConnection, MessageError, Fragment).
  Work is O(header): the body is skipped, only its size reported (`detail["body_bytes"]`).
- The context (one per connection, owned by the caller) remembers each Request's operation and
  object key by (direction, request id), so the Reply to `resolve`/`resolve_str` (or to `get`
  on the legacy "INIT" bootstrap key) gets the returned IOR's host/port decoded, as Wireshark
  does for `resolve`; and the last fragmented message per direction, so a GIOP 1.1 Fragment
  (which carries no request id) is tied to the message it continues.

Record mapping: msg_type as above; request_id (None for CloseConnection/MessageError; for a
1.1 Fragment the id of the message it continues, with detail["request_id_inferred"]);
operation = the Request's operation, "LocateRequest" for a LocateRequest; status = reply
status name (NO_EXCEPTION, ..., NEEDS_ADDRESSING_MODE) or locate status name (UNKNOWN_OBJECT,
..., LOC_NEEDS_ADDRESSING_MODE). detail (JSON-ready): version "1.2", little_endian,
message_size, more_fragments, body_bytes; Requests: response_expected (+ response_flags in
1.2), object_key (printable, "." for other bytes) / object_key_hex / object_key_bytes,
addressing_disposition and target_host/port (1.2), service_context_ids, codeset_char/wchar,
csiv2_msg_type (+ csiv2_client_context_id, csiv2_major/minor_status for ContextError),
principal_bytes (1.0/1.1); Replies: request_operation (from the context), exception_id (system
or user exception), minor_code / minor_code_hex / completion_status, forward_type_id /
forward_host / forward_port / forward_tls_port / forward_tls_host /
forward_alternate_addresses (LOCATION_FORWARD(_PERM), OBJECT_FORWARD(_PERM)), ior_* (the
same for a naming result); Fragments: fragment_of.

Wire quirks handled:
- GIOP 1.2 Request/Reply bodies start 8-aligned from the header start (15.4.2.1/15.4.3.1);
  1.0/1.1 bodies follow at once.
- 1.2 LocateReply: the spec puts the body right after the 8-byte header (offset 20);
  Wireshark pads it to offset 24. We read it at 20 and fall back to 24 when offset 20 cannot
  start the body (an IOR type-id length of 0 there, with a plausible string at 24). The
  LOC_NEEDS_ADDRESSING_MODE short is read at 20. (omniORB 4.3.1 answered every LocateRequest
  we could make it receive with OBJECT_HERE, so no real peer has settled which offset ORBs send.)
- Encapsulations (service-context data, IOR profiles, components) carry their own byte order
  and align relative to their first octet (cdr.CdrReader.encapsulation).

Bad input never raises and never waits for ever (parse returns a Record with malformed=True
and a reason naming the offset; cut returns Cut("malformed", n, reason)):
- no magic -> resynchronise at the next b"GIOP" (keeping a possible partial magic at the end);
- major version != 1 or minor > 3, an unknown message type, or message_size above
  MAX_MESSAGE_BYTES (10 MB, Wireshark's giop_max_message_size; also catches byte-order errors
  and 4 GB lies) -> the header is not trusted: resynchronise at the next magic;
- a message shorter than its message_size (stream ended) -> malformed "truncated";
- any CDR length beyond the message (a 64 KB operation name in a 90-byte message) ->
  malformed with the field and offset, keeping whatever was decoded before it. A first
  fragment (flags bit1 set) may legitimately end inside its header: that is reported as
  detail["header_incomplete"], not as malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from netdiag.protocols import Cut, Record
from netdiag.protocols.giop.cdr import CdrError, CdrReader

PROTOCOL = "giop"

# ------------------------------------------------------------------------------------------
# Wire format (CORBA 3.0 15.4.1): magic, version major/minor, flags, message type, size.
# ------------------------------------------------------------------------------------------
MAGIC = b"GIOP"
HEADER = struct.Struct("4sBBBB")  # magic, major, minor, flags (1.0: byte_order), message_type
HEADER_SIZE = 12
MESSAGE_SIZE = (struct.Struct(">I"), struct.Struct("<I"))  # at offset 8, in the flagged order
MAX_MESSAGE_BYTES = 10 * 1024 * 1024  # Wireshark's giop_max_message_size default
MAX_MINOR_VERSION = 3
FLAG_LITTLE_ENDIAN = 0x01
FLAG_MORE_FRAGMENTS = 0x02  # GIOP 1.1+

MESSAGE_TYPES = {0: "Request", 1: "Reply", 2: "CancelRequest", 3: "LocateRequest",
                 4: "LocateReply", 5: "CloseConnection", 6: "MessageError", 7: "Fragment"}

REPLY_STATUS = {0: "NO_EXCEPTION", 1: "USER_EXCEPTION", 2: "SYSTEM_EXCEPTION",
                3: "LOCATION_FORWARD", 4: "LOCATION_FORWARD_PERM", 5: "NEEDS_ADDRESSING_MODE"}

LOCATE_STATUS = {0: "UNKNOWN_OBJECT", 1: "OBJECT_HERE", 2: "OBJECT_FORWARD",
                 3: "OBJECT_FORWARD_PERM", 4: "LOC_SYSTEM_EXCEPTION", 5: "LOC_NEEDS_ADDRESSING_MODE"}

ADDRESSING_DISPOSITION = {0: "KeyAddr", 1: "ProfileAddr", 2: "ReferenceAddr"}

COMPLETION_STATUS = {0: "COMPLETED_YES", 1: "COMPLETED_NO", 2: "COMPLETED_MAYBE"}

# IOP::ServiceId values with VSCID 0 (OMG); others are vendor contexts (IBM: 0x49424Dxx).
SERVICE_CONTEXT_IDS = {
    0: "TransactionService", 1: "CodeSets", 2: "ChainBypassCheck", 3: "ChainBypassInfo",
    4: "LogicalThreadId", 5: "BI_DIR_IIOP", 6: "SendingContextRunTime", 7: "INVOCATION_POLICIES",
    8: "FORWARDED_IDENTITY", 9: "UnknownExceptionInfo", 10: "RTCorbaPriority",
    11: "RTCorbaPriorityRange", 12: "FT_GROUP_VERSION", 13: "FT_REQUEST",
    14: "ExceptionDetailMessage", 15: "SecurityAttributeService", 16: "ActivityService",
}
SC_CODE_SETS = 1
SC_SECURITY_ATTRIBUTE_SERVICE = 15

# CSIv2 (CORBA 3.0 24.2.2): SASContextBody is a union switched on `short MsgType`.
CSIV2_MSG_TYPES = {0: "EstablishContext", 1: "CompleteEstablishContext", 4: "ContextError",
                   5: "MessageInContext"}
CSIV2_CONTEXT_ERROR = 4

# IOR profile and component tags (CORBA 3.0 13.6.2, 13.6.6; CSIv2 24.5).
TAG_INTERNET_IOP = 0
TAG_MULTIPLE_COMPONENTS = 1
TAG_ALTERNATE_IIOP_ADDRESS = 3
TAG_SSL_SEC_TRANS = 20
TAG_CSI_SEC_MECH_LIST = 33
TAG_TLS_SEC_TRANS = 36

# Naming operations whose NO_EXCEPTION reply body starts with an object reference (IOR).
IOR_RESULT_OPERATIONS = frozenset({"resolve", "resolve_str", "resolve_initial_references"})
LEGACY_BOOTSTRAP_KEY = "INIT"  # legacy bootstrap: key "INIT", op "get" returns an IOR

MAX_KEY_HEX_BYTES = 256  # object keys longer than this are shown truncated (with their length)
MAX_PENDING_REQUESTS = 4096  # context memory bound per connection
MAX_IOR_PROFILES = 64
MAX_COMPONENTS = 256
MAX_SERVICE_CONTEXTS = 256


# ------------------------------------------------------------------------------------------
# Per-connection context (owned by the caller)
# ------------------------------------------------------------------------------------------
@dataclass(slots=True)
class GiopContext:
    """What parse() needs from earlier messages on the same connection.

    pending: (direction of the request or None, request id) -> (operation, object key text),
    for decoding the IOR in naming replies. fragmented: direction -> (msg_type, request id) of
    the message whose fragments are still arriving (to tie GIOP 1.1 Fragments to it).
    """

    pending: dict[tuple[int | None, int], tuple[str, str]] = field(default_factory=dict)
    fragmented: dict[int | None, tuple[str, int | None]] = field(default_factory=dict)


def new_context() -> GiopContext:
    """A fresh per-connection context (the caller owns it)."""
    return GiopContext()


def looks_like(head: bytes) -> bool:
    """True when the stream starts with the GIOP magic and a version 1.0-1.3 header."""
    return (len(head) >= 6 and head[:4] == MAGIC and head[4] == 1
            and head[5] <= MAX_MINOR_VERSION)


# ------------------------------------------------------------------------------------------
# Framing
# ------------------------------------------------------------------------------------------
def _header_problem(data: bytes, start: int) -> tuple[str, int]:
    """(problem, message_size) for the 12-byte header at data[start]; problem "" when sound."""
    magic, major, minor, flags, mtype = HEADER.unpack_from(data, start)
    if magic != MAGIC:
        return f"no GIOP magic (found {bytes(magic)!r})", 0
    if major != 1 or minor > MAX_MINOR_VERSION:
        return f"unsupported GIOP version {major}.{minor}", 0
    if mtype not in MESSAGE_TYPES:
        return f"unknown GIOP message type {mtype}", 0
    size = MESSAGE_SIZE[flags & FLAG_LITTLE_ENDIAN].unpack_from(data, start + 8)[0]
    if size > MAX_MESSAGE_BYTES:
        return (f"message_size {size} bytes exceeds the {MAX_MESSAGE_BYTES} byte limit "
                f"(lying length or wrong byte order)"), size
    return "", size


def resync(data: bytes, start: int = 0, *, context: GiopContext | None = None,
           direction: int | None = None) -> int:
    """Where the next message may start after data[start]: the next GIOP magic, else len(data)."""
    nxt = data.find(MAGIC, start + 1)
    return nxt if nxt >= 0 else len(data)


def _resync(data: bytes, start: int, at_end: bool, reason: str) -> Cut:
    """Skip to the next b"GIOP" after data[start]; without one, skip all but a possible
    partial magic at the end (all of it at the end of the stream)."""
    nxt = data.find(MAGIC, start + 1)
    if nxt >= 0:
        return Cut("malformed", nxt - start, reason)
    avail = len(data) - start
    if at_end:
        return Cut("malformed", avail, reason)
    keep = 0
    for k in (3, 2, 1):  # a magic may straddle the end of what we have
        if avail > k and MAGIC.startswith(data[len(data) - k:]):
            keep = k
            break
    return Cut("malformed", max(1, avail - keep), reason)


def cut(data: bytes, start: int = 0, *, at_end: bool = False, context: GiopContext | None = None,
        direction: int | None = None) -> Cut:
    """Where the GIOP message starting at data[start] ends (see the module docstring).

    `context` and `direction` are accepted for the uniform parser signature; framing needs
    only the header.
    """
    avail = len(data) - start
    if avail <= 0:
        return Cut("need_more", 0)
    if avail < HEADER_SIZE:
        if MAGIC.startswith(data[start:start + 4]) and not (
                avail >= 6 and (data[start + 4] != 1 or data[start + 5] > MAX_MINOR_VERSION)):
            if at_end:
                return Cut("malformed", avail, f"truncated GIOP header: {avail} of 12 bytes at end of stream")
            return Cut("need_more", 0)
        return _resync(data, start, at_end, f"no GIOP header: {bytes(data[start:start + 8])!r}")
    problem, size = _header_problem(data, start)
    if problem:
        return _resync(data, start, at_end, problem)
    total = HEADER_SIZE + size
    if avail >= total:
        return Cut("message", total)
    if at_end:
        return Cut("malformed", avail,
                   f"truncated: message_size {size} needs {total} bytes, the stream ends after {avail}")
    return Cut("need_more", 0)


# ------------------------------------------------------------------------------------------
# Small decoders (IOR, target address, service contexts, object keys)
# ------------------------------------------------------------------------------------------
_PRINTABLE = bytes(b if 0x20 <= b < 0x7F else 0x2E for b in range(256))  # others -> "."


def _printable(raw: bytes) -> str:
    return raw.translate(_PRINTABLE).decode("ascii")


def _key_fields(raw: bytes, prefix: str = "object_key") -> dict[str, Any]:
    shown = raw[:MAX_KEY_HEX_BYTES]
    out: dict[str, Any] = {prefix: _printable(shown), f"{prefix}_hex": shown.hex(),
                           f"{prefix}_bytes": len(raw)}
    return out


def _components(r: CdrReader, info: dict[str, Any]) -> None:
    """sequence<TaggedComponent>: collect alternate addresses and TLS ports."""
    n = r.ulong("component count")
    if n > MAX_COMPONENTS or n > r.remaining():
        raise CdrError(f"component count {n} at offset {r.pos - 4} is impossible")
    for _ in range(n):
        tag = r.ulong("component tag")
        if tag == TAG_ALTERNATE_IIOP_ADDRESS:
            c = r.encapsulation("TAG_ALTERNATE_IIOP_ADDRESS")
            host = c.string("alternate host")
            port = c.ushort("alternate port")
            info.setdefault("alternate_addresses", []).append(f"{host}:{port}")
        elif tag == TAG_SSL_SEC_TRANS:
            c = r.encapsulation("TAG_SSL_SEC_TRANS")
            c.ushort("target_supports")
            c.ushort("target_requires")
            info.setdefault("tls_port", c.ushort("SSL port"))
        elif tag == TAG_CSI_SEC_MECH_LIST:
            c = r.encapsulation("TAG_CSI_SEC_MECH_LIST")
            _csi_mech_list(c, info)
        else:
            r.skip_octet_seq(f"component {tag}")


def _csi_mech_list(c: CdrReader, info: dict[str, Any]) -> None:
    """CompoundSecMechList: take the first mechanism's TLS transport address (port)."""
    c.boolean("stateful")
    if c.ulong("mechanism count") == 0:
        return
    info["csi_target_requires"] = c.ushort("target_requires")
    tag = c.ulong("transport_mech tag")
    t = c.encapsulation("transport_mech")
    if tag != TAG_TLS_SEC_TRANS:
        return
    t.ushort("target_supports")
    t.ushort("target_requires")
    if t.ulong("transport address count") == 0:
        return
    host = t.string("TLS host")
    port = t.ushort("TLS port")
    info.setdefault("tls_port", port)
    info["tls_host"] = host


def _iiop_profile(p: CdrReader, info: dict[str, Any]) -> None:
    """IIOP ProfileBody (in its own encapsulation): version, host, port, key, components."""
    p.octet("IIOP major")
    minor = p.octet("IIOP minor")
    info.setdefault("host", p.string("IIOP host"))
    info.setdefault("port", p.ushort("IIOP port"))
    key = p.octet_seq("profile object_key")
    info.setdefault("key", key)
    if minor >= 1 and p.remaining() > 0:
        _components(p, info)


def _ior(r: CdrReader) -> dict[str, Any]:
    """IOR: type id, then tagged profiles. Returns type_id, host, port, tls_port,
    alternate_addresses, profiles, key (object key of the first IIOP profile)."""
    info: dict[str, Any] = {"type_id": r.string("IOR type_id")}
    n = r.ulong("IOR profile count")
    if n > MAX_IOR_PROFILES or n > r.remaining():
        raise CdrError(f"IOR profile count {n} at offset {r.pos - 4} is impossible")
    info["profiles"] = n
    for _ in range(n):
        tag = r.ulong("profile tag")
        if tag == TAG_INTERNET_IOP:
            _iiop_profile(r.encapsulation("IIOP profile"), info)
        elif tag == TAG_MULTIPLE_COMPONENTS:
            _components(r.encapsulation("multiple-components profile"), info)
        else:
            r.skip_octet_seq(f"profile {tag}")
    return info


def _ior_detail(info: dict[str, Any], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {f"{prefix}_type_id": info.get("type_id"),
                           f"{prefix}_host": info.get("host"), f"{prefix}_port": info.get("port")}
    if "tls_port" in info:
        out[f"{prefix}_tls_port"] = info["tls_port"]
    if "tls_host" in info:
        out[f"{prefix}_tls_host"] = info["tls_host"]
    if "alternate_addresses" in info:
        out[f"{prefix}_alternate_addresses"] = info["alternate_addresses"]
    return out


def _target_address(r: CdrReader, detail: dict[str, Any]) -> str:
    """GIOP 1.2 TargetAddress union; fills object_key (and target host/port). Returns the key text."""
    disc = r.short("TargetAddress discriminant")
    detail["addressing_disposition"] = ADDRESSING_DISPOSITION.get(disc, str(disc))
    if disc == 0:
        key = r.octet_seq("object_key")
    elif disc == 1:
        tag = r.ulong("ProfileAddr tag")
        info: dict[str, Any] = {}
        if tag == TAG_INTERNET_IOP:
            _iiop_profile(r.encapsulation("ProfileAddr profile"), info)
        else:
            r.skip_octet_seq("ProfileAddr profile")
        key = info.get("key", b"")
        detail["target_host"], detail["target_port"] = info.get("host"), info.get("port")
    elif disc == 2:
        r.ulong("selected_profile_index")
        info = _ior(r)
        key = info.get("key", b"")
        detail["target_host"], detail["target_port"] = info.get("host"), info.get("port")
        detail["target_type_id"] = info.get("type_id")
    else:
        raise CdrError(f"TargetAddress discriminant {disc} at offset {r.pos - 2} is not 0, 1 or 2")
    detail.update(_key_fields(key))
    return detail["object_key"]


def _service_contexts(r: CdrReader, detail: dict[str, Any]) -> None:
    """ServiceContextList: ids in order; CodeSets and CSIv2 SAS bodies decoded."""
    n = r.ulong("service context count")
    if n > MAX_SERVICE_CONTEXTS or n * 8 > r.remaining():
        raise CdrError(f"service context count {n} at offset {r.pos - 4} is impossible")
    ids: list[int] = []
    detail["service_context_ids"] = ids
    for _ in range(n):
        sc_id = r.ulong("service context id")
        ids.append(sc_id)
        if sc_id == SC_SECURITY_ATTRIBUTE_SERVICE:
            _sas_context(r.encapsulation("SAS context"), detail)
        elif sc_id == SC_CODE_SETS:
            c = r.encapsulation("CodeSets context")
            detail["codeset_char"] = f"0x{c.ulong('char_data'):08x}"
            detail["codeset_wchar"] = f"0x{c.ulong('wchar_data'):08x}"
        else:
            r.skip_octet_seq(f"service context {sc_id}")


def _sas_context(c: CdrReader, detail: dict[str, Any]) -> None:
    """CSIv2 SASContextBody (24.2.2): the discriminant, plus the context id / error status."""
    disc = c.short("SASContextBody discriminant")
    detail["csiv2_msg_type"] = CSIV2_MSG_TYPES.get(disc, str(disc))
    if disc in CSIV2_MSG_TYPES:
        detail["csiv2_client_context_id"] = c.ulonglong("client_context_id")
    if disc == CSIV2_CONTEXT_ERROR:
        detail["csiv2_major_status"] = c.long("major_status")
        detail["csiv2_minor_status"] = c.long("minor_status")


def _system_exception(r: CdrReader, detail: dict[str, Any]) -> None:
    detail["exception_id"] = r.string("exception id")
    minor = r.ulong("minor code")
    detail["minor_code"] = minor
    detail["minor_code_hex"] = f"0x{minor:08x}"
    cs = r.ulong("completion status")
    detail["completion_status"] = COMPLETION_STATUS.get(cs, str(cs))


# ------------------------------------------------------------------------------------------
# Message decoders (one per type); each fills rec and detail, raising CdrError when cut short
# ------------------------------------------------------------------------------------------
def _request(r: CdrReader, minor: int, rec: Record, detail: dict[str, Any]) -> None:
    if minor <= 1:
        _service_contexts(r, detail)
        rec.request_id = r.ulong("request id")
        detail["response_expected"] = r.boolean("response_expected")
        if minor == 1:
            r.skip(3, "reserved")
        key = r.octet_seq("object_key")
        detail.update(_key_fields(key))
        rec.operation = r.string("operation")
        detail["principal_bytes"] = r.skip_octet_seq("requesting_principal")
        detail["body_bytes"] = r.remaining()
    else:
        rec.request_id = r.ulong("request id")
        flags = r.octet("response_flags")
        detail["response_flags"] = flags
        detail["response_expected"] = bool(flags & 0x01)
        r.skip(3, "reserved")
        _target_address(r, detail)
        rec.operation = r.string("operation")
        _service_contexts(r, detail)
        # 15.4.2.1: the body is 8-aligned, so padding exists only when a body follows
        detail["body_bytes"] = max(0, r.end - r.aligned_pos(8))


def _reply(r: CdrReader, minor: int, rec: Record, detail: dict[str, Any],
           asked: tuple[str, str] | None) -> None:
    if minor <= 1:
        _service_contexts(r, detail)
    rec.request_id = r.ulong("request id")
    status_at = r.pos
    status = r.ulong("reply status")
    rec.status = REPLY_STATUS.get(status, f"unknown ({status})")
    if minor >= 2:
        _service_contexts(r, detail)
        if r.remaining() > 0:  # 8-aligned body; fewer bytes than the padding means no body
            r.pos = min(r.aligned_pos(8), r.end)
    detail["body_bytes"] = r.remaining()
    if asked is not None:
        detail["request_operation"] = asked[0]
    if status not in REPLY_STATUS:
        raise CdrError(f"reply status {status} at offset {status_at} is not 0..5")
    if status == 1:
        detail["exception_id"] = r.string("user exception repository id")
    elif status == 2:
        _system_exception(r, detail)
    elif status in (3, 4):
        detail.update(_ior_detail(_ior(r), "forward"))
    elif status == 5:
        d = r.short("addressing disposition")
        detail["addressing_disposition"] = ADDRESSING_DISPOSITION.get(d, str(d))
    elif status == 0 and asked is not None and (
            asked[0] in IOR_RESULT_OPERATIONS or (asked[0] == "get" and asked[1] == LEGACY_BOOTSTRAP_KEY)):
        try:
            detail.update(_ior_detail(_ior(r), "ior"))
        except CdrError as exc:  # the result was not an IOR after all: not a malformed reply
            detail["ior_error"] = str(exc)


def _locate_request(r: CdrReader, minor: int, rec: Record, detail: dict[str, Any]) -> None:
    rec.request_id = r.ulong("request id")
    rec.operation = "LocateRequest"
    if minor <= 1:
        detail.update(_key_fields(r.octet_seq("object_key")))
    else:
        _target_address(r, detail)


def _locate_body_start(r: CdrReader, status: int) -> None:
    """Place r at the 1.2 LocateReply body: offset 20 (spec) or 24 (Wireshark's padding)."""
    if status not in (2, 3, 4) or r.pos % 8 == 0:
        return
    padded = r.aligned_pos(8)
    if padded + 8 > r.end:
        return
    fmt = MESSAGE_SIZE[r.little]
    at_spec = fmt.unpack_from(r.buf, r.pos)[0]
    at_pad = fmt.unpack_from(r.buf, padded)[0]
    # A string (IOR type id or exception id) always has length >= 1 (its NUL): a 0 at the
    # spec offset followed by a plausible string at the padded offset means padding was sent.
    if at_spec == 0 and 0 < at_pad <= r.end - padded - 4:
        r.pos = padded


def _locate_reply(r: CdrReader, minor: int, rec: Record, detail: dict[str, Any]) -> None:
    rec.request_id = r.ulong("request id")
    status = r.ulong("locate status")
    rec.status = LOCATE_STATUS.get(status, f"unknown ({status})")
    if status not in LOCATE_STATUS:
        raise CdrError(f"locate status {status} at offset {r.pos - 4} is not 0..5")
    if minor >= 2:
        before = r.pos
        _locate_body_start(r, status)
        detail["body_offset"] = r.pos
        if r.pos != before:
            detail["body_padded_to_8"] = True
    detail["body_bytes"] = r.remaining()
    if status in (2, 3):
        detail.update(_ior_detail(_ior(r), "forward"))
    elif status == 4:
        _system_exception(r, detail)
    elif status == 5:
        d = r.short("addressing disposition")
        detail["addressing_disposition"] = ADDRESSING_DISPOSITION.get(d, str(d))


# ------------------------------------------------------------------------------------------
# The contract: parse
# ------------------------------------------------------------------------------------------
def parse(message: bytes, *, context: GiopContext | None = None,
          direction: int | None = None) -> list[Record]:
    """Decode one cut GIOP message into one Record (never raises; never keeps the body).

    `direction` (0 client to server, 1 server to client) keys the context so a Reply finds
    the Request sent the other way; without it request ids are matched regardless of side.
    """
    try:
        return [_parse(message, context, direction)]
    except Exception as exc:  # a parser bug must not stop a run; report it as malformed
        return [Record(PROTOCOL, "unknown", malformed=True, reason=f"parser error: {exc!r}")]


def _parse(message: bytes, context: GiopContext | None, direction: int | None) -> Record:
    n = len(message)
    if n < HEADER_SIZE:
        return Record(PROTOCOL, "unknown", malformed=True,
                      reason=f"truncated GIOP header: {n} of 12 bytes")
    problem, size = _header_problem(message, 0)
    mtype = message[7]
    rec = Record(PROTOCOL, MESSAGE_TYPES.get(mtype, "unknown"))
    if problem:
        rec.malformed, rec.reason = True, problem + " at offset 0"
        return rec
    major, minor, flags = message[4], message[5], message[6]
    little = bool(flags & FLAG_LITTLE_ENDIAN)
    more = bool(flags & FLAG_MORE_FRAGMENTS) and minor >= 1
    detail: dict[str, Any] = {"version": f"{major}.{minor}", "little_endian": little,
                              "message_size": size, "more_fragments": more}
    rec.detail = detail
    end = HEADER_SIZE + size
    if n < end:
        rec.malformed = True
        rec.reason = f"truncated: message_size {size} needs {end} bytes, only {n} present"
    elif n > end:
        detail["trailing_bytes"] = n - end
    r = CdrReader(message, HEADER_SIZE, end, base=0, little=little)
    asked = None
    try:
        if mtype == 0:
            _request(r, minor, rec, detail)
        elif mtype == 1:
            asked = _peek_reply_request(message, r, minor, context, direction)
            _reply(r, minor, rec, detail, asked)
        elif mtype == 2:
            rec.request_id = r.ulong("request id")
        elif mtype == 3:
            _locate_request(r, minor, rec, detail)
        elif mtype == 4:
            _locate_reply(r, minor, rec, detail)
        elif mtype == 7:
            _fragment(r, minor, rec, detail, context, direction)
        else:  # CloseConnection, MessageError: header only
            if size:
                detail["body_bytes"] = size
    except CdrError as exc:
        if more and mtype != 7:
            # the first fragment may end inside its own header; the rest comes in Fragments
            detail["header_incomplete"] = str(exc)
        elif not rec.malformed:
            rec.malformed, rec.reason = True, str(exc)
        else:
            rec.reason += f"; {exc}"
    _remember(rec, detail, context, direction, more)
    return rec


def _peek_reply_request(message: bytes, r: CdrReader, minor: int, context: GiopContext | None,
                        direction: int | None) -> tuple[str, str] | None:
    """The (operation, object key) of the Request this Reply answers, from the context."""
    if context is None:
        return None
    try:
        if minor <= 1:  # the request id follows the service contexts: read them on a copy
            probe = CdrReader(message, r.pos, r.end, base=0, little=r.little)
            _service_contexts(probe, {})
            rid = probe.ulong()
        else:
            rid = CdrReader(message, r.pos, r.end, base=0, little=r.little).ulong()
    except CdrError:
        return None
    key = (None if direction is None else 1 - direction, rid)
    return context.pending.pop(key, None)


def _fragment(r: CdrReader, minor: int, rec: Record, detail: dict[str, Any],
              context: GiopContext | None, direction: int | None) -> None:
    if minor == 0:
        raise CdrError("Fragment message in GIOP 1.0 (fragments exist from 1.1)")
    first = context.fragmented.get(direction) if context is not None else None
    if first is not None:
        detail["fragment_of"] = first[0]
    if minor >= 2:
        rec.request_id = r.ulong("fragment request id")
    elif first is not None and first[1] is not None:
        # 1.1 fragments carry no id: they continue the previous fragmented message
        rec.request_id = first[1]
        detail["request_id_inferred"] = True
    detail["body_bytes"] = r.remaining()


def _remember(rec: Record, detail: dict[str, Any], context: GiopContext | None,
              direction: int | None, more: bool) -> None:
    if context is None:
        return
    if (rec.msg_type == "Request" and rec.request_id is not None and rec.operation is not None
            and detail.get("response_expected") is not False):  # a oneway gets no reply to wait for
        if len(context.pending) >= MAX_PENDING_REQUESTS:
            context.pending.pop(next(iter(context.pending)))
        context.pending[(direction, rec.request_id)] = (rec.operation, detail.get("object_key", ""))
    if rec.msg_type == "Fragment":
        if not more:
            context.fragmented.pop(direction, None)
    elif more:
        context.fragmented[direction] = (rec.msg_type, rec.request_id)
    else:
        context.fragmented.pop(direction, None)
