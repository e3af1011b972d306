"""`netdiag.watch`: follow a ring-buffer directory and keep its report up to date.

    from netdiag.watch import Watcher
    w = Watcher("/captures/ring", "/srv/netdiag/live", profile="site.toml")
    result = w.poll()                       # read every complete file once, refresh the report
    result.files, result.alert, w.analysis.logons

Hospitals capture at the switch with dumpcap ring buffers (`dumpcap -b filesize:1000000 -b
files:200`). A watcher reads each file once it is complete, carries the open connections,
streams and logons across files (the same `netdiag.pipeline.Pipeline` a one-pass analysis
feeds, one file after the other), and after each batch of files writes OUT as `netdiag analyze`
would (report.html, report.md, findings.json, tables/) plus its own state in OUT/watch/:

    OUT/watch/state.pkl    the files read and the alert's facts (what a restart continues from)
    OUT/watch/pipeline.pkl the pipeline's state: open connections, streams, the tables so far
    OUT/watch/files.json   the files read: name, bytes, packets, first frame, when
    OUT/watch/alerts.log   every alert line printed so far

Report and state are written into one staging directory and swapped in together (see
netdiag.output.StagedDir), so they always agree: a watcher killed half-way leaves the previous
report and the state that produced it, and a restart reads the files after it again. No file is
read twice and none is skipped. When the last file has been read, the tables equal those of
`netdiag analyze DIR` (tests/test_watch.py): frame numbers continue across files as Wireshark's
do after `mergecap -a`, and a logon that spans files is one logon.

A file is complete when a file after it (by name: dumpcap's names sort in the order it wrote
them) exists, or when it has not changed for `interval` seconds. The newest file is never read
while it grows. Files that appear out of order (a name before one already read), files that
vanish before they were read (rotated away: the ring was faster than the watcher), gaps in
dumpcap's file numbers and files that change after they were read are reported once each, as
capture warnings in the report and on stderr.

The alert: after each refresh, one line when the 95th percentile of the logons that ended since
the previous refresh exceeds the profile's `slow_logon_s`, or when a warning finding of a cause
not warned about before appears. Restarts keep the earlier refresh's facts, so an alert is not
repeated for logons already judged.

Limits: the watcher keeps what a one-pass analysis keeps until its end (the connections, the
transactions and the segment columns the logons stage reads, about 140 bytes per packet), so a
watch runs for a day or a week of one uplink's logon traffic, not forever: start a new OUT for a
new period (`--out live-$(date +%F)`). The state is Python's pickle of netdiag's own objects; it
is read only from an OUT the watcher wrote, and only classes of netdiag, numpy, polars and the
standard containers are accepted when it is loaded.
"""

from __future__ import annotations

import enum
import importlib
import io
import json
import os
import pickle
import re
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from netdiag.capture import DEFAULT_CHUNK_PACKETS, PacketChunk, ReadStats
from netdiag.errors import CaptureWarning, UsageError
from netdiag.pipeline import Analysis, Pipeline, Stage, no_cyclic_gc
from netdiag.profile import Profile, as_profile, profile_record

STATE_DIR = "watch"
STATE_FILE = f"{STATE_DIR}/state.pkl"
PIPELINE_FILE = f"{STATE_DIR}/pipeline.pkl"
FILES_FILE = f"{STATE_DIR}/files.json"
ALERTS_FILE = f"{STATE_DIR}/alerts.log"
STATE_FORMAT = 1
# dumpcap's ring-buffer names: <prefix>_<5+ digit file number>_<YYYYmmddHHMMSS>.<ext>
DUMPCAP_NAME = re.compile(r"_(\d{5,})_(\d{14})\.[^.]+(\.gz)?$")
# modules whose classes a state file may name (netdiag's objects hold numpy arrays, polars frames, numba lists)
_SAFE_MODULES = ("netdiag", "numpy", "polars", "numba", "builtins", "collections", "copyreg", "datetime",
                 "functools", "ipaddress", "pathlib", "_codecs", "array", "enum", "heapq")


@dataclass
class FileRecord:
    """One capture file the watcher read."""

    name: str
    size: int
    mtime_ns: int
    packets: int
    first_frame: int
    read_utc: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.size, "packets": self.packets, "first_frame": self.first_frame,
                "read_utc": self.read_utc}


@dataclass
class WatchState:
    """What a restart continues from (OUT/watch/state.pkl; its pipeline in OUT/watch/pipeline.pkl)."""

    directory: str
    profile: dict[str, Any]
    pipeline: Pipeline | None
    files: list[FileRecord] = field(default_factory=list)
    next_frame: int = 1
    watermark_ns: int | None = None               # end of the newest complete logon at the last refresh
    warned_causes: list[str] = field(default_factory=list)   # causes with a warning finding so far
    reported: list[str] = field(default_factory=list)        # directory events already reported (one line each)
    alerts: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)         # files growing at the last poll
    last_ts_ns: int | None = None                 # newest packet time read so far
    format: int = STATE_FORMAT


@dataclass
class PollResult:
    """What one `Watcher.poll()` did."""

    files: list[str]                 # the files read in this poll, in order
    packets: int                     # packets read from them
    waiting: list[str]               # files seen but not complete yet (growing)
    warnings: list[str]              # capture warnings new in this poll: directory events (rotated away, out
                                     # of order ...) and problems in the files read (corrupt record ...)
    alert: str | None = None         # the alert line of this poll's refresh, if any
    refreshed: bool = False          # OUT was rewritten
    read_s: float = 0.0              # seconds reading the files into the pipeline
    refresh_s: float = 0.0           # seconds finishing a copy of it and writing OUT


class _StatePickler(pickle.Pickler):
    """Protocol specs pickle as their registered name (the one registry's object comes back, with
    whatever a sanitizer hooked into it), modules as their import name, enum members as their class
    called with their value (Debian's Python 3.11.2 pickles an IntEnum member as getattr(class,
    name), which the loader refuses; 3.11.7 already pickles it by value)."""

    def reducer_override(self, obj: Any) -> Any:
        from netdiag.protocols.spec import ProtocolSpec

        if isinstance(obj, ProtocolSpec):
            return registered_spec, (obj.name,)
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        if isinstance(obj, enum.Enum):
            return type(obj), (obj.value,)
        return NotImplemented


def registered_spec(name: str) -> Any:
    """The registered protocol spec of this name (a state names the protocols of its connections)."""
    from netdiag.protocols.registry import get

    spec = get(name)
    if spec is None:
        raise pickle.UnpicklingError(f"protocol {name!r} is not registered in this netdiag")
    return spec


class _StateUnpickler(pickle.Unpickler):
    """Loads only netdiag's own objects and the libraries they hold (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".", 1)[0] in _SAFE_MODULES:
            if module == "builtins" and name in {"eval", "exec", "compile", "open", "__import__", "getattr",
                                                 "setattr", "delattr", "globals", "locals", "vars", "input"}:
                raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a watch state")
            return super().find_class(module, name)
        if module == "importlib" and name == "import_module":
            return _import_netdiag_module
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a watch state")


def _import_netdiag_module(name: str) -> types.ModuleType:
    if name.split(".", 1)[0] not in _SAFE_MODULES:
        raise pickle.UnpicklingError(f"module {name} is not allowed in a watch state")
    return importlib.import_module(name)


def dump_state(obj: WatchState | Pipeline) -> bytes:
    """A watch state (without its pipeline) or a pipeline as bytes."""
    if isinstance(obj, WatchState):
        obj = replace(obj, pipeline=None)      # the pipeline has its own file (a refresh pickles it once)
    buf = io.BytesIO()
    _StatePickler(buf, protocol=5).dump(obj)
    return buf.getvalue()


def load_state(data: bytes, kind: type = WatchState) -> Any:
    """A WatchState or a Pipeline written by `dump_state` (only netdiag's objects: see _StateUnpickler)."""
    obj = _StateUnpickler(io.BytesIO(data)).load()
    if not isinstance(obj, kind):
        raise pickle.UnpicklingError(f"not a netdiag watch {kind.__name__}")
    return obj


def _utc() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _capture_files(directory: Path) -> list[Path]:
    """The directory's capture files by name (hidden files and partial downloads left out)."""
    try:
        entries = sorted(directory.iterdir(), key=lambda f: f.name)
    except OSError as exc:
        raise UsageError(f"{directory}: cannot list the directory: {exc.strerror or exc}") from None
    return [f for f in entries if not f.name.startswith(".") and f.is_file()]


class Watcher:
    """Follows one capture directory into one output directory (module docstring).

    `interval` is how long (seconds) the newest file must stay unchanged before it counts as
    complete. `out` is created, or continued when it holds this watcher's state; an OUT that
    netdiag did not write is refused unless `force`. Raises UsageError when OUT watches another
    directory or used another profile.
    """

    def __init__(self, directory: str | os.PathLike[str], out: str | os.PathLike[str],
                 profile: Profile | str | os.PathLike[str] | None = None, *, interval: float = 30.0,
                 force: bool = False, tls_keylog: Any = None, chunk_packets: int = DEFAULT_CHUNK_PACKETS,
                 clock: Callable[[], float] = time.time) -> None:
        from netdiag.analyze import MARKER
        from netdiag.output import check_out_dir

        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise UsageError(f"{self.directory}: not a directory (netdiag watch follows a ring-buffer directory)")
        self.out = Path(out)
        self.interval = float(interval)
        self.force = force
        self.chunk_packets = chunk_packets
        self.clock = clock
        self.profile = as_profile(profile)
        if tls_keylog is not None:
            from netdiag.tls_keylog import profile_with_keylog

            self.profile = profile_with_keylog(self.profile, tls_keylog)
        check_out_dir(self.out, marker=MARKER, kind="report", force=force)
        self.analysis: Analysis | None = None
        self._dirty = False                 # read or reported since the last refresh
        self._next_refresh = 0.0            # perf_counter time when a "due" refresh may run
        self.state = self._load() or self._new_state()

    # -- state ---------------------------------------------------------------------------------

    @property
    def pipeline(self) -> Pipeline:
        """The pipeline the files are fed to (carried across files and restarts)."""
        if self.state.pipeline is None:
            raise RuntimeError("watch state without its pipeline")
        return self.state.pipeline

    def _new_state(self) -> WatchState:
        pipe = Pipeline(self.profile, stage=Stage.LOGONS, paths=[str(self.directory)], read_stats=ReadStats(),
                        keep_segments=False)
        return WatchState(directory=str(self.directory.resolve()), profile=profile_record(self.profile),
                          pipeline=pipe)

    def _load(self) -> WatchState | None:
        path = self.out / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = load_state(path.read_bytes())
            state.pipeline = load_state((self.out / PIPELINE_FILE).read_bytes(), Pipeline)
        except Exception as exc:   # noqa: BLE001 - any unreadable state gets the same advice
            raise UsageError(f"{path}: the watch state cannot be read ({type(exc).__name__}: {exc}); it may come "
                             "from another netdiag version: give a new --out to start over") from None
        if state.format != STATE_FORMAT:
            raise UsageError(f"{path}: watch state format {state.format}, this netdiag reads {STATE_FORMAT}; "
                             "give a new --out to start over")
        if state.directory != str(self.directory.resolve()):
            raise UsageError(f"{self.out}: watches {state.directory}, not {self.directory.resolve()}; give another "
                             "--out for this directory")
        if state.profile.get("fingerprint") != profile_record(self.profile).get("fingerprint"):
            was = state.profile.get("source") or "the built-in defaults"
            raise UsageError(f"{self.out}: was watched with another profile ({was}); its logons would mix two rule "
                             "sets: give a new --out, or the same --profile")
        state.pipeline.profile = self.profile     # the same settings (fingerprint); a key log may be new
        return state

    # -- the directory ---------------------------------------------------------------------------

    def _scan(self) -> tuple[list[Path], list[Path], list[str]]:
        """(complete files not read yet, files still growing, events to report)."""
        st = self.state
        files = _capture_files(self.directory)
        read = {f.name: f for f in st.files}
        last = st.files[-1].name if st.files else None
        events: list[str] = []
        now = self.clock()
        new: list[Path] = []
        waiting: list[Path] = []
        for i, f in enumerate(files):
            rec = read.get(f.name)
            try:
                s = f.stat()
            except OSError:
                continue          # rotated away between listing and stat
            if rec is not None:
                if s.st_size != rec.size:      # a copy tool may touch the time alone: the bytes are what count
                    events.append(f"{f.name}: changed after it was read ({rec.size} -> {s.st_size} bytes); the "
                                  "change is not analysed")
                continue
            if last is not None and f.name < last:
                events.append(f"{f.name}: appeared after {last} was read but sorts before it; not analysed "
                              "(the watcher reads files in name order)")
                continue
            if i == len(files) - 1 and now - s.st_mtime_ns / 1e9 < self.interval:
                waiting.append(f)      # the newest file, still being written
                continue
            new.append(f)
        names = {f.name for f in files}
        events += [f"{n}: was growing at the last look and is gone without being read (rotated away): its packets "
                   "are missing" for n in st.waiting if n not in names and n not in read]
        st.waiting = [f.name for f in waiting]
        events += self._gaps(new)
        return new, waiting, events

    def _gaps(self, new: list[Path]) -> list[str]:
        """dumpcap file numbers missing between the files read and the new ones: rotated away unread."""
        names = [r.name for r in self.state.files[-1:]] + [f.name for f in new]
        nums = [int(m.group(1)) if (m := DUMPCAP_NAME.search(n)) else None for n in names]
        out = []
        if not self.state.files and nums and nums[0] is not None and nums[0] > 1:
            out.append(f"the first file read is {names[0]}: the ring buffer's files before it were rotated away "
                       "before the watch began")
        for i in range(len(names) - 1):
            (a, na), (b, nb) = (names[i], nums[i]), (names[i + 1], nums[i + 1])
            if na is not None and nb is not None and nb > na + 1:
                out.append(f"{nb - na - 1} file(s) between {a} and {b} were rotated away before they were read "
                           "(the ring buffer turned faster than the watcher read): their packets are missing")
        return out

    def _report(self, events: list[str]) -> bool:
        """Events not reported before become capture warnings (printed once, listed by the report)."""
        fresh = [e for e in events if e not in self.state.reported]
        self.state.reported += fresh
        for e in fresh:
            self.pipeline.read_stats.warnings.append(CaptureWarning(e, path=str(self.directory)))
        return bool(fresh)

    # -- reading ---------------------------------------------------------------------------------

    def _read(self, path: Path) -> int:
        """Feed one complete file to the pipeline; the packets read."""
        from netdiag.capture.merge import ensure_file, file_chunks

        st = self.state
        pipe = self.pipeline
        stats = pipe.read_stats
        s = path.stat()
        file_id = len(stats.files)
        stats.files.append(str(path))
        ensure_file(stats, file_id + 1)
        last_ts = st.last_ts_ns
        with no_cyclic_gc():
            for chunk in file_chunks(str(path), file_id, st.next_frame, stats, chunk_packets=self.chunk_packets,
                                     window_ns=stats.dedup_window_ns, progress=lambda n: None):
                ts = chunk.packets["ts_ns"]
                if len(ts):
                    if last_ts is not None and ts[0] < last_ts:
                        stats.warnings.append(CaptureWarning(
                            "timestamps go backwards across files (this file starts before the previous one "
                            "ended); analysis order follows the files", path=str(path),
                            frame=int(chunk.packets["frame"][0])))
                    last_ts = int(ts[-1]) if last_ts is None else max(last_ts, int(ts[-1]))
                stats.packets_kept += len(chunk.packets)
                pipe.feed(PacketChunk(chunk.packets, chunk.payload))
                del chunk
        st.last_ts_ns = last_ts
        n = stats.packets_per_file[file_id]
        st.files.append(FileRecord(path.name, s.st_size, s.st_mtime_ns, n, st.next_frame, _utc()))
        st.next_frame += n
        return n

    # -- the refresh -----------------------------------------------------------------------------

    def poll(self, *, refresh: str = "always") -> PollResult:
        """Read every complete file not read yet, then rewrite OUT with report and state.

        `refresh="always"` rewrites OUT whenever something was read or reported (`--once`);
        `"due"` (a follower) only once the last refresh is far enough behind: at least
        `interval` seconds and three times what that refresh took, so refreshing never takes more
        than a quarter of the time and the reading keeps up; what was read meanwhile is written
        by the next refresh that is due (a stop before it reads those files again on restart)."""
        if refresh not in ("always", "due"):
            raise ValueError(f"refresh={refresh!r}: 'always' or 'due'")
        warnings = self.pipeline.read_stats.warnings
        seen = len(warnings)
        new, waiting, events = self._scan()
        fresh = self._report(events)
        packets = 0
        t0 = time.perf_counter()
        for f in new:
            packets += self._read(f)
        t1 = time.perf_counter()
        result = PollResult([f.name for f in new], packets, [f.name for f in waiting],
                            [str(w) for w in warnings[seen:]], read_s=t1 - t0)
        self._dirty = self._dirty or bool(new or fresh)
        if self._dirty and (refresh == "always" or t1 >= self._next_refresh):
            result.alert = self._refresh()
            result.refreshed = True
            result.refresh_s = time.perf_counter() - t1
            self._dirty = False
            self._next_refresh = time.perf_counter() + max(self.interval, 3 * result.refresh_s)
        return result

    def _refresh(self) -> str | None:
        """Finish a copy of the pipeline, judge the alert, and swap report and state into OUT together."""
        from netdiag.analyze import MARKER, REPORT_FILES, write_outputs
        from netdiag.output import StagedDir

        st = self.state
        stage = StagedDir(self.out, marker=MARKER, kind="report", force=self.force,
                          output_names=(*REPORT_FILES, STATE_DIR))
        try:
            pipe = dump_state(self.pipeline)
            copy = load_state(pipe, Pipeline)      # the state goes on; its copy is finished
            a = copy.finish()
            del copy
            alert = self._alert(a)
            stage.write_bytes(PIPELINE_FILE, pipe)
            del pipe
            stage.write_bytes(STATE_FILE, dump_state(st))     # with the alert's facts (watermark, warned causes)
            stage.write_text(FILES_FILE, json.dumps([r.as_json() for r in st.files], indent=1) + "\n")
            stage.write_text(ALERTS_FILE, "".join(line + "\n" for line in st.alerts))
            if a.read_stats.packets_kept:
                write_outputs(a, stage, command="netdiag watch")
            else:        # no packets yet (empty or unreadable files): the state alone
                from netdiag.output import marker_record

                stage.commit(marker_record("report", "netdiag watch", captures=[self.directory.name]))
        except BaseException:
            stage.abort()
            raise
        self.analysis = a
        return alert

    def _alert(self, a: Analysis) -> str | None:
        """The alert line of this refresh (module docstring), or None; the facts it used go into the state."""
        from netdiag.logons.population import complete_logons, percentile
        from netdiag.words import fmt_s

        st = self.state
        thr = self.profile.thresholds.slow_logon_s
        parts: list[str] = []
        done = complete_logons(a.logons) if a.logons.height else a.logons
        if done.height:
            recent = done if st.watermark_ns is None else done.filter(pl.col("end_ts_ns") > st.watermark_ns)
            p95 = percentile(recent["duration_s"], 95) if recent.height else None
            if p95 is not None and p95 > thr:
                parts.append(f"p95 logon time {fmt_s(p95)} over the {recent.height} logon(s) that ended since the "
                             f"last refresh (slow: over {fmt_s(thr)})")
            st.watermark_ns = int(done["end_ts_ns"].max())
        warn = a.findings.filter(pl.col("severity") == "warning") if a.findings.height else a.findings
        new_warn = [r for r in warn.iter_rows(named=True) if r["cause"] not in st.warned_causes]
        for r in new_warn:
            parts.append(f"{r['id']} {r['cause']}: {r['summary']}")
            st.warned_causes.append(r["cause"])
        if not parts:
            return None
        from netdiag.report import redact_cpr

        line = redact_cpr(f"{_utc()} ALERT {self.directory.name}: " + "; ".join(parts))
        st.alerts.append(line)
        return line


__all__ = ["FileRecord", "PollResult", "WatchState", "Watcher", "dump_state", "load_state"]
