"""`netdiag evidence`: write the smallest pcapng that shows one logon or finding, with frame comments.

A thin layer over `netdiag.pipeline` (the analysis) and `netdiag.evidence` (the excerpt). `--sanitize --key-file K` writes the excerpt
through `netdiag.sanitize` (addresses mapped, payload policy applied, CPR numbers redacted) and
maps the addresses named in the comments with the same key.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("evidence")
    def evidence_command(
        captures: Annotated[list[Path], typer.Argument(help="capture files (pcap, pcapng, .gz) or directories")],
        out: Annotated[Path, typer.Option("--out", "-o", help="pcapng file to write")],
        logon: Annotated[int | None, typer.Option("--logon", help="logon id (see `netdiag logons`)")] = None,
        finding: Annotated[str | None, typer.Option("--finding", help="finding id, e.g. F001 (see `netdiag findings`)")] = None,
        sanitize: Annotated[bool, typer.Option("--sanitize", help="sanitise the excerpt (needs --key-file)")] = False,
        key_file: Annotated[Path | None, typer.Option("--key-file", help="sanitising key (netdiag sanitize --make-key K)")] = None,
        profile: Annotated[Path | None, typer.Option("--profile", "-p", help="site profile (TOML)")] = None,
        force: Annotated[bool, typer.Option("--force", help="overwrite --out when it exists")] = False,
        all_logons: Annotated[bool, typer.Option(
            "--all-logons", help="a finding seen in several logons: all of them (default: see --logons)")] = False,
        logons: Annotated[int, typer.Option(
            "--logons", metavar="N", help="a finding seen in several logons: the N where it cost the most")] = 1,
        tls_keylog: Annotated[Path | None, typer.Option(
            "--tls-keylog", help="TLS key log (NSS SSLKEYLOGFILE format) to decrypt IIOP/HTTP inside TLS")] = None,
    ) -> None:
        """Frames of the involved connections and their DNS, as pcapng with per-frame comments."""
        from netdiag.errors import UsageError
        from netdiag.evidence import select_evidence, write_excerpt
        from netdiag.output import StagedFile
        from netdiag.pipeline import input_paths, run
        from netdiag.profile import Profile, load_profile

        if (logon is None) == (finding is None):
            raise UsageError("give exactly one of --logon ID and --finding ID")
        if logons < 1:
            raise UsageError("--logons must be 1 or more")
        if out.is_dir() and not out.is_symlink():
            raise UsageError(f"{out} is a directory; --out names the pcapng file to write")
        input_paths(captures)   # a missing capture is a usage error before anything is written
        mapper = None
        if sanitize or key_file is not None:
            from netdiag.sanitize import AddressMapper, load_key

            mapper = AddressMapper(load_key(key_file))
        from netdiag.tls_keylog import profile_with_keylog

        prof = profile_with_keylog(load_profile(profile) if profile is not None else Profile(), tls_keylog)
        # an existing or unwritable --out is refused here, before the analysis; the excerpt is written
        # beside it and renamed in (never through a symlink)
        with StagedFile(out, overwrite=force) as staged:
            a = run(captures, prof).require_packets()   # nothing read: exit 2
            ex = select_evidence(a, logon_id=logon, finding_id=finding, all_logons=all_logons, logons=logons)
            with staged.open() as fh:
                n = write_excerpt(a.paths, ex, fh, mapper=mapper)
            staged.commit()
        title = ex.title
        if mapper is not None:
            from netdiag.evidence import map_text

            title = map_text(title, mapper)
        print(f"netdiag: wrote {n} frames ({len(ex.comments)} with comments) to {out}"
              f"{' (sanitised)' if mapper is not None else ''}: {title}", file=sys.stderr)
        print(f"netdiag: in Wireshark, apply the display filter `{ex.wireshark_filter or 'frame.comment'}` to see the "
              "annotated frames", file=sys.stderr)
