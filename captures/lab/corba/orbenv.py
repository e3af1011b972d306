"""Make omniORBpy (pip package cmeel-omniorbpy) importable and build ORB argument lists.

Why this exists: cmeel installs omniORB under ``site-packages/cmeel.prefix``; its Python
extension ``_omnipy`` needs ``libomniORB4.so.3`` and friends, which the dynamic loader only
finds through LD_LIBRARY_PATH. Rather than asking every runner to export it, we preload the
libraries by absolute path with RTLD_GLOBAL before the first ``import omniORB`` (the loader
then matches the already-loaded sonames). Child programs (omniNames) get an environment with
LD_LIBRARY_PATH set instead.

The IDL (``epj.idl`` beside this file) is compiled at run time with ``omniORB.importIDL``, so
no generated stubs are committed.

omniORB options used here are documented in the omniORB 4.3 manual, chapter 4
("Configuring omniORB"): endPoint, maxGIOPVersion, giopMaxMsgSize, giopBufferSize,
clientCallTimeOutPeriod, traceLevel/traceTime/traceFile.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent
IDL_PATH = HERE / "epj.idl"

# Order matters: each library must find its dependencies already loaded.
_LIBS = (
    "libomnithread.so.4",
    "libomniORB4.so.3",
    "libomniDynamic4.so.3",
    "libomniCodeSets4.so.3",
    "libomniConnectionMgmt4.so.3",
    "libCOS4.so.3",
    "libCOSDynamic4.so.3",
)


class OmniOrbMissing(RuntimeError):
    """omniORBpy (cmeel-omniorbpy) is not installed or its libraries cannot be loaded."""


def cmeel_prefix() -> Path:
    """Return the cmeel.prefix directory that holds omniORB's bin/, lib/ and python modules."""
    try:
        import cmeel  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise OmniOrbMissing("python package 'cmeel' not found: pip install cmeel-omniorbpy") from exc
    prefix = Path(cmeel.__file__).resolve().parent.parent / "cmeel.prefix"
    if not (prefix / "lib" / "libomniORB4.so.3").exists():
        raise OmniOrbMissing(f"omniORB libraries not found under {prefix}/lib: pip install cmeel-omniorbpy")
    return prefix


def child_env() -> dict[str, str]:
    """Environment for omniORB programs started as children (omniNames): LD_LIBRARY_PATH set, TZ=UTC."""
    prefix = cmeel_prefix()
    env = dict(os.environ)
    lib = str(prefix / "lib")
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    env["TZ"] = "UTC"
    return env


def omninames_binary() -> Path:
    """Path of the omniNames naming service executable shipped with cmeel-omniorbpy."""
    path = cmeel_prefix() / "bin" / "omniNames"
    if not path.exists():
        raise OmniOrbMissing(f"omniNames not found at {path}")
    return path


_loaded: ModuleType | None = None


def load_omniorb() -> ModuleType:
    """Import omniORB (preloading its shared libraries) and the EPJ IDL; return the omniORB module.

    Also forces TZ=UTC so omniORB's trace timestamps (local time) are UTC; orbtrace.py relies on it.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    os.environ["TZ"] = "UTC"
    time.tzset()
    libdir = cmeel_prefix() / "lib"
    for name in _LIBS:
        try:
            ctypes.CDLL(str(libdir / name), mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            raise OmniOrbMissing(f"cannot load {libdir / name}: {exc}") from exc
    try:
        import omniORB  # type: ignore[import-not-found]
    except ImportError as exc:
        raise OmniOrbMissing(f"import omniORB failed: {exc}") from exc
    # importIDL runs the ``omniidl`` program found on PATH, and omniidl starts with
    # ``#!/usr/bin/env python``. cmeel installs it under cmeel.prefix/bin and the venv's
    # ``python`` sits beside sys.executable: neither is on PATH on a fresh machine.
    path = os.environ.get("PATH", "").split(os.pathsep)
    for bindir in (str(cmeel_prefix() / "bin"), os.path.dirname(sys.executable)):
        if bindir not in path:
            path.insert(0, bindir)
    os.environ["PATH"] = os.pathsep.join(path)
    omniORB.importIDL(str(IDL_PATH))
    _loaded = omniORB
    return omniORB


def giop_args(giop: dict) -> list[str]:
    """ORB_init arguments for the GIOP settings block of a config (see README 'giop')."""
    args = ["-ORBmaxGIOPVersion", str(giop.get("max_version", "1.2"))]
    if "max_msg_size" in giop:
        args += ["-ORBgiopMaxMsgSize", str(int(giop["max_msg_size"]))]
    if "buffer_size" in giop:
        # omniORB writes (and, for GIOP 1.1/1.2, fragments) messages in giopBufferSize pieces.
        args += ["-ORBgiopBufferSize", str(int(giop["buffer_size"]))]
    return args


def trace_args(trace_file: Path) -> list[str]:
    """ORB_init arguments that make omniORB log every GIOP message header it sends or receives.

    traceLevel 30 dumps the first 128 bytes of each message with a microsecond timestamp;
    orbtrace.py turns that into request ids and reply statuses.
    """
    return ["-ORBtraceLevel", "30", "-ORBtraceTime", "1", "-ORBtraceThreadId", "1",
            "-ORBtraceExceptions", "0", "-ORBtraceFile", str(trace_file)]
