"""tshark as the independent oracle for netdiag.capture: the same file, every decoded field.

`tshark_packets(path)` runs `tshark -T fields` (relative sequence numbers, IP/IPv6 reassembly
off, so each frame shows its own header values) and turns each frame's fields into the values
the packets table should hold. `compare(ours, theirs)` returns human-readable mismatches.
Used by tests/test_capture_*.py.
"""

from __future__ import annotations

import shutil
import subprocess

import polars as pl

from netdiag.capture.addresses import format_ip

TSHARK = shutil.which("tshark")

FIELDS = [
    "frame.number", "frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id",
    "vlan.id", "ieee8021ad.id", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "ip.ttl",
    "ipv6.hlim", "ip.id", "ip.flags.mf", "ip.frag_offset", "ip.len", "ip.hdr_len", "ipv6.nxt",
    "ipv6.hopopts.nxt", "ipv6.routing.nxt", "ipv6.dstopts.nxt", "ipv6.fraghdr.nxt", "ah.next_header",
    "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "tcp.flags", "tcp.seq_raw",
    "tcp.ack_raw", "tcp.window_size_value", "tcp.options.mss_val", "tcp.options.wscale.shift",
    "tcp.option_kind", "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr",
    "tcp.options.sack_le", "tcp.options.sack_re", "tcp.len", "udp.length", "tcp.payload", "udp.payload",
]
PREFS = ["tcp.relative_sequence_numbers:FALSE", "ip.defragment:FALSE", "ipv6.defragment:FALSE",
         "tcp.desegment_tcp_streams:FALSE", "tcp.analyze_sequence_numbers:FALSE", "udp.try_heuristic_first:FALSE"]
IPV6_EXT = {0, 43, 44, 60, 51}

# columns compared for every frame
COMPARED = ["frame", "ts_ns", "frame_len", "cap_len", "interface_id", "vlan_id", "ip_version", "src_ip",
            "dst_ip", "ip_proto", "ip_ttl", "ip_id", "ip_fragment", "src_port", "dst_port", "tcp_flags",
            "tcp_seq", "tcp_ack", "tcp_window", "tcp_mss", "tcp_wscale", "tcp_sack_perm", "tcp_has_ts",
            "tcp_ts_val", "tcp_ts_ecr", "tcp_sack_blocks", "tcp_sack_left", "tcp_sack_right", "payload_len",
            "payload"]


def run_tshark(path: str, fields: list[str] = FIELDS, extra: list[str] | None = None) -> list[dict[str, str]]:
    """One dict per frame: field -> raw text (all occurrences joined by ',')."""
    cmd = [TSHARK or "tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=\t", "-E",
           "occurrence=a", "-E", "aggregator=,"]
    for p in PREFS:
        cmd += ["-o", p]
    for f in fields:
        cmd += ["-e", f]
    cmd += extra or []
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    rows = []
    for line in out.stdout.splitlines():
        vals = line.split("\t")
        rows.append(dict(zip(fields, vals + [""] * (len(fields) - len(vals)), strict=True)))
    return rows


def _first(v: str) -> str:
    return v.split(",")[0] if v else ""


def _int(v: str, default: int = 0) -> int:
    v = _first(v)
    if not v:
        return default
    if v in ("True", "False"):
        return int(v == "True")
    return int(v, 0)


def _all_ints(v: str) -> list[int]:
    return [int(x, 0) for x in v.split(",") if x] if v else []


def epoch_to_ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def expected_row(f: dict[str, str]) -> dict:
    """What the packets table should hold for this frame, from tshark's fields only."""
    r: dict = {"frame": int(f["frame.number"]),
               "frame_len": int(f["frame.len"]), "cap_len": int(f["frame.cap_len"]),
               "interface_id": _int(f["frame.interface_id"])}
    if f["frame.time_epoch"]:  # a pcapng Simple Packet Block has no timestamp
        r["ts_ns"] = epoch_to_ns(f["frame.time_epoch"])
    r["vlan_id"] = _int(f["ieee8021ad.id"]) if f["ieee8021ad.id"] else _int(f["vlan.id"])
    if f["ip.src"]:
        r.update(ip_version=4, src_ip=_first(f["ip.src"]), dst_ip=_first(f["ip.dst"]), ip_proto=_int(f["ip.proto"]),
                 ip_ttl=_int(f["ip.ttl"]), ip_id=_int(f["ip.id"]),
                 ip_fragment=bool(_int(f["ip.flags.mf"]) or _int(f["ip.frag_offset"])))
    elif f["ipv6.src"]:
        chain = []
        for k in ("ipv6.nxt", "ipv6.hopopts.nxt", "ipv6.routing.nxt", "ipv6.dstopts.nxt", "ipv6.fraghdr.nxt",
                  "ah.next_header"):
            chain += _all_ints(f[k])
        upper = [c for c in chain if c not in IPV6_EXT]
        r.update(ip_version=6, src_ip=_first(f["ipv6.src"]), dst_ip=_first(f["ipv6.dst"]),
                 ip_proto=upper[0] if upper else chain[-1], ip_ttl=_int(f["ipv6.hlim"]), ip_id=0,
                 ip_fragment=bool(f["ipv6.fraghdr.nxt"]))
    else:
        r.update(ip_version=0, src_ip=None, dst_ip=None, ip_proto=0, ip_ttl=0, ip_id=0, ip_fragment=False)
    tcp = bool(f["tcp.srcport"])
    udp = bool(f["udp.srcport"]) and not tcp
    kinds = _all_ints(f["tcp.option_kind"])
    sack_le = _all_ints(f["tcp.options.sack_le"])
    sack_re = _all_ints(f["tcp.options.sack_re"])
    r.update(
        src_port=_int(f["tcp.srcport"] if tcp else f["udp.srcport"]),
        dst_port=_int(f["tcp.dstport"] if tcp else f["udp.dstport"]),
        tcp_flags=_int(f["tcp.flags"]) if tcp else 0,
        tcp_seq=_int(f["tcp.seq_raw"]) if tcp else 0,
        tcp_ack=_int(f["tcp.ack_raw"]) if tcp else 0,
        tcp_window=_int(f["tcp.window_size_value"]) if tcp else 0,
        tcp_mss=_int(f["tcp.options.mss_val"]) if tcp else 0,
        tcp_wscale=_int(f["tcp.options.wscale.shift"], -1) if tcp else -1,
        tcp_sack_perm=4 in kinds, tcp_has_ts=8 in kinds,
        tcp_ts_val=_int(f["tcp.options.timestamp.tsval"]), tcp_ts_ecr=_int(f["tcp.options.timestamp.tsecr"]),
        tcp_sack_blocks=len(sack_le), tcp_sack_left=sack_le[0] if sack_le else 0,
        tcp_sack_right=sack_re[0] if sack_re else 0,
    )
    if tcp or udp:
        proto = "tcp" if tcp else "udp"
        r["payload"] = bytes.fromhex(_first(f[f"{proto}.payload"]).replace(":", ""))
        if r["ip_fragment"]:
            # a first fragment: Wireshark shows no tcp.len and the whole datagram's udp.length;
            # the payload this frame carries is what it dissects as tcp/udp.payload
            r["payload_len"] = len(r["payload"])
        else:
            r["payload_len"] = _int(f["tcp.len"]) if tcp else _int(f["udp.length"]) - 8
    else:
        r["payload_len"] = 0
        r["payload"] = b""
    return r


def tshark_packets(path: str) -> list[dict]:
    return [expected_row(f) for f in run_tshark(path)]


def our_rows(cap) -> dict[int, dict]:
    """Our packets table as {frame: row dict} with addresses as text and payload bytes."""
    df = cap.packets.with_columns(
        pl.when(pl.col("ip_version") > 0).then(format_ip("src_ip_hi", "src_ip_lo")).alias("src_ip"),
        pl.when(pl.col("ip_version") > 0).then(format_ip("dst_ip_hi", "dst_ip_lo")).alias("dst_ip"),
    )
    out = {}
    for i, row in enumerate(df.iter_rows(named=True)):
        row["payload"] = cap.payload_of(i)
        out[row["frame"]] = row
    return out


def compare(ours: dict[int, dict], theirs: list[dict]) -> list[str]:
    """Mismatches as readable lines (empty when every field of every frame agrees)."""
    bad = []
    for exp in theirs:
        got = ours.get(exp["frame"])
        if got is None:
            bad.append(f"frame {exp['frame']}: missing from ours")
            continue
        for k, v in exp.items():
            if got[k] != v:
                bad.append(f"frame {exp['frame']} {k}: ours {got[k]!r} tshark {v!r}")
    return bad
