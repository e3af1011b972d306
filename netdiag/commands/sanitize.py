"""`netdiag sanitize`: captures a vendor may receive (addresses mapped, patient data removed).

A thin layer over `netdiag.sanitize`; the policy is in that module's docstring and
docs/sanitize.md. `--make-key K` creates a key file; the same key keeps several captures
(before/after a change) comparable. The output directory is written whole beside DIR and
swapped in (netdiag.output.StagedDir): never through a symlink, never half-written; its marker
`.netdiag-sanitized` records what wrote it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

MARKER = ".netdiag-sanitized"


def register(app: typer.Typer) -> None:
    @app.command("sanitize")
    def sanitize_command(
        captures: Annotated[list[Path] | None, typer.Argument(help="capture files (pcap, pcapng, .gz) or directories")] = None,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="directory for the sanitised pcapng files")] = None,
        key_file: Annotated[Path | None, typer.Option("--key-file", help="key file (64 hex digits)")] = None,
        make_key: Annotated[Path | None, typer.Option("--make-key", help="create a new key file and exit")] = None,
        force: Annotated[bool, typer.Option("--force", help="write into --out even when it holds other files")] = False,
    ) -> None:
        """Map addresses (Crypto-PAn), pseudonymise MACs, keep only protocol metadata, redact CPR numbers."""
        from netdiag.capture import expand_paths
        from netdiag.errors import CaptureError, UsageError
        from netdiag.output import StagedDir, marker_record
        from netdiag.sanitize import AddressMapper, load_key, sanitize_file, sanitized_name

        if make_key is not None:
            from netdiag.sanitize import make_key as mk

            mk(make_key)
            print(f"netdiag: wrote a new key to {make_key}; keep it private and reuse it for later captures",
                  file=sys.stderr)
            if not captures:
                return
        if not captures:
            raise UsageError("no capture given: netdiag sanitize CAPTURE... --out DIR --key-file K")
        if out is None:
            raise UsageError("--out DIR is required (the sanitised files are written there)")
        for p in captures:
            if not p.exists():
                raise UsageError(f"{p}: no such file or directory")
        mapper = AddressMapper(load_key(key_file))
        files = expand_paths([str(p) for p in captures])
        names = [sanitized_name(f) for f in files]
        stage = StagedDir(out, marker=MARKER, kind="sanitized", force=force, output_names=names)
        with stage:
            done = [(path, stage.target / name, sanitize_file(path, stage.file(name), mapper))
                    for path, name in zip(files, names, strict=True)]
            if sum(stats.frames for _, _, stats in done) == 0:
                raise CaptureError(f"no packets could be read from {', '.join(files)}")
            stage.commit(marker_record("sanitized", "netdiag sanitize", captures=[Path(f).name for f in files]))
        for path, target, stats in done:
            _report(path, target, stats)


def _report(path: str, target: Path, stats) -> None:  # noqa: ANN001 - a SanitizeStats
    """What sanitising one capture did, one line each on stderr (warnings first)."""
    for w in stats.warnings:
        print(f"netdiag: warning: {w}", file=sys.stderr)
    if stats.frames == 0:
        print(f"netdiag: warning: no packets could be read from {path}", file=sys.stderr)
    if stats.frames_blanked or stats.keeper_errors:
        print(f"netdiag: warning: {path}: {stats.frames_blanked} frames with headers netdiag could not walk "
              f"and {stats.keeper_errors} messages it could not decode were zero-filled (nothing of them "
              "kept)", file=sys.stderr)
    print(f"netdiag: {path} -> {target}: {stats.frames} frames, {stats.streams} TCP connections "
          f"sanitised, {stats.cpr_redacted} CPR numbers redacted in kept text (bodies and query values "
          f"are blanked whole, whatever they hold), {stats.checksums_fixed} checksums recomputed", file=sys.stderr)
