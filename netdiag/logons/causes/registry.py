"""The registered causes, in precedence order: where two labels compete for one instant of a budget
category (or for one connect or transaction), the one registered later wins. Findings are ranked
afterwards (capture loss first, then severity, then seconds), so this order is not the report's.

To add a cause: write its module (a `CAUSE = Cause(...)`, see base.py) and add one line here.
"""

from __future__ import annotations

from netdiag.logons.causes import (
    capture_loss,
    client_think,
    connect_failure,
    dns_delay,
    idle_connection_dropped,
    jar_download,
    listen_backlog,
    location_forward,
    loss_recovery,
    nagle_delayed_ack,
    network_latency,
    request_timeout_retry,
    server_think,
    syn_retransmission,
    system_exception,
    tls_handshake,
    zero_window,
)
from netdiag.logons.causes.base import Cause

REGISTRY: list[Cause] = [
    client_think.CAUSE,
    network_latency.CAUSE,
    server_think.CAUSE,
    capture_loss.CAUSE,
    dns_delay.CAUSE,
    tls_handshake.CAUSE,
    syn_retransmission.CAUSE,
    connect_failure.CAUSE,
    listen_backlog.CAUSE,
    nagle_delayed_ack.CAUSE,
    zero_window.CAUSE,
    loss_recovery.CAUSE,
    idle_connection_dropped.CAUSE,
    request_timeout_retry.CAUSE,
    system_exception.CAUSE,
    location_forward.CAUSE,
    jar_download.CAUSE,
]

# Labels the budget carries that are no finding: plain transfer, connect, TLS and DNS time, and
# the instants nothing explains. They rank below every cause of their category.
NEUTRAL_LABELS: tuple[str, ...] = ("unexplained", "transfer", "dns", "tls", "connect")


def label_names() -> tuple[str, ...]:
    """Every interval label, neutral ones first (id 0 = unexplained), then the causes in registry order."""
    return NEUTRAL_LABELS + tuple(c.id for c in REGISTRY)


def by_id(cause_id: str) -> Cause:
    """The registered cause with this id (KeyError when none)."""
    for c in REGISTRY:
        if c.id == cause_id:
            return c
    raise KeyError(cause_id)
