"""Terminal tables fit the terminal.

At 80, 100 and 160 columns no line is longer than the terminal, every `ip:port` endpoint that is
shown is whole on one line (never cut, never wrapped), every row is one line; piped output (not a
terminal) has every column and nothing cut. The expected endpoints come from the capture itself
as tshark reads it (`tcp.stream` conversations) where tshark is installed, else from the JSON rows.

The CLI runs under a real pseudo-terminal (`script -q -c`, COLUMNS=N) for the commands people
type most; every command and width is also rendered in-process through the same function the
commands call (`netdiag.output.print_table` with a rich Console of that width), so the test stays
fast on the sample and a lab capture.
"""

from __future__ import annotations

import functools
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from netdiag.analyze import analyze
from netdiag.capture import read_capture
from netdiag.capture.addresses import format_ip
from netdiag.commands import connections as conn_cmd
from netdiag.commands import logons as logon_cmd
from netdiag.commands import packets as packet_cmd
from netdiag.commands import transactions as txn_cmd
from netdiag.output import print_table

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "captures" / "sample" / "epj-logon.pcap"
LAB = ROOT / "captures" / "lab" / "loss_s2c.pcap"
WIDTHS = (80, 100, 160)
ENDPOINT_RE = re.compile(r"\[[0-9A-Fa-f:.]+\]:\d*|\d{1,3}(?:\.\d{1,3}){3}:\d*")
ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@functools.cache
def _views(cap: Path) -> dict[str, tuple[pl.DataFrame, list[str]]]:
    """What each table command puts in its terminal table, and its default columns."""
    a = analyze([cap])
    packets = read_capture([str(cap)]).packets.with_columns(
        pl.when(pl.col("ip_version") > 0).then(format_ip("src_ip_hi", "src_ip_lo")).alias("src_ip"),
        pl.when(pl.col("ip_version") > 0).then(format_ip("dst_ip_hi", "dst_ip_lo")).alias("dst_ip"))
    return {"connections": (conn_cmd.pretty(a.connections), conn_cmd.DEFAULT),
            "transactions": (txn_cmd.pretty(a.transactions), txn_cmd.DEFAULT),
            "logons": (logon_cmd.pretty_logons(a.logons), logon_cmd.LOGON_COLUMNS),
            "findings": (a.findings, logon_cmd.FINDING_COLUMNS),
            "packets": (packet_cmd.pretty(packets), packet_cmd.DEFAULT)}


def _endpoints(view: pl.DataFrame) -> set[str]:
    cols = [c for c in ("client", "server", "src", "dst") if c in view.columns]
    return {v for c in cols for v in view[c].drop_nulls().to_list() if ":" in v}


def _text_endpoints(view: pl.DataFrame) -> set[str]:
    """Endpoints named inside free text (a finding's action names its server:port): whole too."""
    cols = [c for c, t in view.schema.items() if t == pl.String and c not in ("client", "server", "src", "dst")]
    return {m.group(0) for c in cols for v in view[c].drop_nulls().to_list() for m in ENDPOINT_RE.finditer(v)}


def _render(view: pl.DataFrame, default: list[str], width: int, *, terminal: bool = True) -> str:
    buf = io.StringIO()
    con = Console(file=buf, width=width, force_terminal=terminal, color_system=None, legacy_windows=False)
    print_table(view, columns=default, title="t", console=con)
    return ANSI_RE.sub("", buf.getvalue())


def _check_fits(out: str, width: int, endpoints: set[str]) -> None:
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width, max(lines, key=len)
    shown = [m.group(0) for line in lines for m in ENDPOINT_RE.finditer(line)]
    assert all(s in endpoints for s in shown), [s for s in shown if s not in endpoints][:5]
    # a row is one line: body lines hold as many cells as the header
    header = next(line for line in lines if line.startswith("┃"))
    rows = [line for line in lines if line.startswith("│")]
    assert rows and all(line.count("│") == header.count("┃") for line in rows)


@pytest.fixture(scope="module", params=[SAMPLE, LAB], ids=["sample", "lab-loss_s2c"])
def views(request):
    if not request.param.exists():
        pytest.skip(f"{request.param} not present")
    return request.param, _views(request.param)


def test_every_table_fits_80_100_160_columns_with_whole_endpoints(views) -> None:
    cap, vs = views
    for name, (view, default) in vs.items():
        eps = _endpoints(view)
        for width in WIDTHS:
            out = _render(view, default, width)
            _check_fits(out, width, eps)
            if eps:   # the endpoint column is among the first defaults: shown at every width
                assert any(e in out for e in eps), (name, width)
            header = next(ln for ln in out.splitlines() if ln.startswith("┃"))
            assert header.strip("┃").split("┃")[0].strip() == default[0], (name, width)


def test_narrow_terminal_says_which_columns_it_left_out(views) -> None:
    cap, vs = views
    view, default = vs["connections"]
    out80 = _render(view, default, 80)
    out160 = _render(view, default, 160)
    assert "left out to fit 80 characters" in out80 and "--wide" in out80
    header80 = [h.strip() for h in next(ln for ln in out80.splitlines() if ln.startswith("┃")).strip("┃").split("┃")]
    header160 = [h.strip() for h in next(ln for ln in out160.splitlines() if ln.startswith("┃")).strip("┃").split("┃")]
    assert header80 == default[:len(header80)] and len(header80) < len(header160) <= len(default)


def test_piped_output_has_every_column_whole(views) -> None:
    cap, vs = views
    for name, (view, default) in vs.items():
        out = _render(view, default, 80, terminal=False)
        header = next(ln for ln in out.splitlines() if ln.startswith("┃"))
        assert [h.strip() for h in header.strip("┃").split("┃")] == view.columns, name
        assert "…" not in out and "left out" not in out
        shown = {m.group(0) for m in ENDPOINT_RE.finditer(out)}
        assert shown == _endpoints(view) | _text_endpoints(view), name
        body = [ln for ln in out.splitlines() if ln.startswith("│")]
        assert len(body) == view.height, name


def _netdiag(*args: str, width: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "netdiag.cli", *args]
    if width is None:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    env["COLUMNS"] = str(width)
    line = " ".join(map(str, cmd)) + " 2>/dev/null"
    return subprocess.run(["script", "-q", "-e", "-c", line, "/dev/null"], capture_output=True, text=True,
                          timeout=120, env=env)


def _tshark_endpoints(cap: Path) -> set[str]:
    out = subprocess.run(["tshark", "-r", str(cap), "-q", "-z", "conv,tcp"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    eps: set[str] = set()
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+<->\s+(\S+)", line)
        if m:
            eps.update(m.groups())
    return eps


@pytest.mark.skipif(shutil.which("script") is None, reason="script(1) not installed (util-linux)")
@pytest.mark.parametrize("cap,command,width", [
    (SAMPLE, "connections", 80), (SAMPLE, "connections", 100), (SAMPLE, "connections", 160), (SAMPLE, "packets", 80),
    (SAMPLE, "findings", 80), (LAB, "transactions", 80), (LAB, "logons", 100), (LAB, "connections", 80)],
    ids=lambda v: v.stem if isinstance(v, Path) else str(v))
def test_cli_under_a_pseudo_terminal_honours_columns(cap: Path, command: str, width: int) -> None:
    if not cap.exists():
        pytest.skip(f"{cap} not present")
    vs = _views(cap)
    r = _netdiag(command, str(cap), width=width)
    assert r.returncode == 0, r.stdout
    out = ANSI_RE.sub("", r.stdout).replace("\r", "")
    view, default = vs[command]
    eps = _endpoints(view)
    _check_fits(out, width, eps)
    if command == "connections":        # every connection's endpoints on screen, whole
        assert {m.group(0) for m in ENDPOINT_RE.finditer(out)} == eps
        if shutil.which("tshark"):       # ... and the TCP ones are tshark's conversation endpoints
            tcp = view.filter(pl.col("proto") == "tcp")
            assert set(tcp["client"]) | set(tcp["server"]) <= _tshark_endpoints(cap)


def test_cli_piped_keeps_every_column_and_columns_option_chooses() -> None:
    r = _netdiag("logons", str(SAMPLE))
    assert r.returncode == 0, r.stderr
    header = next(ln for ln in r.stdout.splitlines() if ln.startswith("┃"))
    names = [h.strip() for h in header.strip("┃").split("┃")]
    assert names[:2] == ["logon_id", "start"] and "wireshark_filter" in names and "unexplained_s" in names
    assert "…" not in r.stdout
    r = _netdiag("logons", str(SAMPLE), "--columns", "logon_id,duration_s,server_s")
    header = next(ln for ln in r.stdout.splitlines() if ln.startswith("┃"))
    assert [h.strip() for h in header.strip("┃").split("┃")] == ["logon_id", "duration_s", "server_s"]
    r = _netdiag("logons", str(SAMPLE), "--columns", "logon_id,nope")
    assert r.returncode == 2 and "no column 'nope'" in r.stderr and "Traceback" not in r.stderr


def test_free_text_is_cut_before_an_address_never_inside_it() -> None:
    # the lab's LOCATION_FORWARD finding names the forward target (10.77.1.11:9100) in its text
    cap = ROOT / "captures" / "lab" / "location_forward.pcap"
    if not cap.exists():
        pytest.skip(f"{cap} not present")
    findings = analyze([cap]).findings
    text = " ".join(findings["summary"].to_list() + findings["detail"].to_list())
    dotted = re.compile(r"\d{1,3}\.\d{1,3}\.\d[\d.:]*")        # anything that starts like an address
    whole = {t.rstrip(".:") for t in dotted.findall(text)}
    assert "10.77.1.11:9100" in whole                  # the address the lab's forward pointed to
    cut_somewhere = False
    for width in range(40, 200, 7):
        buf = io.StringIO()
        con = Console(file=buf, width=width, force_terminal=True, color_system=None)
        print_table(findings, chosen=["id", "summary", "detail"], console=con)
        out = buf.getvalue()
        assert max(len(line) for line in out.splitlines()) <= width
        shown = {t.rstrip(".:") for t in dotted.findall(out)}
        assert shown <= whole, (width, shown - whole)  # no partial "10.77.1.11:91" or "10.77.1.1"
        cut_somewhere |= "…" in out and "10.77.1.11:9100" not in out
    assert cut_somewhere
