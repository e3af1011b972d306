"""`netdiag analyze [CAPTURE...] [--profile P] [--out DIR] [--force]`: the whole pipeline and the report.

A thin layer over `netdiag.analyze.analyze`. With no CAPTURE it analyses the bundled
sample capture and says so on stderr. Ends with a few plain-words lines on stdout and the path of
report.html. An existing DIR that netdiag did not write is left alone unless --force.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from netdiag.commands import EngineOpt, JobsOpt, SchedulerOpt, run_options

CapturesArg = Annotated[list[Path] | None, typer.Argument(
    help="capture files (pcap, pcapng, .gz) or directories; none: the bundled sample capture", show_default=False)]
ProfileOpt = Annotated[Path | None, typer.Option("--profile", "-p", help="site profile (TOML); see `netdiag profile init`")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="directory for report.html, report.md, findings.json, tables/")]
ForceOpt = Annotated[bool, typer.Option("--force", help="write into --out even if netdiag did not create it")]
TlsKeylogOpt = Annotated[Path | None, typer.Option(
    "--tls-keylog", help="TLS key log (NSS SSLKEYLOGFILE format) to decrypt IIOP/HTTP inside TLS; wins over the "
                         "profile's [tls] keylog")]


def _size(paths: list[Path]) -> int:
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


CaseOpt = Annotated[Path | None, typer.Option("--case", help="also write a vendor case bundle here (see `netdiag case`)")]
KeyOpt = Annotated[Path | None, typer.Option("--key-file", help="sanitising key for --case (netdiag sanitize --make-key K)")]


def analyze_command(captures: CapturesArg = None, profile: ProfileOpt = None,
                    out: OutOpt = Path("netdiag-report"), force: ForceOpt = False,
                    case: CaseOpt = None, key_file: KeyOpt = None, tls_keylog: TlsKeylogOpt = None,
                    jobs: JobsOpt = None, engine: EngineOpt = "processes", scheduler: SchedulerOpt = None) -> None:
    """Analyse capture(s) end to end and write an HTML/Markdown report with tables and findings."""
    from netdiag.analyze import analyze, prepare_out_dir, sample_capture

    options = run_options(jobs, engine, scheduler)

    if case is not None:  # vendor case bundle (netdiag/case.py): refuse a bad key or dir before the work
        from netdiag.case import MARKER, prepare_case_dir
        from netdiag.output import preflight_dir
        from netdiag.sanitize import load_key

        load_key(key_file)
        prepare_case_dir(case, force=force)
        preflight_dir(case, marker=MARKER, kind="case", force=force)
    from netdiag.errors import UsageError
    from netdiag.progress import progress_bar
    from netdiag.report import CATEGORY_LABELS, fmt_pct, fmt_s, redact_cpr, summarize

    paths: list[Path] | None = list(captures) if captures else None
    if paths is None:
        sample = sample_capture()
        if not sample.is_file():
            raise UsageError(f"{sample}: the bundled sample capture is missing from this installation")
        print(f"netdiag: no capture given: analysing the bundled sample capture {sample}", file=sys.stderr)
    else:
        for p in paths:
            if not p.exists():
                raise UsageError(f"{p}: no such file or directory")
    from netdiag.tls_keylog import profile_with_keylog

    profile = profile_with_keylog(profile, tls_keylog)
    prepare_out_dir(out, force=force)
    total = _size(paths or [sample_capture()])
    from netdiag.pipeline import STAGE_NAMES, Stage

    with progress_bar(total, "analyze", then=(*STAGE_NAMES[Stage.LOGONS][1:], "writing the report")) as advance:
        # the segment columns only for the case bundle (it writes evidence excerpts from them)
        a = analyze(paths, profile, out=out, progress=advance, force=force, keep_segments=case is not None,
                    options=options)
    for w in a.warnings[:20]:
        print(f"netdiag: warning: {w}", file=sys.stderr)
    if len(a.warnings) > 20:
        print(f"netdiag: ... {len(a.warnings) - 20} more warnings (listed in the report)", file=sys.stderr)
    for n in a.notes:
        print(f"netdiag: note: {n}", file=sys.stderr)

    s = summarize(a)
    if s.logons == 0:
        print(f"No logons found: {(a.no_logons_reason or 'no logon start seen').removeprefix('no logons: ')}.")
        for r in s.top_findings:   # connection-level causes still count without a logon
            print(redact_cpr(f"{r['id']} {r['severity']}: {r['summary']}"))
    elif s.incomplete == s.logons:
        print(f"{s.logons} logon{'s' if s.logons != 1 else ''}, all cut by the start or end of the capture "
              "(incomplete): no duration figures.")
    else:
        cut = f" ({s.incomplete} incomplete, cut by the capture: not in these figures)" if s.incomplete else ""
        print(f"{s.logons} logon{'s' if s.logons != 1 else ''}{cut}: typical {fmt_s(s.p50_s)}, p95 {fmt_s(s.p95_s)}, "
              f"slowest {fmt_s(s.max_s)} (logon {s.slowest_logon_id}); {s.slow_logons} slower than "
              f"{fmt_s(s.slow_threshold_s)}.")
        top = [f"{CATEGORY_LABELS[c]} {fmt_pct(sh)}" for c, _, sh in s.budget_share[:3] if sh > 0]
        print("Time went to: " + ", ".join(top) + ".")
        for r in s.top_findings:
            print(redact_cpr(f"{r['id']} {r['severity']}: {r['summary']}"))
    print(f"Report: {(out / 'report.html').resolve()}")
    if case is not None:
        import shlex

        from netdiag.case import write_case

        write_case(a, case, key_file, force=force, command="netdiag " + shlex.join(sys.argv[1:]))
        print(f"Case bundle (sanitised): {case.resolve()}")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_command)
