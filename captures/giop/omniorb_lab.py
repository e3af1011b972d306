"""Real GIOP from omniORB on loopback, captured with tcpdump (test support; run as root).

Why: crafted bytes prove the parser against our reading of the spec; a real ORB proves it
against what ORBs actually send (alignment padding, service contexts, fragment sizes, the
LocateReply body offset). omniORB (cmeel-omniorbpy) is the real peer available here.

What it does (bounded, loopback only, every process it starts is stopped by its pid):
1. writes a tiny IDL (module NDT, interface Desk) and compiles it with omniidl;
2. starts tcpdump on lo for the server and naming ports, omniNames, then a server listening
   on 127.0.0.1 and 127.0.0.2 (so its IORs carry a TAG_ALTERNATE_IIOP_ADDRESS), that binds
   "Desk" in the naming service and has three objects under
   fixed corbaloc keys (omniINSPOA): "Echo" (echo, big, fail_transient, fail_user, note),
   "Fwd" (every call answers omniORB.LOCATION_FORWARD to "Echo"), and "Lost" in a POA whose
   ServantActivator raises PortableServer.ForwardRequest (a Request to it is forwarded);
3. runs the client three times (CLIENT_RUNS: -ORBmaxGIOPVersion 1.0, 1.1, 1.2): a naming
   `resolve` of "Desk" (the reply carries its IOR, which tshark decodes too), echo, a large
   reply (fragmented by the server in 1.1/1.2, see SERVER_ORB_ARGS), CORBA.TRANSIENT, a user
   exception, a oneway, a call through "Fwd", and _non_existent() on "Echo", "Lost" and an
   unknown key (omniORB sends LocateRequests on its own for corbaloc references); then a
   hand-made LocateRequest for "Lost" on a raw socket (omniORB answers OBJECT_HERE: it does
   not ask the ServantActivator, see captures/giop/README.md);
4. stops everything and leaves the pcap.

    sudo python captures/giop/omniorb_lab.py captures/giop/omniorb.pcap
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER_PORT = 28109
NAMING_PORT = 28110  # omniNames: the client's `resolve` reply carries the server's IOR
BIG_REPLY_BYTES = 100_000  # several GIOP fragments at omniORB's buffer size (1.1/1.2)
# Server: marshal everything through 16 KB buffers (no direct send of big sequences), so a
# large reply leaves as a first fragment plus a chain of Fragments, as an IBM ORB with
# com.ibm.CORBA.FragmentSize would send it.
SERVER_ORB_ARGS = ("-ORBgiopBufferSize", "16384", "-ORBgiopDirectSendCutOff", "1048576")
# Client runs: GIOP version and extra ORB arguments. (-ORBgiopTargetAddressMode 1/2 did not
# change the client's KeyAddr requests in omniORB 4.3.1, so ProfileAddr/ReferenceAddr are
# covered by crafted bytes only.)
CLIENT_RUNS = (("1.0", ()), ("1.1", ()), ("1.2", ()))
TRANSIENT_MINOR = 0x4F4D0002  # OMG minor code base "OM" + 2

IDL = """
module NDT {
  typedef sequence<octet> Blob;
  exception Nope { string why; };
  interface Desk {
    string echo(in string s);
    Blob big(in unsigned long n);
    void fail_transient();
    void fail_user() raises (Nope);
    oneway void note(in string s);
  };
};
"""

SERVER = f"""
import sys, time
import omniORB
from omniORB import CORBA, PortableServer
import NDT, NDT__POA

class Echo(NDT__POA.Desk):
    def echo(self, s): return s
    def big(self, n): return bytes(n)
    def fail_transient(self): raise CORBA.TRANSIENT({TRANSIENT_MINOR}, CORBA.COMPLETED_NO)
    def fail_user(self): raise NDT.Nope("no such user")
    def note(self, s): pass

class Fwd(NDT__POA.Desk):
    def __init__(self, target): self.target = target
    def _go(self, *a): raise omniORB.LOCATION_FORWARD(self.target, 0)
    echo = big = fail_transient = fail_user = note = _go

class Activator(PortableServer.ServantActivator):
    def __init__(self, target): self.target = target
    def incarnate(self, oid, adapter): raise PortableServer.ForwardRequest(self.target)
    def etherealize(self, oid, adapter, servant, cleanup, remaining): pass

orb = CORBA.ORB_init(sys.argv, CORBA.ORB_ID)
root = orb.resolve_initial_references("RootPOA")
ins = orb.resolve_initial_references("omniINSPOA")
echo = Echo()
ins.activate_object_with_id(b"Echo", echo)
target = ins.id_to_reference(b"Echo")
ins.activate_object_with_id(b"Fwd", Fwd(target))
policies = [root.create_request_processing_policy(PortableServer.USE_SERVANT_MANAGER)]
lost_poa = root.create_POA("lost", root._get_the_POAManager(), policies)
lost_poa.set_servant_manager(Activator(target))
lost = lost_poa.create_reference_with_id(b"Lost", "IDL:NDT/Desk:1.0")
import CosNaming
ns = orb.resolve_initial_references("NameService")._narrow(CosNaming.NamingContext)
ns.rebind([CosNaming.NameComponent("Desk", "")], target)
open(sys.argv[-1], "w").write(orb.object_to_string(lost))
root._get_the_POAManager().activate()
ins._get_the_POAManager().activate()
orb.run()
"""

CLIENT = f"""
import sys
from omniORB import CORBA
import NDT
version, lost_key = sys.argv[-2], open(sys.argv[-1]).read()
orb = CORBA.ORB_init(sys.argv[:-2], CORBA.ORB_ID)
# corbaloc defaults to GIOP 1.0: name the version so -ORBmaxGIOPVersion decides
base = "corbaloc::" + version + "@127.0.0.1:{SERVER_PORT}/"
import CosNaming
ns = orb.resolve_initial_references("NameService")._narrow(CosNaming.NamingContext)
named = ns.resolve([CosNaming.NameComponent("Desk", "")])._narrow(NDT.Desk)
named.echo("found by name")
echo = orb.string_to_object(base + "Echo")._narrow(NDT.Desk)
echo.echo("hello")
assert len(echo.big({BIG_REPLY_BYTES})) == {BIG_REPLY_BYTES}
try:
    echo.fail_transient()
except CORBA.TRANSIENT:
    pass
try:
    echo.fail_user()
except NDT.Nope:
    pass
echo.note("oneway")
fwd = orb.string_to_object(base + "Fwd")._narrow(NDT.Desk)
fwd.echo("via forward")
echo._non_existent()
lost = orb.string_to_object(base + lost_key)._narrow(NDT.Desk)
lost.echo("via servant activator forward")
lost._non_existent()
orb.string_to_object(base + "NoSuchKey")._non_existent()
echo.echo("bye")
orb.destroy()

# omniORB's client never sends a LocateRequest to "Lost" (the _is_a forward retargets it),
# so probe the server by hand: one LocateRequest in this GIOP version on a fresh connection.
# The LocateReply (OBJECT_FORWARD, and its body offset) is omniORB's own.
import socket, struct, urllib.parse
key = urllib.parse.unquote_to_bytes(lost_key)
minor = int(version[2])
if minor >= 2:
    body = struct.pack("<IhH", 99, 0, 0) + struct.pack("<I", len(key)) + key
else:
    body = struct.pack("<I", 99) + struct.pack("<I", len(key)) + key
msg = b"GIOP" + bytes([1, minor, 1, 3]) + struct.pack("<I", len(body)) + body
with socket.create_connection(("127.0.0.1", {SERVER_PORT}), timeout=30) as s:
    s.sendall(msg)
    head = b""
    while len(head) < 12:
        head += s.recv(12 - len(head))
    size = struct.unpack("<I" if head[6] & 1 else ">I", head[8:12])[0]
    got = 0
    while got < size:
        got += len(s.recv(size - got))
"""


def omni_env() -> dict[str, str] | None:
    """Environment for omniORB subprocesses (LD_LIBRARY_PATH, omniidl), or None if missing."""
    import site
    for sp in site.getsitepackages():
        prefix = Path(sp) / "cmeel.prefix"
        if (prefix / "bin" / "omniidl").exists():
            env = dict(os.environ)
            env["LD_LIBRARY_PATH"] = f"{prefix / 'lib'}:{env.get('LD_LIBRARY_PATH', '')}"
            # omniidl starts with `#!/usr/bin/env python`: the venv's python must be on PATH too
            env["PATH"] = f"{prefix / 'bin'}:{Path(sys.executable).parent}:{env.get('PATH', '')}"
            return env
    return None


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _corbaloc_key(ior: str, env: dict[str, str]) -> str:
    """The object key of the IOR's IIOP profile, %-escaped for a corbaloc URL (via catior)."""
    import codecs
    import re
    import urllib.parse
    out = subprocess.run(["catior", ior], env=env, check=True, timeout=30,
                         capture_output=True, text=True).stdout
    m = re.search(r'IIOP \d\.\d \S+ \d+ "(.*)"', out)
    if m is None:
        raise RuntimeError(f"catior gave no IIOP profile: {out!r}")
    key = codecs.escape_decode(m.group(1).encode("latin-1"))[0]
    return urllib.parse.quote_from_bytes(key, safe="")


def _client(work: Path, env: dict[str, str], orb_args: list[str], version: str, key_file: Path) -> None:
    """One client run; a failed one is said on stderr and run once more (the capture then holds both).

    (One fresh-clone CI run on a loaded machine saw a client exit 1 whose stderr was not kept; a
    second failure raises with the client's own words.)
    """
    cmd = [sys.executable, str(work / "client.py"), "-ORBmaxGIOPVersion", version, *orb_args, version,
           str(key_file)]
    for attempt in (1, 2):
        run = subprocess.run(cmd, env=env, cwd=work, timeout=120, capture_output=True, text=True)
        if run.returncode == 0:
            return
        why = f"the GIOP {version} client exited with {run.returncode}: {run.stderr.strip()[-2000:]}"
        if attempt == 2:
            raise RuntimeError(why)
        print(f"omniorb_lab: {why}; running it again", file=sys.stderr)
        time.sleep(1.0)


def record(pcap: Path) -> None:
    """Run the lab and write its loopback capture to `pcap` (needs root, tcpdump, omniORB)."""
    env = omni_env()
    if env is None or shutil.which("tcpdump") is None:
        raise RuntimeError("omniORB (cmeel-omniorbpy) or tcpdump missing")
    with tempfile.TemporaryDirectory(prefix="giop_lab_") as tmp:
        work = Path(tmp)
        (work / "ndt.idl").write_text(IDL)
        subprocess.run(["omniidl", "-bpython", "-C", str(work), str(work / "ndt.idl")],
                       env=env, check=True, timeout=60, cwd=work)
        (work / "server.py").write_text(SERVER)
        (work / "client.py").write_text(CLIENT)
        env["PYTHONPATH"] = f"{work}:{env.get('PYTHONPATH', '')}"
        raw = work / "lab.pcap"
        dump = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "-s", "0", "-w", str(raw),
                                 f"tcp port {SERVER_PORT} or tcp port {NAMING_PORT}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        server = names = None
        init_ref = ["-ORBInitRef", f"NameService=corbaloc::1.2@127.0.0.1:{NAMING_PORT}/NameService"]
        try:
            (work / "names").mkdir()
            names = subprocess.Popen(["omniNames", "-start", str(NAMING_PORT), "-always", "-datadir",
                                      str(work / "names"), "-ORBendPoint",
                                      f"giop:tcp:127.0.0.1:{NAMING_PORT}"],
                                     env=env, cwd=work, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # tcpdump needs a moment to attach, omniNames to listen
            ior_file = work / "lost.ior"
            server = subprocess.Popen(
                [sys.executable, str(work / "server.py"), "-ORBendPoint",
                 f"giop:tcp:127.0.0.1:{SERVER_PORT}", "-ORBendPoint", f"giop:tcp:127.0.0.2:{SERVER_PORT}",
                 *SERVER_ORB_ARGS, *init_ref, str(ior_file)],
                env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for _ in range(100):
                if ior_file.exists() and ior_file.stat().st_size > 0:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("omniORB server did not start")
            key_file = work / "lost.key"
            key_file.write_text(_corbaloc_key(ior_file.read_text().strip(), env))
            time.sleep(0.3)
            for version, extra in CLIENT_RUNS:
                _client(work, env, [*extra, *init_ref], version, key_file)
            time.sleep(0.5)
        finally:
            for proc in (server, names):
                if proc is not None:
                    _stop(proc)
            time.sleep(0.5)
            _stop(dump, signal.SIGINT)
        shutil.copyfile(raw, pcap)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("omniorb.pcap")
    record(out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
