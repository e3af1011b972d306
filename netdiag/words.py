"""Numbers and names in words for people: one unit per kind, the same in every output.

Durations are seconds in every table (`_s` columns) and are shown with `fmt_s`; shares are
fractions in every table and are shown as percentages with `fmt_pct`; the wait-budget
categories have one plain name (`CATEGORY_LABELS`) and one short name (`SHORT_LABELS`). The
report, the terminal views, compare, trend and the finding texts all use these, so a figure
reads the same wherever it appears. Nothing here imports the rest of netdiag.
"""

from __future__ import annotations

# Plain words for the budget categories (what a hospital manager reads).
CATEGORY_LABELS: dict[str, str] = {
    "dns_s": "DNS lookups",
    "connect_s": "TCP connects",
    "tls_s": "TLS handshakes",
    "network_rtt_s": "network round trips",
    "request_transfer_s": "sending requests",
    "server_s": "server processing",
    "response_transfer_s": "receiving answers",
    "loss_recovery_s": "waiting for resent packets",
    "flow_control_s": "receiver not keeping up (TCP window)",
    "nagle_delayed_ack_s": "Nagle / delayed-ACK stalls",
    "client_s": "the PC's own work",
    "unexplained_s": "unexplained",
}
SHORT_LABELS: dict[str, str] = {
    "dns_s": "DNS", "connect_s": "connect", "tls_s": "TLS", "network_rtt_s": "network",
    "request_transfer_s": "send", "server_s": "server", "response_transfer_s": "receive",
    "loss_recovery_s": "resends", "flow_control_s": "window", "nagle_delayed_ack_s": "Nagle",
    "client_s": "PC", "unexplained_s": "unexplained",
}


def fmt_s(x: float | None) -> str:
    """A duration for people, in the unit that reads best: "38 µs", "2.45 ms", "12.4 ms", "2.40 s", "75.3 s".

    Three significant digits (whole microseconds below a millisecond: capture clocks tick in µs),
    never scientific, never "0.000 s" for a time that is not zero. Below half a microsecond it is
    float residue (-1e-12 left by exact budget sums) and shows as "0 s". Negative values (a
    difference) keep their sign.
    """
    if x is None:
        return "n/a"
    if x != x:                 # NaN: nothing measured
        return "n/a"
    a = abs(x)
    sign = "-" if x < 0 else ""
    if a < 5e-7:
        return "0 s"
    r = float(f"{a:.3g}")      # round first, then choose the unit: 0.9996 s is "1.00 s", not "1000 ms"
    if r < 1e-3:
        return f"{sign}{round(a * 1e6):.0f} µs" if round(a * 1e6) < 1000 else f"{sign}1.00 ms"
    if r < 1:
        return f"{sign}{_sig3(r * 1e3)} ms"
    if r < 1000:
        return f"{sign}{_sig3(r)} s"
    return f"{sign}{a:,.0f} s"


def _sig3(v: float) -> str:
    """A value of 1 <= v < 1000 with three significant digits: 2.40, 12.4, 124."""
    if v < 10:
        return f"{v:.2f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def fmt_pct(share: float | None) -> str:
    """A share (a fraction of 1) as a percentage for people: "33.5 %", "<0.1 %" for tiny non-zero shares."""
    if share is None or share != share:
        return "n/a"
    if share <= 0:
        return "0 %"
    if share < 0.001:
        return "<0.1 %"
    p = share * 100
    return f"{p:.0f} %" if p >= 99.95 else f"{p:.1f} %"


def fmt_value(x: float | None, unit: str, *, sign: bool = False) -> str:
    """A compare metric's value in its unit: seconds by `fmt_s`, a ratio as a percentage
    (a signed ratio, a difference of two shares, in percentage points)."""
    if x is None:
        return "n/a"
    if unit == "ratio":
        return f"{x * 100:+.1f} pp" if sign else f"{x * 100:.1f} %"
    s = fmt_s(x)
    return ("+" + s if sign and x > 0 and not s.startswith("0 ") else s)


__all__ = ["CATEGORY_LABELS", "SHORT_LABELS", "fmt_pct", "fmt_s", "fmt_value"]
