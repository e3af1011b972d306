"""netdiag evidence: the excerpt holds the right frames, their original times, and readable comments.

Ground truth: the lab captures made with real peers (captures/lab: a dropped SYN, a 2 s
authenticate) and tshark reading both the original capture and the excerpt: frame times to the
nanosecond, the frames a logon's Wireshark filter selects, tshark's own tcp.analysis.rto and
GIOP request/reply times for the numbers in the comments.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "captures/lab"
DROPPED_SYN = LAB / "dropped_syn.pcap"
SLOW_AUTH = LAB / "slow_auth.pcap"
SAMPLE = ROOT / "captures/sample/epj-logon.pcap"
TSHARK = shutil.which("tshark")

pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
ORIGINAL = re.compile(r"^(?:\[F\d{3}\] )?\[frame (\d+) of the original capture\] (.*)$")


def _netdiag(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netdiag.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def _tshark(path: Path, *fields: str, display: str | None = None) -> list[list[str]]:
    cmd = [TSHARK, "-r", str(path), "-T", "fields", "-E", "separator=\t"]
    if display:
        cmd += ["-Y", display]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


def _comments(path: Path) -> dict[int, str]:
    """Original frame number -> comment, as tshark reads them (tshark 4.0: frame.comment)."""
    out = {}
    for _num, comment in _tshark(path, "frame.number", "frame.comment", display="frame.comment"):
        m = ORIGINAL.match(comment)
        assert m, comment
        out[int(m.group(1))] = m.group(2)
    return out


@pytest.fixture(scope="module")
def syn_excerpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ev") / "syn.pcapng"
    r = _netdiag("evidence", DROPPED_SYN, "--finding", "F001", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def test_syn_retransmission_comment_matches_tsharks_rto(syn_excerpt: Path) -> None:
    comments = _comments(syn_excerpt)
    rows = _tshark(DROPPED_SYN, "frame.number", "tcp.analysis.rto",
                   display="tcp.analysis.retransmission && tcp.flags.syn == 1 && tcp.flags.ack == 0")
    assert len(rows) == 1, rows
    frame, rto = int(rows[0][0]), float(rows[0][1])
    m = re.fullmatch(r"SYN retransmitted after (\d+(?:\.\d+)?) (s|ms): connect delayed", comments[frame])
    assert m, comments[frame]
    said = float(m.group(1)) * (1.0 if m.group(2) == "s" else 1e-3)
    assert abs(said - rto) <= 0.005 * rto, (said, rto)    # three significant digits of tshark's RTO
    # the header comment on the first frame names the finding
    first = _tshark(syn_excerpt, "frame.comment", display="frame.number == 1")[0][0]
    assert "finding F001 (syn_retransmission" in first


def test_slow_authenticate_comment_matches_tsharks_request_reply_gap(tmp_path: Path) -> None:
    out = tmp_path / "auth.pcapng"
    r = _netdiag("evidence", SLOW_AUTH, "--finding", "F001", "--out", out)
    assert r.returncode == 0, r.stderr
    comments = _comments(out)
    req = _tshark(SLOW_AUTH, "frame.number", "frame.time_epoch", "giop.request_id",
                  display='giop.request_op == "authenticate"')
    assert len(req) == 1
    rid = req[0][2]
    rep = _tshark(SLOW_AUTH, "frame.number", "frame.time_epoch",
                  display=f"giop.type == 1 && giop.request_id == {rid} && tcp.stream == "
                          f"{_tshark(SLOW_AUTH, 'tcp.stream', display='frame.number == ' + req[0][0])[0][0]}")
    assert len(rep) == 1
    gap = float(rep[0][1]) - float(req[0][1])
    note = comments[int(rep[0][0])]
    m = re.fullmatch(rf"server think (\d+\.\d\d) s for authenticate \(request frame {req[0][0]}\)", note)
    assert m, note
    assert abs(float(m.group(1)) - gap) < 0.005  # think = gap less the capture point's ~0 RTT
    assert float(m.group(1)) >= 1.9  # the lab server was configured to think 2 s


def test_logon_excerpt_holds_exactly_the_frames_of_the_logons_filter_with_original_times(tmp_path: Path) -> None:
    logons = _netdiag("logons", SAMPLE, "--json")
    assert logons.returncode == 0, logons.stderr
    import json

    row = next(r for r in json.loads(logons.stdout) if r["logon_id"] == 2)
    out = tmp_path / "logon2.pcapng"
    r = _netdiag("evidence", SAMPLE, "--logon", 2, "--out", out)
    assert r.returncode == 0, r.stderr
    expected = _tshark(SAMPLE, "frame.time_epoch", "frame.len", "frame.cap_len", display=row["wireshark_filter"])
    got = _tshark(out, "frame.time_epoch", "frame.len", "frame.cap_len")
    assert len(got) == len(expected) > 100
    assert got == expected  # same frames, same order, times equal to the nanosecond
    # the 1.5 s authenticate of logon 2 is annotated on its reply
    notes = _comments(out)
    assert any(re.fullmatch(r"server think 1\.\d\d s for authenticate \(request frame \d+\)", n) for n in notes.values())
    # every commented frame's time equals the original frame's time
    times = {int(f): t for f, t in _tshark(SAMPLE, "frame.number", "frame.time_epoch")}
    for num, t in _tshark(out, "frame.comment", "frame.time_epoch", display="frame.comment"):
        m = ORIGINAL.match(num)
        assert m and times[int(m.group(1))] == t


def test_sanitized_excerpt_maps_addresses_in_bytes_and_comments(tmp_path: Path, syn_excerpt: Path) -> None:
    key = tmp_path / "k"
    key.write_text("ab" * 32)
    out = tmp_path / "syn.pcapng"
    r = _netdiag("evidence", DROPPED_SYN, "--finding", "F001", "--out", out, "--sanitize", "--key-file", key)
    assert r.returncode == 0, r.stderr
    raw = out.read_bytes()
    originals = {a for row in _tshark(DROPPED_SYN, "ip.src", "ip.dst") for a in row if a}
    assert originals
    for a in originals:
        assert a.encode() not in raw
        assert a not in r.stderr
    mapped = {a for row in _tshark(out, "ip.src", "ip.dst") for a in row if a}
    assert mapped and mapped.isdisjoint(originals)
    assert all(ipaddress.ip_address(a) for a in mapped)
    notes = _comments(out)
    assert any(n.startswith("SYN retransmitted after") for n in notes.values())
    # the same frames as the plain excerpt: times, lengths, ports and sequence numbers unchanged
    f = ("frame.time_epoch", "frame.len", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.len")
    assert _tshark(out, *f) == _tshark(syn_excerpt, *f)


def test_unknown_finding_or_logon_lists_the_valid_ids(tmp_path: Path) -> None:
    r = _netdiag("evidence", SAMPLE, "--finding", "F999", "--out", tmp_path / "x.pcapng")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no finding 'F999'" in r.stderr and "F001" in r.stderr
    r = _netdiag("evidence", SAMPLE, "--logon", 42, "--out", tmp_path / "x.pcapng")
    assert r.returncode == 2 and "no logon 42" in r.stderr and "1, 2, 3" in r.stderr
    r = _netdiag("evidence", SAMPLE, "--out", tmp_path / "x.pcapng")
    assert r.returncode == 2 and "exactly one of --logon" in r.stderr
    assert not (tmp_path / "x.pcapng").exists()


def test_existing_output_file_is_not_overwritten_without_force(tmp_path: Path, syn_excerpt: Path) -> None:
    out = tmp_path / "mine.pcapng"
    out.write_bytes(b"keep me")
    r = _netdiag("evidence", DROPPED_SYN, "--finding", "F001", "--out", out)
    assert r.returncode == 2 and "--force" in r.stderr and out.read_bytes() == b"keep me"
    r = _netdiag("evidence", DROPPED_SYN, "--finding", "F001", "--out", out, "--force")
    assert r.returncode == 0 and out.read_bytes() == syn_excerpt.read_bytes()


def test_sanitize_without_key_says_how_to_make_one(tmp_path: Path) -> None:
    r = _netdiag("evidence", DROPPED_SYN, "--finding", "F001", "--out", tmp_path / "x.pcapng", "--sanitize")
    assert r.returncode == 2 and "--make-key" in r.stderr and "Traceback" not in r.stderr


def test_pcapng_writer_keeps_ns_timestamps_lengths_link_types_and_utf8_comments(tmp_path: Path) -> None:
    """The writer alone, read back by tshark: two link types in one file, timestamps that are not
    whole microseconds, a snaplen-cut frame (original length kept) and a non-ASCII comment."""
    from netdiag.evidence import read_raw_frames
    from netdiag.pcapng_writer import OutFrame, write_pcapng

    eth = read_raw_frames([SAMPLE], [1]).datas[0]
    raw_ip = eth[14:]
    frames = [OutFrame(1, 1_795_000_000_123_456_789, eth, len(eth), "første kommentar: server think 4.20 s"),
              OutFrame(101, 1_795_000_001_000_000_001, raw_ip, len(raw_ip)),
              OutFrame(1, 1_795_000_002_999_999_999, eth[:40], len(eth), "cut at 40 bytes")]
    out = tmp_path / "w.pcapng"
    assert write_pcapng(out, frames) == 3
    rows = _tshark(out, "frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id", "frame.comment")
    assert rows == [["1795000000.123456789", str(len(eth)), str(len(eth)), "0", "første kommentar: server think 4.20 s"],
                    ["1795000001.000000001", str(len(raw_ip)), str(len(raw_ip)), "1", ""],
                    ["1795000002.999999999", str(len(eth)), "40", "0", "cut at 40 bytes"]]
    encaps = [r[0] for r in _tshark(out, "frame.encap_type")]
    assert encaps[0] == encaps[2] != encaps[1]
