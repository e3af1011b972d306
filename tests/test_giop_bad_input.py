"""Bad GIOP input never raises, never stalls, and says what is wrong and where.

Rules under test (netdiag/protocols/giop/parser.py docstring): no magic -> resynchronise at the next
b"GIOP"; a header with a wrong version, an unknown type or a message_size above 10 MB (a
4 GB lie, a byte-order error) is not trusted -> resynchronise; truncated -> malformed
"truncated" at the end of the stream; any CDR length beyond the message -> malformed with the
field and offset, keeping what was decoded before it. Plus a bounded fuzz over random bytes
and mutated crafted messages, and the O(header) cost of parse/cut on a 10 MB message.
"""

from __future__ import annotations

import random
import struct
import sys
import time
from pathlib import Path

import pytest

from netdiag.protocols.giop import parser as giop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "captures" / "giop"))
import craft  # noqa: E402

sys.path.pop(0)

GOOD = craft.request(2, True, 5, "echo", b"K", body=b"\x06\x00\x00\x00hello\x00")


def _with_size(msg: bytes, size: int, little: bool = True) -> bytes:
    return msg[:8] + struct.pack("<I" if little else ">I", size) + msg[12:]


def _drive(stream: bytes) -> list[tuple[str, int, str]]:
    """Cut a whole stream (at_end) the way the stream driver does; bounded by its length."""
    pos, out = 0, []
    for _ in range(len(stream) + 1):
        if pos >= len(stream):
            return out
        c = giop.cut(stream, pos, at_end=True)
        assert c.status in ("message", "malformed"), c
        assert 1 <= c.length <= len(stream) - pos
        out.append((c.status, c.length, c.reason))
        pos += c.length
    raise AssertionError("cut did not make progress")


def test_garbage_before_a_message_is_skipped_up_to_the_magic() -> None:
    stream = b"\x00\x01garbage!" + GOOD
    assert _drive(stream) == [("malformed", 10, _drive(stream)[0][2]), ("message", len(GOOD), "")]
    assert "no GIOP" in _drive(stream)[0][2]


def test_garbage_without_magic_keeps_a_possible_partial_magic_at_the_end() -> None:
    c = giop.cut(b"random bytes GI", 0)
    assert (c.status, c.length) == ("malformed", len(b"random bytes "))
    assert giop.cut(b"GI", 0).status == "need_more"
    assert giop.cut(b"GI", 0, at_end=True).status == "malformed"


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x80000000, giop.MAX_MESSAGE_BYTES + 1])
def test_lying_message_size_is_malformed_and_the_next_message_is_found(size: int) -> None:
    liar = _with_size(GOOD, size)
    stream = liar + GOOD
    cuts = _drive(stream)
    assert cuts[0][0] == "malformed" and cuts[0][1] == len(liar)
    assert f"message_size {size}" in cuts[0][2]
    assert cuts[1] == ("message", len(GOOD), "")
    # not at the end of the stream either: no waiting for 4 GB that will never come
    assert giop.cut(liar, 0).status == "malformed"
    r = giop.parse(liar)[0]
    assert r.malformed and f"message_size {size}" in r.reason


def test_big_endian_size_read_in_the_wrong_byte_order_is_caught_by_the_limit() -> None:
    be = craft.request(2, False, 5, "echo", b"K")
    flipped = be[:6] + bytes([be[6] | 1]) + be[7:]  # claims little endian: size 0x..000000
    c = giop.cut(flipped, 0, at_end=True)
    assert c.status == "malformed" and "byte order" in c.reason


def test_truncated_message_at_end_of_stream_is_malformed_but_keeps_its_header_fields() -> None:
    short = GOOD[:-3]
    assert giop.cut(short, 0).status == "need_more"
    c = giop.cut(short, 0, at_end=True)
    assert c.status == "malformed" and "truncated" in c.reason and c.length == len(short)
    r = giop.parse(short)[0]
    assert r.malformed and "truncated" in r.reason
    assert (r.msg_type, r.request_id, r.operation) == ("Request", 5, "echo")


@pytest.mark.parametrize(("patch", "words"), [
    ((4, 2), "unsupported GIOP version 2.2"),
    ((5, 9), "unsupported GIOP version 1.9"),
    ((7, 9), "unknown GIOP message type 9"),
])
def test_bad_header_fields_are_malformed_and_resynchronise(patch: tuple[int, int], words: str) -> None:
    at, value = patch
    bad = GOOD[:at] + bytes([value]) + GOOD[at + 1:]
    cuts = _drive(bad + GOOD)
    assert cuts[0][0] == "malformed" and words in cuts[0][2]
    assert cuts[-1] == ("message", len(GOOD), "")
    r = giop.parse(bad)[0]
    assert r.malformed and words in r.reason


def test_operation_length_beyond_the_message_names_the_field_and_offset() -> None:
    msg = bytearray(craft.request(2, False, 5, "echo", b"K"))
    # 1.2: id@12 flags@16 disc@20 keylen@24 key@28 (1 byte) -> operation length @32
    struct.pack_into(">I", msg, 32, 65536)
    r = giop.parse(bytes(msg))[0]
    assert r.malformed and r.request_id == 5
    assert "operation" in r.reason and "offset 32" in r.reason and "65536" in r.reason


@pytest.mark.parametrize("where", ["service context count", "IOR profile count", "exception id"])
def test_impossible_counts_inside_the_body_are_malformed_not_exceptions(where: str) -> None:
    if where == "service context count":
        msg = bytearray(craft.reply(2, True, 5, 0))
        struct.pack_into("<I", msg, 20, 0x7FFFFFFF)
        status = "NO_EXCEPTION"
    elif where == "IOR profile count":
        msg = bytearray(craft.reply(2, True, 5, 3, lambda w: craft.ior(w, "IDL:x:1.0", "h", 1, b"k")))
        struct.pack_into("<I", msg, 24 + 4 + 12, 1_000_000)  # after the 10-byte type id (+pad)
        status = "LOCATION_FORWARD"
    else:
        msg = bytearray(craft.reply(1, False, 5, 2, craft.sysexc("IDL:x:1.0", 1, 1)))
        struct.pack_into(">I", msg, 24, 0xFFFFFF00)
        status = "SYSTEM_EXCEPTION"
    r = giop.parse(bytes(msg))[0]
    assert r.malformed and not r.reason.startswith("parser error"), r.reason
    assert r.status == status and r.request_id == 5


def test_short_input_to_parse_is_malformed() -> None:
    for n in range(12):
        r = giop.parse(GOOD[:n])[0]
        assert r.malformed and "truncated GIOP header" in r.reason


def test_fuzz_random_and_mutated_messages_never_raise_or_stall() -> None:
    rng = random.Random(20261126)
    seeds = [m for conn in craft.scenarios() for _, m, _ in conn.messages]
    cases: list[bytes] = [rng.randbytes(rng.randrange(0, 200)) for _ in range(500)]
    for _ in range(3000):
        m = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(4)
            if op == 0 and len(m) > 12:  # overwrite a byte anywhere past the magic
                m[rng.randrange(4, len(m))] = rng.randrange(256)
            elif op == 1 and m:  # truncate
                del m[rng.randrange(len(m)):]
            elif op == 2 and len(m) > 16:  # corrupt a length-like word
                struct.pack_into("<I", m, rng.randrange(12, len(m) - 3) & ~3, rng.choice(
                    [0, 1, 0xFFFFFFFF, 0x7FFFFFFF, len(m), rng.randrange(1 << 32)]))
            else:  # splice two messages
                m += rng.choice(seeds)[: rng.randrange(40)]
        cases.append(bytes(m))
    started = time.perf_counter()
    ctx = giop.new_context()
    for case in cases:
        for rec in giop.parse(case, context=ctx, direction=rng.randrange(2)):
            assert not rec.reason.startswith("parser error"), (case.hex(), rec.reason)
            assert rec.malformed or rec.reason == ""
        _drive(case)
        _drive(case + GOOD)
    assert len(ctx.pending) <= giop.MAX_PENDING_REQUESTS
    assert time.perf_counter() - started < 30


def test_parse_and_cut_cost_does_not_grow_with_the_body() -> None:
    big = craft.reply(2, True, 9, 0, tail=bytes(giop.MAX_MESSAGE_BYTES - 24))
    small = craft.reply(2, True, 9, 0, tail=bytes(64))
    assert giop.cut(big, 0).length == len(big)

    def per_call(msg: bytes) -> float:
        t0 = time.perf_counter()
        for _ in range(200):
            giop.cut(msg, 0)
            giop.parse(msg)
        return (time.perf_counter() - t0) / 200

    small_s, big_s = per_call(small), per_call(big)
    # copying 10 MB costs ~1 ms; O(header) work stays in the tens of microseconds
    assert big_s < 200e-6 and big_s < 5 * small_s + 50e-6, (small_s, big_s)


def test_unknown_reply_status_names_its_offset() -> None:
    msg = bytearray(craft.reply(2, False, 5, 0))
    struct.pack_into(">I", msg, 16, 9)
    r = giop.parse(bytes(msg))[0]
    assert r.malformed and r.status == "unknown (9)" and "reply status 9 at offset 16" in r.reason


def test_giop_1_2_reply_with_fewer_trailing_bytes_than_its_padding_is_not_malformed() -> None:
    msg = craft.reply(2, True, 5, 0, scs=[craft.sc_opaque(0x49424D0A, b"\x01\x02")])
    odd = _with_size(msg + b"\x00\x00", len(msg) + 2 - 12)
    r = giop.parse(odd)[0]
    assert (r.status, r.malformed, r.detail["body_bytes"]) == ("NO_EXCEPTION", False, 0)
