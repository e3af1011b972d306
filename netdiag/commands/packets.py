"""`netdiag packets`: read captures and show the packets table (or just what reading found).

A thin layer over `netdiag.capture.iter_chunks`: useful to check a capture before analysing it
(link types, SPAN duplicates, snaplen cuts, damage) and to export the decoded packet headers.
Warnings and the read summary go to stderr so piped JSON/CSV stays clean. No payload bytes are
written, only header fields (the packets table has no payload column).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import polars as pl
import typer

from netdiag.output import ColumnsOpt, WideOpt

# The terminal's default columns: Wireshark's frame number, time, who to whom, what.
# --wide / --columns show the rest.
DEFAULT = ["frame", "time", "src", "dst", "ip_proto", "tcp_flags", "payload_len", "tcp_seq", "tcp_ack", "vlan_id"]


def pretty(df: pl.DataFrame) -> pl.DataFrame:
    """The terminal view: UTC time of day, endpoints as ip:port, then every column of the table."""
    from netdiag.output import endpoint

    return df.select(
        "frame", pl.from_epoch("ts_ns", time_unit="ns").dt.strftime("%H:%M:%S%.6f").alias("time"),
        endpoint("src_ip", "src_port").alias("src"), endpoint("dst_ip", "dst_port").alias("dst"),
        "ip_proto", "tcp_flags", "payload_len", "tcp_seq", "tcp_ack", "vlan_id",
        *[c for c in df.columns if c not in DEFAULT])


def register(app: typer.Typer) -> None:
    @app.command("packets")
    def packets_command(
        captures: Annotated[list[Path], typer.Argument(help="capture files (pcap, pcapng, gzip) or directories")],
        as_json: Annotated[bool, typer.Option("--json", help="write a JSON array of rows to stdout")] = False,
        as_csv: Annotated[bool, typer.Option("--csv", help="write CSV to stdout")] = False,
        parquet: Annotated[Path | None, typer.Option("--parquet", help="write the table to this Parquet file")] = None,
        summary: Annotated[bool, typer.Option("--summary", help="only read and print the summary")] = False,
        dedup_window_ms: Annotated[float, typer.Option(
            "--dedup-window-ms", help="SPAN duplicate window in ms (0 turns de-dup off)")] = 5.0,
        profile: Annotated[Path | None, typer.Option(
            "--profile", "-p", help="site profile (TOML): the role of each endpoint's port (src_role, dst_role columns)")] = None,
        columns: ColumnsOpt = None,
        wide: WideOpt = False,
    ) -> None:
        """Decode every frame into the packets table (one row per frame kept after SPAN de-dup)."""
        from netdiag.analyze import require_packets
        from netdiag.capture import ReadStats, iter_chunks
        from netdiag.capture.addresses import format_ip
        from netdiag.errors import UsageError
        from netdiag.output import emit, parse_columns, preflight_file
        from netdiag.progress import progress_bar
        from netdiag.roles import load, with_role

        for p in captures:
            if not p.exists():
                raise UsageError(f"{p}: no such file or directory")
        prof = load(profile)          # a bad profile: exit 2 before the work
        if parquet is not None:
            preflight_file(parquet)   # unwritable: a usage error before the work
        total = sum(f.stat().st_size for p in captures for f in ([p] if p.is_file() else p.iterdir())
                    if f.is_file())
        stats = ReadStats()
        frames = []
        with progress_bar(total, "reading") as advance:
            for chunk in iter_chunks([str(p) for p in captures], stats=stats, progress=advance,
                                     dedup_window_ns=int(dedup_window_ms * 1e6)):
                if not summary:
                    frames.append(chunk.packets)
        require_packets(stats, captures)
        for w in stats.warnings:
            print(f"netdiag: warning: {w}", file=sys.stderr)
        print(f"netdiag: {', '.join(stats.files)}: {stats.packets_read} frames read, {stats.packets_kept} kept, "
              f"{stats.duplicates_removed} SPAN duplicates removed, {stats.snaplen_cut_frames} cut by snaplen, "
              f"{stats.non_ip_frames} not IP; link types {stats.link_types}", file=sys.stderr)
        if summary:
            return
        df = pl.concat(frames) if frames else None
        if df is None:
            from netdiag.schema import PACKETS

            df = PACKETS.empty()
        df = df.with_columns(
            pl.when(pl.col("ip_version") > 0).then(format_ip("src_ip_hi", "src_ip_lo")).alias("src_ip"),
            pl.when(pl.col("ip_version") > 0).then(format_ip("dst_ip_hi", "dst_ip_lo")).alias("dst_ip"),
        )
        shown = DEFAULT
        if prof is not None:   # what each endpoint's port does, per the profile
            df = with_role(with_role(df, prof, "src_ip", "src_port", "src_role"), prof, "dst_ip", "dst_port", "dst_role")
            shown = [*DEFAULT[:4], "src_role", "dst_role", *DEFAULT[4:]]
        emit(df, as_json=as_json, as_csv=as_csv, parquet=parquet, view=None if as_json or as_csv or parquet else
             pretty(df), pretty_columns=shown, columns=parse_columns(columns), wide=wide, title="packets")
