"""Process-wide malloc setting for the CLI (kept out of netdiag.capture so `netdiag --help` stays light)."""

from __future__ import annotations

_M_MMAP_THRESHOLD = -3   # glibc malloc.h


def keep_large_blocks_out_of_the_heap() -> None:
    """glibc only: serve every allocation of 128 KiB or more with its own mmap, for the whole run.

    Why: glibc raises its mmap threshold to the size of each mmap'ed block that is freed (up to
    32 MiB), so after the first chunk's arrays are freed, later per-chunk numpy arrays of that size
    come from the heap, whose freed pages stay resident. Fixing the threshold (which also turns the
    raising off) gives those pages back at free: `netdiag connections` on a 200 k-connection SYN
    flood peaks 566 -> 520 MB, with the same CPU time on bench/gen_capture.py's 200 k packets.
    A no-op elsewhere (musl, macOS) and for library users: only the CLI calls it.
    """
    import ctypes
    import platform

    if platform.libc_ver()[0] != "glibc":
        return
    try:
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
    except (OSError, AttributeError):
        return


# jemalloc options for the allocator polars is built with (its symbols carry the `_rjem_` prefix,
# so it reads this variable, once, when polars is loaded): freed pages go back to the OS at once
# instead of after polars' default decay of 0.5-1 s, during which they still count as resident.
POLARS_MALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"
# what `import polars` itself puts in the variable (its options first, a value found there after):
# a process started by a Python process that had imported polars inherits it
POLARS_OWN_MALLOC_CONF = "dirty_decay_ms:500,muzzy_decay_ms:1000"


def return_freed_table_memory_at_once() -> None:
    """Make polars' allocator give freed pages back immediately, for the whole run (CLI only).

    Why: a pass frees and allocates big tables stage after stage; with the default decay the
    pages of the tables already let go stay resident for a while, so each stage's peak sat on
    top of the previous stages' garbage: `netdiag analyze` on a 200 k-connection SYN flood
    peaks 47 MB lower with this, at the same CPU time. Must run before polars is imported;
    a value the user set is kept (polars' own default, inherited from a parent, is not one).
    """
    import os

    if os.environ.get("_RJEM_MALLOC_CONF", POLARS_OWN_MALLOC_CONF) == POLARS_OWN_MALLOC_CONF:
        os.environ["_RJEM_MALLOC_CONF"] = POLARS_MALLOC_CONF
