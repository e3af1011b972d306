"""`netdiag watch DIR --out OUT [--once] [--interval S] [--profile P]`: follow a ring-buffer directory.

A thin layer over `netdiag.watch.Watcher`: reads each capture file of DIR once it is complete,
keeps OUT's report and tables up to date (and its state, so a restart continues), and prints one
ALERT line on stdout when the logons' p95 or a new warning finding crosses the profile's
thresholds. `--once` reads what is complete and exits (for cron); without it the command keeps
following until it is stopped (Ctrl-C or SIGTERM: exit 0, OUT as of the last refresh).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

DirArg = Annotated[Path, typer.Argument(help="the ring-buffer directory dumpcap writes (e.g. dumpcap -b "
                                             "filesize:1000000 -b files:200 -w DIR/epj.pcapng)",
                                        show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="report, tables and the watch state (OUT/watch/); a "
                                                          "restart with the same OUT continues")]
OnceOpt = Annotated[bool, typer.Option("--once", help="read the complete files, refresh OUT and exit (for cron)")]
IntervalOpt = Annotated[float, typer.Option(
    "--interval", metavar="S", help="a file is complete when a later one exists or it has not changed for S "
                                    "seconds; also how often DIR is looked at (at most every 10 s)")]
ProfileOpt = Annotated[Path | None, typer.Option("--profile", "-p", help="site profile (TOML): logon rules and the "
                                                                        "alert thresholds (slow_logon_s)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="write into --out even if netdiag did not create it")]
TlsKeylogOpt = Annotated[Path | None, typer.Option("--tls-keylog", help="TLS key log (NSS SSLKEYLOGFILE format)")]


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def watch_command(directory: DirArg, out: OutOpt = Path("netdiag-watch"), once: OnceOpt = False,
                  interval: IntervalOpt = 30.0, profile: ProfileOpt = None, force: ForceOpt = False,
                  tls_keylog: TlsKeylogOpt = None) -> None:
    """Follow a ring-buffer directory: analyse each file once it is complete and keep OUT's report current."""
    from netdiag.errors import UsageError
    from netdiag.watch import Watcher

    if interval < 0:
        raise UsageError(f"--interval {interval}: must be 0 or more seconds")
    if not directory.exists():
        raise UsageError(f"{directory}: no such directory")
    w = Watcher(directory, out, profile, interval=interval, force=force, tls_keylog=tls_keylog)
    if once:
        _poll(w, out, quiet=False)
        return
    signal.signal(signal.SIGTERM, _stop)
    print(f"netdiag watch: following {directory} into {out} (Ctrl-C stops; a restart continues)", file=sys.stderr)
    pause = min(max(interval, 0.2), 10.0)
    try:
        while True:
            _poll(w, out, quiet=True)
            time.sleep(pause)
    except KeyboardInterrupt:
        print(f"netdiag watch: stopped; {out} holds the report of the last refresh", file=sys.stderr)


def _poll(w: object, out: Path, *, quiet: bool) -> None:
    """One poll and its lines: warnings on stderr, the refresh and any ALERT on stdout."""
    from netdiag.report import redact_cpr, summarize
    from netdiag.watch import Watcher
    from netdiag.words import fmt_s

    assert isinstance(w, Watcher)
    r = w.poll(refresh="due" if quiet else "always")
    for line in r.warnings:
        print(f"netdiag: warning: {line}", file=sys.stderr)
    stamp = time.strftime("%H:%M:%S")
    if not r.refreshed:
        if not quiet:
            growing = f"; {len(r.waiting)} file(s) still growing" if r.waiting else ""
            print(f"{stamp} nothing new in {w.directory}: {len(w.state.files)} file(s) read before{growing}.")
        return
    a = w.analysis
    n = len(w.state.files)
    so_far = f"({n} file{'s' if n != 1 else ''} in all)"
    if a is None or not a.read_stats.packets_kept:
        print(f"{stamp} read {len(r.files)} file(s), no packets yet {so_far}: no report until there are.")
        return
    if a.logons.height:
        s = summarize(a)
        figures = (f"p95 {fmt_s(s.p95_s)}, slowest {fmt_s(s.max_s)}" if s.p95_s is not None
                   else "none complete yet")
        logons = f"{s.logons} logon(s) so far ({s.incomplete} incomplete), {figures}"
    else:
        logons = "no logons yet"
    print(redact_cpr(f"{stamp} read {len(r.files)} file(s), {r.packets:,} packets "
                     f"{so_far}: {logons}. Report: {(out / 'report.html').resolve()}"))
    if r.alert:
        print(r.alert, flush=True)
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_command)
