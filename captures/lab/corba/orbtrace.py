"""Turn omniORB's own trace (traceLevel 30) into GIOP message events: the peers' ground truth.

omniORBpy's Python interceptors do not expose GIOP request ids, so the lab peers run omniORB
with ``-ORBtraceLevel 30 -ORBtraceTime 1 -ORBtraceFile F``. At that level omniORB logs every
message it writes ("sendChunk: to giop:tcp:H:P N bytes") or reads ("inputMessage: from ...")
with a microsecond timestamp, followed by a hex dump of the first 128 bytes. From that dump we
read the GIOP header and the request/reply header (request id, operation, reply status, system
exception id). This is what the ORB itself put on / took off the socket, independent of any
capture and of netdiag.

Layouts follow OMG CORBA 3.0 chapter 15 (GIOP 1.0/1.1/1.2 Request, Reply, LocateRequest,
LocateReply, Fragment headers), as summarised in /work/shared/DOMAIN.md section 2. Timestamps are
UTC (orbenv.load_omniorb sets TZ=UTC before the ORB starts).
"""

from __future__ import annotations

import calendar
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path

MSG_TYPES = ("Request", "Reply", "CancelRequest", "LocateRequest", "LocateReply",
             "CloseConnection", "MessageError", "Fragment")
REPLY_STATUS = ("NO_EXCEPTION", "USER_EXCEPTION", "SYSTEM_EXCEPTION", "LOCATION_FORWARD",
                "LOCATION_FORWARD_PERM", "NEEDS_ADDRESSING_MODE")

_LINE = re.compile(r"^omniORB: \((\d+)\) (\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}): ?(.*)$")
_IO = re.compile(r"^(sendChunk: to|inputMessage: from|inputChunk: from) (\S+) (\d+) bytes")
_HEX = re.compile(r"^[0-9a-f]{2,4}( [0-9a-f]{2,4})*\s*")


@dataclass
class GiopEvent:
    """One GIOP message as the ORB logged it."""

    direction: str            # "send" or "recv", seen from the process that wrote the trace
    peer: str                 # the other end, "ip:port"
    ts_ns: int                # UTC ns when omniORB wrote / read the first bytes of the message
    chunk_bytes: int          # bytes in that first write / read
    giop_version: str = ""
    flags: int = 0
    msg_type: str = ""
    message_size: int = 0     # GIOP message_size (bytes after the 12-byte header)
    request_id: int | None = None
    op: str | None = None
    reply_status: str | None = None
    locate_status: int | None = None
    exception_id: str | None = None
    thread: int = 0
    more_fragments: bool = False
    dump: bytes = field(default=b"", repr=False)

    def as_dict(self) -> dict:
        """JSON-ready dict without the raw dump (logs carry no payload bytes)."""
        d = asdict(self)
        d.pop("dump")
        return d


class _Cdr:
    """Minimal CDR reader over a (possibly truncated) GIOP message prefix; offsets from header start."""

    def __init__(self, data: bytes, little: bool, pos: int = 12) -> None:
        self.data, self.pos = data, pos
        self.e = "<" if little else ">"

    def align(self, n: int) -> None:
        self.pos += (-self.pos) % n

    def ulong(self) -> int:
        self.align(4)
        (v,) = struct.unpack_from(self.e + "I", self.data, self.pos)
        self.pos += 4
        return v

    def short(self) -> int:
        self.align(2)
        (v,) = struct.unpack_from(self.e + "h", self.data, self.pos)
        self.pos += 2
        return v

    def octet(self) -> int:
        v = self.data[self.pos]
        self.pos += 1
        return v

    def octets(self) -> bytes:
        n = self.ulong()
        if self.pos + n > len(self.data):
            raise IndexError("truncated")
        v = self.data[self.pos:self.pos + n]
        self.pos += n
        return v

    def string(self) -> str:
        return self.octets().rstrip(b"\0").decode("latin-1")

    def skip_service_contexts(self) -> None:
        for _ in range(self.ulong()):
            self.ulong()
            self.octets()


def decode_giop_prefix(ev: GiopEvent, data: bytes) -> None:
    """Fill ev's GIOP fields from the first bytes of a message (fields stay None when truncated)."""
    if len(data) < 12 or data[:4] != b"GIOP":
        return
    major, minor, flags, mtype = data[4], data[5], data[6], data[7]
    little = bool(flags & 1)
    ev.giop_version = f"{major}.{minor}"
    ev.flags = flags
    ev.more_fragments = minor >= 1 and bool(flags & 2)
    ev.msg_type = MSG_TYPES[mtype] if mtype < len(MSG_TYPES) else f"type{mtype}"
    c = _Cdr(data, little, 8)
    ev.message_size = c.ulong()
    try:
        if mtype == 0:  # Request
            if minor >= 2:
                ev.request_id = c.ulong()
                c.octet()
                c.pos += 3
                disc = c.short()
                if disc == 0:
                    c.octets()
                else:
                    return
                ev.op = c.string()
            else:
                c.skip_service_contexts()
                ev.request_id = c.ulong()
                c.octet()
                if minor == 1:
                    c.pos += 3
                c.octets()
                ev.op = c.string()
        elif mtype == 1:  # Reply
            if minor >= 2:
                ev.request_id = c.ulong()
                status = c.ulong()
                ev.reply_status = REPLY_STATUS[status] if status < len(REPLY_STATUS) else str(status)
                c.skip_service_contexts()
                c.align(8)
            else:
                c.skip_service_contexts()
                ev.request_id = c.ulong()
                status = c.ulong()
                ev.reply_status = REPLY_STATUS[status] if status < len(REPLY_STATUS) else str(status)
            if status == 2:
                ev.exception_id = c.string()
        elif mtype in (2, 3, 7):  # CancelRequest, LocateRequest, Fragment (1.2 carries the id)
            if mtype != 7 or minor >= 2:
                ev.request_id = c.ulong()
        elif mtype == 4:  # LocateReply
            ev.request_id = c.ulong()
            ev.locate_status = c.ulong()
    except (IndexError, struct.error):
        pass  # the dump holds only 128 bytes; keep what was read


def _peer(addr: str) -> str:
    """'giop:tcp:10.0.0.1:9100' or 'giop:tcp:[::1]:9100' -> '10.0.0.1:9100' / '[::1]:9100'."""
    return addr.split("giop:tcp:", 1)[-1]


def _ts_ns(m: re.Match) -> int:
    y, mo, d, h, mi, s, us = (int(m.group(i)) for i in range(2, 9))
    return calendar.timegm((y, mo, d, h, mi, s)) * 1_000_000_000 + us * 1000


class TraceReader:
    """Incrementally parse an omniORB trace file; poll() returns GiopEvents completed since last call.

    Only the first chunk of each message (the one that starts with the GIOP magic) becomes an
    event; continuation reads/writes of a large message are not separate messages.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = None
        self._partial = ""
        self._pending: dict[int, GiopEvent] = {}   # thread -> event waiting for its dump line
        self._dumping: GiopEvent | None = None
        self._hex: list[bytes] = []
        self._done: list[GiopEvent] = []

    def _finish_dump(self) -> None:
        if self._dumping is not None:
            data = b"".join(self._hex)
            ev = self._dumping
            self._dumping, self._hex = None, []
            if data[:4] == b"GIOP":
                ev.dump = data
                decode_giop_prefix(ev, data)
                self._done.append(ev)

    def feed_line(self, line: str) -> None:
        """Consume one trace line (without newline)."""
        if self._dumping is not None and _HEX.match(line) and not line.startswith("omniORB:"):
            hexpart = line[:39].split()
            try:
                self._hex.append(bytes.fromhex("".join(hexpart)))
            except ValueError:
                pass
            return
        self._finish_dump()
        m = _LINE.match(line)
        if not m:
            return
        thread, text = int(m.group(1)), m.group(9)
        io = _IO.match(text)
        if io:
            kind = io.group(1)
            if kind.startswith("inputChunk"):
                self._pending.pop(thread, None)
                return
            self._pending[thread] = GiopEvent(
                direction="send" if kind.startswith("send") else "recv",
                peer=_peer(io.group(2)), ts_ns=_ts_ns(m), chunk_bytes=int(io.group(3)), thread=thread)
            return
        if thread in self._pending and (text.strip() == "" or re.match(r"^\d+ bytes out of \d+", text)):
            self._dumping = self._pending.pop(thread)
            self._hex = []

    def poll(self, final: bool = False) -> list[GiopEvent]:
        """Read what omniORB appended since the last call; with final=True also flush the last dump."""
        if self._fh is None:
            if not self.path.exists():
                return []
            self._fh = open(self.path, encoding="latin-1")  # noqa: SIM115 - kept open across polls
        text = self._partial + self._fh.read()
        lines = text.split("\n")
        self._partial = lines.pop()
        for line in lines:
            self.feed_line(line)
        if final or not self._partial:
            # omniORB writes a whole log message (header line plus dump) at once, so a read that
            # ends on a line boundary ends after a complete dump.
            if self._partial:
                self.feed_line(self._partial)
                self._partial = ""
            self._finish_dump()
        out, self._done = self._done, []
        return out

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
