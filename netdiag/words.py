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


def fmt_s(x: float | None, *, unit: bool = True) -> str:
    """Seconds for people: 2 decimals from 1 s, 3 from 1 ms, else 6 (never scientific)."""
    if x is None:
        return "n/a"
    a = abs(x)
    if a < 5e-7:              # float residue (e.g. -1e-12 left by exact budget sums) shows as 0
        s = "0"
    elif a >= 1:
        s = f"{x:.2f}"
    elif a >= 0.001:
        s = f"{x:.3f}"
    else:
        s = f"{x:.6f}"
    return s + " s" if unit else s


def fmt_pct(share: float) -> str:
    """A share as a percentage for people ('<1 %' for small non-zero shares)."""
    if share <= 0:
        return "0 %"
    if share < 0.01:
        return "<1 %"
    return f"{share * 100:.0f} %"


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
