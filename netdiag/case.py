"""The vendor case bundle: what a hospital attaches to a case with IBM or the EPJ supplier.

    CASE/README.md              for the vendor engineer: what was captured where, what each file
                                shows, which Wireshark filter to apply
    CASE/report.md              the analysis in words (netdiag.report.markdown), addresses mapped
    CASE/findings.json          the findings table, addresses mapped
    CASE/evidence/F001-<cause>.pcapng
                                per top finding: the smallest capture that shows it, sanitised,
                                with per-frame comments (netdiag.evidence, netdiag.sanitize)
    CASE/.netdiag-case          marker (JSON: tool, version, kind, command, capture names, time,
                                files): CASE is ours to replace; an empty or foreign one does not count

The bundle is written whole into a private staging directory beside CASE and swapped in when
complete (netdiag.output.StagedDir): never through a symlink, never half old and half new.

Sanitised by default: every address in the text files is mapped with the same Crypto-PAn key as
the capture excerpts (so "198.51.100.10" in report.md is the server the vendor sees in
Wireshark), CPR numbers are redacted, and the excerpts carry no payload beyond protocol
metadata. The key stays with the hospital; a later bundle made with the same key is comparable.
`sanitize=False` (CLI `--no-sanitize`) exists for a hospital's own use and says so in README.md.

`write_case(analysis, case_dir, key_file)` takes the `netdiag.pipeline.Analysis` of the
capture(s); the excerpt comments come from its tables, segments included (the logons stage keeps
the segment columns), so the captures are read once more only for the excerpts' frame bytes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from netdiag.errors import UsageError
from netdiag.output import StagedDir, check_out_dir, marker_record

if TYPE_CHECKING:
    from netdiag.pipeline import Analysis

MARKER = ".netdiag-case"
CASE_FILES = ("README.md", "report.md", "findings.json", "evidence")
DEFAULT_TOP = 3
# Findings that describe the client's own pace, not a delay a vendor can act on
NOT_FOR_VENDOR = frozenset({"client_think"})


def prepare_case_dir(case_dir: Path, *, force: bool = False) -> None:
    """Refuse a link, a file, or a directory that is not empty and not netdiag's case bundle (unless force)."""
    check_out_dir(Path(case_dir), marker=MARKER, kind="case", force=force)


def top_findings(findings: pl.DataFrame, top: int = DEFAULT_TOP) -> pl.DataFrame:
    """The findings worth an excerpt: most seconds lost first, client think left out, capture loss kept."""
    if findings.height == 0:
        return findings
    f = findings.filter(~pl.col("cause").is_in(list(NOT_FOR_VENDOR)))
    return f.sort("seconds_lost", descending=True).head(top)


def write_case(analysis: Analysis, case_dir: str | Path, key_file: str | Path | None, *, top: int = DEFAULT_TOP,
               sanitize: bool = True, force: bool = False) -> list[Path]:
    """Write the case bundle for `analysis` (a netdiag.pipeline.Analysis with its segments) into `case_dir`.

    Returns the files written. Raises UsageError before writing anything when the directory is
    not ours or (sanitising) the key file is missing.
    """
    from netdiag.analyze import findings_json
    from netdiag.evidence import map_text, select_evidence, write_excerpt
    from netdiag.report.markdown import render_markdown
    from netdiag.sanitize import AddressMapper, load_key

    case_dir = Path(case_dir)
    mapper = AddressMapper(load_key(key_file)) if sanitize else None
    stage = StagedDir(case_dir, marker=MARKER, kind="case", force=force, output_names=CASE_FILES)

    def text(s: str) -> str:
        return map_text(s, mapper) if mapper is not None else s

    with stage:
        stage.write_text("report.md", text(render_markdown(analysis)))
        stage.write_text("findings.json", text(findings_json(analysis.findings)))
        chosen = top_findings(analysis.findings, top)
        excerpts: list[dict[str, Any]] = []
        if chosen.height:
            for row in chosen.iter_rows(named=True):
                try:
                    ex = select_evidence(analysis, finding_id=row["id"])
                except UsageError as exc:  # a finding nothing in the capture shows (no connection)
                    excerpts.append({"row": row, "file": None, "why": str(exc)})
                    continue
                name = f"evidence/{row['id']}-{row['cause']}.pcapng"
                with stage.open(name) as fh:
                    n = write_excerpt(analysis.paths, ex, fh, mapper=mapper)
                excerpts.append({"row": row, "file": case_dir / name, "frames": n, "comments": len(ex.comments),
                                 "start": ex.start_ts_ns, "end": ex.end_ts_ns})
        stage.write_text("README.md", text(_readme(analysis, excerpts, sanitize)))
        record = marker_record("case", "netdiag case", captures=[Path(p).name for p in analysis.paths],
                               sanitized=sanitize)
        return stage.commit(record)


def _utc(ts_ns: int | None) -> str:
    if ts_ns is None:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_ns / 1e9)) + f".{(ts_ns // 1_000_000) % 1000:03d} UTC"


def _readme(a: Analysis, excerpts: list[dict[str, Any]], sanitized: bool) -> str:
    cp = a.capture_point
    lines = [
        "# netdiag case bundle", "",
        "Made by netdiag from packet captures of clinicians' logons to the electronic patient record "
        "(IBM WebSphere, IIOP/GIOP, HTTP, TLS, DNS). Start with `report.md`; open the `evidence/` files "
        "in Wireshark.", "",
        "## What was captured where", "",
        f"- capture file(s): {', '.join(Path(p).name for p in a.paths)}",
        f"- time span: {_utc(a.first_ts_ns)} to {_utc(a.last_ts_ns)}",
        f"- logons found: {a.logons.height}; findings: {a.findings.height}",
    ]
    if cp is not None:
        lines.append(f"- capture point: {cp.where} ({cp.how})")
    lines += ["", "## Files", "",
              "| file | what it shows |", "|---|---|",
              "| `report.md` | the analysis in words: how slow the logons were, where the time went, each finding "
              "with the Wireshark filter that shows it (frame numbers refer to the original capture) |",
              "| `findings.json` | the findings table (netdiag schema `findings`): cause, seconds lost, affected "
              "logons, evidence frame numbers in the original capture |"]
    for e in excerpts:
        r = e["row"]
        if e["file"] is None:
            lines.append(f"| (no excerpt for {r['id']}) | {r['summary']} — {e['why']} |")
            continue
        lines.append(f"| `evidence/{e['file'].name}` | {r['id']} ({r['cause']}, {r['severity']}): {r['summary']} "
                     f"{e['frames']} frames from {_utc(e['start'])}, {e['comments']} annotated |")
    lines += ["", "## How to read the evidence files in Wireshark", "",
              "- Apply the display filter `frame.comment` to list only the annotated frames; the comment "
              "(Packet comments in the packet details, or add a `frame.comment` column) says what the "
              "frame shows, e.g. \"server think 1.50 s for authenticate\" or \"SYN retransmitted after 3.0 s\", "
              "and which frame of the original capture it was (`[frame N of the original capture]`).",
              "- The first frame's comment names the finding. Timestamps are the original ones to the "
              "nanosecond (View > Time Display Format > UTC Date and Time of Day).",
              "- Useful filters: `giop` (CORBA requests and replies; `giop.request_op`, `giop.replystatus`), "
              "`tcp.analysis.retransmission`, `tcp.analysis.zero_window`, `tcp.flags.syn == 1`, `dns`, "
              "`tls.handshake`.", ""]
    if sanitized:
        lines += ["## What was removed (sanitised)", "",
                  "- IPv4/IPv6 addresses are mapped with Crypto-PAn (prefix-preserving, keyed; the key stays "
                  "with the hospital): addresses in the text files and in the captures match each other, "
                  "and hosts in the same subnet still share a prefix. MAC addresses are keyed pseudonyms.",
                  "- Ports, timestamps, TCP sequence numbers, windows and options, and all frame and payload "
                  "lengths are exactly as captured; checksums are recomputed.",
                  "- Payload is zero-filled except protocol metadata: GIOP headers, request ids, operation "
                  "names, reply status and exception ids; HTTP request/status lines and non-sensitive "
                  "headers; TLS handshake metadata (versions, cipher suites, SNI); DNS names and answers "
                  "(mapped). CPR numbers are redacted wherever text is kept.", ""]
    else:
        lines += ["## NOT sanitised", "",
                  "This bundle was written with --no-sanitize: it holds real addresses and payload. Do not send "
                  "it outside the hospital.", ""]
    return "\n".join(lines)


__all__ = ["DEFAULT_TOP", "MARKER", "prepare_case_dir", "top_findings", "write_case"]
