"""Crafted GIOP bytes and the pcap that carries them (test support; run to regenerate).

Why: the lab's omniORB peers cannot send everything a WebSphere logon can (GIOP 1.0/1.1 in
both byte orders with the IBM-style service contexts, 1.1 fragments, every LocateReply variant,
IORs with TAG_ALTERNATE_IIOP_ADDRESS / TAG_SSL_SEC_TRANS / TAG_CSI_SEC_MECH_LIST). This module
encodes such messages with an independent, minimal CDR *writer* written from the spec text
(CORBA 3.0 15.3-15.4, 13.6, 24.2), and writes them as TCP streams into crafted.pcap (scapy),
so tshark's GIOP dissector can serve as the oracle on the very same bytes.

    python captures/giop/craft.py      # rewrites captures/giop/crafted.pcap

Nothing here imports netdiag: the encoder must not share code with the parser it checks.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
CRAFTED_PCAP = HERE / "crafted.pcap"
CLIENT_IP, SERVER_IP = "192.0.2.10", "192.0.2.20"  # documentation addresses (RFC 5737)
SERVER_PORT = 2809  # plain IIOP bootstrap port; tshark gets `-d tcp.port==2809,giop`


# ------------------------------------------------------------------------------------------
# CDR writer
# ------------------------------------------------------------------------------------------
class W:
    """CDR output buffer; `origin` is the offset of buf[0] from the alignment base."""

    def __init__(self, little: bool, origin: int = 0) -> None:
        self.buf = bytearray()
        self.little = little
        self.origin = origin

    def _p(self, fmt: str, v: int, size: int) -> W:
        self.align(size)
        self.buf += struct.pack(("<" if self.little else ">") + fmt, v)
        return self

    def align(self, n: int) -> W:
        while (self.origin + len(self.buf)) % n:
            self.buf.append(0)
        return self

    def octet(self, v: int) -> W:
        self.buf.append(v & 0xFF)
        return self

    def ushort(self, v: int) -> W:
        return self._p("H", v, 2)

    def short(self, v: int) -> W:
        return self._p("h", v, 2)

    def ulong(self, v: int) -> W:
        return self._p("I", v, 4)

    def long(self, v: int) -> W:
        return self._p("i", v, 4)

    def ulonglong(self, v: int) -> W:
        return self._p("Q", v, 8)

    def string(self, s: str | bytes) -> W:
        raw = s.encode("latin-1") if isinstance(s, str) else s
        self.ulong(len(raw) + 1)
        self.buf += raw + b"\x00"
        return self

    def seq(self, raw: bytes) -> W:
        self.ulong(len(raw))
        self.buf += raw
        return self

    def raw(self, raw: bytes) -> W:
        self.buf += raw
        return self


def encap(little: bool) -> W:
    """An encapsulation: alignment relative to its byte-order octet, which is written first."""
    w = W(little, 0)
    w.octet(1 if little else 0)
    return w


# ------------------------------------------------------------------------------------------
# IOR, components, service contexts
# ------------------------------------------------------------------------------------------
def comp_alternate(host: str, port: int, little: bool = False) -> tuple[int, bytes]:
    return 3, bytes(encap(little).string(host).ushort(port).buf)


def comp_ssl(port: int, little: bool = False) -> tuple[int, bytes]:
    return 20, bytes(encap(little).ushort(0x66).ushort(0x00).ushort(port).buf)


def comp_csi_tls(host: str, port: int, little: bool = False) -> tuple[int, bytes]:
    tls = encap(little).ushort(0x66).ushort(0x02).ulong(1).string(host).ushort(port)
    w = encap(little).octet(0).ulong(1)  # stateful = FALSE, one mechanism
    w.ushort(0x02).ulong(36).seq(bytes(tls.buf))  # target_requires, TAG_TLS_SEC_TRANS
    w.ushort(0).ushort(0).seq(b"").seq(b"")  # AS_ContextSec: supports, requires, mech OID, target name
    w.ushort(0).ushort(0).ulong(0).ulong(0).ulong(0)  # SAS_ContextSec: no authorities, mechs, types
    return 33, bytes(w.buf)


def ior(w: W, type_id: str, host: str, port: int, key: bytes, *, components=(),
        profile_little: bool = False, iiop_minor: int = 2) -> W:
    prof = encap(profile_little).octet(1).octet(iiop_minor).string(host).ushort(port).seq(key)
    if iiop_minor >= 1:
        prof.ulong(len(components))
        for tag, data in components:
            prof.ulong(tag).seq(data)
    w.string(type_id).ulong(1).ulong(0).seq(bytes(prof.buf))
    return w


def nil_ior(w: W) -> W:
    return w.string("").ulong(0)


def sc_codesets(little: bool = False) -> tuple[int, bytes]:
    return 1, bytes(encap(little).ulong(0x00010001).ulong(0x00010109).buf)


def sc_sas(msg_type: int, context_id: int = 0, little: bool = False) -> tuple[int, bytes]:
    w = encap(little).short(msg_type)
    if msg_type in (0, 1, 4, 5):
        w.ulonglong(context_id)
    if msg_type == 4:
        w.long(1).long(0)
    return 15, bytes(w.buf)


def sc_opaque(sc_id: int, data: bytes = b"\x00\x00\x00\x00") -> tuple[int, bytes]:
    return sc_id, data


def contexts(w: W, scs) -> W:
    w.ulong(len(scs))
    for sc_id, data in scs:
        w.ulong(sc_id).seq(data)
    return w


# ------------------------------------------------------------------------------------------
# Messages
# ------------------------------------------------------------------------------------------
def message(minor: int, little: bool, mtype: int, body: bytes, *, more: bool = False) -> bytes:
    flags = (1 if little else 0) | (2 if more else 0)
    return (b"GIOP" + bytes([1, minor, flags, mtype])
            + struct.pack("<I" if little else ">I", len(body)) + body)


def body_w(little: bool) -> W:
    return W(little, 12)


def request(minor: int, little: bool, rid: int, op: str, key: bytes = b"NameService", *,
            scs=(), response: int = 3, body: bytes = b"", more: bool = False,
            target: str = "key", principal: bytes = b"") -> bytes:
    w = body_w(little)
    if minor <= 1:
        contexts(w, scs)
        w.ulong(rid).octet(1 if response else 0)
        if minor == 1:
            w.raw(b"\x00\x00\x00")
        w.seq(key).string(op).seq(principal)
        w.raw(body)
    else:
        w.ulong(rid).octet(response).raw(b"\x00\x00\x00")
        if target == "key":
            w.short(0).seq(key)
        elif target == "profile":
            prof = encap(little).octet(1).octet(2).string("10.1.2.3").ushort(2809).seq(key).ulong(0)
            w.short(1).ulong(0).seq(bytes(prof.buf))
        else:  # reference
            w.short(2).ulong(0)
            ior(w, "IDL:omg.org/CosNaming/NamingContextExt:1.0", "10.1.2.3", 2809, key)
        w.string(op)
        contexts(w, scs)
        if body:
            w.align(8).raw(body)
    return message(minor, little, 0, bytes(w.buf), more=more)


def reply(minor: int, little: bool, rid: int, status: int, fill=None, *, scs=(),
          more: bool = False, tail: bytes = b"") -> bytes:
    w = body_w(little)
    if minor <= 1:
        contexts(w, scs).ulong(rid).ulong(status)
    else:
        w.ulong(rid).ulong(status)
        contexts(w, scs)
        if fill is not None or tail:
            w.align(8)
    if fill is not None:
        fill(w)
    w.raw(tail)
    return message(minor, little, 1, bytes(w.buf), more=more)


def sysexc(exc_id: str, minor_code: int, completed: int):
    return lambda w: w.string(exc_id).ulong(minor_code).ulong(completed)


def locate_request(minor: int, little: bool, rid: int, key: bytes = b"NameService") -> bytes:
    w = body_w(little).ulong(rid)
    if minor <= 1:
        w.seq(key)
    else:
        w.short(0).seq(key)
    return message(minor, little, 3, bytes(w.buf))


def locate_reply(minor: int, little: bool, rid: int, status: int, fill=None, *,
                 pad_to_8: bool = False) -> bytes:
    w = body_w(little).ulong(rid).ulong(status)
    if pad_to_8:
        w.align(8)
    if fill is not None:
        fill(w)
    return message(minor, little, 4, bytes(w.buf))


def fragment(minor: int, little: bool, data: bytes, *, rid: int | None = None, more: bool = False) -> bytes:
    w = body_w(little)
    if minor >= 2:
        w.ulong(rid or 0)
    w.raw(data)
    return message(minor, little, 7, bytes(w.buf), more=more)


def simple(minor: int, little: bool, mtype: int) -> bytes:
    return message(minor, little, mtype, b"")


def cancel(minor: int, little: bool, rid: int) -> bytes:
    return message(minor, little, 2, bytes(body_w(little).ulong(rid).buf))


def pad8(n: int) -> bytes:
    """Filler for a non-final fragment so the whole message ends on an 8-byte boundary."""
    return bytes(range(n % 256)) if n < 256 else bytes(n)


# ------------------------------------------------------------------------------------------
# The scenarios (one TCP connection each) and the pcap
# ------------------------------------------------------------------------------------------
FWD_TYPE = "IDL:epj/LogonHome:1.0"
NAMING_TYPE = "IDL:omg.org/CosNaming/NamingContext:1.0"


@dataclass
class Conn:
    name: str
    client_port: int
    # (direction 0 = client->server, message bytes, split sizes: segment boundaries)
    messages: list[tuple[int, bytes, tuple[int, ...]]] = field(default_factory=list)


def _big_fragmented_11(little: bool) -> list[bytes]:
    """A 1.1 Request whose body spans two Fragments (no request id in 1.1 fragments)."""
    first = request(1, little, 7, "login", b"EPJ/LogonBean", scs=[sc_codesets(little), sc_sas(0, 0, little)],
                    body=bytes(100), more=True)
    first = first + bytes((8 - len(first) % 8) % 8)  # non-final fragments end 8-aligned
    first = first[:8] + struct.pack("<I" if little else ">I", len(first) - 12) + first[12:]
    f1 = fragment(1, little, bytes(4 + 200), more=True)
    f2 = fragment(1, little, bytes(52), more=False)
    return [first, f1, f2]


def _big_fragmented_12_reply(little: bool) -> list[bytes]:
    first = reply(1 + 1, little, 100, 0, more=True, tail=bytes(64))
    f1 = fragment(2, little, bytes(1000), rid=100, more=True)
    f2 = fragment(2, little, bytes(333), rid=100, more=False)
    return [first, f1, f2]


def scenarios() -> list[Conn]:
    be, le = False, True
    a = Conn("giop10_be", 40001)
    a.messages += [
        (0, request(0, be, 1, "resolve", b"NameService", scs=[sc_codesets(be)], body=b"\x00\x00\x00\x01"), (30,)),
        (1, reply(0, be, 1, 0, lambda w: ior(w, NAMING_TYPE, "10.20.30.40", 9100, b"\x00PMC\x00\x00\x00\x01",
                                             iiop_minor=0)), ()),
        (0, request(0, be, 2, "_is_a", b"NameService", body=b"\x00\x00\x00\x05IDL:\x00"), ()),
        (1, reply(0, be, 2, 2, sysexc("IDL:omg.org/CORBA/TRANSIENT:1.0", 0x4F4D0001, 1)), (5, 20)),
        (0, request(0, be, 3, "get", b"INIT", body=b"\x00\x00\x00\x0cNameService\x00"), ()),
        (1, reply(0, be, 3, 3, lambda w: ior(
            w, FWD_TYPE, "was-node1.example", 0, b"LogonHomeKey",
            components=[comp_alternate("10.9.8.7", 2810), comp_alternate("was-node2.example", 9101),
                        comp_ssl(9403), comp_csi_tls("was-node1.example", 9403)])), (40, 40, 40)),
        (0, cancel(0, be, 3), ()),
        (1, simple(0, be, 5), ()),
    ]
    b = Conn("giop11_le_fragments", 40002)
    frag = _big_fragmented_11(le)
    b.messages += [
        (0, frag[0], (17,)), (0, frag[1], ()), (0, frag[2], (13,)),
        (1, reply(1, le, 7, 1, lambda w: w.string("IDL:epj/LoginFailed:1.0").ulong(0),
                  scs=[sc_sas(4, 0, le)]), ()),
        (0, locate_request(1, le, 8, b"NameServiceServerRoot"), ()),
        (1, locate_reply(1, le, 8, 2, lambda w: ior(w, NAMING_TYPE, "10.20.30.41", 2809, b"NS"),
                         ), ()),
        (0, request(1, le, 9, "logout", b"EPJ/LogonBean", response=0), ()),
    ]
    c = Conn("giop12_le", 40003)
    frag12 = _big_fragmented_12_reply(le)
    c.messages += [
        (0, request(2, le, 100, "getPatientList", b"EPJ/PatientBean",
                    scs=[sc_codesets(le), sc_sas(5, 77, le), sc_opaque(0x49424D0A)], body=bytes(24)), ()),
        (1, frag12[0], (50,)), (1, frag12[1], (500, 400)), (1, frag12[2], ()),
        (0, locate_request(2, le, 101), ()),
        (1, locate_reply(2, le, 101, 1), ()),
        (0, locate_request(2, le, 102), ()),
        (1, locate_reply(2, le, 102, 2, lambda w: ior(w, NAMING_TYPE, "10.20.30.42", 9810, b"NS2",
                                                      components=[comp_alternate("10.20.30.43", 9811)]),
                         pad_to_8=True), ()),
        (0, locate_request(2, le, 103), ()),
        (1, locate_reply(2, le, 103, 4, sysexc("IDL:omg.org/CORBA/OBJECT_NOT_EXIST:1.0", 0x4F4D0002, 1),
                         pad_to_8=True), ()),
        (0, locate_request(2, le, 104), ()),
        (1, locate_reply(2, le, 104, 0), ()),
        (0, request(2, le, 105, "find", b"EPJ/PatientBean", body=bytes(8)), ()),
        (1, reply(2, le, 105, 4, lambda w: ior(w, FWD_TYPE, "10.20.30.44", 9811, b"K",
                                               components=[comp_ssl(9402)])), ()),
        (0, request(2, le, 106, "find", b"EPJ/PatientBean"), ()),
        (1, reply(2, le, 106, 5, lambda w: w.short(1)), ()),
        (0, locate_request(2, le, 107), ()),
        (1, locate_reply(2, le, 107, 3, lambda w: ior(w, FWD_TYPE, "10.20.30.45", 9813, b"K2")), ()),
        (0, simple(2, le, 6), ()),
    ]
    d = Conn("giop12_be_targets", 40004)
    d.messages += [
        (0, request(2, be, 200, "authenticate", b"SecKey", scs=[sc_sas(0, 0, be)], target="profile",
                    body=bytes(16)), ()),
        (1, reply(2, be, 200, 2, sysexc("IDL:omg.org/CORBA/NO_PERMISSION:1.0", 0x49424D05, 1),
                  scs=[sc_sas(4, 0, be)]), ()),
        (0, request(2, be, 201, "resolve_str", b"NameService", target="reference",
                    body=b"\x00\x00\x00\x06a/b/c\x00"), ()),
        (1, reply(2, be, 201, 0, lambda w: ior(w, FWD_TYPE, "10.20.30.50", 9812, b"Obj",
                                               components=[comp_csi_tls("10.20.30.50", 9443)])), ()),
        (0, request(2, be, 202, "ping", b"X", response=0), ()),
        (0, request(3, be, 203, "hello13", b"X"), ()),
        (1, reply(3, be, 203, 0), ()),
    ]
    return [a, b, c, d]


def write_pcap(path: Path = CRAFTED_PCAP) -> None:
    from scapy.all import IP, TCP, Ether, wrpcap  # test-only dependency

    pkts = []
    t = 1_700_000_000.0
    for conn in scenarios():
        seq = [1000, 5000]
        sport = conn.client_port

        def pkt(d: int, flags: str, payload: bytes = b"", _sport=sport, _seq=seq):
            src, dst, sp, dp = ((CLIENT_IP, SERVER_IP, _sport, SERVER_PORT) if d == 0
                                else (SERVER_IP, CLIENT_IP, SERVER_PORT, _sport))
            p = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=src, dst=dst) /
                 TCP(sport=sp, dport=dp, flags=flags, seq=_seq[d], ack=_seq[1 - d], window=65535))
            if payload:
                p = p / payload
            return p

        for d, flags in ((0, "S"), (1, "SA"), (0, "A")):
            p = pkt(d, flags)
            if flags != "A":
                p[TCP].ack = 0 if flags == "S" else seq[0] + 1
            t += 0.001
            p.time = t
            pkts.append(p)
            if flags in ("S", "SA"):
                seq[d] += 1
        for d, msg, splits in conn.messages:
            pieces, pos = [], 0
            for s in splits:
                if pos + s < len(msg):
                    pieces.append(msg[pos:pos + s])
                    pos += s
            pieces.append(msg[pos:])
            for piece in pieces:
                t += 0.002
                p = pkt(d, "PA", piece)
                p.time = t
                pkts.append(p)
                seq[d] += len(piece)
        for d in (0, 1):
            t += 0.001
            p = pkt(d, "FA")
            p.time = t
            pkts.append(p)
            seq[d] += 1
    wrpcap(str(path), pkts)


if __name__ == "__main__":
    write_pcap()
    print(f"wrote {CRAFTED_PCAP}")
