"""`netdiag case`: the vendor case bundle (report.html, report.md, findings.json, profile, evidence, README).

A thin layer over `netdiag.analyze.analyze` and `netdiag.case.write_case`. Sanitised
by default, which needs a key file (`netdiag sanitize --make-key K`); `--no-sanitize` writes real
addresses and payload for the hospital's own use.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("case")
    def case_command(
        captures: Annotated[list[Path] | None, typer.Argument(
            help="capture files (pcap, pcapng, .gz) or directories; none: the bundled sample capture")] = None,
        out: Annotated[Path, typer.Option("--out", "-o", help="case directory to write")] = Path("netdiag-case"),
        key_file: Annotated[Path | None, typer.Option("--key-file", help="sanitising key (netdiag sanitize --make-key K)")] = None,
        top: Annotated[int, typer.Option(
            "--top", metavar="N", help="also evidence for the N first-ranked findings below warning (every warning "
                                       "and critical finding always gets one)")] = 0,
        logons: Annotated[int, typer.Option(
            "--logons", metavar="N", help="a finding seen in several logons: its evidence file shows the N where "
                                          "it cost the most")] = 3,
        note: Annotated[Path | None, typer.Option(
            "--note", metavar="FILE", help="text file with the hospital's question (copied in as question.md)")] = None,
        no_sanitize: Annotated[bool, typer.Option("--no-sanitize", help="keep real addresses and payload (hospital use only)")] = False,
        profile: Annotated[Path | None, typer.Option("--profile", "-p", help="site profile (TOML)")] = None,
        force: Annotated[bool, typer.Option("--force", help="write into --out even if netdiag did not create it")] = False,
    ) -> None:
        """Gather report.html, report.md, findings.json, the profile, sanitised evidence of every warning and a README."""
        import shlex

        from netdiag.analyze import analyze
        from netdiag.case import MARKER, prepare_case_dir, read_note, write_case
        from netdiag.errors import UsageError
        from netdiag.output import preflight_dir
        from netdiag.sanitize import load_key

        if top < 0:
            raise UsageError("--top must be 0 or more")
        if logons < 1:
            raise UsageError("--logons must be 1 or more")
        if note is not None:
            read_note(note)             # an unreadable note is reported before the work
        if not no_sanitize:
            load_key(key_file)          # a missing key is reported before minutes of work
        prepare_case_dir(out, force=force)
        preflight_dir(out, marker=MARKER, kind="case", force=force)   # unwritable: usage error before the work
        for p in captures or []:
            if not p.exists():
                raise UsageError(f"{p}: no such file or directory")
        a = analyze(list(captures) if captures else None, profile)
        if a.is_sample:
            print("netdiag: no capture given: using the bundled sample capture", file=sys.stderr)
        if a.logons.height == 0:   # not an error (exit 0): the bundle's report says the same
            why = (a.no_logons_reason or "no logons found").removeprefix("no logons: ")
            print(f"netdiag: no logons: {why}", file=sys.stderr)
        files = write_case(a, out, key_file, top=top, logons=logons, sanitize=not no_sanitize, force=force, note=note,
                           command="netdiag " + shlex.join(sys.argv[1:]))
        for f in files:
            print(f"netdiag: wrote {f}", file=sys.stderr)
        print(f"Case bundle: {out.resolve()} ({'sanitised' if not no_sanitize else 'NOT sanitised'})")
