"""`netdiag compare BEFORE AFTER [--profile P] [--json] [--html F] [--md F] [--fail-on-regression M]`.

A thin layer over `netdiag.compare.compare`. BEFORE and AFTER are each capture files,
directories of captures (repeat the option-less argument with commas: `a.pcap,b.pcap`), or
analysis directories written by `netdiag analyze`. Prints the headline, the comparability
warnings and a metric table (or JSON with --json); writes the HTML/Markdown report when asked.
`--fail-on-regression METRIC` (repeatable) exits 1 when that metric regressed significantly, so
the comparison can gate a rollout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from netdiag.commands import EngineOpt, JobsOpt, SchedulerOpt, run_options
from netdiag.errors import NetdiagError
from netdiag.output import ColumnsOpt, WideOpt


class RegressionGateError(NetdiagError):
    """A metric named by --fail-on-regression regressed significantly."""

    exit_code = 1

SideArg = Annotated[str, typer.Argument(
    help="capture file(s) (comma-separated), a directory of captures, or an analysis directory from `netdiag analyze`",
    show_default=False)]
ProfileOpt = Annotated[Path | None, typer.Option("--profile", "-p", help="site profile (TOML) for sides given as captures")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the whole comparison as JSON on stdout")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="write the HTML report (overlaid ECDFs, budget side by side)")]
MdOpt = Annotated[Path | None, typer.Option("--md", help="write the Markdown report")]
FailOpt = Annotated[list[str] | None, typer.Option(
    "--fail-on-regression", help="exit 1 when this metric regressed significantly (e.g. duration_s, server_s, "
    "'server_think:server_think_s[operation giop authenticate]'); repeatable")]
AllOpt = Annotated[bool, typer.Option("--all-rows", help="terminal table: also the per-server/per-group rows that did not move")]
TlsKeylogOpt = Annotated[Path | None, typer.Option(
    "--tls-keylog", help="TLS key log (NSS SSLKEYLOGFILE format) for sides given as captures")]
AllowOpt = Annotated[bool, typer.Option("--allow-different-profiles",
                                        help="compare even when the sides were analysed with different profiles")]


def _paths(arg: str) -> list[str]:
    return [p for p in arg.split(",") if p]


def compare_command(before: SideArg, after: SideArg, profile: ProfileOpt = None, as_json: JsonOpt = False,
                    html: HtmlOpt = None, md: MdOpt = None, fail_on_regression: FailOpt = None,
                    all_rows: AllOpt = False, allow_different_profiles: AllowOpt = False,
                    tls_keylog: TlsKeylogOpt = None, columns: ColumnsOpt = None, wide: WideOpt = False,
                    jobs: JobsOpt = None, engine: EngineOpt = "processes", scheduler: SchedulerOpt = None) -> None:
    """Compare logon times before and after a change: statistics, verdicts, comparability checks."""
    from netdiag.compare import compare
    from netdiag.report.compare import print_terminal, render_html, render_markdown
    from netdiag.tls_keylog import profile_with_keylog

    profile = profile_with_keylog(profile, tls_keylog)
    options = run_options(jobs, engine, scheduler)
    from netdiag.output import parse_columns, preflight_file, write_file

    for p in (html, md):
        if p is not None:
            preflight_file(p)   # unwritable: a usage error before the work
    c = compare(_paths(before), _paths(after), profile, allow_different_profiles=allow_different_profiles,
                options=options)
    gates = [c.resolve(m) for m in (fail_on_regression or [])]   # unknown metric: error before any output
    if html is not None:
        write_file(html, lambda fh: fh.write(render_html(c).encode("utf-8")))
    if md is not None:
        write_file(md, lambda fh: fh.write(render_markdown(c).encode("utf-8")))
    if as_json:
        sys.stdout.write(c.to_json())
    else:
        print_terminal(c, everything=all_rows, columns=parse_columns(columns), wide=wide)
    for p, what in ((html, "HTML"), (md, "Markdown")):
        if p is not None:
            print(f"netdiag: {what} report: {p.resolve()}", file=sys.stderr)
    failed = [g for g in gates if g["verdict"] == "regressed"]
    for g in gates:
        if g not in failed:
            print(f"netdiag: gate {g['metric_id']}: passed ({g['verdict']}: {g['reason']})", file=sys.stderr)
    if failed:   # a NetdiagError with exit code 1: main() prints one line and exits 1
        raise RegressionGateError("; ".join(f"gate {g['metric_id']}: REGRESSED ({g['reason']})" for g in failed))


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_command)
