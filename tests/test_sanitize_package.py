"""The sanitize package's seams: the keeper registry, the GIOP decoder memo, raw-frame chunks.

Ground truth: real captures (omniORB on loopback, the sample's lab logons), GIOP's own decoders
run without the memo as the reference for the memo, netdiag.capture.raw.read_raw_frames and
tshark for the frames iter_raw_chunks yields.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from netdiag.capture.raw import iter_raw_chunks, read_raw_frames
from netdiag.protocols import Cut
from netdiag.protocols.giop import parser as giop_parser
from netdiag.sanitize import AddressMapper, registry, sanitize_file
from netdiag.sanitize.keepers import giop as giop_keeper
from netdiag.sanitize.memory import sanitize_stream_pair
from tests.proto_streams import tcp_connections

ROOT = Path(__file__).resolve().parent.parent
GIOP_CAPTURES = [ROOT / "captures/giop/omniorb.pcap", ROOT / "captures/sample/epj-logon.pcap",
                 ROOT / "captures/giop/crafted.pcap", ROOT / "captures/sanitize/cpr_http_giop.pcap"]
KEY = bytes(range(32))


class _NoMemo(giop_keeper._TraceCache):
    def find(self, key: tuple, msg: bytes) -> None:
        return None


class _CountingMemo(giop_keeper._TraceCache):
    hits = 0

    def find(self, key: tuple, msg: bytes) -> giop_keeper._Trace | None:
        t = super().find(key, msg)
        _CountingMemo.hits += t is not None
        return t


def test_giop_memo_gives_the_decoders_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every capture with GIOP sanitised with and without the memo: the same bytes, and the memo
    was used (so the comparison covers messages it answered)."""
    for cap in GIOP_CAPTURES:
        monkeypatch.setattr(giop_keeper, "_TRACES", _NoMemo())
        sanitize_file(cap, tmp_path / "plain.pcapng", AddressMapper(KEY))
        monkeypatch.setattr(giop_keeper, "_TRACES", _CountingMemo())
        sanitize_file(cap, tmp_path / "memo.pcapng", AddressMapper(KEY))
        assert (tmp_path / "plain.pcapng").read_bytes() == (tmp_path / "memo.pcapng").read_bytes(), cap.name
        (tmp_path / "plain.pcapng").unlink()
        (tmp_path / "memo.pcapng").unlink()
    assert _CountingMemo.hits > 0


def _requests() -> list[bytes]:
    """GIOP Requests of the omniORB capture, cut by GIOP's own cutter from the client's bytes."""
    out = []
    for conn in tcp_connections(ROOT / "captures/giop/omniorb.pcap"):
        data = conn.data(0)
        pos, ctx = 0, giop_parser.new_context()
        while pos < len(data):
            c = giop_parser.cut(data, pos, at_end=True, context=ctx, direction=0)
            if c.length <= 0:
                break
            msg = data[pos:pos + c.length]
            if c.status == "message" and msg[7] == 0:
                out.append(msg)
            pos += c.length
    return out


def _keep(msg: bytes) -> tuple[bytes, list]:
    out = bytearray(len(msg))
    profiles = giop_keeper.giop_keep(msg, out, giop_parser.new_context(), 0)
    return bytes(out), profiles


def test_giop_memo_decodes_again_when_a_read_byte_differs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Request whose operation name differs in one letter (same length, same header) is not
    answered from the memo of the original; one that differs only in its request id is, and keeps
    its own request id."""
    monkeypatch.setattr(giop_keeper, "_TRACES", giop_keeper._TraceCache())
    msg = next(m for m in _requests() if m[4:6] == b"\x01\x02")  # GIOP 1.2: request id at 12
    op = msg.index(b"resolve") if b"resolve" in msg else msg.index(b"_is_a")
    changed = bytearray(msg)
    changed[op + 1] ^= 0x20  # 'e' -> 'E': a different operation
    other_id = bytearray(msg)
    other_id[12:16] = bytes(255 - b for b in msg[12:16])

    cold = {}
    for name, m in (("changed", bytes(changed)), ("other_id", bytes(other_id))):
        monkeypatch.setattr(giop_keeper, "_TRACES", _NoMemo())
        cold[name] = _keep(m)
    monkeypatch.setattr(giop_keeper, "_TRACES", _CountingMemo())
    _CountingMemo.hits = 0
    _keep(msg)
    assert _keep(bytes(changed)) == cold["changed"] and _CountingMemo.hits == 0
    warm = _keep(bytes(other_id))
    assert warm == cold["other_id"] and _CountingMemo.hits == 1
    assert warm[0][12:16] == bytes(other_id[12:16]) != msg[12:16]
    assert cold["changed"][0][op + 1] == changed[op + 1]  # the operation name is kept


def test_registry_order_and_a_new_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streams are recognised in registration order (GIOP, TLS, HTTP; DNS by port), and a protocol
    registered with one line is chosen for its streams and keeps what its keeper keeps."""
    assert [k.name for k in registry.sniffing()] == ["giop", "tls", "http"]
    assert registry.by_port(53).name == "dns" and registry.by_port(80) is None

    class Toy:  # a line protocol: "TOY <n>\n" messages
        @staticmethod
        def looks_like(head: bytes) -> bool:
            return head.startswith(b"TOY ")

        @staticmethod
        def new_context() -> None:
            return None

        @staticmethod
        def cut(data: bytes, pos: int, *, at_end: bool, context: object, direction: int) -> Cut:
            end = data.find(b"\n", pos)
            return Cut("need_more", 0) if end < 0 else Cut("message", end + 1 - pos)

    def keep(msg: bytes, out: bytearray, ctx: object, state: object, direction: int, mapper: object) -> list:
        out[:4] = msg[:4]
        return []

    monkeypatch.setitem(registry._KEEPERS, "toy", registry.Keeper("toy", Toy, keep, lambda m: False,
                                                                  Toy.new_context))
    streams = (b"TOY 0101901234\nTOY 7\n", b"TOY ok\n")
    out = sanitize_stream_pair(streams, 7000, AddressMapper(KEY))
    assert bytes(out[0]) == b"TOY " + bytes(11) + b"TOY " + bytes(2)
    assert bytes(out[1]) == b"TOY " + bytes(3)


@pytest.mark.parametrize("chunk", [1, 7, 65_536])
def test_raw_chunks_are_the_files_frames(chunk: int) -> None:
    """iter_raw_chunks yields every record of the file, bytes, times and lengths as
    read_raw_frames reads them, whatever the chunk size; tshark counts the same frames and
    captured lengths."""
    cap = ROOT / "captures/sample/epj-logon.pcap"
    raw = read_raw_frames([cap])
    frames, ts, olen = [], [], []
    for c in iter_raw_chunks(cap, lambda w: None, chunk):
        frames += [c.buf[o:o + n].tobytes() for o, n in zip(c.fo.tolist(), c.cap.tolist(), strict=True)]
        ts += c.ts_ns.tolist()
        olen += c.orig_len.tolist()
    assert frames == raw.datas and ts == raw.ts_ns.tolist() and olen == raw.orig_len.tolist()
    if shutil.which("tshark"):
        got = subprocess.run(["tshark", "-n", "-r", str(cap), "-T", "fields", "-e", "frame.cap_len"],
                             capture_output=True, text=True, check=True).stdout.split()
        assert [int(x) for x in got] == [len(f) for f in frames]
