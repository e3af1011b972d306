"""Check that a change leaves `netdiag sanitize`'s output as it was, byte for byte, on every capture.

    python bench/sanitize_identity.py write DIR [EXTRA...]   # sanitise every capture, keep the results in DIR
    python bench/sanitize_identity.py check DIR [EXTRA...]   # sanitise again, compare with DIR; exit 1 on a difference

Every capture file under captures/ (and each EXTRA capture given, e.g. a bench/gen_capture.py
file) is sanitised in-process with one fixed key, twice: with the streaming `sanitize_file` (what
`netdiag sanitize` runs) and with `sanitize_file_in_memory` (the whole-file reference, whose
per-frame `sanitize_frames` is what `netdiag evidence --sanitize` runs). Per capture DIR keeps
both output files and a JSON record of the messages: the warnings (text, file, frame) and the
summary counters of `SanitizeStats`, or the error text when the capture cannot be sanitised.
`check` requires byte-identical output files (it names the first differing byte) and identical
messages. Refactors and speed-ups of sanitize that must not change a byte are measured with it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = {".pcap", ".pcapng", ".cap", ".gz"}
KEY = bytes(range(32))  # fixed, so both runs map every address and MAC alike
STATS = ("frames", "addresses", "macs", "cpr_redacted", "streams", "checksums_fixed", "unverifiable",
         "frames_blanked", "keeper_errors")
MODES = ("stream", "memory")


def captures() -> list[Path]:
    """Every capture file under captures/, sorted."""
    return sorted(p for p in (ROOT / "captures").rglob("*") if p.is_file() and p.suffix in SUFFIXES)


def _messages(stats: object) -> dict:
    warnings = [[w.message, Path(w.path).name if w.path is not None else None, w.frame, w.offset]
                for w in getattr(stats, "warnings", [])]
    return {"stats": {k: getattr(stats, k) for k in STATS}, "warnings": warnings}


def sanitise(path: Path, out_dir: Path, modes: tuple[str, ...] = MODES) -> dict:
    """Sanitise `path` each way into out_dir/{stream,memory}.pcapng; the messages of each run."""
    from netdiag.sanitize import AddressMapper, sanitize_file, sanitize_file_in_memory

    out_dir.mkdir(parents=True, exist_ok=True)
    got: dict = {}
    for mode, fn in zip(MODES, (sanitize_file, sanitize_file_in_memory), strict=True):
        if mode not in modes:
            continue
        out = out_dir / f"{mode}.pcapng"
        out.unlink(missing_ok=True)
        try:
            got[mode] = _messages(fn(path, out, AddressMapper(KEY)))
        except Exception as exc:  # noqa: BLE001 - a capture that fails is recorded, not fatal
            got[mode] = {"error": f"{type(exc).__name__}: {exc}"}
    return got


def _first_difference(a: bytes, b: bytes) -> str:
    n = min(len(a), len(b))
    at = next((i for i in range(n) if a[i] != b[i]), n)
    return f"first difference at byte {at} (sizes {len(a)} and {len(b)})"


def main(argv: list[str]) -> int:
    """Write or check the sanitised output of every capture."""
    if len(argv) < 2 or argv[0] not in ("write", "check"):
        print(__doc__)
        return 2
    mode, ref = argv[0], Path(argv[1])
    files = [(p, p.relative_to(ROOT), MODES) for p in captures()]
    # extra (large) captures: the streaming path only, the whole-file reference would hold them in memory
    files += [(Path(x).resolve(), Path("extra") / Path(x).name, MODES[:1]) for x in argv[2:]]
    bad = 0
    t0 = time.perf_counter()
    for cap, rel, modes in files:
        d = ref / rel
        if mode == "write":
            (d / "messages.json").parent.mkdir(parents=True, exist_ok=True)
            (d / "messages.json").write_text(json.dumps(sanitise(cap, d, modes), indent=1) + "\n")
            continue
        work = ref.parent / (ref.name + ".check") / rel
        got = sanitise(cap, work, modes)
        want = json.loads((d / "messages.json").read_text())
        for m in modes:
            if got[m] != want.get(m):
                bad += 1
                print(f"{rel} [{m}]: messages differ: was {want.get(m)}, now {got[m]}")
            a, b = d / f"{m}.pcapng", work / f"{m}.pcapng"
            if a.exists() != b.exists():
                bad += 1
                print(f"{rel} [{m}]: output {'missing' if a.exists() else 'appeared'}")
            elif a.exists():
                x, y = a.read_bytes(), b.read_bytes()
                if x != y:
                    bad += 1
                    print(f"{rel} [{m}]: output differs: {_first_difference(x, y)}")
                b.unlink()
    took = time.perf_counter() - t0
    if mode == "check":
        print(f"{len(files)} captures, {bad} differences ({took:.0f} s)")
    else:
        print(f"{len(files)} captures written to {ref} ({took:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
