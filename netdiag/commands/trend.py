"""`netdiag trend PERIOD... [--split-by hour|day] [--json] [--html F]`: logon time over days or periods.

A thin layer over `netdiag.trend.trend`. Each PERIOD is an analysis directory
written by `netdiag analyze`, a capture file (several: comma-separated) or a directory of captures;
`--split-by` cuts one of them into hours or days instead. Prints the headline and one row per
period (logons, p50, p95, verdict against the previous period, where the time went), a per-ward
table when the profile has wards, or the whole trend as JSON; writes the HTML page when asked.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from netdiag.output import ColumnsOpt, WideOpt

PeriodsArg = Annotated[list[str], typer.Argument(
    help="periods in order: analysis directories from `netdiag analyze`, capture files (comma-separated for "
         "several in one period) or directories of captures", show_default=False)]
SplitOpt = Annotated[str | None, typer.Option(
    "--split-by", metavar="hour|day", help="cut one analysis (or capture set) into periods by logon start (UTC)")]
ProfileOpt = Annotated[Path | None, typer.Option("--profile", "-p", help="site profile (TOML) for periods given as "
                                                                          "captures; its client groups are the wards")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the whole trend as JSON on stdout")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="write the HTML page (p50/p95 and budget per period, "
                                                             "wards, the comparisons)")]
LabelOpt = Annotated[list[str] | None, typer.Option("--label", help="name of each period, in order (repeatable; "
                                                                     "default: the file or directory name)")]
AllowOpt = Annotated[bool, typer.Option("--allow-different-profiles",
                                        help="compare periods even when they were analysed with different profiles")]

DEFAULT = ["period", "logons", "p50_s", "p95_s", "vs_previous", "time_went_to"]


def trend_command(periods: PeriodsArg, split_by: SplitOpt = None, profile: ProfileOpt = None,
                  as_json: JsonOpt = False, html: HtmlOpt = None, label: LabelOpt = None,
                  allow_different_profiles: AllowOpt = False, columns: ColumnsOpt = None,
                  wide: WideOpt = False) -> None:
    """Logon time per day or period (p50, p95, wait budget, per ward) and what changed between periods."""
    from netdiag.errors import UsageError
    from netdiag.output import parse_columns, preflight_file, print_table, write_file
    from netdiag.report.trend import render_html
    from netdiag.trend import NO_WARD, trend

    chosen = parse_columns(columns)
    inputs = [[p for p in arg.split(",") if p] for arg in periods]
    for group in inputs:
        for p in group:
            if not Path(p).exists():
                raise UsageError(f"{p}: no such file or directory")
    if split_by is not None and len(inputs) > 1:
        inputs = [[p for g in inputs for p in g]]       # one capture set, cut into periods
    if html is not None:
        preflight_file(html)            # unwritable: a usage error before the work
    args = [g[0] if len(g) == 1 else g for g in inputs]
    t = trend(args if split_by is None else args[:1], profile, split_by=split_by, labels=label,
              allow_different_profiles=allow_different_profiles)
    if html is not None:        # staged beside the target and renamed in (never through a link)
        write_file(html, lambda fh: fh.write(render_html(t).encode("utf-8")))
    if as_json:
        sys.stdout.write(t.to_json())
    else:
        from rich.console import Console

        con = Console()
        for line in t.headline():      # prose: wrapped at words on a terminal, one line each when piped
            con.print(line, markup=False, highlight=False, soft_wrap=not con.is_terminal)
        print_table(t.table(), columns=DEFAULT, chosen=chosen, wide=wide,
                    title="logon time per period (seconds; verdict against the previous period)")
        wards = t.ward_table()
        if wards.height and set(wards["ward"].to_list()) != {NO_WARD}:
            print_table(wards, title="per ward (the profile's client groups)", wide=wide)
    if html is not None:
        print(f"netdiag: HTML page: {html.resolve()}", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.command("trend")(trend_command)
