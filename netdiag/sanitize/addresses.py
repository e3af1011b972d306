"""Address mapping with the key: Crypto-PAn for IPv4/IPv6, HMAC pseudonyms for MACs and ids.

Why keyed: two captures sanitised with the same key map every address and MAC the same way, so
a before and an after capture (and a case bundle's report and its excerpts) stay comparable;
without the key nobody can map back. Ports are not mapped (docs/sanitize.md: they name services,
not people, and the analysis needs them). Each distinct value is mapped once and cached.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path

from netdiag.errors import ConfigError, UsageError
from netdiag.sanitize.policy import KEY_BYTES


def make_key(path: str | Path) -> None:
    """Write a new random key (64 hex digits) to `path`, readable by the owner only."""
    path = Path(path)
    if path.exists():
        raise UsageError(f"{path}: key file exists; refusing to overwrite a key (captures sanitised "
                         "with it would no longer be comparable)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(KEY_BYTES) + "\n")


def load_key(path: str | Path | None) -> bytes:
    """The 32-byte key from a key file; a clear message says how to create one when missing."""
    how = "create one with `netdiag sanitize --make-key KEYFILE` and keep it to sanitise later captures alike"
    if path is None:
        raise UsageError(f"no key file given (--key-file); {how}")
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{p}: key file not found; {how}")
    text = p.read_text(errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise ConfigError(f"{p}: a key file holds {KEY_BYTES * 2} hex digits ({KEY_BYTES} bytes); {how}")
    return key


class AddressMapper:
    """Keyed, cached mappings: Crypto-PAn for IPv4/IPv6, HMAC pseudonyms for MACs and ids."""

    def __init__(self, key: bytes) -> None:
        from yacryptopan import CryptoPAn

        if len(key) != KEY_BYTES:
            raise ValueError(f"key must be {KEY_BYTES} bytes")
        self._cp = CryptoPAn(key)
        self._mac_key = hmac.new(key, b"netdiag mac", hashlib.sha256).digest()
        self._id_key = hmac.new(key, b"netdiag id", hashlib.sha256).digest()
        self._ip: dict[bytes, bytes] = {}
        self._mac: dict[bytes, bytes] = {}
        self._text: dict[bytes, bytes] = {}

    def ip(self, raw: bytes) -> bytes:
        """4 or 16 address bytes -> mapped bytes (prefix-preserving)."""
        out = self._ip.get(raw)
        if out is None:
            if len(raw) not in (4, 16):  # a cut-short field: nothing to map, nothing to keep
                return bytes(len(raw))
            version = 4 if len(raw) == 4 else 6
            value = self._cp.anonymize_bin(int.from_bytes(raw, "big"), version)
            out = self._ip[raw] = int(value).to_bytes(len(raw), "big")
        return out

    def ip_text(self, text: str) -> str:
        """An address in text form -> the mapped address in text form."""
        addr = ipaddress.ip_address(text)
        return str(ipaddress.ip_address(self.ip(addr.packed)))

    def mac(self, raw: bytes) -> bytes:
        """6-byte MAC -> keyed pseudonym; group bit kept, locally administered bit set."""
        if raw == b"\xff" * 6 or raw == b"\x00" * 6:
            return raw
        out = self._mac.get(raw)
        if out is None:
            h = bytearray(hmac.new(self._mac_key, raw, hashlib.sha256).digest()[:6])
            h[0] = (h[0] & 0xFC) | 0x02 | (raw[0] & 0x01)
            out = self._mac[raw] = bytes(h)
        return out

    def opaque_id(self, raw: bytes) -> bytes:
        """Keyed pseudonym of the same length (TLS session ids): equal in, equal out."""
        out = b""
        counter = 0
        while len(out) < len(raw):
            out += hmac.new(self._id_key, bytes([counter]) + raw, hashlib.sha256).digest()
            counter += 1
        return out[:len(raw)]

    def text_address(self, literal: bytes) -> bytes:
        """An IP literal found in kept text -> its mapping when the length fits, else 'x'*len."""
        out = self._text.get(literal)
        if out is None:
            try:
                mapped = self.ip_text(literal.decode("ascii")).encode()
            except ValueError:
                return literal
            out = mapped if len(mapped) == len(literal) else b"x" * len(literal)
            self._text[literal] = out
        return out
