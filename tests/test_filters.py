"""Every finding's Wireshark filters select its frames, in the original capture and in its evidence file.

Oracle: tshark evaluating each filter (`tshark -r F -Y FILTER -T fields -e frame.number`). A frame
of the original is found again in the evidence file by what tshark reads in both (time to the
nanosecond, length, IP id, raw TCP sequence number, ports), never by netdiag's own numbering.

What each filter must do (netdiag/filters.py):
- conversation_filter: every evidence frame of the finding, in the original and in the excerpt;
- protocol_filter: every evidence frame tshark dissects as one of the filter's protocols;
- tcp_filter: a non-empty part of the conversation, holding each evidence frame tshark marks with
  the cause's own expert judgement (SYN retry, zero window, retransmission, unseen segment);
- evidence_filter: in the evidence file exactly the finding's frames it holds (not in the original).
GIOP on netdiag's ports is decoded as tshark is told (`-d tcp.port==P,giop`, the profile's
default GIOP ports), as a Wireshark user does with Decode As.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html import escape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = (sorted((ROOT / "captures/lab").glob("*.pcap")) + sorted((ROOT / "captures/logons").glob("*.pcap"))
            + [ROOT / "captures/sample/epj-logon.pcap"])
TSHARK = shutil.which("tshark")
SHARKD = shutil.which("sharkd")
pytestmark = pytest.mark.skipif(TSHARK is None or SHARKD is None, reason="tshark (with sharkd) not installed")

# tshark's own marks for the causes that are TCP events (independent of netdiag.filters.TCP_EVENTS)
TSHARK_MARKS = {
    "syn_retransmission": "tcp.flags.syn==1 && tcp.analysis.retransmission",
    "zero_window": "tcp.analysis.zero_window",
    "loss_recovery": "tcp.analysis.retransmission",
    "capture_loss": "tcp.analysis.ack_lost_segment",
}
KEY_FIELDS = ("frame.time_epoch", "frame.len", "ip.id", "tcp.seq_raw", "tcp.srcport", "udp.srcport")


def _giop_ports() -> list[int]:
    from netdiag.profile import DEFAULT_PORT_ROLES

    return [port for port, role in sorted(DEFAULT_PORT_ROLES.items()) if role in ("bootstrap", "orb", "lsd")]


def _tshark(path: Path, display: str, *fields: str) -> list[list[str]]:
    decode = [a for p in _giop_ports() for a in ("-d", f"tcp.port=={p},giop")]
    cmd = [TSHARK, "-n", "-r", str(path), *decode, "-Y", display, "-T", "fields", "-E", "separator=\t"]
    for f in fields or ("frame.number",):
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"tshark refused {display!r}: {r.stderr}"
    return [line.split("\t") for line in r.stdout.splitlines()]


class Shark:
    """Wireshark's dissectors and display-filter engine with the file loaded once (sharkd, shipped
    with tshark): `select(F)` is `tshark -r FILE -Y F -T fields -e frame.number`, without reading
    the file again for each of the hundreds of filters (checked against tshark once per file)."""

    def __init__(self, path: Path, config: Path) -> None:
        self.path = path
        self.proc = subprocess.Popen([SHARKD, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env={**os.environ, "XDG_CONFIG_HOME": str(config)})
        self.n = 0
        assert self._call("load", {"file": str(path)}) == {"status": "OK"}

    def _call(self, method: str, params: dict) -> object:
        self.n += 1
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", "id": self.n, "method": method, "params": params}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        assert "error" not in reply, f"{method} {params}: {reply.get('error')}"
        return reply["result"]

    def select(self, display: str) -> set[int]:
        rows = self._call("frames", {"filter": display, "column0": "frame.number:0"})
        return {int(r["num"]) for r in rows}  # type: ignore[union-attr]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Wireshark configuration that decodes netdiag's GIOP ports as GIOP (Decode As)."""
    d = tmp_path_factory.mktemp("wireshark-config")
    (d / "wireshark").mkdir()
    (d / "wireshark/decode_as_entries").write_text(
        "".join(f"decode_as_entry: tcp.port,{p},(none),GIOP\n" for p in _giop_ports()))
    return d


def _keys(path: Path) -> dict[int, tuple[str, ...]]:
    """frame number -> what identifies the frame in any copy of it (tshark)."""
    return {int(r[0]): tuple(r[1:]) for r in _tshark(path, "frame", "frame.number", *KEY_FIELDS)}


def _families(display: str) -> str:
    """The protocols a filter names, as a filter of the frames tshark dissects as one of them
    (a frame tshark itself calls malformed, e.g. a message tail after a capture gap, is not)."""
    names = [p for p in ("giop", "http", "dns", "tls") if p + "." in display or f"({p})" in display or display == p]
    return f"({' || '.join(names)}) && !_ws.malformed"


def _analysis(cap: Path):  # noqa: ANN202 - netdiag.pipeline.Analysis
    from netdiag.pipeline import run

    return run([cap])


@pytest.mark.parametrize("cap", CAPTURES, ids=lambda p: p.name)
def test_every_filter_of_every_finding_selects_its_frames(cap: Path, config: Path, tmp_path: Path) -> None:
    from netdiag.errors import UsageError
    from netdiag.evidence import select_evidence, write_excerpt

    a = _analysis(cap)
    assert a.findings.height, "every capture here has findings"
    keys = _keys(cap)
    back = {k: f for f, k in keys.items()}
    orig = Shark(cap, config)
    try:
        first = a.findings.row(0, named=True)["conversation_filter"]
        assert orig.select(first) == {int(r[0]) for r in _tshark(cap, first)}   # sharkd answers as tshark does
        assert not orig.select("frame.comment")    # the original has no comments
        for r in a.findings.iter_rows(named=True):
            what = f"{cap.name} {r['id']} {r['cause']}"
            frames = {int(f) for f in r["evidence_frames"] or []}
            assert r["evidence_filter"] == f'frame.comment contains "[{r["id"]}]"', what
            assert r["conversation_filter"], what
            conv = orig.select(r["conversation_filter"])
            assert conv and frames <= conv, (what, sorted(frames - conv))
            if frames:
                assert frames <= orig.select(r["wireshark_filter"]), what   # the frame list, original only
            if r["protocol_filter"]:
                sel = orig.select(r["protocol_filter"])
                assert sel, what
                dissected = frames & orig.select(_families(r["protocol_filter"]))
                assert dissected <= sel, (what, sorted(dissected - sel))
            if r["tcp_filter"]:
                sel = orig.select(r["tcp_filter"])
                assert sel and sel <= conv, what
                if r["cause"] in TSHARK_MARKS:
                    marked = frames & orig.select(TSHARK_MARKS[r["cause"]])
                    assert marked <= sel, (what, sorted(marked - sel))
            # the evidence file: renumbered, yet the same filters find the finding's frames
            try:
                ex = select_evidence(a, finding_id=r["id"], logons=3)
            except UsageError:       # a finding nothing in the capture shows: no excerpt to check
                continue
            out = tmp_path / f"{r['id']}.pcapng"
            write_excerpt(a.paths, ex, out)
            to_orig = {n: back[k] for n, k in _keys(out).items()}
            held = frames & set(to_orig.values())
            if r["severity"] != "info":
                assert held, what     # a warning's excerpt shows at least one of its frames
            ev = Shark(out, config)
            try:
                tagged = {to_orig[n] for n in ev.select(r["evidence_filter"])}
                assert tagged == held, (what, sorted(tagged ^ held))
                assert held <= {to_orig[n] for n in ev.select(r["conversation_filter"])}, what
                if r["protocol_filter"]:
                    dissected = {to_orig[n] for n in ev.select(_families(r["protocol_filter"]))} & held
                    assert dissected <= {to_orig[n] for n in ev.select(r["protocol_filter"])}, what
            finally:
                ev.close()
    finally:
        orig.close()


def test_the_reports_show_the_filters_next_to_each_finding(tmp_path: Path) -> None:
    from netdiag.analyze import analyze

    a = analyze([ROOT / "captures/lab/zero_window.pcap"], out=tmp_path / "r")
    md = (tmp_path / "r/report.md").read_text()
    html = (tmp_path / "r/report.html").read_text()
    assert a.findings.height
    for r in a.findings.iter_rows(named=True):
        section = md[md.index(f"### {r['id']} "):]
        section = section[:section.index("\n### ")] if "\n### " in section else section
        block = html[html.index(f'id="filters-{r["id"]}"'):]
        block = block[:block.index("</div>")]
        for col in ("conversation_filter", "protocol_filter", "tcp_filter", "evidence_filter", "wireshark_filter"):
            if r[col]:
                assert f"`{r[col]}`" in section, (r["id"], col)
                assert escape(r[col]) in block, (r["id"], col)
