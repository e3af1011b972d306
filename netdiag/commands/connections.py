"""`netdiag connections`: one row per TCP connection / UDP flow, with handshake times and trouble counts.

A thin layer over `netdiag.pipeline` (run to its connections stage). Read problems (CaptureWarning) and the number
of SPAN duplicates removed go to stderr, one line each, so piped JSON/CSV stays clean. Exit 0
on success; a capture of which not one packet could be read (cut first record, header only)
raises CaptureError, which `netdiag.cli.main` turns into one line and exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from netdiag.commands import EngineOpt, JobsOpt, SchedulerOpt, run_options
from netdiag.errors import UsageError
from netdiag.output import ColumnsOpt, WideOpt, endpoint

PRETTY = ["conn_id", "proto", "client", "server", "frame", "duration_s", "connect_s", "rtt_srv_ms", "rtt_cli_ms",
          "pkts", "bytes", "resent", "stall_s", "zero_win_s", "unseen_bytes", "state", "history"]
# The terminal's default columns: who talked to whom, how the connect went, resends,
# Zeek's state; the last ones are left out when the terminal is narrow. --wide / --columns show the rest.
DEFAULT = ["conn_id", "proto", "client", "server", "state", "resent", "connect_s", "rtt_srv_ms", "rtt_cli_ms",
           "stall_s", "duration_s", "history"]
# raw columns the readable ones above are made of
_SHOWN_AS = {"transport", "client_ip", "client_port", "server_ip", "server_port", "first_frame", "rtt_server_side_ms",
             "rtt_client_side_ms", "packets_c2s", "packets_s2c", "bytes_c2s", "bytes_s2c", "retransmitted_segments",
             "retransmission_stall_s", "zero_window_s"}


def pretty(table: pl.DataFrame) -> pl.DataFrame:
    """The terminal view: readable columns first (endpoints as ip:port, both directions as a/b), then the rest."""
    def both(a: str, b: str) -> pl.Expr:
        return pl.format("{}/{}", pl.col(a), pl.col(b))

    rest = [c for c in table.columns if c not in _SHOWN_AS and c not in PRETTY]
    return table.select(
        "conn_id", pl.col("transport").alias("proto"),
        endpoint("client_ip", "client_port").alias("client"),
        endpoint("server_ip", "server_port").alias("server"),
        pl.col("first_frame").alias("frame"), "duration_s", "connect_s",
        pl.col("rtt_server_side_ms").alias("rtt_srv_ms"), pl.col("rtt_client_side_ms").alias("rtt_cli_ms"),
        both("packets_c2s", "packets_s2c").alias("pkts"), both("bytes_c2s", "bytes_s2c").alias("bytes"),
        pl.col("retransmitted_segments").alias("resent"), pl.col("retransmission_stall_s").alias("stall_s"),
        pl.col("zero_window_s").alias("zero_win_s"), "unseen_bytes", "state", "history", *rest)


def register(app: typer.Typer) -> None:
    @app.command("connections")
    def connections_command(
        captures: Annotated[list[Path], typer.Argument(help="capture files (pcap, pcapng, .gz) or directories")],
        as_json: Annotated[bool, typer.Option("--json", help="write a JSON array of rows to stdout")] = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="write CSV to stdout")] = False,
        parquet: Annotated[Path | None, typer.Option("--parquet", help="write the table to this Parquet file")] = None,
        server_port: Annotated[list[int] | None, typer.Option(
            "--server-port", help="a port that is a server (decides client/server when no SYN was seen); repeatable")] = None,
        profile: Annotated[Path | None, typer.Option(
            "--profile", "-p", help="site profile (TOML): server ports and their roles (a server_role column)")] = None,
        columns: ColumnsOpt = None,
        wide: WideOpt = False,
        jobs: JobsOpt = None,
        engine: EngineOpt = "processes",
        scheduler: SchedulerOpt = None,
    ) -> None:
        """TCP connections and UDP flows: handshake times, resends, zero windows, Zeek state and history."""
        from netdiag.output import emit, parse_columns, preflight_file
        from netdiag.parallel import run
        from netdiag.pipeline import STAGE_NAMES, Stage, input_bytes, input_paths
        from netdiag.progress import progress_bar
        from netdiag.roles import load, server_ports, with_role

        input_paths(captures)
        options = run_options(jobs, engine, scheduler)
        for port in server_port or []:
            if not 0 < port < 65536:
                raise UsageError(f"--server-port {port}: not a port number (1-65535)")
        prof = load(profile)          # a bad profile: exit 2 before the work
        if parquet is not None:
            preflight_file(parquet)   # unwritable: a usage error before the work
        with progress_bar(input_bytes(captures), "connections", then=STAGE_NAMES[Stage.CONNECTIONS][1:]) as advance:
            analysis = run(captures, stage=Stage.CONNECTIONS, progress=advance,
                           server_ports=set(server_port or []) | server_ports(prof),
                           options=options).require_packets()
        table, stats = analysis.connections, analysis.read_stats
        if prof is not None:   # what each server port does, per the profile (bootstrap, orb, lsd, http ...)
            table = with_role(table, prof, "server_ip", "server_port", "server_role")
        for w in analysis.warnings:
            print(f"netdiag: warning: {w}", file=sys.stderr)
        notes = [f"{stats.packets_kept} packets", f"{stats.duplicates_removed} SPAN duplicates removed"]
        if analysis.fragments_skipped:
            notes.append(f"{analysis.fragments_skipped} IP fragments not analysed")
        if analysis.truncated_headers:
            notes.append(f"{analysis.truncated_headers} TCP headers cut off by the snaplen")
        print(f"netdiag: {table.height} connections; " + ", ".join(notes), file=sys.stderr)
        # the terminal view only when a table is printed (it formats every row's endpoints)
        view = None if as_json or as_csv or parquet is not None else pretty(table)
        emit(table, as_json=as_json, as_csv=as_csv, parquet=parquet, view=view,
             pretty_columns=DEFAULT if prof is None else [*DEFAULT[:4], "server_role", *DEFAULT[4:]],
             columns=parse_columns(columns), wide=wide,
             title="connections (pkts/bytes: client-to-server/server-to-client)")
