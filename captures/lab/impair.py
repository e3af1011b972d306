"""User-space impairing bridge for the lab's middle namespace (this kernel has no netem qdisc).

    python -m captures.lab.impair --a IF_CLIENT_SIDE --b IF_SERVER_SIDE --config IMPAIR.json \
        --log IMPAIR.jsonl [--max-runtime-s 300]

Two AF_PACKET raw sockets (ETH_P_ALL, packet(7)) read every Ethernet frame arriving on the two
veths of the middle namespace; a select() loop with a heap of due times writes each frame out of
the other veth after its delay, or drops it. Frames the kernel itself sent (PACKET_OUTGOING,
i.e. our own writes) are ignored. The middle namespace has no IP address, so the kernel does not
answer or forward anything itself: the bridge is the only path between client and server.

Impairments (config keys):
- ``c2s`` / ``s2c``: ``delay_ms`` added to every frame in that direction (FIFO order kept), and
  ``loss``: ``{"p": 0.02, "seed": 7, "tcp_payload_only": true}`` (seeded, so reproducible).
- ``rules``: list of ``{"dir": "c2s"|"s2c", "proto": "tcp"|"udp", "sport", "dport", "syn": true
  (SYN without ACK), "payload": true (TCP/UDP payload > 0), "contains": "ascii text",
  "pure_ack": true (TCP, no payload, no SYN/FIN/RST: a bare ACK), "nth": [1, 3] (1-based index
  among the frames this rule matched; default every one), "after": {a match spec with the same
  keys} (the rule matches only frames that come after a frame matching this spec passed the
  bridge: e.g. "the first bare ACK after the second reply frame"), "action": "drop"|"delay",
  "delay_ms": N}``; the first rule that matches and selects decides.

Every frame dropped or delayed is logged (JSON lines): receive and send times (UTC ns), direction,
MD5 of the whole frame (what Wireshark shows as frame.md5_hash with frame.generate_md5_hash on),
a one-line summary (addresses, ports, TCP flags, seq, payload length, never payload bytes) and the
reason. That log is the emulator's ground truth; netdiag never writes it.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import random
import select
import signal
import socket
import struct
import sys
import time
from pathlib import Path

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
ETH_HDR = struct.Struct("!6s6sH")
TCP_FLAGS = "FSRPAUEC"


def frame_info(frame: bytes) -> dict:
    """Decode the headers the rules need (Ethernet II, IPv4, TCP/UDP); never the payload contents."""
    info: dict = {"proto": "other", "payload_len": 0}
    if len(frame) < 14:
        return info
    _dst, _src, etype = ETH_HDR.unpack_from(frame, 0)
    if etype == 0x0806:
        info["proto"] = "arp"
        return info
    if etype != 0x0800 or len(frame) < 34:
        return info
    ihl = (frame[14] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, 16)[0]
    proto = frame[23]
    info["src"] = socket.inet_ntoa(frame[26:30])
    info["dst"] = socket.inet_ntoa(frame[30:34])
    l4 = 14 + ihl
    end = min(len(frame), 14 + total)
    if proto == 6 and end >= l4 + 20:
        sport, dport, seq, ack, off_flags = struct.unpack_from("!HHIIH", frame, l4)
        doff = (off_flags >> 12) * 4
        flags = off_flags & 0xFF
        info.update(proto="tcp", sport=sport, dport=dport, seq=seq, ack=ack,
                    flags="".join(c for i, c in enumerate(TCP_FLAGS) if flags & (1 << i)),
                    payload_off=l4 + doff, payload_len=max(0, end - l4 - doff))
    elif proto == 17 and end >= l4 + 8:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        info.update(proto="udp", sport=sport, dport=dport, payload_off=l4 + 8, payload_len=max(0, end - l4 - 8))
    else:
        info["proto"] = f"ip{proto}"
    return info


def summary(info: dict) -> str:
    """One line a person can match against Wireshark: 'tcp 10.77.1.20:40000>10.77.1.10:9100 S seq=1 len=0'."""
    if info["proto"] in ("tcp", "udp"):
        s = f"{info['proto']} {info['src']}:{info['sport']}>{info['dst']}:{info['dport']}"
        if info["proto"] == "tcp":
            s += f" {info['flags']} seq={info['seq']}"
        return s + f" len={info['payload_len']}"
    return info["proto"]


class Rule:
    """One match-and-act rule (see module docstring); counts its own matches for ``nth``."""

    def __init__(self, spec: dict, index: int) -> None:
        self.spec = spec
        self.index = index
        self.matched = 0
        self.nth = set(spec.get("nth", []))
        self.action = spec.get("action", "drop")
        if self.action not in ("drop", "delay"):
            raise ValueError(f"rules[{index}].action must be drop or delay, not {self.action!r}")
        self.contains = spec["contains"].encode() if spec.get("contains") else None
        self.after = Rule({**spec["after"], "action": "drop"}, index) if spec.get("after") else None
        self.armed = self.after is None

    def arm(self, direction: str, info: dict, frame: bytes) -> None:
        """Arm a rule with an ``after`` spec once a frame matching that spec is seen."""
        if not self.armed and self.after is not None and self.after.decide(direction, info, frame) is not None:
            self.armed = True

    def decide(self, direction: str, info: dict, frame: bytes) -> str | None:
        s = self.spec
        if not self.armed:
            return None
        if s.get("dir", direction) != direction:
            return None
        if "proto" in s and info["proto"] != s["proto"]:
            return None
        for key in ("sport", "dport"):
            if key in s and info.get(key) != s[key]:
                return None
        if s.get("syn") and not (info["proto"] == "tcp" and "S" in info["flags"] and "A" not in info["flags"]):
            return None
        if s.get("payload") and info["payload_len"] == 0:
            return None
        if s.get("pure_ack") and not (info["proto"] == "tcp" and info["payload_len"] == 0 and "A" in info["flags"]
                                      and not set(info["flags"]) & set("SFR")):
            return None
        if self.contains is not None:
            if info["payload_len"] == 0 or self.contains not in frame[info["payload_off"]:]:
                return None
        self.matched += 1
        if self.nth and self.matched not in self.nth:
            return None
        return self.action


class Bridge:
    """Copy frames between two interfaces with delay/loss; log what it did to each frame it touched."""

    def __init__(self, if_a: str, if_b: str, cfg: dict, log_path: Path) -> None:
        self.socks = {}
        for name, ifname in (("c2s", if_a), ("s2c", if_b)):
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
            s.bind((ifname, ETH_P_ALL))
            s.setblocking(False)
            self.socks[name] = s   # frames read from this socket travel in direction `name`
        self.out = {"c2s": self.socks["s2c"], "s2c": self.socks["c2s"]}
        self.cfg = cfg
        self.rules = [Rule(r, i) for i, r in enumerate(cfg.get("rules", []))]
        self.rng = {d: random.Random(int(cfg.get(d, {}).get("loss", {}).get("seed", 1)) + (0 if d == "c2s" else 1))
                    for d in ("c2s", "s2c")}
        self.heap: list[tuple[int, int, str, bytes, dict | None]] = []
        self.seq = 0
        self.counts = {d: {"frames_in": 0, "frames_out": 0, "dropped": 0, "delayed": 0} for d in ("c2s", "s2c")}
        self.log = open(log_path, "a", buffering=1 << 16)  # noqa: SIM115 - closed in run()
        self.stop = False

    def _write(self, rec: dict) -> None:
        self.log.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def _handle(self, direction: str, frame: bytes, now_ns: int) -> None:
        c = self.counts[direction]
        c["frames_in"] += 1
        info = frame_info(frame)
        dcfg = self.cfg.get(direction, {})
        action, reason, delay_ms = None, "", float(dcfg.get("delay_ms", 0))
        for rule in self.rules:
            act = rule.decide(direction, info, frame)
            if act is not None:
                action, reason = act, f"rule {rule.index} match #{rule.matched}"
                if act == "delay":
                    delay_ms += float(rule.spec.get("delay_ms", 0))
                break
        for rule in self.rules:   # after deciding: the arming frame itself is not matched
            rule.arm(direction, info, frame)
        if action is None:
            loss = dcfg.get("loss")
            if loss and float(loss.get("p", 0)) > 0:
                eligible = info["payload_len"] > 0 or not loss.get("tcp_payload_only", True)
                if eligible and self.rng[direction].random() < float(loss["p"]):
                    action, reason = "drop", f"random loss p={loss['p']} seed={loss.get('seed', 1)}"
        rec = None
        if action == "drop" or delay_ms > 0:
            rec = {"event": "dropped" if action == "drop" else "delayed", "dir": direction, "ts_in_ns": now_ns,
                   "md5": hashlib.md5(frame).hexdigest(), "frame_len": len(frame), "summary": summary(info),
                   "reason": reason or f"{direction} delay_ms={delay_ms}"}
            if info["proto"] in ("tcp", "udp"):
                rec.update(proto=info["proto"], src=f"{info['src']}:{info['sport']}",
                           dst=f"{info['dst']}:{info['dport']}", payload_len=info["payload_len"])
                if info["proto"] == "tcp":
                    rec.update(tcp_flags=info["flags"], seq=info["seq"])
        if action == "drop":
            c["dropped"] += 1
            self._write(rec)  # type: ignore[arg-type]
            return
        if delay_ms > 0:
            c["delayed"] += 1
            rec["delay_ms"] = delay_ms  # type: ignore[index]
            self.seq += 1
            heapq.heappush(self.heap, (now_ns + int(delay_ms * 1e6), self.seq, direction, frame, rec))
        else:
            self._send(direction, frame, None)

    def _send(self, direction: str, frame: bytes, rec: dict | None) -> None:
        try:
            self.out[direction].send(frame)
        except OSError as exc:   # e.g. ENOBUFS: record it, it is loss the truth must show
            self._write({"event": "send_failed", "dir": direction, "ts_ns": time.time_ns(),
                         "md5": hashlib.md5(frame).hexdigest(), "error": str(exc)})
            return
        self.counts[direction]["frames_out"] += 1
        if rec is not None:
            rec["ts_out_ns"] = time.time_ns()
            self._write(rec)

    def run(self, max_runtime_s: float) -> None:
        deadline = time.monotonic() + max_runtime_s
        self._write({"event": "bridge_ready", "ts_ns": time.time_ns(), "config": self.cfg})
        self.log.flush()
        by_fd = {s.fileno(): d for d, s in self.socks.items()}
        try:
            while not self.stop and time.monotonic() < deadline:
                timeout = 0.2
                if self.heap:
                    timeout = max(0.0, min(timeout, (self.heap[0][0] - time.time_ns()) / 1e9))
                ready, _, _ = select.select(list(self.socks.values()), [], [], timeout)
                for s in ready:
                    direction = by_fd[s.fileno()]
                    for _ in range(256):   # bounded drain per wake-up
                        try:
                            frame, addr = s.recvfrom(65535)
                        except BlockingIOError:
                            break
                        if addr[2] == PACKET_OUTGOING:
                            continue
                        self._handle(direction, frame, time.time_ns())
                now = time.time_ns()
                while self.heap and self.heap[0][0] <= now:
                    _, _, direction, frame, rec = heapq.heappop(self.heap)
                    self._send(direction, frame, rec)
        finally:
            stats = {}
            for d, s in self.socks.items():
                try:
                    packets, drops = struct.unpack("II", s.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
                    stats[d] = {"socket_packets": packets, "socket_drops": drops}
                except OSError:
                    stats[d] = {}
            self._write({"event": "bridge_stats", "ts_ns": time.time_ns(), "counts": self.counts,
                         "kernel": stats, "still_queued": len(self.heap),
                         "rule_matches": [r.matched for r in self.rules]})
            self.log.close()


def main(argv: list[str] | None = None) -> int:
    """Run the bridge until SIGTERM/SIGINT or --max-runtime-s."""
    ap = argparse.ArgumentParser(prog="python -m captures.lab.impair", description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="interface toward the client")
    ap.add_argument("--b", required=True, help="interface toward the server")
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--max-runtime-s", type=float, default=300.0)
    args = ap.parse_args(argv)
    try:
        cfg = json.loads(args.config.read_text())
        bridge = Bridge(args.a, args.b, cfg, args.log)
    except (OSError, ValueError) as exc:
        print(f"error: impair bridge: {args.config}: {exc}", file=sys.stderr)
        return 2

    def on_signal(signum, frame):
        bridge.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    bridge.run(args.max_runtime_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
