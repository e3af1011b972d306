"""Crafted TCP edge cases for netdiag's TCP analysis tests (scapy; no root, deterministic).

Run: python captures/tcp/make_crafted.py  (rewrites the crafted_*.pcap files beside it)

Addresses are documentation ranges (RFC 5737 192.0.2.0/24, 198.51.100.0/24); payloads are
filler bytes. Each file's expected behaviour is listed in captures/tcp/README.md; the tests
check it against tshark on the same file and against the hand-written expectations.
"""

from __future__ import annotations

from pathlib import Path

from scapy.all import IP, TCP, Ether, Raw, wrpcap  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
CLIENT, SERVER = "192.0.2.10", "198.51.100.20"
CMAC, SMAC = "02:00:00:00:00:0a", "02:00:00:00:00:14"
T0 = 1_790_000_000.0


class Flow:
    """Builds the frames of one TCP conversation with explicit timestamps."""

    def __init__(self, cport: int, sport: int, cisn: int, sisn: int) -> None:
        self.cport, self.sport = cport, sport
        self.cseq, self.sseq = cisn, sisn
        self.frames: list = []

    def c(self, t: float, flags: str, data: bytes = b"", *, seq: int | None = None, ack: int | None = None,
          win: int = 502, opts: list | None = None, advance: bool = True) -> None:
        self._add(t, True, flags, data, seq, ack, win, opts, advance)

    def s(self, t: float, flags: str, data: bytes = b"", *, seq: int | None = None, ack: int | None = None,
          win: int = 509, opts: list | None = None, advance: bool = True) -> None:
        self._add(t, False, flags, data, seq, ack, win, opts, advance)

    def _add(self, t, from_client, flags, data, seq, ack, win, opts, advance) -> None:  # noqa: ANN001
        my = self.cseq if from_client else self.sseq
        peer = self.sseq if from_client else self.cseq
        s = (my if seq is None else seq) & 0xFFFFFFFF
        a = (peer if ack is None else ack) & 0xFFFFFFFF
        if from_client:
            pkt = (Ether(src=CMAC, dst=SMAC) / IP(src=CLIENT, dst=SERVER, id=len(self.frames) + 1)
                   / TCP(sport=self.cport, dport=self.sport, flags=flags, seq=s, ack=a if "A" in flags else 0,
                         window=win, options=opts or []))
        else:
            pkt = (Ether(src=SMAC, dst=CMAC) / IP(src=SERVER, dst=CLIENT, id=len(self.frames) + 1)
                   / TCP(sport=self.sport, dport=self.cport, flags=flags, seq=s, ack=a if "A" in flags else 0,
                         window=win, options=opts or []))
        if data:
            pkt = pkt / Raw(data)
        pkt.time = T0 + t
        self.frames.append(pkt)
        if advance and seq is None:
            inc = len(data) + (1 if ("S" in flags or "F" in flags) else 0)
            if from_client:
                self.cseq += inc
            else:
                self.sseq += inc


SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("NOP", None), ("WScale", 7)]


def syn_retries() -> list:
    """Two lost SYNs (retried after 1 s and 2 s more), then a normal request/response and close."""
    f = Flow(40001, 9080, 1000, 5000)
    f.c(0.000, "S", seq=1000, opts=SYN_OPTS, advance=False)
    f.c(1.000, "S", seq=1000, opts=SYN_OPTS, advance=False)
    f.c(3.000, "S", opts=SYN_OPTS)
    f.s(3.020, "SA", opts=SYN_OPTS)
    f.c(3.021, "A")
    f.c(3.022, "PA", b"G" * 300)
    f.s(3.045, "A")
    f.s(3.060, "PA", b"R" * 1200)
    f.c(3.061, "A")
    f.c(3.100, "FA")
    f.s(3.120, "FA")
    f.c(3.121, "A")
    return f.frames


def zero_window() -> list:
    """Server's window (scaled by 2^7) fills: window full, zero window, probes, window update."""
    f = Flow(40002, 2809, 70000, 90000)
    opts_c = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
    opts_s = [("MSS", 1460), ("NOP", None), ("WScale", 7)]
    f.c(0.000, "S", opts=opts_c)
    f.s(0.010, "SA", opts=opts_s)
    f.c(0.011, "A")
    # server advertises 16 * 128 = 2048 bytes; client sends exactly that in two segments
    f.s(0.012, "A", win=16)
    f.c(0.013, "PA", b"x" * 1024)
    f.c(0.014, "PA", b"y" * 1024)          # fills the window: window full
    f.s(0.030, "A", win=0)                  # zero window
    f.c(0.500, "A", b"z", advance=False)    # zero-window probe (1 byte at next seq)
    f.s(0.510, "A", win=0)                  # zero-window probe ack
    f.c(1.500, "A", b"z", advance=False)    # second probe
    f.s(1.510, "A", win=0)                  # second probe ack
    f.s(2.000, "A", win=64)                 # window update: reopened after ~1.97 s of zero window
    f.c(2.001, "PA", b"z" * 1000)
    f.s(2.020, "A", win=64)
    f.c(2.100, "FA")
    f.s(2.110, "FA", win=64)
    f.c(2.111, "A")
    return f.frames


def resets() -> list:
    """Three connections: RST to a closed port (REJ), client abort (RSTO), server abort (RSTR)."""
    out = []
    f = Flow(40003, 9443, 111, 0)
    f.c(0.000, "S", opts=SYN_OPTS)
    f.s(0.001, "RA", seq=0, ack=112, win=0)
    out += f.frames
    g = Flow(40004, 9080, 2000, 8000)
    g.c(0.100, "S", opts=SYN_OPTS)
    g.s(0.110, "SA", opts=SYN_OPTS)
    g.c(0.111, "A")
    g.c(0.112, "PA", b"q" * 100)
    g.s(0.130, "A")
    g.c(0.200, "RA")
    out += g.frames
    h = Flow(40005, 9080, 3000, 9000)
    h.c(0.300, "S", opts=SYN_OPTS)
    h.s(0.310, "SA", opts=SYN_OPTS)
    h.c(0.311, "A")
    h.c(0.312, "PA", b"q" * 100)
    h.s(0.330, "RA")
    out += h.frames
    return out


def mid_stream() -> list:
    """A connection already running when the capture started (no SYN): client is the ephemeral port."""
    f = Flow(51000, 2809, 400000, 700000)
    f.s(0.000, "A", b"s" * 500)              # the server speaks first in the capture
    f.c(0.001, "A")
    f.c(0.050, "PA", b"c" * 200)
    f.s(0.070, "PA", b"s" * 1448)
    f.s(0.071, "PA", b"s" * 1448)
    f.c(0.072, "A")
    f.c(0.300, "FA")
    f.s(0.301, "FA")
    f.c(0.302, "A")
    return f.frames


def span_duplicates() -> list:
    """A SPAN port delivering frames twice (same bytes, 5 us apart) plus one real resend 200 ms later."""
    f = Flow(40006, 9080, 5000, 6000)
    f.c(0.000, "S", opts=SYN_OPTS)
    f.s(0.010, "SA", opts=SYN_OPTS)
    f.c(0.011, "A")
    f.c(0.012, "PA", b"d" * 700, advance=False)
    real = f.frames[-1]
    f.c(0.212, "PA", b"d" * 700)             # a real retransmission (RTO-like) of the same bytes
    f.s(0.230, "A")
    f.s(0.240, "PA", b"e" * 900)
    f.c(0.241, "A")
    frames = []
    for p in f.frames:
        frames.append(p)
        if p is real or b"e" * 10 in bytes(p.payload.payload.payload):
            dup = p.copy()
            dup.time = p.time + 0.000005
            frames.append(dup)
    return frames


def seq_wrap() -> list:
    """Both sequence spaces wrap past 2^32 mid-connection; one segment across the wrap is resent."""
    f = Flow(40007, 9080, 2**32 - 700, 2**32 - 10)
    f.c(0.000, "S", opts=SYN_OPTS)
    f.s(0.010, "SA", opts=SYN_OPTS)
    f.c(0.011, "A")
    f.c(0.012, "PA", b"a" * 500)
    f.c(0.013, "PA", b"b" * 500, advance=False)   # crosses 2^32; lost on the way, resent below
    f.s(0.030, "A")
    f.c(0.250, "PA", b"b" * 500)                    # the resend (RTO-like)
    f.s(0.270, "A")
    f.s(0.280, "PA", b"r" * 1200)                   # the server's bytes wrap too
    f.c(0.281, "A")
    f.c(0.300, "FA")
    f.s(0.310, "FA")
    f.c(0.311, "A")
    return f.frames


def main() -> None:
    for name, frames in [("crafted_syn_retries", syn_retries()), ("crafted_zero_window", zero_window()),
                         ("crafted_resets", resets()), ("crafted_mid_stream", mid_stream()),
                         ("crafted_span_duplicates", span_duplicates()), ("crafted_seq_wrap", seq_wrap())]:
        wrpcap(str(HERE / f"{name}.pcap"), frames)
        print(f"{name}.pcap: {len(frames)} frames")


if __name__ == "__main__":
    main()
