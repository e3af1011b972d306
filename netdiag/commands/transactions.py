"""`netdiag transactions`: requests paired with responses, with server think and transfer times.

A thin layer over `netdiag.pipeline` (run to its transactions stage). Output options match
`netdiag connections`; the count of malformed messages (and of capture gaps) goes to stderr so
piped JSON/CSV stays clean.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from netdiag.commands import EngineOpt, JobsOpt, SchedulerOpt, run_options
from netdiag.errors import UsageError
from netdiag.output import ColumnsOpt, WideOpt

# The terminal's default columns, most needed first: what was asked of which server, how
# long the server took, where to find it in Wireshark. --wide / --columns show the rest.
DEFAULT = ["conn_id", "protocol", "operation", "server_think_s", "server", "status", "first_frame",
           "response_transfer_s", "request_transfer_s", "retransmission_stall_s", "client"]


def pretty(txns: pl.DataFrame) -> pl.DataFrame:
    """The terminal view: endpoints as ip:port, then every column of the table."""
    from netdiag.output import endpoint

    rest = [c for c in txns.columns if c not in ("client_ip", "client_port", "server_ip", "server_port")]
    return txns.select(endpoint("client_ip", "client_port").alias("client"),
                       endpoint("server_ip", "server_port").alias("server"), *rest).select(
        *DEFAULT,
        *[c for c in rest if c not in DEFAULT])


def register(app: typer.Typer) -> None:
    @app.command("transactions")
    def transactions_command(
        captures: Annotated[list[Path], typer.Argument(help="capture files (pcap, pcapng, .gz) or directories")],
        as_json: Annotated[bool, typer.Option("--json", help="write a JSON array of rows to stdout")] = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="write CSV to stdout")] = False,
        parquet: Annotated[Path | None, typer.Option("--parquet", help="write the table to this Parquet file")] = None,
        protocol: Annotated[str | None, typer.Option("--protocol", help="giop, http, tls, dns or turn")] = None,
        operation: Annotated[str | None, typer.Option("--operation", help="regular expression on the operation")] = None,
        server: Annotated[str | None, typer.Option("--server", help="HOST or HOST:PORT of the server")] = None,
        summary: Annotated[bool, typer.Option(
            "--summary", help="per operation: count, p50/p95/max server think, errors")] = False,
        tls_keylog: Annotated[Path | None, typer.Option(
            "--tls-keylog", help="TLS key log (NSS SSLKEYLOGFILE format) to decrypt IIOP/HTTP inside TLS")] = None,
        profile: Annotated[Path | None, typer.Option(
            "--profile", "-p", help="site profile (TOML): server port roles (a server_role column) and its [tls] keylog")] = None,
        columns: ColumnsOpt = None,
        wide: WideOpt = False,
        jobs: JobsOpt = None,
        engine: EngineOpt = "processes",
        scheduler: SchedulerOpt = None,
    ) -> None:
        """Pair requests with responses (GIOP, HTTP, DNS, TLS handshakes, TLS turns) and time them."""
        from netdiag.output import emit, parse_columns, preflight_file
        from netdiag.parallel import run
        from netdiag.pipeline import STAGE_NAMES, Stage, input_bytes, input_paths
        from netdiag.progress import progress_bar
        from netdiag.protocols.registry import transaction_protocols
        from netdiag.roles import load, with_role
        from netdiag.transactions import filter_transactions, summarize

        names = transaction_protocols()
        if protocol and protocol.lower() not in names:
            raise UsageError(f"--protocol {protocol!r}: choose {', '.join(names[:-1])} or {names[-1]}")
        if operation:
            try:
                re.compile(operation)
            except re.error as exc:
                raise UsageError(f"--operation {operation!r} is not a valid regular expression: {exc}") from None
        if parquet is not None:
            preflight_file(parquet)   # unwritable: a usage error before the work
        prof = load(profile)          # a bad profile: exit 2 before the work
        keylog = None
        if tls_keylog is None and prof is not None and prof.tls_keylog:
            tls_keylog = Path(prof.tls_keylog)   # --tls-keylog wins over the profile's [tls] keylog
        if tls_keylog is not None:
            from netdiag.tls_keylog import read_keylog

            keylog = read_keylog(tls_keylog)
        input_paths(captures)
        options = run_options(jobs, engine, scheduler)
        with progress_bar(input_bytes(captures), "transactions", then=STAGE_NAMES[Stage.TRANSACTIONS][1:]) as advance:
            analysis = run(captures, stage=Stage.TRANSACTIONS, progress=advance, tls_keylog=keylog, options=options)
        analysis.require_packets()
        txns = filter_transactions(analysis.transactions, protocol=protocol, operation=operation, server=server)
        if prof is not None:   # what each server port does, per the profile
            txns = with_role(txns, prof, "server_ip", "server_port", "server_role")
        st = analysis.stream_stats
        for w in analysis.warnings:
            print(f"netdiag: warning: {w}", file=sys.stderr)
        print(f"netdiag: {st.messages} messages, {st.malformed_messages} malformed, {st.gaps} capture gaps "
              f"({st.gap_bytes} bytes), {st.unmatched_responses} responses without a request; "
              f"{st.connections_parsed} connections parsed, {st.connections_skipped} not recognised",
              file=sys.stderr)
        if summary:
            emit(summarize(txns), as_json=as_json, as_csv=as_csv, parquet=parquet,
                 title="transactions per operation", columns=parse_columns(columns), wide=wide)
            return
        shown = DEFAULT if prof is None else [*DEFAULT[:5], "server_role", *DEFAULT[5:]]
        emit(txns, as_json=as_json, as_csv=as_csv, parquet=parquet, view=pretty(txns), pretty_columns=shown,
             columns=parse_columns(columns), wide=wide, title="transactions")

