"""Craft the byte-stream edge cases the lab cannot make (scapy), one small pcap each.

Run: `python captures/streams/make_streams.py` (rewrites the .pcap files beside it; the output
is deterministic). The cases and what each one proves are listed in README.md here. GIOP bytes
are marshalled by the small CDR writer below (OMG CORBA 3.0 chapter 15: GIOP 1.2 header,
Request/Reply/Fragment layouts, 8-aligned bodies); tshark's GIOP dissector is the oracle that
they are well formed.
"""

from __future__ import annotations

import struct
from pathlib import Path

from scapy.all import IP, TCP, Ether, wrpcap

HERE = Path(__file__).resolve().parent
MS = 0.001
T0 = 1_700_000_000.0


# ------------------------------------------------------------------------------------ CDR/GIOP
class Cdr:
    """Big-endian CDR with alignment relative to the GIOP header start (position 0)."""

    def __init__(self, start: int = 12, little: bool = False) -> None:
        self.buf = bytearray()
        self.start = start
        self.e = "<" if little else ">"

    def align(self, n: int) -> None:
        while (self.start + len(self.buf)) % n:
            self.buf.append(0)

    def ulong(self, v: int) -> Cdr:
        self.align(4)
        self.buf += struct.pack(self.e + "I", v)
        return self

    def ushort(self, v: int) -> Cdr:
        self.align(2)
        self.buf += struct.pack(self.e + "H", v)
        return self

    def octet(self, v: int) -> Cdr:
        self.buf.append(v)
        return self

    def octets(self, b: bytes) -> Cdr:
        self.ulong(len(b))
        self.buf += b
        return self

    def string(self, s: str) -> Cdr:
        raw = s.encode() + b"\0"
        self.ulong(len(raw))
        self.buf += raw
        return self


def giop(msg_type: int, body: bytes, *, flags: int = 0, minor: int = 2) -> bytes:
    order = "<" if flags & 1 else ">"
    return b"GIOP" + bytes([1, minor, flags, msg_type]) + struct.pack(order + "I", len(body)) + body


def request(rid: int, op: str, key: bytes = b"NameService", args: bytes = b"") -> bytes:
    c = Cdr()
    c.ulong(rid).octet(3).octet(0).octet(0).octet(0)
    c.ushort(0)            # TargetAddress: KeyAddr
    c.octets(key)
    c.string(op)
    c.ulong(0)             # no service contexts
    if args:
        c.align(8)
        c.buf += args
    return giop(0, bytes(c.buf))


def ior(type_id: str, host: str, port: int, key: bytes = b"key") -> bytes:
    """An IOR marshalled as a body at message offset `start` (alignment handled by the caller)."""
    enc = Cdr(start=0)
    enc.octet(0).octet(1).octet(2)   # big endian, IIOP 1.2
    enc.string(host).ushort(port).octets(key).ulong(0)
    return bytes(enc.buf), type_id


def reply(rid: int, status: int = 0, body: bytes = b"", *, exception: str | None = None,
          forward: tuple[str, str, int] | None = None, flags: int = 0, pad_to: int = 0) -> bytes:
    c = Cdr()
    c.ulong(rid).ulong(status).ulong(0)
    if exception is not None:
        c.align(8)
        c.string(exception).ulong(0x4F4D0001).ulong(1)
    elif forward is not None:
        c.align(8)
        enc, _ = ior(forward[0], forward[1], forward[2])
        c.string(forward[0]).ulong(1).ulong(0).octets(enc)
    elif body or pad_to:
        c.align(8)
        c.buf += body
        if pad_to:
            c.buf += bytes(max(0, pad_to - 12 - len(c.buf)))
    return giop(1, bytes(c.buf), flags=flags)


def fragment(rid: int, data: bytes, *, more: bool) -> bytes:
    return giop(7, struct.pack(">I", rid) + data, flags=0x02 if more else 0)


# ------------------------------------------------------------------------------------ TCP
class Conn:
    """One TCP connection; emits frames with explicit times and sequence numbers."""

    def __init__(self, frames: list, cport: int, sport: int, cip: str = "10.9.0.1", sip: str = "10.9.0.2",
                 isn=(1000, 50000)) -> None:
        self.frames = frames
        self.ep = ((cip, cport), (sip, sport))
        self.nxt = [isn[0] + 1, isn[1] + 1]
        self.isn = isn

    def pkt(self, d: int, t: float, flags: str, seq: int, ack: int, data: bytes = b"") -> None:
        (sip, sp), (dip, dp) = self.ep if d == 0 else self.ep[::-1]
        p = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=sip, dst=dip) / TCP(
            sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, window=65535)
        if data:
            p = p / data
        p.time = T0 + t
        self.frames.append(p)

    def handshake(self, t: float) -> None:
        self.pkt(0, t, "S", self.isn[0], 0)
        self.pkt(1, t + 1 * MS, "SA", self.isn[1], self.isn[0] + 1)
        self.pkt(0, t + 2 * MS, "A", self.isn[0] + 1, self.isn[1] + 1)

    def send(self, d: int, t: float, data: bytes, *, seq: int | None = None, advance: bool = True) -> int:
        s = self.nxt[d] if seq is None else seq
        self.pkt(d, t, "PA", s, self.nxt[1 - d], data)
        if advance and seq is None:
            self.nxt[d] += len(data)
        return s

    def ack(self, d: int, t: float, upto: int | None = None) -> None:
        self.pkt(d, t, "A", self.nxt[d], self.nxt[1 - d] if upto is None else upto)

    def close(self, t: float) -> None:
        self.pkt(0, t, "FA", self.nxt[0], self.nxt[1])
        self.pkt(1, t + 1 * MS, "FA", self.nxt[1], self.nxt[0] + 1)
        self.pkt(0, t + 2 * MS, "A", self.nxt[0] + 1, self.nxt[1] + 1)


def pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


# ------------------------------------------------------------------------------------ cases
def split_retrans() -> list:
    """A 6000-byte reply in 5 segments; segment 3 is resent 200 ms later.

    Connection 1: the original segment 3 was captured (sender-side capture).
    Connection 2: it was not (lost before the capture point); segments 4 and 5 arrive first.
    """
    frames: list = []
    for k, lost in ((0, False), (1, True)):
        c = Conn(frames, 50001 + k, 2809)
        t = k * 2.0
        c.handshake(t)
        c.send(0, t + 10 * MS, request(7, "lookupService", args=Cdr(16).string("EPJ/UserService").buf))
        c.ack(1, t + 11 * MS)
        rep = reply(7, 0, pad_to=6000)
        segs = pieces(rep, 1200)
        base = c.nxt[1]
        for i, s in enumerate(segs):
            if not (lost and i == 2):
                c.send(1, t + (60 + i) * MS, s, seq=base + 1200 * i)
            if i == 2 or i >= 3:
                c.ack(0, t + (60.5 + i) * MS, upto=base + 1200 * 2)  # dup ACKs while 3 is missing
        c.nxt[1] = base + len(rep)
        c.send(1, t + 265 * MS, segs[2], seq=base + 2400)  # the resend
        c.ack(0, t + 266 * MS)
        c.close(t + 300 * MS)
    return frames


def out_of_order() -> list:
    """A request split into 3 segments delivered 1, 3, 2 (within a millisecond), then its reply."""
    frames: list = []
    c = Conn(frames, 50011, 2809)
    c.handshake(0)
    req = request(3, "get_user_context", key=b"EPJ/Context", args=bytes(3000))
    segs = pieces(req, 1100)
    base = c.nxt[0]
    c.send(0, 10 * MS, segs[0], seq=base)
    c.send(0, 10.3 * MS, segs[2], seq=base + 2200)
    c.send(0, 10.6 * MS, segs[1], seq=base + 1100)
    c.nxt[0] = base + len(req)
    c.ack(1, 11 * MS)
    c.send(1, 40 * MS, reply(3, 0, body=b"\0\0\0\1"))
    c.ack(0, 41 * MS)
    c.close(100 * MS)
    return frames


def capture_gap() -> list:
    """Three request/reply pairs; the middle of reply 2 was never captured (ACKed by the client).

    Reply 2 is cut short by the gap (malformed, gap recorded); parsing resynchronises on the next
    GIOP magic and reply 3 is decoded.
    """
    frames: list = []
    c = Conn(frames, 50021, 9100)
    c.handshake(0)
    t = 10 * MS
    for rid in (1, 2, 3):
        c.send(0, t, request(rid, f"op{rid}"))
        c.ack(1, t + 1 * MS)
        rep = reply(rid, 0, pad_to=3000)
        segs = pieces(rep, 1000)
        base = c.nxt[1]
        for i, s in enumerate(segs):
            if not (rid == 2 and i == 1):
                c.send(1, t + (30 + i) * MS, s, seq=base + 1000 * i)
        c.nxt[1] = base + len(rep)
        c.ack(0, t + 34 * MS)
        t += 100 * MS
    c.close(t)
    return frames


def overlap_first_wins() -> list:
    """A request resent with overlapping, *different* bytes: the first copy is the stream."""
    frames: list = []
    c = Conn(frames, 50031, 2809)
    c.handshake(0)
    first = request(9, "logonUser", key=b"EPJ/Security")
    other = request(9, "xogonUser", key=b"EPJ/Security")
    assert len(first) == len(other)
    base = c.nxt[0]
    c.send(0, 10 * MS, first[:40], seq=base)
    c.send(0, 10.2 * MS, first[40:], seq=base + 40)
    c.send(0, 215 * MS, other, seq=base)  # a resend covering both, with different bytes
    c.nxt[0] = base + len(first)
    c.ack(1, 216 * MS)
    c.send(1, 250 * MS, reply(9, 0))
    c.ack(0, 251 * MS)
    c.close(300 * MS)
    return frames


def pipelined_http() -> list:
    """Three pipelined GETs in one segment answered 200 (body over two segments), 304, 200."""
    frames: list = []
    c = Conn(frames, 50041, 9080)
    c.handshake(0)
    reqs = b"".join(
        f"GET {p} HTTP/1.1\r\nHost: epj.example\r\nUser-Agent: JNLP/1.7.0 javaws/11.0 (b1) Java/1.8.0_202\r\n\r\n".encode()
        for p in ("/epj/app.jnlp", "/epj/lib/core.jar", "/epj/lib/ui.jar"))
    c.send(0, 10 * MS, reqs)
    c.ack(1, 11 * MS)
    r1 = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-java-jnlp-file\r\nContent-Length: 1500\r\n\r\n" + bytes(1500)
    r2 = b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"
    r3 = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + bytes(100)
    c.send(1, 30 * MS, r1[:1000])
    c.send(1, 31 * MS, r1[1000:] + r2)
    c.send(1, 45 * MS, r3)
    c.ack(0, 46 * MS)
    c.close(100 * MS)
    return frames


OPS = ["lookupUser", "checkMember", "getUser", "getRoles", "getContext", "logon", "listWards", "getPatientList"]
REPLY_ORDER = [8, 3, 1, 5, 2, 7, 4, 6]


def many_outstanding() -> list:
    """Eight requests on one connection (ids 1..8) answered out of order; the j-th reply (j = 1..8 in
    REPLY_ORDER) comes 10*j ms after the last request. Reply 2 is a SYSTEM_EXCEPTION (TRANSIENT), reply 5 a LOCATION_FORWARD to
    10.9.0.7:9811, reply 8 is fragmented (Reply + 2 Fragments, GIOP 1.2)."""
    frames: list = []
    c = Conn(frames, 50051, 2809)
    c.handshake(0)
    for rid, op in enumerate(OPS, start=1):
        c.send(0, (10 + rid * 0.1) * MS, request(rid, op))
    c.ack(1, 12 * MS)
    last_req = 10.8 * MS
    t_of = {rid: last_req + 10 * (j + 1) * MS for j, rid in enumerate(REPLY_ORDER)}
    for rid in REPLY_ORDER:
        t = t_of[rid]
        if rid == 2:
            c.send(1, t, reply(2, 2, exception="IDL:omg.org/CORBA/TRANSIENT:1.0"))
        elif rid == 5:
            c.send(1, t, reply(5, 3, forward=("IDL:epj/UserHome:1.0", "10.9.0.7", 9811)))
        elif rid == 8:
            first = reply(8, 0, body=bytes(1000), flags=0x02)
            c.send(1, t, first)
            c.send(1, t + 0.5 * MS, fragment(8, bytes(1000), more=True))
            c.send(1, t + 1.0 * MS, fragment(8, bytes(504), more=False))
        else:
            c.send(1, t, reply(rid, 0, body=struct.pack(">I", rid)))
    c.ack(0, 100 * MS)
    c.close(120 * MS)
    return frames


def request_10_11(rid: int, op: str, minor: int, little: bool, key: bytes = b"EPJ/App") -> bytes:
    """GIOP 1.0/1.1 Request: service contexts first, then id, response_expected, (1.1: reserved)."""
    c = Cdr(little=little)
    c.ulong(0).ulong(rid).octet(1)
    if minor == 1:
        c.octet(0).octet(0).octet(0)
    c.octets(key).string(op).octets(b"")  # requesting_principal
    return giop(0, bytes(c.buf), flags=1 if little else 0, minor=minor)


def reply_10_11(rid: int, minor: int, little: bool, body: bytes = b"", more: bool = False) -> bytes:
    c = Cdr(little=little)
    c.ulong(0).ulong(rid).ulong(0)
    c.buf += body
    return giop(1, bytes(c.buf), flags=(1 if little else 0) | (2 if more else 0), minor=minor)


def locate_cancel_11() -> list:
    """LocateRequest -> LocateReply OBJECT_FORWARD (IOR to 10.9.0.8:9812, body padded to offset 24
    as Wireshark expects); a Request then its CancelRequest, never answered; a GIOP 1.1
    little-endian Request whose Reply comes in three pieces (Reply with the more-fragments flag, a
    1.1 Fragment, the final 1.1 Fragment: 1.1 Fragments carry no request id); a GIOP 1.0 Request
    and Reply."""
    frames: list = []
    c = Conn(frames, 50071, 9900)
    c.handshake(0)
    lr = Cdr()
    lr.ulong(1).ushort(0).octets(b"EPJ/Home")
    c.send(0, 10 * MS, giop(3, bytes(lr.buf)))
    c.ack(1, 11 * MS)
    rep = Cdr()
    rep.ulong(1).ulong(2).ulong(0)  # request id, OBJECT_FORWARD, 4 pad bytes: body at offset 24
    enc, _ = ior("IDL:epj/Home:1.0", "10.9.0.8", 9812)
    rep.string("IDL:epj/Home:1.0").ulong(1).ulong(0).octets(enc)
    c.send(1, 15 * MS, giop(4, bytes(rep.buf)))
    c.ack(0, 16 * MS)
    c.send(0, 20 * MS, request(2, "slowCall"))
    c.ack(1, 21 * MS)
    cr = Cdr()
    cr.ulong(2)
    c.send(0, 120 * MS, giop(2, bytes(cr.buf)))
    c.ack(1, 121 * MS)
    c.send(0, 130 * MS, request_10_11(3, "getBigList", minor=1, little=True))
    c.ack(1, 131 * MS)
    first = reply_10_11(3, 1, True, body=bytes(1000 - 24), more=True)  # 1000 bytes: 8-aligned
    c.send(1, 160 * MS, first)
    c.send(1, 161 * MS, giop(7, bytes(800), flags=0x03, minor=1))
    c.send(1, 162 * MS, giop(7, bytes(300), flags=0x01, minor=1))
    c.ack(0, 163 * MS)
    c.send(0, 170 * MS, request_10_11(4, "ping10", minor=0, little=False))
    c.ack(1, 171 * MS)
    c.send(1, 180 * MS, reply_10_11(4, 0, False))
    c.ack(0, 181 * MS)
    c.close(200 * MS)
    return frames


def bad_input() -> list:
    """Lying lengths and garbage, one connection each (see README.md)."""
    import random

    rnd = random.Random(4)
    frames: list = []
    # A: a GIOP header claiming 4 GB, 50 garbage bytes, then a good Request/Reply
    c = Conn(frames, 50061, 2809)
    c.handshake(0)
    c.send(0, 10 * MS, b"GIOP\x01\x02\x00\x00\xff\xff\xff\xf0" + bytes(rnd.randrange(256) for _ in range(50)))
    c.send(0, 11 * MS, request(1, "ping"))
    c.ack(1, 12 * MS)
    c.send(1, 20 * MS, reply(1, 0))
    c.ack(0, 21 * MS)
    c.close(30 * MS)
    # B: an HTTP request whose Content-Length runs beyond the end of the stream
    c = Conn(frames, 50062, 9080)
    c.handshake(100 * MS)
    c.send(0, 110 * MS, b"POST /epj/logon HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\n\r\n0123456789")
    c.ack(1, 111 * MS)
    c.close(130 * MS)
    # C: two TLS handshake records (a ClientHello in two pieces), then a record of content type 99
    c = Conn(frames, 50063, 9403)
    c.handshake(200 * MS)
    c.send(0, 210 * MS, b"\x16\x03\x01\x00\x04" + b"\x01\x00\x00\x08" + b"\x16\x03\x01\x00\x04" + bytes(4)
           + b"\x63\x03\x03\x00\x02\xaa\xbb")
    c.ack(1, 211 * MS)
    c.close(230 * MS)
    # D: random bytes on the bootstrap port: recognised by nobody, skipped
    c = Conn(frames, 50064, 2809)
    c.handshake(300 * MS)
    c.send(0, 310 * MS, bytes(rnd.randrange(256) for _ in range(300)).replace(b"GIOP", b"GIOQ"))
    c.ack(1, 311 * MS)
    c.close(330 * MS)
    return frames


CASES = {
    "giop_split_retrans.pcap": split_retrans,
    "giop_out_of_order.pcap": out_of_order,
    "giop_capture_gap.pcap": capture_gap,
    "giop_overlap_first_wins.pcap": overlap_first_wins,
    "http_pipelined.pcap": pipelined_http,
    "giop_many_outstanding.pcap": many_outstanding,
    "bad_input.pcap": bad_input,
    "giop_locate_cancel_11.pcap": locate_cancel_11,
}


def main() -> None:
    for name, make in CASES.items():
        wrpcap(str(HERE / name), make())
        print("wrote", name)


if __name__ == "__main__":
    main()
