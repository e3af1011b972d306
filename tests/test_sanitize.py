"""netdiag sanitize: nothing identifying survives, and the analysis does not change.

Ground truth: the input captures themselves (real peers: the sample's namespaces, curl and
python http.server, omniORB on loopback in captures/sanitize/cpr_http_giop.pcap), tshark as the
independent reader of the output (fields, checksums with validation on), and yacryptopan for the
expected Crypto-PAn mapping.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from netdiag.capture import read_capture
from netdiag.capture.addresses import format_ip
from netdiag.evidence import read_raw_frames

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "captures/sample/epj-logon.pcap"
CPR_CAPTURE = ROOT / "captures/sanitize/cpr_http_giop.pcap"
TLS = ROOT / "captures/proto/tls.pcap"
HTTP = ROOT / "captures/proto/http.pcap"
DNS = ROOT / "captures/proto/dns.pcap"
GIOP = ROOT / "captures/giop/omniorb.pcap"
KEY_HEX = "00112233445566778899aabbccddeeff" * 2
TSHARK = shutil.which("tshark")
FAKE_CPRS = ("010190-1234", "0101901234", "311299-9876", "150585-4321", "1505854321")
CPR_SHAPE = re.compile(rb"(?<![0-9])(0[1-9]|[12][0-9]|3[01])(0[1-9]|1[0-2])[0-9]{2}-?[0-9]{4}(?![0-9])")

needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")


def _netdiag(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    k = tmp_path_factory.mktemp("key") / "site.key"
    k.write_text(KEY_HEX + "\n")
    return k


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory, key_file: Path) -> dict[str, Path]:
    """Every test input sanitised once with the CLI, as a user would."""
    out = tmp_path_factory.mktemp("sanitized") / "out"
    inputs = [SAMPLE, CPR_CAPTURE, TLS, HTTP, DNS, GIOP]
    r = _netdiag("sanitize", *inputs, "--out", out, "--key-file", key_file)
    assert r.returncode == 0, r.stderr
    names = {p.name: out / (p.name.rsplit(".", 1)[0] + ".sanitized.pcapng") for p in inputs}
    for p in names.values():
        assert p.is_file()
    return names


def _tshark(path: Path, *fields: str, prefs: tuple[str, ...] = (), display: str | None = None) -> list[list[str]]:
    cmd = [TSHARK, "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"]
    for p in prefs:
        cmd += ["-o", p]
    if display:
        cmd += ["-Y", display]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def _addresses(path: Path) -> set[str]:
    pk = read_capture([str(path)]).packets.filter(pl.col("ip_version") > 0)
    df = pk.select(format_ip("src_ip_hi", "src_ip_lo").alias("a")).vstack(
        pk.select(format_ip("dst_ip_hi", "dst_ip_lo").alias("a")))
    return set(df["a"].unique().to_list())


def _macs(path: Path) -> set[bytes]:
    raw = read_raw_frames([path])
    macs = set()
    for lt, d in zip(raw.link_type.tolist(), raw.datas, strict=True):
        if lt == 1 and len(d) >= 12:
            macs.update({d[0:6], d[6:12]})
    # all-zero (loopback) and broadcast say nothing about anyone; they are kept as they are
    return macs - {b"\x00" * 6, b"\xff" * 6}


def _address_forms(addr: str) -> list[bytes]:
    ip = ipaddress.ip_address(addr)
    forms = [ip.packed, str(ip).encode()]
    if ip.version == 6:
        forms.append(ip.exploded.encode())
    return forms


@pytest.mark.parametrize("name", [SAMPLE.name, CPR_CAPTURE.name, TLS.name, HTTP.name, DNS.name, GIOP.name])
def test_no_original_address_mac_or_cpr_survives_in_the_output_bytes(sanitized: dict[str, Path], name: str) -> None:
    src = next(p for p in (SAMPLE, CPR_CAPTURE, TLS, HTTP, DNS, GIOP) if p.name == name)
    original = src.read_bytes()
    out = sanitized[name].read_bytes()
    addrs = _addresses(src)
    assert addrs, "the input must hold addresses for this test to prove anything"
    # Binary forms are searched in every TCP/UDP payload byte and every header address field;
    # searching whole frames would also hit chance matches across header fields (a checksum byte
    # 0x7f, a zero urgent pointer and a NOP option read as 127.0.0.1).
    cap = read_capture([str(sanitized[name])], dedup_window_ns=0)
    payload = cap.payload.tobytes()
    assert _addresses(sanitized[name]).isdisjoint(addrs)
    for a in addrs:
        if ipaddress.ip_address(a).is_unspecified:
            continue
        text, binary = _address_forms(a)[1:], _address_forms(a)[0]
        assert binary not in payload, f"{name}: original address {a} survives in a payload"
        for form in text:
            assert form not in out, f"{name}: original address {a} survives as {form!r}"
    for mac in _macs(src):
        assert mac not in out, f"{name}: original MAC {mac.hex(':')} survives"
        assert mac.hex(":").encode() not in out
    if name == CPR_CAPTURE.name:
        for cpr in FAKE_CPRS:
            assert cpr.encode() in original, f"{cpr} should be in the input"
    assert not [m.group() for m in CPR_SHAPE.finditer(out)], f"{name}: CPR-shaped strings survive"


def test_the_cpr_capture_really_carries_cpr_numbers_in_http_and_giop() -> None:
    """The input of the no-leak test: tshark finds the CPRs in the HTTP URL and in GIOP payload."""
    if TSHARK is None:
        pytest.skip("tshark not installed")
    uris = [r[0] for r in _tshark(CPR_CAPTURE, "http.request.uri", display="http.request")]
    assert any("0101901234" in u for u in uris)
    payload = "".join(r[0] for r in _tshark(CPR_CAPTURE, "tcp.payload", display="giop"))
    assert bytes.fromhex("".join(payload.split(":")))  # hex, possibly colon-separated
    assert b"010190-1234" in bytes.fromhex(payload.replace(":", ""))


@needs_tshark
@pytest.mark.parametrize("name", [SAMPLE.name, CPR_CAPTURE.name, TLS.name, HTTP.name, DNS.name, GIOP.name])
def test_tshark_reports_no_bad_checksum_with_validation_on(sanitized: dict[str, Path], name: str) -> None:
    prefs = ("tcp.check_checksum:TRUE", "ip.check_checksum:TRUE", "udp.check_checksum:TRUE")
    rows = _tshark(sanitized[name], "frame.number", "_ws.expert.message", prefs=prefs)
    bad = [r for r in rows if len(r) > 1 and ("checksum" in r[1].lower() or "bad" in r[1].lower())]
    assert not bad, bad[:5]
    statuses = _tshark(sanitized[name], "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status",
                       "icmpv6.checksum.status", prefs=prefs)
    # Wireshark's checksum status: 0 bad, 1 good, 2 unverified, 3 not present
    assert all("0" not in ",".join(r).split(",") for r in statuses), "checksum status 0 = bad"
    good = sum(r[1] == "1" for r in statuses if len(r) > 1)
    assert good > 0  # tshark did verify TCP checksums, and found them good


@needs_tshark
@pytest.mark.parametrize("name", [SAMPLE.name, TLS.name, HTTP.name, GIOP.name])
def test_timestamps_lengths_ports_and_sequence_numbers_are_unchanged(sanitized: dict[str, Path], name: str) -> None:
    src = next(p for p in (SAMPLE, TLS, HTTP, GIOP) if p.name == name)
    fields = ("frame.time_epoch", "frame.len", "frame.cap_len", "tcp.srcport", "tcp.dstport", "udp.srcport",
              "tcp.seq_raw", "tcp.ack_raw", "tcp.len", "tcp.window_size_value", "tcp.options")
    before = _tshark(src, *fields)
    after = _tshark(sanitized[name], *fields)
    assert len(before) == len(after) > 0
    assert before == after


@needs_tshark
def test_giop_and_http_metadata_survive_as_tshark_reads_them(sanitized: dict[str, Path]) -> None:
    for src in (SAMPLE, GIOP):
        f = ("frame.number", "giop.request_op", "giop.request_id", "giop.replystatus", "giop.type")
        assert _tshark(src, *f, display="giop") == _tshark(sanitized[src.name], *f, display="giop")
    f = ("frame.number", "http.request.method", "http.request.uri", "http.response.code", "http.user_agent",
         "http.content_length_header")
    assert _tshark(HTTP, *f, display="http") == _tshark(sanitized[HTTP.name], *f, display="http")
    # the query values in the CPR capture's URL are masked, the rest of the request line kept
    uris = [r[0] for r in _tshark(sanitized[CPR_CAPTURE.name], "http.request.uri", display="http.request")]
    assert "/index.html?cpr=xxxxxxxxxx" in uris and "/submit" in uris  # query values masked
    cookies = [r[0] for r in _tshark(sanitized[CPR_CAPTURE.name], "http.cookie", display="http.cookie")]
    assert cookies and all(set(c) <= {"x"} for c in cookies)


@needs_tshark
def test_tls_handshake_metadata_survives_as_tshark_reads_it(sanitized: dict[str, Path]) -> None:
    f = ("frame.number", "tls.record.content_type", "tls.handshake.type", "tls.handshake.version",
         "tls.handshake.ciphersuite", "tls.handshake.extensions_server_name", "tls.alert_message.desc",
         "tls.handshake.extensions.supported_version")
    assert _tshark(TLS, *f, display="tls") == _tshark(sanitized[TLS.name], *f, display="tls")
    randoms = [r[0] for r in _tshark(sanitized[TLS.name], "tls.handshake.random", display="tls.handshake.type == 1")]
    assert randoms and all(set(x.replace(":", "")) == {"0"} for x in randoms)


def test_addresses_map_with_crypto_pan_of_the_key_and_keep_prefixes(sanitized: dict[str, Path]) -> None:
    from yacryptopan import CryptoPAn

    cp = CryptoPAn(bytes.fromhex(KEY_HEX))
    before = _addresses(SAMPLE)
    after = _addresses(sanitized[SAMPLE.name])
    assert after == {cp.anonymize(a) for a in before}
    # prefix preservation: the sample's client, server and DNS share a /24 and still do
    mapped = [ipaddress.ip_address(cp.anonymize(a)) for a in ("198.51.100.20", "198.51.100.10", "198.51.100.53")]
    assert len({int(m) >> 8 for m in mapped}) == 1
    # the DNS answers map the same way as the headers (the analysis ties names to connections)
    answers = {r[0] for r in _tshark(sanitized[SAMPLE.name], "dns.a", display="dns.a")} if TSHARK else set()
    if TSHARK:
        assert answers == {cp.anonymize("198.51.100.10")}


def test_same_key_gives_the_same_mapping_across_files_and_runs(tmp_path: Path, key_file: Path,
                                                               sanitized: dict[str, Path]) -> None:
    copy = tmp_path / "later-capture.pcap"
    shutil.copy(SAMPLE, copy)
    r = _netdiag("sanitize", copy, "--out", tmp_path / "again", "--key-file", key_file)
    assert r.returncode == 0, r.stderr
    again = (tmp_path / "again" / "later-capture.sanitized.pcapng").read_bytes()
    assert again == sanitized[SAMPLE.name].read_bytes()
    other = tmp_path / "other.key"
    other.write_text("ff" * 32)
    r = _netdiag("sanitize", SAMPLE, "--out", tmp_path / "other", "--key-file", other)
    assert r.returncode == 0, r.stderr
    assert _addresses(tmp_path / "other" / "epj-logon.sanitized.pcapng").isdisjoint(
        _addresses(sanitized[SAMPLE.name]))


TXN_COMPARED = ["conn_id", "client_port", "server_port", "protocol", "operation", "request_id", "status",
                "req_first_ts_ns", "req_last_ts_ns", "rsp_first_ts_ns", "rsp_last_ts_ns", "request_bytes",
                "response_bytes", "server_think_s", "retransmission_stall_s", "exception_id", "confidence",
                "first_frame", "last_frame", "forward_port", "user_agent", "tls_version"]


@pytest.mark.parametrize("name", [TLS.name, HTTP.name, GIOP.name, DNS.name])
def test_transactions_on_the_sanitised_capture_equal_the_original_addresses_aside(
        sanitized: dict[str, Path], name: str) -> None:
    from netdiag.transactions import analyze_streams

    src = next(p for p in (TLS, HTTP, GIOP, DNS) if p.name == name)
    o = analyze_streams([str(src)]).transactions
    s = analyze_streams([str(sanitized[name])]).transactions
    assert o.height > 0
    if name == DNS.name:  # reverse-lookup names are addresses: their labels are masked
        rev = pl.col("operation").str.ends_with(".in-addr.arpa") | pl.col("operation").str.ends_with(".ip6.arpa")
        assert s.filter(rev)["operation"].str.contains(r"^[x.]+\.(in-addr|ip6)\.arpa$").all()
        o, s = (t.with_columns(pl.when(rev).then(pl.lit("<reverse>")).otherwise(pl.col("operation")).alias("operation"))
                for t in (o, s))
    assert o.select(TXN_COMPARED).equals(s.select(TXN_COMPARED))


def test_logons_and_findings_on_the_sanitised_sample_equal_the_original(sanitized: dict[str, Path]) -> None:
    from yacryptopan import CryptoPAn

    from netdiag.logons import analyze_logons

    o = analyze_logons([str(SAMPLE)])
    s = analyze_logons([str(sanitized[SAMPLE.name])])
    ot, st = o.transactions, s.transactions
    assert ot.select(TXN_COMPARED).equals(st.select(TXN_COMPARED))
    # IOR referrals (naming resolve, forwards) name the mapped server: grouping can follow them
    cp = CryptoPAn(bytes.fromhex(KEY_HEX))
    assert set(st["forward_host"].drop_nulls()) == {cp.anonymize(h) for h in ot["forward_host"].drop_nulls()}
    cols = [c for c in o.logons.columns if c not in ("client_ip", "server_ip", "wireshark_filter")]
    assert o.logons.height == 3
    assert o.logons.select(cols).equals(s.logons.select(cols))
    assert s.logons["client_ip"].to_list() == [cp.anonymize(a) for a in o.logons["client_ip"].to_list()]
    # a finding's next step names its server:port: the mapped one
    from netdiag.evidence import map_text
    from netdiag.sanitize import AddressMapper

    mapper = AddressMapper(bytes.fromhex(KEY_HEX))
    # ... and so do its display filters of the connections (the same frames in the sanitised file)
    mapped = o.findings.with_columns(pl.Series(c, [map_text(t, mapper) for t in o.findings[c]], dtype=pl.String)
                                     for c in ("action", "conversation_filter", "tcp_filter"))
    assert o.findings.height > 0 and mapped.equals(s.findings)


def test_missing_key_file_says_how_to_create_one(tmp_path: Path) -> None:
    r = _netdiag("sanitize", SAMPLE, "--out", tmp_path / "o", "--key-file", tmp_path / "nokey")
    assert r.returncode == 2
    assert "key file not found" in r.stderr and "--make-key" in r.stderr and "Traceback" not in r.stderr
    r = _netdiag("sanitize", SAMPLE, "--out", tmp_path / "o")
    assert r.returncode == 2 and "--make-key" in r.stderr
    assert not (tmp_path / "o").exists()


def test_make_key_writes_a_private_key_and_never_overwrites_one(tmp_path: Path) -> None:
    k = tmp_path / "k"
    r = _netdiag("sanitize", "--make-key", k)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"[0-9a-f]{64}\n", k.read_text())
    assert k.stat().st_mode & 0o077 == 0
    first = k.read_text()
    r = _netdiag("sanitize", "--make-key", k)
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr and k.read_text() == first


def test_output_directory_not_ours_is_not_written_without_force(tmp_path: Path, key_file: Path) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's")
    r = _netdiag("sanitize", CPR_CAPTURE, "--out", out, "--key-file", key_file)
    assert r.returncode == 2 and "--force" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    r = _netdiag("sanitize", CPR_CAPTURE, "--out", out, "--key-file", key_file, "--force")
    assert r.returncode == 0, r.stderr
    # once ours, a second run may overwrite without --force
    r = _netdiag("sanitize", CPR_CAPTURE, "--out", out, "--key-file", key_file)
    assert r.returncode == 0, r.stderr


def test_a_file_that_is_not_a_capture_is_named_in_one_line(tmp_path: Path, key_file: Path) -> None:
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"this is not a capture at all, just text\n" * 3)
    r = _netdiag("sanitize", bad, "--out", tmp_path / "o", "--key-file", key_file)
    assert r.returncode != 0 and str(bad) in r.stderr and "Traceback" not in r.stderr


LINK_LAYER_CAPTURES = ["sll.pcap", "sll2.pcap", "raw101.pcap", "null_le.pcap", "loop108.pcap", "eth_vlan_qinq.pcap",
                       "ipv6_ext.pcap", "ipv4_opts_frag.pcap", "pcapng_multi.pcapng", "snaplen68.pcap"]


@needs_tshark
@pytest.mark.parametrize("name", LINK_LAYER_CAPTURES)
def test_every_link_layer_is_mapped_and_checksummed(tmp_path: Path, key_file: Path, name: str) -> None:
    """Linux cooked v1/v2, raw IP, BSD loopback, VLAN/QinQ, IPv6 extension headers, IPv4 options
    and fragments, multi-interface pcapng, snaplen cuts: same frame count, no original address,
    no bad checksum (a snaplen-cut segment is not verifiable, by anyone)."""
    from netdiag.sanitize import AddressMapper, load_key, sanitize_file

    src = ROOT / "captures/crafted" / name
    out = tmp_path / "out.pcapng"
    sanitize_file(src, out, AddressMapper(load_key(key_file)))  # in-process: the CLI is tested above
    before = _tshark(src, "frame.time_epoch", "frame.len", "frame.cap_len", "tcp.srcport", "udp.dstport")
    assert _tshark(out, "frame.time_epoch", "frame.len", "frame.cap_len", "tcp.srcport", "udp.dstport") == before
    originals = {a for row in _tshark(src, "ip.src", "ip.dst", "ipv6.src", "ipv6.dst") for x in row for a in x.split(",") if a}
    after = {a for row in _tshark(out, "ip.src", "ip.dst", "ipv6.src", "ipv6.dst") for x in row for a in x.split(",") if a}
    assert originals and after and originals.isdisjoint(after)
    raw = out.read_bytes()
    for a in originals:
        assert str(ipaddress.ip_address(a)).encode() not in raw
    prefs = ("tcp.check_checksum:TRUE", "ip.check_checksum:TRUE", "udp.check_checksum:TRUE")
    statuses = _tshark(out, "ip.checksum.status", "tcp.checksum.status", "udp.checksum.status", prefs=prefs)
    assert all("0" not in ",".join(r).split(",") for r in statuses), statuses  # 0 = bad


def test_a_damaged_capture_is_sanitised_up_to_the_damage_with_a_warning(tmp_path: Path, key_file: Path) -> None:
    src = ROOT / "captures/crafted/bad/truncated_last_record.pcap"
    r = _netdiag("sanitize", src, "--out", tmp_path, "--key-file", key_file)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "frame 7" in r.stderr and "truncated last record" in r.stderr


def test_two_captures_with_shared_hosts_map_them_alike(tmp_path: Path, key_file: Path) -> None:
    """Before/after comparability: the lab's baseline and slow-authenticate captures (separate runs,
    same client and servers) sanitised together give each shared host one and the same address."""
    from yacryptopan import CryptoPAn

    a, b = ROOT / "captures/lab/baseline.pcap", ROOT / "captures/lab/slow_auth.pcap"
    shared = _addresses(a) & _addresses(b)
    assert len(shared) >= 2
    r = _netdiag("sanitize", a, b, "--out", tmp_path, "--key-file", key_file)
    assert r.returncode == 0, r.stderr
    sa = _addresses(tmp_path / "baseline.sanitized.pcapng")
    sb = _addresses(tmp_path / "slow_auth.sanitized.pcapng")
    cp = CryptoPAn(bytes.fromhex(KEY_HEX))
    assert {cp.anonymize(x) for x in shared} <= sa & sb


LAB_CASES = ["dropped_syn", "loss_s2c", "zero_window", "location_forward", "request_timeout_retry", "tls", "storm"]


@pytest.mark.parametrize("case", LAB_CASES)
def test_lab_logons_and_findings_survive_sanitising(tmp_path: Path, key_file: Path, case: str) -> None:
    """Real-peer lab runs (a dropped SYN, loss, a zero window, a LOCATION_FORWARD, a request
    timeout and retry on a new connection, TLS, 20 overlapping logons): logons, budgets,
    findings and their evidence frames come out the same from the sanitised file."""
    from polars.testing import assert_frame_equal

    from netdiag.logons import analyze_logons
    from netdiag.sanitize import AddressMapper, load_key, sanitize_file

    src = ROOT / "captures/lab" / f"{case}.pcap"
    out = tmp_path / "s.pcapng"
    sanitize_file(src, out, AddressMapper(load_key(key_file)))
    o, s = analyze_logons([str(src)]), analyze_logons([str(out)])
    assert o.logons.height > 0
    addr = ("client_ip", "server_ip", "wireshark_filter")
    assert_frame_equal(o.logons.drop(*addr), s.logons.drop(*addr), check_exact=False, rel_tol=1e-9)
    text = ("summary", "detail", "action", "conversation_filter", "tcp_filter")  # may name addresses
    assert_frame_equal(o.findings.drop(*text), s.findings.drop(*text), check_exact=False, rel_tol=1e-9)
    from netdiag.evidence import map_text

    mapper = AddressMapper(load_key(key_file))
    for c in ("action", "conversation_filter", "tcp_filter"):
        assert [map_text(t, mapper) for t in o.findings[c]] == s.findings[c].to_list(), c
    ot, st = o.transactions, s.transactions
    assert_frame_equal(ot.select(TXN_COMPARED), st.select(TXN_COMPARED))


def test_sanitising_mangled_frames_never_raises_and_keeps_every_length() -> None:
    """Bounded fuzz: frames of real captures with random bytes flipped, cut short or glued to
    garbage (bad IHL, lying lengths, broken GIOP/TLS/HTTP/DNS) are sanitised without an
    exception, frame for frame, with the same lengths."""
    import numpy as np

    from netdiag.sanitize import AddressMapper, sanitize_frames

    rng = np.random.default_rng(20261126)
    raw = read_raw_frames([SAMPLE, TLS, DNS, GIOP])
    mapper = AddressMapper(bytes.fromhex(KEY_HEX))
    for _ in range(6):
        datas = []
        for d in raw.datas:
            b = bytearray(d)
            k = int(rng.integers(0, 4))
            if k == 1 and len(b) > 20:
                for p in rng.integers(14, len(b), size=3):
                    b[int(p)] = int(rng.integers(0, 256))
            elif k == 2:
                b = b[:int(rng.integers(0, len(b) + 1))]
            elif k == 3:
                b += rng.integers(0, 256, size=int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
            datas.append(bytes(b))
        out = sanitize_frames(raw.link_type, datas, mapper)
        assert [len(x) for x in out] == [len(x) for x in datas]


CHUNKING_CAPTURES = [SAMPLE, CPR_CAPTURE, GIOP, HTTP, DNS, ROOT / "captures/lab/request_timeout_retry.pcap",
                     ROOT / "captures/crafted/ipv4_opts_frag.pcap", ROOT / "captures/crafted/pcapng_multi.pcapng"]


@pytest.mark.parametrize("src", CHUNKING_CAPTURES, ids=lambda p: p.name)
def test_sanitising_in_tiny_chunks_gives_byte_identical_output_to_one_chunk(tmp_path: Path, src: Path) -> None:
    """Streaming must not depend on where chunks end: messages split across chunks, IP fragments
    in different chunks, a server still sending after the client's RST (request_timeout_retry),
    a new link type appearing mid-file (pcapng_multi). One frame a chunk, three, and all at once
    give the same bytes."""
    from netdiag.sanitize import AddressMapper, sanitize_file

    mapper = AddressMapper(bytes.fromhex(KEY_HEX))
    whole = tmp_path / "whole.pcapng"
    sanitize_file(src, whole, mapper, chunk_frames=1_000_000)
    for chunk_frames in (1, 3):
        out = tmp_path / f"c{chunk_frames}.pcapng"
        sanitize_file(src, out, mapper, chunk_frames=chunk_frames)
        assert out.read_bytes() == whole.read_bytes(), chunk_frames


@pytest.mark.parametrize("src", CHUNKING_CAPTURES, ids=lambda p: p.name)
def test_streaming_sanitiser_writes_the_same_bytes_as_the_in_memory_reference(tmp_path: Path, src: Path) -> None:
    """The chunked two-pass engine (numba header kernels, incremental stream policy) and the
    first, whole-file Python implementation (which the tshark-based tests above were written
    against) produce identical files."""
    from netdiag.sanitize import AddressMapper, sanitize_file, sanitize_file_in_memory

    mapper = AddressMapper(bytes.fromhex(KEY_HEX))
    sanitize_file(src, tmp_path / "stream.pcapng", mapper, chunk_frames=64)
    sanitize_file_in_memory(src, tmp_path / "memory.pcapng", mapper)
    assert (tmp_path / "stream.pcapng").read_bytes() == (tmp_path / "memory.pcapng").read_bytes()


_RSS_CHILD = """
import resource, sys
from netdiag.sanitize import AddressMapper, sanitize_file
mapper = AddressMapper(bytes.fromhex(sys.argv[1]))
sanitize_file(sys.argv[2], sys.argv[4] + ".warm", mapper)  # imports and numba's cache loaded first
sanitize_file(sys.argv[3], sys.argv[4], mapper, chunk_frames=4096)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_peak_memory_does_not_grow_with_the_capture(tmp_path: Path) -> None:
    """Four times the packets (a synthetic GIOP/HTTP capture from bench/gen_capture.py, ~11 MB vs
    ~44 MB) must not cost the sanitiser more than a few MB of peak RSS: it streams chunks and
    spools what it keeps. (Holding the file, as the first implementation did, costs over 2x its
    size.)"""
    peaks = {}
    for packets in (30_000, 120_000):
        cap = tmp_path / f"syn{packets}.pcap"
        subprocess.run([sys.executable, str(ROOT / "bench/gen_capture.py"), "--packets", str(packets), "--out", str(cap)],
                       check=True, capture_output=True, timeout=120)
        r = subprocess.run([sys.executable, "-c", _RSS_CHILD, KEY_HEX, str(GIOP), str(cap), str(tmp_path / "o.pcapng")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        peaks[packets] = int(r.stdout.split()[-1]) * 1024
    grown = peaks[120_000] - peaks[30_000]
    file_grown = (tmp_path / "syn120000.pcap").stat().st_size - (tmp_path / "syn30000.pcap").stat().st_size
    assert file_grown > 25e6
    assert grown < 12e6, f"peak RSS grew {grown / 1e6:.1f} MB for {file_grown / 1e6:.1f} MB more capture"
