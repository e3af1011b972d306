"""The sanitising policy: what of each frame is kept, mapped or zeroed, and why.

Hospital captures carry patient data (CPR numbers, names, worklists) and the hospital's
addressing plan; IBM or the EPJ vendor must get neither, yet must be able to read the same
delays netdiag found. So everything that timing and sequence analysis needs stays (timestamps,
ports, TCP sequence/ack/window/options, frame and payload lengths), identifying bytes are
mapped with a key, and payload is kept only where a protocol's *metadata* is needed.
docs/sanitize.md has the full table and its reasons; per frame:

- IPv4 and IPv6 addresses (IP headers, ARP, ICMPv6 neighbour discovery, IPv6 routing headers,
  DNS A/AAAA answers, IOR hosts) are mapped with Crypto-PAn (Xu, Fan, Ammar, Moon 2002; the
  maintained `yacryptopan` implementation), prefix-preserving and keyed: two captures sanitised
  with the same key map every address the same way, so before/after captures stay comparable.
  MAC addresses are pseudonymised with HMAC-SHA256 of the key; the result keeps the group
  (multicast) bit of the original and sets the locally administered bit; the broadcast address
  stays broadcast (netdiag.sanitize.addresses).
- Tunnels the reader decodes (MPLS incl. pseudowires, GRE incl. TEB, ERSPAN I-III, VXLAN, IP in
  IP) are followed with the reader's own walkers (decode._link_layer / decode._tunnel): every
  layer's addresses and MACs are mapped as above, the innermost payload gets the payload policy,
  GRE and VXLAN checksums are recomputed after the inner ones. An encapsulation the reader does
  not decode is zero-filled after the last understood header and warned about once per kind
  (netdiag.sanitize.frames).
- Ports, timestamps, lengths and all TCP header fields are untouched. The IPv4 header, TCP,
  UDP, ICMP and ICMPv6 checksums are recomputed (RFC 791, 793, 768, 792, 8200 8.1) so
  Wireshark with checksum validation on flags nothing (snaplen-cut segments cannot be
  verified by anyone and keep their field).
- Payload is never truncated: every byte not explicitly kept becomes 0x00, so frame lengths,
  TCP lengths and sequence numbers stay exactly as captured. TCP payload is decided per byte
  stream (each direction reassembled by sequence number, first copy wins), cut into messages by
  netdiag's own parsers (`netdiag.protocols.*.cut`) and kept by the protocol's keeper
  (netdiag.sanitize.keepers, registered by protocol name in netdiag.sanitize.registry):
  - GIOP (CORBA 3.0 ch. 15): the 12-byte header and every header field the GIOP parser itself
    reads (request id, response flags, target object key, operation, service-context ids and
    lengths, the CodeSets and CSIv2 discriminants, reply/locate status, exception repository id,
    minor code and completion status, IOR type id/host/port/object key of forwards and naming
    results). Bodies, principals and other service-context data are zeroed. The kept set is
    decided by running `netdiag.protocols.giop.parser`'s own decoders on a CDR reader that records
    what they read, so the policy cannot drift from the parser.
  - HTTP/1.x (RFC 9112): the request or status line (query values overwritten with 'x', names
    kept) and the headers in SAFE_HTTP_HEADERS are kept; other header values (Cookie,
    Authorization, ...) are overwritten with 'x'; bodies are zeroed (chunk-size lines kept so
    the framing still works).
  - TLS (RFC 5246/8446): record headers; in clear handshake messages their type and length,
    versions, cipher suites, compression, extension types and lengths, and the data of the
    extensions in SAFE_TLS_EXTENSIONS (SNI, ALPN, supported_versions, groups, signature
    algorithms, point formats). Randoms are zeroed (the HelloRetryRequest value is kept);
    session ids are replaced by a keyed HMAC of the same length (so resumption still shows);
    certificates keep their list and per-certificate lengths only; everything encrypted is
    zeroed except ChangeCipherSpec and clear Alerts. SNI is a server's host name, not patient
    data: it is kept (host names also appear in DNS), so the vendor sees which service it was.
  - DNS (RFC 1035) over UDP or TCP: header, question and answer names, types, classes, TTLs;
    A/AAAA data mapped with the same Crypto-PAn key (so netdiag still ties names to
    connections); name-valued data (NS, CNAME, PTR, DNAME, MX, SRV) kept; other data zeroed.
    Reverse-lookup names (in-addr.arpa, ip6.arpa) have their address labels overwritten.
  - anything else (unrecognised TCP streams, other UDP, ICMP bodies, non-IP frames after the
    link header): zeroed after the TCP/UDP/ICMP header.
- Wherever text is kept, CPR numbers (DDMMYY-NNNN and DDMMYYNNNN with a valid day and month)
  are overwritten with 'X' (the dash kept), and IPv4/IPv6 literals are replaced by their
  Crypto-PAn mapping when that has the same length and by 'x' otherwise (lengths must not
  change; netdiag.sanitize.redact). IOR hosts are the exception: the IIOP profile is re-encoded
  with the full mapped address, the object key after it absorbing the length difference
  (`rewrite_iiop_profile`), so netdiag can still follow naming referrals and forwards in the
  sanitised file.

Keys: a key file holds 32 random bytes as 64 hex digits (`netdiag sanitize --make-key FILE`).

Limits: each direction is bounded by MAX_STREAM_BYTES (bytes beyond are zeroed). pcapng comments
and other options of the input are not carried over (they may hold free text).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netdiag.capture.tcp_flags import TH_NS

KEY_BYTES = 32  # Crypto-PAn: 16-byte AES key + 16-byte pad
MAX_STREAM_BYTES = 256 * 1024 * 1024  # per direction; bytes beyond are zeroed, never kept

# Link types (LINKTYPE_*) and ether types used below
LINK_ETHERNET, LINK_SLL, LINK_SLL2 = 1, 113, 276
ETH_ARP = 0x0806
IP_PROTO_ICMP, IP_PROTO_TCP, IP_PROTO_UDP, IP_PROTO_ICMPV6 = 1, 6, 17, 58
IP_PROTO_AH = 51
IP_PROTO_GRE = 47
VXLAN_PORT = 4789
IPV6_EXT_HEADERS = (0, 43, 44, 60, IP_PROTO_AH)  # hop-by-hop, routing, fragment, destination options, AH
TCP_FLAG_BITS = (TH_NS << 1) - 1  # the 9 flag bits of the TCP header (NS .. FIN), as packets.tcp_flags holds them

SAFE_HTTP_HEADERS = frozenset({
    "host", "user-agent", "content-length", "content-type", "transfer-encoding", "connection",
    "keep-alive", "accept", "accept-encoding", "accept-language", "accept-ranges", "cache-control",
    "pragma", "date", "last-modified", "if-modified-since", "if-none-match", "etag", "expires",
    "server", "upgrade", "content-encoding", "vary", "age", "expect", "te", "trailer", "via",
})
SAFE_TLS_EXTENSIONS = frozenset({0, 10, 11, 13, 16, 43, 0xFF01})  # SNI, groups, formats, sigalgs, ALPN, versions, reneg
TLS_HANDSHAKE, TLS_CCS, TLS_ALERT = 22, 20, 21

@dataclass
class SanitizeStats:
    """What sanitising one file did (for the command's summary line)."""

    frames: int = 0
    addresses: int = 0
    macs: int = 0
    cpr_redacted: int = 0
    streams: int = 0
    checksums_fixed: int = 0
    unverifiable: int = 0
    frames_blanked: int = 0  # frames whose IP headers could not be walked: zeroed after the link header
    keeper_errors: int = 0  # messages zeroed whole because a payload keeper failed on them
    undecoded: dict = field(default_factory=dict)  # (UD_* code, detail) -> [frames, first frame number]
    frame_base: int = 0  # frame number of row 0 of the chunk being sanitised, minus one
    warnings: list = field(default_factory=list)  # CaptureWarnings from reading (damaged files)
