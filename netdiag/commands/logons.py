"""`netdiag logons`, `netdiag findings` and `netdiag profile init`.

A thin layer over `netdiag.pipeline` (run to its logons stage). Output options match the other
table commands (--json, --csv, --parquet). A capture with no logons is not an error (exit 0):
one line on stderr says why (no traffic to the profile's servers, or no logon start seen); the
terminal shows no empty table, while --json/--csv/--parquet still write the (empty) table so a
pipeline gets valid output. `findings` still lists every TCP connection's own causes then (Nagle,
zero window, resends, SYN retries...). Not one packet readable: exit 2 (README "Exit codes").
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from netdiag.commands import EngineOpt, JobsOpt, SchedulerOpt, run_options
from netdiag.errors import UsageError
from netdiag.output import ColumnsOpt, WideOpt

if TYPE_CHECKING:
    import polars as pl

    from netdiag.parallel import RunOptions
    from netdiag.pipeline import Analysis

# The terminal's default columns, most needed first; the last ones are left out when the
# terminal is narrow. --wide / --columns show the rest (every column of the table).
LOGON_COLUMNS = ["logon_id", "start", "client_ip", "duration_s", "dominant_cause", "server_s", "client_s",
                 "network_rtt_s", "connect_s", "dns_s", "loss_recovery_s", "outcome", "client_group"]
VIEWS_MARKER = ".netdiag-views"
FINDING_COLUMNS = ["id", "severity", "seconds_lost", "cause", "summary", "logons_affected"]


def pretty_logons(logons: pl.DataFrame) -> pl.DataFrame:
    """The terminal view of the logons table: the start as UTC time of day next to every column."""
    import polars as pl

    return logons.select("logon_id", pl.from_epoch("start_ts_ns", time_unit="ns").dt.strftime("%H:%M:%S%.3f")
                         .alias("start"), pl.exclude("logon_id"))

CapturesArg = Annotated[list[Path], typer.Argument(help="capture files (pcap, pcapng, .gz) or directories")]
ProfileOpt = Annotated[Path | None, typer.Option("--profile", "-p", help="site profile (TOML); see `netdiag profile init`")]
JsonOpt = Annotated[bool, typer.Option("--json", help="write a JSON array of rows to stdout")]
CsvOpt = Annotated[bool, typer.Option("--csv", help="write CSV to stdout")]
ParquetOpt = Annotated[Path | None, typer.Option("--parquet", help="write the table to this Parquet file")]
TlsKeylogOpt = Annotated[Path | None, typer.Option(
    "--tls-keylog", help="TLS key log (NSS SSLKEYLOGFILE format) to decrypt IIOP/HTTP inside TLS; wins over the "
                         "profile's [tls] keylog")]


def _run(captures: list[Path], profile: Path | None, parquet: Path | None = None, views: bool = False,
         tls_keylog: Path | None = None, options: RunOptions | None = None) -> Analysis:
    from netdiag.output import preflight_dir, preflight_file
    from netdiag.parallel import run
    from netdiag.pipeline import STAGE_NAMES, Stage, input_bytes, input_paths
    from netdiag.profile import Profile, load_profile
    from netdiag.progress import progress_bar
    from netdiag.tls_keylog import profile_with_keylog

    input_paths(captures)
    if parquet is not None:   # an unwritable --parquet is a usage error before the work
        if views:
            preflight_dir(parquet, marker=VIEWS_MARKER, kind="views")
        else:
            preflight_file(parquet)
    prof = profile_with_keylog(load_profile(profile) if profile is not None else Profile(), tls_keylog)
    with progress_bar(input_bytes(captures), "logons", then=STAGE_NAMES[Stage.LOGONS][1:]) as advance:
        analysis = run(captures, prof, progress=advance, options=options)
    analysis.require_packets()
    for w in analysis.warnings:
        print(f"netdiag: warning: {w}", file=sys.stderr)
    for note in analysis.notes:
        print(f"netdiag: note: {note}", file=sys.stderr)
    if analysis.logons.height == 0:
        why = (analysis.no_logons_reason or "no logons found").removeprefix("no logons: ")
        print(f"netdiag: no logons: {why}", file=sys.stderr)
    return analysis


def register(app: typer.Typer) -> None:
    @app.command("logons")
    def logons_command(
        captures: CapturesArg,
        profile: ProfileOpt = None,
        as_json: JsonOpt = False,
        as_csv: CsvOpt = False,
        parquet: ParquetOpt = None,
        summary: Annotated[bool, typer.Option(
            "--summary", help="population views: duration percentiles overall, per time bucket, server and "
                              "client group; budget over all logons and the slowest 5%; server think per operation")
        ] = False,
        bucket_s: Annotated[float, typer.Option("--bucket", help="time bucket for --summary, seconds")] = 300.0,
        tls_keylog: TlsKeylogOpt = None,
        columns: ColumnsOpt = None,
        wide: WideOpt = False,
        jobs: JobsOpt = None,
        engine: EngineOpt = "processes",
        scheduler: SchedulerOpt = None,
    ) -> None:
        """One row per logon with its wait budget (columns sum to duration_s) and dominant cause."""
        from netdiag.output import emit, parse_columns

        chosen = parse_columns(columns)
        analysis = _run(captures, profile, parquet, views=summary, tls_keylog=tls_keylog,
                        options=run_options(jobs, engine, scheduler))
        machine = as_json or as_csv or parquet is not None
        if analysis.logons.height == 0 and not machine:
            return                      # the one line on stderr said why
        if summary:
            from netdiag.logons.population import per_time_bucket

            views = dict(analysis.population)
            if analysis.logons.height:
                views["per_time_bucket"] = per_time_bucket(analysis.logons, bucket_s)
            _emit_views(views, as_json=as_json, as_csv=as_csv, parquet=parquet, wide=wide)
            return
        emit(analysis.logons, as_json=as_json, as_csv=as_csv, parquet=parquet, view=pretty_logons(analysis.logons),
             pretty_columns=LOGON_COLUMNS, columns=chosen, wide=wide, title="logons")

    @app.command("findings")
    def findings_command(
        captures: CapturesArg,
        profile: ProfileOpt = None,
        as_json: JsonOpt = False,
        as_csv: CsvOpt = False,
        parquet: ParquetOpt = None,
        tls_keylog: TlsKeylogOpt = None,
        columns: ColumnsOpt = None,
        wide: WideOpt = False,
        jobs: JobsOpt = None,
        engine: EngineOpt = "processes",
        scheduler: SchedulerOpt = None,
    ) -> None:
        """Labelled causes of lost time (logons and every TCP connection), with evidence and a Wireshark filter."""
        from netdiag.output import emit, parse_columns

        chosen = parse_columns(columns)
        # without logons the connections' own causes are still findings: exit 0, the reason on stderr
        analysis = _run(captures, profile, parquet, tls_keylog=tls_keylog,
                        options=run_options(jobs, engine, scheduler))
        if analysis.findings.height == 0 and not (as_json or as_csv or parquet):
            if analysis.logons.height:
                print(f"netdiag: {analysis.logons.height} logon(s), no findings", file=sys.stderr)
            return
        emit(analysis.findings, as_json=as_json, as_csv=as_csv, parquet=parquet, pretty_columns=FINDING_COLUMNS,
             columns=chosen, wide=wide, title="findings")

    profile_app = typer.Typer(help="Site profiles: which servers are the EPJ and how a logon starts and ends.",
                              no_args_is_help=True)

    @profile_app.command("init")
    def profile_init(
        path: Annotated[Path, typer.Argument(help="where to write the profile ('-' for stdout)")] = Path(
            "netdiag-profile.toml"),
        force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
    ) -> None:
        """Write a commented starter profile."""
        from netdiag.profile import STARTER_PROFILE

        if str(path) == "-":
            sys.stdout.write(STARTER_PROFILE)
            return
        from netdiag.output import write_file

        write_file(path, lambda fh: fh.write(STARTER_PROFILE.encode("utf-8")), overwrite=force)
        print(f"wrote a starter profile to {path}; edit it, then: netdiag logons CAPTURE --profile {path}",
              file=sys.stderr)

    @profile_app.command("check")
    def profile_check(path: Annotated[Path, typer.Argument(help="profile to validate")]) -> None:
        """Validate a profile: unknown keys, bad regexes and invalid addresses are named with their line."""
        from netdiag.profile import load_profile

        p = load_profile(path)
        print(f"{path}: ok ({len(p.servers)} server entries, {len(p.client_groups)} client groups)")

    app.add_typer(profile_app, name="profile")


def _emit_views(views: dict, *, as_json: bool, as_csv: bool, parquet: Path | None, wide: bool = False) -> None:
    from netdiag.output import StagedDir, marker_record, print_table, to_json_rows

    if as_json and as_csv:
        raise UsageError("choose one of --json and --csv")
    if parquet is not None:   # a directory of views, written whole and swapped in like a report
        with StagedDir(parquet, marker=VIEWS_MARKER, kind="views",
                       output_names=[f"{name}.parquet" for name in views]) as stage:
            for name, df in views.items():
                with stage.open(f"{name}.parquet") as fh:
                    df.write_parquet(fh)
            stage.commit(marker_record("views", "netdiag logons --summary"))
        print(f"wrote {len(views)} views to {parquet}/", file=sys.stderr)
        if not (as_json or as_csv):
            return
    if as_json:
        sys.stdout.write("{" + ",".join(f"{json.dumps(k)}:{to_json_rows(v)}" for k, v in views.items()) + "}\n")
        return
    if as_csv:
        for name, df in views.items():
            sys.stdout.write(f"# {name}\n{df.write_csv()}\n")
        return
    for name, df in views.items():
        print_table(df, title=name.replace("_", " "), wide=wide)
