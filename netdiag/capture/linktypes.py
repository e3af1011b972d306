"""LINKTYPE_* numbers netdiag decodes, with their names (https://www.tcpdump.org/linktypes.html).

The decoding itself is in decode.py (`_link_to_l3`); this table names them for warnings and
documentation.
"""

from __future__ import annotations

LINK_TYPES: dict[int, str] = {
    0: "BSD loopback (NULL, host-order address family)",
    1: "Ethernet (802.1Q/802.1ad tags understood)",
    12: "raw IP (DLT_RAW on most BSDs)",
    14: "raw IP (DLT_RAW on OpenBSD)",
    101: "raw IP",
    108: "OpenBSD loopback (LOOP, network-order address family)",
    113: "Linux cooked capture (SLL)",
    228: "raw IPv4",
    229: "raw IPv6",
    276: "Linux cooked capture v2 (SLL2)",
}

_OTHER: dict[int, str] = {
    105: "IEEE 802.11", 127: "802.11 radiotap", 147: "user-defined", 192: "PPI", 195: "IEEE 802.15.4",
    9: "PPP", 50: "PPP in HDLC", 104: "Cisco HDLC", 220: "USB Linux mmapped", 249: "netlink",
}


def link_type_name(link_type: int) -> str:
    """Human name of a LINKTYPE_* number ('unknown' when we have none)."""
    return LINK_TYPES.get(link_type) or _OTHER.get(link_type) or "unknown"
