"""Original frames, byte-exact: the records of capture files as they are in the file.

Why: `netdiag sanitize` and `netdiag evidence` write new captures from the original bytes of
frames (sanitised or not), and both must number frames as every table does (Wireshark's frame
numbers: 1-based, in file order, files in the order given). Both read through netdiag.capture's
own record walkers (pcap, pcapng, gzip; FileReader), never through a second parser:

- `read_raw_frames(paths, frames)`: the bytes of chosen frames (all when None), columnar, for
  small excerpts and the whole-file reference sanitiser.
- `iter_raw_chunks(path, warn, chunk_frames)`: one file's records in order, `chunk_frames` at a
  time, each chunk copied into one contiguous buffer (frame i at buf[fo[i]:fo[i] + cap[i]]), for
  the streaming sanitiser (memory holds one chunk, never the capture).

No de-duplication and no decoding happens here: a record is a frame, whatever it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numba import njit

from netdiag.errors import CaptureError, CaptureWarning


@dataclass
class RawFrames:
    """Original frames (Wireshark numbering across the files given), columnar."""

    frame: np.ndarray       # int64
    ts_ns: np.ndarray       # int64
    link_type: np.ndarray   # uint16
    orig_len: np.ndarray    # uint32
    datas: list[bytes]
    warnings: list[CaptureWarning] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.datas)


def read_raw_frames(paths: Sequence[str | Path], frames: np.ndarray | None = None) -> RawFrames:
    """The original bytes of the given frame numbers (all when None), in file order.

    Raises CaptureError naming the file when a file yields no frame at all.
    """
    from netdiag.capture import expand_paths
    from netdiag.capture.reader import FileReader

    wanted = None if frames is None else np.unique(np.asarray(frames, dtype=np.int64))
    out_f: list[np.ndarray] = []
    out_ts: list[np.ndarray] = []
    out_lt: list[np.ndarray] = []
    out_len: list[np.ndarray] = []
    datas: list[bytes] = []
    warnings: list[CaptureWarning] = []
    next_frame = 1
    for path in expand_paths([str(p) for p in paths]):
        reader = FileReader(path, warnings.append, frame_base=next_frame)
        for b in reader.batches():
            nums = b.frame0 + np.arange(b.n, dtype=np.int64)
            idx = np.arange(b.n) if wanted is None else np.flatnonzero(np.isin(nums, wanted))
            if not idx.size:
                continue
            off, cap = b.off[idx], b.cap[idx]
            out_f.append(nums[idx])
            out_ts.append(b.ts[idx].astype(np.int64))
            out_lt.append(b.iface_link[b.iface[idx]].astype(np.uint16))
            out_len.append(b.length[idx].astype(np.uint32))
            buf = b.buf
            datas.extend(buf[o:o + c].tobytes() for o, c in zip(off.tolist(), cap.tolist(), strict=True))
        if not reader.ok and reader.frame_next == next_frame:
            detail = "; ".join(w.message for w in warnings if w.path == path) or "no frames"
            raise CaptureError(f"cannot read frames: {detail}", path=path)
        next_frame = reader.frame_next

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.empty(0, dtype)

    return RawFrames(cat(out_f, np.int64), cat(out_ts, np.int64), cat(out_lt, np.uint16),
                     cat(out_len, np.uint32), datas, warnings)


@dataclass
class RawChunk:
    """Up to `chunk_frames` records of one file, copied contiguously (frame i at buf[fo[i]:])."""

    buf: np.ndarray       # uint8, the captured bytes of every frame, back to back
    fo: np.ndarray        # int64, where each frame starts in buf
    cap: np.ndarray       # int64, captured length
    link: np.ndarray      # int64, LINKTYPE_* of the frame's interface
    ts_ns: np.ndarray     # int64
    orig_len: np.ndarray  # int64, length on the wire


@njit(cache=True)
def _gather(src, off, cap, out_off, out):  # pragma: no cover - numba
    for i in range(len(off)):
        o, d = off[i], out_off[i]
        for k in range(cap[i]):
            out[d + k] = src[o + k]


def iter_raw_chunks(path: str | Path, warn: Callable[[CaptureWarning], None], chunk_frames: int
                    ) -> Iterator[RawChunk]:
    """The file's records in order, `chunk_frames` at a time (netdiag.capture's record walkers);
    problems go to `warn`; raises CaptureError naming the file when it holds no frame at all."""
    from netdiag.capture.reader import FileReader

    path = str(path)
    problems: list[CaptureWarning] = []

    def note(w: CaptureWarning) -> None:
        problems.append(w)
        warn(w)

    reader = FileReader(path, note, frame_base=1, capacity=chunk_frames)
    reader.want = chunk_frames
    for b in reader.batches():
        n = b.n
        cap = b.cap[:n].astype(np.int64)
        fo = np.zeros(n, np.int64)
        np.cumsum(cap[:-1], out=fo[1:])
        buf = np.empty(int(cap.sum()), np.uint8)
        _gather(b.buf, b.off[:n].astype(np.int64), cap, fo, buf)
        yield RawChunk(buf, fo, cap, b.iface_link[b.iface[:n]].astype(np.int64), b.ts[:n].astype(np.int64),
                       b.length[:n].astype(np.int64))
    if not reader.ok and reader.frame_next == 1:
        detail = "; ".join(w.message for w in problems) or "no frames"
        raise CaptureError(f"cannot read frames: {detail}", path=path)


__all__ = ["RawChunk", "RawFrames", "iter_raw_chunks", "read_raw_frames"]
