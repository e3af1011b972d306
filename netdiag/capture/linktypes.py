"""LINKTYPE_* numbers netdiag decodes, with their names (https://www.tcpdump.org/linktypes.html).

The decoding itself is in decode.py (`_link_layer`, `_peel`); this table names them for warnings and
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


_ETHERTYPES: dict[int, str] = {
    0x8863: "PPPoE discovery", 0x8864: "PPPoE session", 0x88E7: "802.1ah PBB (MAC-in-MAC)", 0x8902: "CFM",
    0x88E5: "MACsec", 0x8906: "FCoE", 0x22F0: "AVTP", 0x8100: "802.1Q", 0x894F: "NSH",
}


def undecoded_kind(why: int, detail: int) -> str:
    """Words for a decode.UD_* code (an encapsulation netdiag does not decode) and its detail."""
    from netdiag.capture import decode as d

    if why == d.UD_ETHERTYPE:
        name = _ETHERTYPES.get(detail)
        return f"ethertype 0x{detail:04x}{f' ({name})' if name else ''}, which netdiag does not decode"
    if why == d.UD_MPLS_PAYLOAD:
        return (f"an MPLS label stack whose payload (first nibble {detail}) is neither IPv4, IPv6 nor a "
                "pseudowire control word + Ethernet")
    if why == d.UD_GRE:
        if detail & 0x10000:
            return "GRE version 1 (PPTP, carrying PPP), which netdiag does not decode; the outer IP packet is kept"
        return f"GRE protocol 0x{detail:04x}, which netdiag does not decode; the outer IP packet is kept"
    if why == d.UD_ERSPAN:
        return f"ERSPAN version {detail} (netdiag decodes types I, II and III); the outer IP packet is kept"
    if why == d.UD_TOO_DEEP:
        return f"more than {d.MAX_TUNNEL_DEPTH} nested tunnels; analysed at the innermost one followed"
    if why == d.UD_CUT:
        return "an encapsulation header cut short by the snaplen"
    return "an encapsulation netdiag does not decode"
