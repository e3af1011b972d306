"""Sanitising captures for a vendor: keyed address mapping, payload policy per protocol, CPR redaction.

Hospital captures carry patient data and the hospital's addressing plan; the vendor must get
neither, yet must read the same delays netdiag found. The package, one concern a module:

- policy: what of each frame is kept, mapped or zeroed, and why (the constants and the stats).
- addresses: keys (`make_key`, `load_key`) and `AddressMapper` (Crypto-PAn for IPv4/IPv6, keyed
  HMAC pseudonyms for MACs and TLS session ids).
- redact: CPR numbers and IP literals in kept text (`redact_text`; the regexes evidence and the
  report use on free text).
- keepers/ (giop, http, tls, dns): which bytes of each message are kept; registry: the keeper of
  each protocol, registered by name, and the order streams are recognised in.
- frames: the Python frame walker (every header shape, tunnels, checksums); kernels: the numba
  kernels for the common shapes; streams: pass 1, the payload policy over each TCP direction as it
  arrives; writer: `sanitize_file`, the two-pass streaming writer (pcapng out).
- memory: `sanitize_frames` (evidence excerpts) and `sanitize_file_in_memory`, the whole-file
  reference the streaming writer is tested against.

Original frames are read byte-exact through netdiag.capture.raw (shared with netdiag.evidence).
"""

from __future__ import annotations

from netdiag.sanitize.addresses import AddressMapper, load_key, make_key
from netdiag.sanitize.frames import internet_checksum
from netdiag.sanitize.keepers.dns import dns_keep
from netdiag.sanitize.keepers.giop import giop_keep, rewrite_iiop_profile
from netdiag.sanitize.keepers.http import http_keep
from netdiag.sanitize.keepers.tls import tls_keep
from netdiag.sanitize.memory import sanitize_file_in_memory, sanitize_frames, sanitize_stream_pair
from netdiag.sanitize.policy import (
    KEY_BYTES,
    MAX_STREAM_BYTES,
    SAFE_HTTP_HEADERS,
    SAFE_TLS_EXTENSIONS,
    SanitizeStats,
)
from netdiag.sanitize.redact import CPR_RE, IPV4_TEXT_RE, IPV6_TEXT_RE, _valid_cpr, redact_text
from netdiag.sanitize.streams import StreamSanitizer
from netdiag.sanitize.writer import CHUNK_FRAMES, sanitize_file, sanitized_name

__all__ = [
    "CHUNK_FRAMES", "CPR_RE", "IPV4_TEXT_RE", "IPV6_TEXT_RE", "KEY_BYTES", "MAX_STREAM_BYTES", "SAFE_HTTP_HEADERS",
    "SAFE_TLS_EXTENSIONS", "AddressMapper", "SanitizeStats", "StreamSanitizer", "_valid_cpr", "dns_keep", "giop_keep",
    "http_keep", "internet_checksum", "load_key", "make_key", "redact_text", "rewrite_iiop_profile",
    "sanitize_file", "sanitize_file_in_memory", "sanitize_frames", "sanitize_stream_pair", "sanitized_name",
    "tls_keep",
]
