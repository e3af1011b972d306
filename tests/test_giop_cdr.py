"""The CDR reader follows CORBA 3.0 15.3: alignment relative to its base, byte order per
message and per encapsulation, and bounded reads that fail with the field and offset.

Bytes come from the independent CDR writer in captures/giop/craft.py (or are spelled out).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from netdiag.protocols.giop.cdr import CdrError, CdrReader

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "captures" / "giop"))
import craft  # noqa: E402

sys.path.pop(0)


def test_alignment_is_relative_to_the_base_not_the_buffer_position() -> None:
    # message base 0: offset 12 is not 8-aligned, so a ulonglong written there starts at 16
    w = craft.W(False, 12).ulonglong(0x0102030405060708)
    msg = bytes(12) + bytes(w.buf)
    r = CdrReader(msg, 12, base=0)
    assert r.ulonglong() == 0x0102030405060708 and r.pos == 24
    # the same bytes seen from a base at 4 (an encapsulation's flag octet): 12 is aligned
    r = CdrReader(bytes(12) + msg[16:24], 12, base=4)
    assert r.ulonglong() == 0x0102030405060708 and r.pos == 20


def test_encapsulation_has_its_own_byte_order_and_alignment_base() -> None:
    inner = craft.encap(True).ushort(0xBEEF).ulong(0xCAFEBABE).string("host")  # little endian
    outer = craft.W(False, 12).octet(9).seq(bytes(inner.buf)).ulong(5)  # big endian message
    msg = bytes(12) + bytes(outer.buf)
    r = CdrReader(msg, 12, base=0)
    assert r.octet() == 9
    e = r.encapsulation()
    assert e.little and e.ushort() == 0xBEEF and e.ulong() == 0xCAFEBABE and e.string() == "host"
    assert r.ulong() == 5 and r.remaining() == 0


def test_reads_past_the_end_raise_with_field_and_offset() -> None:
    r = CdrReader(b"\x00\x00\x00\x10abc", 0)
    with pytest.raises(CdrError, match=r"operation at offset 0 claims 16 bytes, only 3 left"):
        r.string("operation")
    r = CdrReader(b"\x00\x00", 0)
    with pytest.raises(CdrError, match=r"request id at offset 0: needs 4 bytes, only 2 left"):
        r.ulong("request id")


def test_bad_encapsulation_byte_order_octet_is_an_error() -> None:
    r = CdrReader(b"\x00\x00\x00\x02\x07\x00", 0)
    with pytest.raises(CdrError, match="byte-order octet is 7"):
        r.encapsulation("profile")
    with pytest.raises(CdrError, match="empty"):
        CdrReader(b"\x00\x00\x00\x00", 0).encapsulation("profile")


def test_zero_length_string_reads_as_empty() -> None:
    assert CdrReader(b"\x00\x00\x00\x00", 0).string() == ""
