"""The vendor case bundle: what a hospital attaches to a case with IBM or the EPJ supplier.

    CASE/README.md          for the vendor engineer: what was captured where, how the bundle was
                            made (netdiag version, command line), and per finding the evidence
                            file, the Wireshark filters and where to read each number
                            (netdiag.case_readme)
    CASE/report.html        the analysis report (netdiag.report.html), addresses mapped
    CASE/report.md          the same findings as text
    CASE/findings.json      the findings table with its display filters, addresses mapped
    CASE/profile.toml       the site profile used: the file as given, or the defaults written out
    CASE/question.md        the hospital's question (`--note FILE`), when given
    CASE/evidence/F002-<cause>.pcapng
                            per finding of warning severity or above (and the `top` first-ranked
                            others): the smallest capture that shows it, with the `logons` logons
                            where it cost the most for a pattern across logons; sanitised, with
                            per-frame comments (the finding's frames start with "[F002]")
    CASE/.netdiag-case      marker (JSON: tool, version, kind, command, capture names, time,
                            files): CASE is ours to replace; an empty or foreign one does not count

The bundle is written whole into a private staging directory beside CASE and swapped in when
complete (netdiag.output.StagedDir): never through a symlink, never half old and half new.

Sanitised by default: every address in every text file is mapped with the same Crypto-PAn key
as the capture excerpts (so "198.51.100.10" in report.html is the server the vendor sees in
Wireshark, and the filters select the same frames), CPR numbers are redacted, and the excerpts
carry no payload beyond protocol metadata. The key stays with the hospital; a later bundle made
with the same key is comparable. `sanitize=False` (CLI `--no-sanitize`) exists for a hospital's
own use and says so in README.md.

`write_case(analysis, case_dir, key_file)` takes the `netdiag.pipeline.Analysis` of the
capture(s); the excerpt comments come from its tables, segments included (the logons stage keeps
the segment columns), so the captures are read once more only for the excerpts' frame bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from netdiag.errors import UsageError
from netdiag.output import StagedDir, check_out_dir, marker_record

if TYPE_CHECKING:
    from netdiag.pipeline import Analysis

MARKER = ".netdiag-case"
CASE_FILES = ("README.md", "report.html", "report.md", "findings.json", "profile.toml", "question.md", "evidence")
DEFAULT_TOP = 0          # findings below warning with an evidence file, first-ranked first
DEFAULT_LOGONS = 3       # logons per evidence file for a finding seen in several
EVIDENCE_SEVERITIES = ("critical", "warning")
# Findings that describe the client's own pace, not a delay a vendor can act on
NOT_FOR_VENDOR = frozenset({"client_think"})


def prepare_case_dir(case_dir: Path, *, force: bool = False) -> None:
    """Refuse a link, a file, or a directory that is not empty and not netdiag's case bundle (unless force)."""
    check_out_dir(Path(case_dir), marker=MARKER, kind="case", force=force)


def evidence_findings(findings: pl.DataFrame, top: int = DEFAULT_TOP) -> pl.DataFrame:
    """The findings that get an evidence file, in the table's rank order: every finding of warning
    severity or above, plus the `top` first-ranked others (client think left out of those)."""
    if findings.height == 0:
        return findings
    must = pl.col("severity").is_in(list(EVIDENCE_SEVERITIES))
    extra = findings.filter(~must & ~pl.col("cause").is_in(list(NOT_FOR_VENDOR))).head(max(0, top))["id"]
    return findings.filter(must | pl.col("id").is_in(extra.implode()))


def _profile_text(profile: Any) -> tuple[str, str]:
    """(TOML, where it came from): the file as given, else the settings written out."""
    from netdiag.profile import Profile, profile_toml

    src = getattr(profile, "source", None)
    if src and not str(src).startswith("<") and Path(src).is_file():
        return Path(src).read_text(encoding="utf-8"), f"the file given, {Path(src).name}"
    return profile_toml(profile if profile is not None else Profile()), "no profile given: the defaults written out"


def write_case(analysis: Analysis, case_dir: str | Path, key_file: str | Path | None, *, top: int = DEFAULT_TOP,
               logons: int = DEFAULT_LOGONS, sanitize: bool = True, force: bool = False,
               note: str | Path | None = None, command: str = "netdiag case") -> list[Path]:
    """Write the case bundle for `analysis` (a netdiag.pipeline.Analysis with its segments) into `case_dir`.

    `note` is a text file with the hospital's question (copied in as question.md), `command` the
    command line that made the bundle (README.md). Returns the files written. Raises UsageError
    before writing anything when the directory is not ours, the note cannot be read or
    (sanitising) the key file is missing.
    """
    from netdiag import __version__
    from netdiag.analyze import findings_json
    from netdiag.case_readme import render_readme
    from netdiag.evidence import map_text, select_evidence, write_excerpt
    from netdiag.report.html import render_html
    from netdiag.report.markdown import render_markdown
    from netdiag.sanitize import AddressMapper, load_key

    case_dir = Path(case_dir)
    mapper = AddressMapper(load_key(key_file)) if sanitize else None
    question = read_note(note) if note is not None else None
    stage = StagedDir(case_dir, marker=MARKER, kind="case", force=force, output_names=CASE_FILES)

    def text(s: str) -> str:
        return map_text(s, mapper) if mapper is not None else s

    with stage:
        stage.write_text("report.html", text(render_html(analysis)))
        stage.write_text("report.md", text(render_markdown(analysis)))
        stage.write_text("findings.json", text(findings_json(analysis.findings)))
        profile_text, profile_note = _profile_text(getattr(analysis, "profile", None))
        stage.write_text("profile.toml", text(profile_text))
        if question is not None:
            stage.write_text("question.md", text(question))
        chosen = evidence_findings(analysis.findings, top)
        excerpts: list[dict[str, Any]] = []
        if chosen.height:
            for row in chosen.iter_rows(named=True):
                try:
                    ex = select_evidence(analysis, finding_id=row["id"], logons=logons)
                except UsageError as exc:  # a finding nothing in the capture shows (no connection)
                    excerpts.append({"row": row, "file": None, "why": str(exc)})
                    continue
                name = f"evidence/{row['id']}-{row['cause']}.pcapng"
                with stage.open(name) as fh:
                    n = write_excerpt(analysis.paths, ex, fh, mapper=mapper)
                shown = ex.subject.get("logon_ids") or []
                which = (f"logon{'s' if len(shown) != 1 else ''} {', '.join(str(x) for x in shown)} of "
                         f"{row['logons_affected']}" if shown else "connections outside any logon")
                excerpts.append({"row": row, "file": case_dir / name, "frames": n, "comments": len(ex.comments),
                                 "start": ex.start_ts_ns, "end": ex.end_ts_ns, "logons": which})
        stage.write_text("README.md", text(render_readme(
            analysis, excerpts, sanitized=sanitize, version=__version__, command=command,
            profile_note=profile_note, question=question is not None)))
        record = marker_record("case", "netdiag case", captures=[Path(p).name for p in analysis.paths],
                               sanitized=sanitize)
        return stage.commit(record)


def read_note(note: str | Path) -> str:
    """The hospital's question from a UTF-8 text file; UsageError when it cannot be read."""
    p = Path(note)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{p}: no such file (--note names a text file with the hospital's question)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: cannot read the note: {getattr(exc, 'strerror', None) or exc}") from None


__all__ = ["DEFAULT_LOGONS", "DEFAULT_TOP", "MARKER", "evidence_findings", "prepare_case_dir", "read_note",
           "write_case"]
