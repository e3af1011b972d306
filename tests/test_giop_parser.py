"""GIOP parser on crafted bytes: each test encodes a message with the independent CDR writer
in captures/giop/craft.py (written from the CORBA 3.0 text, shares no code with netdiag) and
checks that parse()/cut() recover exactly the values that were encoded.

tshark cross-checks the same kinds of messages in test_giop_tshark.py; these tests cover what
tshark does not show (CSIv2 message types, TLS ports from IOR components, 1.1 fragment
attribution, the LocateReply offset rule, the context that decodes naming replies).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from netdiag.protocols.giop import parser as giop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "captures" / "giop"))
import craft  # noqa: E402

sys.path.pop(0)

BOTH_ORDERS = pytest.mark.parametrize("little", [False, True], ids=["big_endian", "little_endian"])


def one(message: bytes, **kw) -> giop.Record:
    recs = giop.parse(message, **kw)
    assert len(recs) == 1
    return recs[0]


# ------------------------------------------------------------------------------------------
# Requests
# ------------------------------------------------------------------------------------------
@BOTH_ORDERS
@pytest.mark.parametrize("minor", [0, 1, 2])
def test_request_yields_id_operation_key_and_contexts_in_every_version(minor: int, little: bool) -> None:
    msg = craft.request(minor, little, 0xA1B2C3D4, "getUserContext", b"EPJ/Session\x00\x01",
                        scs=[craft.sc_codesets(little), craft.sc_opaque(6, b"\x00\x00\x00\x00"),
                             craft.sc_sas(0, 0, not little)], body=b"\x00\x00\x00\x05tok1\x00")
    r = one(msg)
    assert (r.protocol, r.msg_type, r.request_id, r.operation, r.malformed) == (
        "giop", "Request", 0xA1B2C3D4, "getUserContext", False)
    d = r.detail
    assert d["version"] == f"1.{minor}" and d["little_endian"] is little
    assert d["object_key"] == "EPJ/Session.." and d["object_key_hex"] == b"EPJ/Session\x00\x01".hex()
    assert d["service_context_ids"] == [1, 6, 15]
    assert d["codeset_char"] == "0x00010001" and d["codeset_wchar"] == "0x00010109"
    # the SAS encapsulation has the opposite byte order from the message: its own flag rules
    assert d["csiv2_msg_type"] == "EstablishContext" and d["csiv2_client_context_id"] == 0
    assert d["response_expected"] is True
    assert d["body_bytes"] == 9
    assert d["message_size"] == len(msg) - 12


@pytest.mark.parametrize(("disc", "name"), [(0, "EstablishContext"), (1, "CompleteEstablishContext"),
                                            (4, "ContextError"), (5, "MessageInContext")])
def test_csiv2_sas_context_message_type_is_decoded_from_its_encapsulation(disc: int, name: str) -> None:
    msg = craft.request(2, True, 9, "authenticate", b"K", scs=[craft.sc_sas(disc, 123456789012, False)])
    d = one(msg).detail
    assert d["service_context_ids"] == [15]
    assert d["csiv2_msg_type"] == name
    assert d["csiv2_client_context_id"] == 123456789012
    if disc == 4:
        assert (d["csiv2_major_status"], d["csiv2_minor_status"]) == (1, 0)


def test_giop_1_2_oneway_and_sync_scopes_map_to_response_expected() -> None:
    for flags, expected in ((0x00, False), (0x01, True), (0x03, True)):
        d = one(craft.request(2, False, 1, "note", b"K", response=flags)).detail
        assert (d["response_flags"], d["response_expected"]) == (flags, expected)
    assert one(craft.request(0, False, 1, "note", b"K", response=0)).detail["response_expected"] is False


def test_giop_1_2_profile_and_reference_target_addresses_give_key_and_host() -> None:
    p = one(craft.request(2, False, 5, "op", b"ProfKey", target="profile")).detail
    assert (p["addressing_disposition"], p["object_key"], p["target_host"], p["target_port"]) == (
        "ProfileAddr", "ProfKey", "10.1.2.3", 2809)
    r = one(craft.request(2, True, 6, "op", b"RefKey", target="reference")).detail
    assert (r["addressing_disposition"], r["object_key"], r["target_host"], r["target_port"],
            r["target_type_id"]) == ("ReferenceAddr", "RefKey", "10.1.2.3", 2809,
                                     "IDL:omg.org/CosNaming/NamingContextExt:1.0")


def test_giop_1_2_request_body_size_excludes_the_padding_to_eight() -> None:
    msg = craft.request(2, True, 1, "abc", b"K", body=b"12345678")
    r = one(msg)
    assert r.detail["body_bytes"] == 8
    no_body = one(craft.request(2, True, 1, "abc", b"K"))
    assert no_body.detail["body_bytes"] == 0


# ------------------------------------------------------------------------------------------
# Replies
# ------------------------------------------------------------------------------------------
@BOTH_ORDERS
@pytest.mark.parametrize("minor", [0, 1, 2])
def test_system_exception_gives_id_minor_code_and_completion(minor: int, little: bool) -> None:
    msg = craft.reply(minor, little, 77, 2, craft.sysexc("IDL:omg.org/CORBA/COMM_FAILURE:1.0", 0x49424D31, 2),
                      scs=[craft.sc_opaque(0x49424D0A)])
    r = one(msg)
    assert (r.msg_type, r.request_id, r.status) == ("Reply", 77, "SYSTEM_EXCEPTION")
    assert r.detail["exception_id"] == "IDL:omg.org/CORBA/COMM_FAILURE:1.0"
    assert (r.detail["minor_code"], r.detail["minor_code_hex"]) == (0x49424D31, "0x49424d31")
    assert r.detail["completion_status"] == "COMPLETED_MAYBE"
    assert r.detail["service_context_ids"] == [0x49424D0A]


@BOTH_ORDERS
@pytest.mark.parametrize(("minor", "status", "name"), [(0, 3, "LOCATION_FORWARD"), (1, 3, "LOCATION_FORWARD"),
                                                       (2, 3, "LOCATION_FORWARD"),
                                                       (2, 4, "LOCATION_FORWARD_PERM")])
def test_location_forward_ior_gives_host_port_alternates_and_tls_port(minor, status, name, little) -> None:
    comps = [craft.comp_alternate("10.9.8.7", 2810, little), craft.comp_ssl(9403, not little),
             craft.comp_alternate("was2", 9101, False)]
    msg = craft.reply(minor, little, 5, status, lambda w: craft.ior(
        w, "RMI:epj.LogonHome:0000000000000000", "was-node1", 9100, b"key", components=comps,
        profile_little=not little))
    r = one(msg)
    assert r.status == name
    d = r.detail
    assert (d["forward_type_id"], d["forward_host"], d["forward_port"]) == (
        "RMI:epj.LogonHome:0000000000000000", "was-node1", 9100)
    assert d["forward_alternate_addresses"] == ["10.9.8.7:2810", "was2:9101"]
    assert d["forward_tls_port"] == 9403


def test_csiv2_mechanism_list_gives_the_tls_port_when_the_clear_port_is_zero() -> None:
    msg = craft.reply(2, False, 5, 3, lambda w: craft.ior(
        w, "IDL:x:1.0", "was-node1", 0, b"k", components=[craft.comp_csi_tls("was-node1", 9402, True)]))
    d = one(msg).detail
    assert (d["forward_port"], d["forward_tls_port"], d["forward_tls_host"]) == (0, 9402, "was-node1")


def test_user_exception_reports_its_repository_id() -> None:
    r = one(craft.reply(1, True, 3, 1, lambda w: w.string("IDL:EPJ/AuthenticationFailed:1.0").string("x")))
    assert (r.status, r.detail["exception_id"]) == ("USER_EXCEPTION", "IDL:EPJ/AuthenticationFailed:1.0")


def test_needs_addressing_mode_reports_the_disposition() -> None:
    r = one(craft.reply(2, False, 3, 5, lambda w: w.short(2)))
    assert (r.status, r.detail["addressing_disposition"]) == ("NEEDS_ADDRESSING_MODE", "ReferenceAddr")


@pytest.mark.parametrize("minor", [0, 1, 2])
@pytest.mark.parametrize(("op", "key"), [("resolve", b"NameService"), ("resolve_str", b"NameService"),
                                         ("get", b"INIT")])
def test_naming_reply_ior_is_decoded_when_the_context_saw_the_request(minor, op, key) -> None:
    ctx = giop.new_context()
    one(craft.request(minor, True, 41, op, key, body=b"\x01\x00\x00\x00"), context=ctx, direction=0)
    other = one(craft.request(minor, True, 42, "echo", key), context=ctx, direction=0)
    assert other.operation == "echo"
    fill = lambda w: craft.ior(w, "IDL:omg.org/CosNaming/NamingContext:1.0", "ns-host", 2809, b"NC")  # noqa: E731
    reply = one(craft.reply(minor, True, 41, 0, fill), context=ctx, direction=1)
    assert reply.detail["request_operation"] == op
    assert (reply.detail["ior_type_id"], reply.detail["ior_host"], reply.detail["ior_port"]) == (
        "IDL:omg.org/CosNaming/NamingContext:1.0", "ns-host", 2809)
    # a reply to a non-naming operation is not read as an IOR, even if it could be one
    plain = one(craft.reply(minor, True, 42, 0, fill), context=ctx, direction=1)
    assert "ior_host" not in plain.detail
    # without the context (or with the request seen in the same direction) nothing is guessed
    assert "ior_host" not in one(craft.reply(minor, True, 41, 0, fill)).detail


def test_naming_reply_whose_body_is_not_an_ior_is_not_malformed() -> None:
    ctx = giop.new_context()
    one(craft.request(2, False, 1, "resolve", b"NameService"), context=ctx, direction=0)
    r = one(craft.reply(2, False, 1, 0, lambda w: w.ulong(0xFFFFFFF0)), context=ctx, direction=1)
    assert not r.malformed and "ior_error" in r.detail


# ------------------------------------------------------------------------------------------
# Locate, cancel, close, error
# ------------------------------------------------------------------------------------------
@BOTH_ORDERS
@pytest.mark.parametrize("minor", [0, 1, 2])
def test_locate_request_is_an_operation_named_locaterequest(minor: int, little: bool) -> None:
    r = one(craft.locate_request(minor, little, 12, b"NameServiceServerRoot"))
    assert (r.msg_type, r.request_id, r.operation, r.detail["object_key"]) == (
        "LocateRequest", 12, "LocateRequest", "NameServiceServerRoot")


@pytest.mark.parametrize(("status", "name"), list(giop.LOCATE_STATUS.items()))
@pytest.mark.parametrize("padded", [False, True], ids=["spec_offset_20", "wireshark_offset_24"])
def test_locate_reply_status_and_body_at_either_offset(status: int, name: str, padded: bool) -> None:
    fills = {2: lambda w: craft.ior(w, "IDL:x:1.0", "fwd-host", 9810, b"k"),
             3: lambda w: craft.ior(w, "IDL:x:1.0", "fwd-host", 9810, b"k"),
             4: craft.sysexc("IDL:omg.org/CORBA/OBJECT_NOT_EXIST:1.0", 0x4F4D0001, 1),
             5: lambda w: w.short(0)}
    r = one(craft.locate_reply(2, True, 7, status, fills.get(status), pad_to_8=padded))
    assert (r.msg_type, r.request_id, r.status, r.malformed) == ("LocateReply", 7, name, False)
    if status in (2, 3):
        assert (r.detail["forward_host"], r.detail["forward_port"]) == ("fwd-host", 9810)
        assert r.detail["body_offset"] == (24 if padded else 20)
    if status == 4:
        assert r.detail["exception_id"] == "IDL:omg.org/CORBA/OBJECT_NOT_EXIST:1.0"
        assert r.detail["completion_status"] == "COMPLETED_NO"
    if status == 5:
        assert r.detail["addressing_disposition"] == "KeyAddr"


def test_locate_reply_1_0_forward_body_follows_the_status_directly() -> None:
    r = one(craft.locate_reply(0, False, 7, 2, lambda w: craft.ior(w, "IDL:x:1.0", "h", 1, b"k")))
    assert (r.status, r.detail["forward_host"], r.detail["forward_port"]) == ("OBJECT_FORWARD", "h", 1)


@pytest.mark.parametrize(("mtype", "name"), [(5, "CloseConnection"), (6, "MessageError")])
def test_header_only_messages(mtype: int, name: str) -> None:
    r = one(craft.simple(1, True, mtype))
    assert (r.msg_type, r.request_id, r.malformed) == (name, None, False)


def test_cancel_request_carries_the_cancelled_request_id() -> None:
    r = one(craft.cancel(2, False, 99))
    assert (r.msg_type, r.request_id) == ("CancelRequest", 99)


# ------------------------------------------------------------------------------------------
# Fragments
# ------------------------------------------------------------------------------------------
def test_giop_1_1_fragments_take_the_request_id_of_the_message_they_continue() -> None:
    ctx = giop.new_context()
    first = craft.request(1, True, 31, "login", b"K", body=bytes(40), more=True)
    f1 = craft.fragment(1, True, bytes(64), more=True)
    f2 = craft.fragment(1, True, bytes(10), more=False)
    r0 = one(first, context=ctx, direction=0)
    # a Reply in the other direction meanwhile must not disturb the chain
    one(craft.reply(1, True, 30, 0), context=ctx, direction=1)
    r1, r2 = one(f1, context=ctx, direction=0), one(f2, context=ctx, direction=0)
    assert (r0.request_id, r0.detail["more_fragments"]) == (31, True)
    assert [(r.msg_type, r.request_id, r.detail["more_fragments"], r.detail["fragment_of"],
             r.detail["request_id_inferred"], r.detail["body_bytes"]) for r in (r1, r2)] == [
        ("Fragment", 31, True, "Request", True, 64), ("Fragment", 31, False, "Request", True, 10)]
    # after the last fragment a stray 1.1 Fragment belongs to nothing
    stray = one(craft.fragment(1, True, bytes(4)), context=ctx, direction=0)
    assert stray.request_id is None and "fragment_of" not in stray.detail


def test_giop_1_2_fragments_carry_their_own_request_id() -> None:
    r = one(craft.fragment(2, False, bytes(100), rid=4242, more=True))
    assert (r.msg_type, r.request_id, r.detail["more_fragments"], r.detail["body_bytes"]) == (
        "Fragment", 4242, True, 100)


def test_first_fragment_that_ends_inside_its_header_is_not_malformed() -> None:
    whole = craft.request(2, True, 8, "a_rather_long_operation_name", b"K" * 40)
    cut_short = whole[:40]
    size = len(cut_short) - 12
    first = cut_short[:6] + bytes([cut_short[6] | 2]) + cut_short[7:8] + size.to_bytes(4, "little") + cut_short[12:]
    r = one(first)
    assert not r.malformed and "header_incomplete" in r.detail and r.request_id == 8


def test_fragment_in_giop_1_0_is_malformed() -> None:
    r = one(craft.message(0, False, 7, b"\x00\x00\x00\x01"))
    assert r.malformed and "1.0" in r.reason


# ------------------------------------------------------------------------------------------
# Framing
# ------------------------------------------------------------------------------------------
def test_cut_frames_back_to_back_messages_and_waits_for_partial_ones() -> None:
    msgs = [craft.request(2, True, i, f"op{i}", b"K", body=bytes(i)) for i in range(1, 6)]
    stream = b"".join(msgs)
    pos, got = 0, []
    while pos < len(stream):
        c = giop.cut(stream, pos)
        assert c.status == "message"
        got.append(c.length)
        pos += c.length
    assert got == [len(m) for m in msgs]
    for k in range(1, len(msgs[0])):
        assert giop.cut(msgs[0][:k], 0).status == "need_more"


def test_cut_feeding_one_byte_at_a_time_finds_every_message() -> None:
    stream = b"".join(craft.scenarios()[2].messages[i][1] for i in range(8))
    ctx, buf, found = giop.new_context(), b"", []
    for b in stream:
        buf += bytes([b])
        c = giop.cut(buf, 0, context=ctx)
        if c.status == "message":
            found.append(one(buf[:c.length], context=ctx).msg_type)
            buf = buf[c.length:]
        else:
            assert c.status == "need_more"
    assert found == ["Request", "Reply", "Fragment", "Fragment", "LocateRequest", "LocateReply",
                     "LocateRequest", "LocateReply"]


def test_looks_like_needs_the_magic_and_a_known_version() -> None:
    assert giop.looks_like(craft.simple(2, True, 5))
    assert giop.looks_like(b"GIOP\x01\x03")
    assert not giop.looks_like(b"GIOP\x02\x00")
    assert not giop.looks_like(b"GET / HTTP/1.1\r\n")
    assert not giop.looks_like(b"GIO")


def test_parse_does_not_keep_the_body() -> None:
    secret = b"CPR 010203-1234 secret payload"
    r = one(craft.request(2, True, 1, "store", b"K", body=secret))
    assert secret.decode() not in repr(r) and secret.hex() not in repr(r)
