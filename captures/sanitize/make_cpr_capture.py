"""Make captures/sanitize/cpr_http_giop.pcap: real peers on loopback carrying fake CPR numbers.

    python -m captures.sanitize.make_cpr_capture      # as root; needs tcpdump, curl, cmeel-omniorbpy

What it captures (tcpdump on `lo`, --immediate-mode -B 16384, stopped 1 s after the last peer):
- curl -> python http.server (HTTP/1.1): a GET whose query string, Cookie and Authorization header
  carry CPR numbers, and a POST whose body carries one (http.server answers 501 to POST);
- an omniORB client -> omniORB server (EPJ::Session from captures/lab/corba/epj.idl, GIOP 1.2) on
  127.0.0.1: authenticate() with a CPR in the user id and the client-info blob,
  getWorklist() whose reply rows carry CPR numbers, fetchPatientList() with a CPR ward id.

The CPR numbers are fake (010190-1234, 0101901234, 311299-9876, 150585-4321); nothing else here
is personal. The test (tests/test_sanitize.py) checks they are in this file and gone after
`netdiag sanitize`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "cpr_http_giop.pcap"
HTTP_PORT, ORB_PORT = 18081, 19100
CPRS = ("010190-1234", "0101901234", "311299-9876", "150585-4321")


def serve_orb() -> None:
    from captures.lab.corba import orbenv

    orbenv.load_omniorb()
    import EPJ  # type: ignore[import-not-found]
    import EPJ__POA  # type: ignore[import-not-found]
    from omniORB import CORBA  # type: ignore[import-not-found]

    class Session(EPJ__POA.Session):
        def authenticate(self, user, password, info):
            return EPJ.LogonTicket("token-for-010190-1234", b"credential 0101901234")

        def getUserContext(self, token):
            return EPJ.UserContext("u", "Test User", "doctor", "ward 7", [], b"")

        def getWorklist(self, token, rows):
            return [EPJ.PatientRecord("311299-9876", "Test Patient", "W7", "B1", "in"),
                    EPJ.PatientRecord("1505854321", "Test Patient 2", "W7", "B2", "in")]

        def fetchPatientList(self, token, ward):
            return b"patients of " + ward.encode()

        def logout(self, token):
            return None

    orb = CORBA.ORB_init(["srv", "-ORBendPoint", f"giop:tcp:127.0.0.1:{ORB_PORT}"], CORBA.ORB_ID)
    poa = orb.resolve_initial_references("omniINSPOA")
    poa.activate_object_with_id(b"EPJSession", Session())
    poa._get_the_POAManager().activate()
    print("ready", flush=True)
    orb.run()


def call_orb() -> None:
    from captures.lab.corba import orbenv

    orbenv.load_omniorb()
    import EPJ  # type: ignore[import-not-found]
    from omniORB import CORBA  # type: ignore[import-not-found]

    orb = CORBA.ORB_init(["cli"], CORBA.ORB_ID)
    s = orb.string_to_object(f"corbaloc::1.2@127.0.0.1:{ORB_PORT}/EPJSession")._narrow(EPJ.Session)
    t = s.authenticate("user 010190-1234", "secret", b"client info 0101901234")
    s.getWorklist(t.token, 10)
    s.fetchPatientList(t.token, "ward of 150585-4321")
    s.logout(t.token)
    orb.destroy()


def main() -> int:
    if os.geteuid() != 0 or not shutil.which("tcpdump") or not shutil.which("curl"):
        print("needs root, tcpdump and curl", file=sys.stderr)
        return 2
    env = dict(os.environ, PYTHONPATH=str(HERE.parent.parent))
    procs = []
    dump = subprocess.Popen(["tcpdump", "-i", "lo", "--immediate-mode", "-B", "16384", "-w", str(OUT),
                             f"tcp port {HTTP_PORT} or tcp port {ORB_PORT}"], stderr=subprocess.DEVNULL)
    procs.append(dump)
    try:
        www = HERE / "www"
        www.mkdir(exist_ok=True)
        (www / "index.html").write_text("<p>hello</p>\n")
        procs.append(subprocess.Popen([sys.executable, "-m", "http.server", "--protocol", "HTTP/1.1", "-b", "127.0.0.1",
                                       "-d", str(www), str(HTTP_PORT)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        srv = subprocess.Popen([sys.executable, "-c", "from captures.sanitize.make_cpr_capture import serve_orb; serve_orb()"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(srv)
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        base = f"http://127.0.0.1:{HTTP_PORT}"
        subprocess.run(["curl", "-s", "-o", "/dev/null", "-H", "Cookie: patient=010190-1234",
                        "-H", "Authorization: Basic MDEwMTkwLTEyMzQ=", f"{base}/index.html?cpr=0101901234"],
                       check=True, timeout=10)
        subprocess.run(["curl", "-s", "-o", "/dev/null", "--data", "cpr=311299-9876&name=Test+Patient",
                        f"{base}/submit"], check=False, timeout=10)
        subprocess.run([sys.executable, "-c", "from captures.sanitize.make_cpr_capture import call_orb; call_orb()"],
                       env=env, check=True, timeout=30)
        time.sleep(1.0)  # let tcpdump drain its buffer
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGINT if p is dump else signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(HERE / "www", ignore_errors=True)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
