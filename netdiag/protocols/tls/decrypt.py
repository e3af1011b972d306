"""TLS record decryption with session secrets from a key log (pure: bytes and secrets in, plaintext out).

Why: WebSphere carries IIOP over TLS (CSIv2, 9402/9403) and the JNLP and jars over HTTPS; with
the session secrets (NSS key log, see netdiag/tls_keylog.py) the GIOP and HTTP inside can be
parsed like cleartext, so requests inside TLS get operations and server think time.

Specs: RFC 5246 (TLS 1.2: PRF, key block, GenericBlockCipher / GenericAEADCipher), RFC 7366
(encrypt-then-MAC), RFC 5288 (AES-GCM), RFC 6655 / 7251 (AES-CCM), RFC 7905 (ChaCha20-Poly1305),
RFC 8446 (TLS 1.3: HKDF-Expand-Label 7.1, traffic keys 7.3, per-record nonce 5.3, inner
plaintext 5.2, KeyUpdate 4.6.3 / 7.2). Every cipher, MAC and KDF is the `cryptography`
package's; nothing cryptographic is written here.

Use: one `TlsDecryptor` per TCP connection. Feed it every TLS record of both directions, each
direction in stream order (`record(direction, record_bytes)`); it reads the clear ClientHello
and ServerHello itself (client random, server random, version, cipher suite, encrypt_then_mac),
looks the secrets up by client random, switches keys at each ChangeCipherSpec (TLS 1.2) or at
ServerHello / Finished / KeyUpdate (TLS 1.3), and returns a `Plain` per record: the inner
content type and the plaintext (or why it could not be decrypted).

`status`: "pending" until the ServerHello; then "ready" (secrets and suite known) or
"unavailable" with `problem` saying why (unknown suite, TLS 1.0/1.1, a missing secret): the
caller then treats the connection as without keys. A record that fails to decrypt (wrong
secret, records lost from the capture) makes `status` "failed" with the reason; decryption
stops there. Before giving up, a record is also tried with the next few sequence numbers
(records the capture lost) and, in TLS 1.3, with the next key generation (a Finished or
KeyUpdate message the capture lost).

Limits: no 0-RTT early data (CLIENT_EARLY_TRAFFIC_SECRET), no SSL 3.0 / TLS 1.0 / 1.1, no
3DES/RC4/CAMELLIA/ARIA suites, no renegotiation, no record compression. Those connections are
reported "unavailable" and stay without keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import constant_time, hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

# Key log labels (NSS key log format).
CLIENT_RANDOM = "CLIENT_RANDOM"
CLIENT_HS = "CLIENT_HANDSHAKE_TRAFFIC_SECRET"
SERVER_HS = "SERVER_HANDSHAKE_TRAFFIC_SECRET"
CLIENT_AP0 = "CLIENT_TRAFFIC_SECRET_0"
SERVER_AP0 = "SERVER_TRAFFIC_SECRET_0"

CT_CCS, CT_ALERT, CT_HANDSHAKE, CT_APPDATA = 20, 21, 22, 23
HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_FINISHED, HS_KEY_UPDATE = 1, 2, 20, 24
EXT_ENCRYPT_THEN_MAC = 22
EXT_SUPPORTED_VERSIONS = 43
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
# AEAD records the capture may have lost: try this many sequence numbers ahead before giving up.
SEQ_LOOKAHEAD = 8


@dataclass(frozen=True, slots=True)
class Suite:
    """What a cipher suite needs for the record layer: cipher kind, key length, MAC and PRF hash."""

    name: str
    kind: str          # "gcm", "ccm", "ccm8", "chacha", "cbc"
    key_len: int
    mac: str | None    # CBC only: "sha1", "sha256", "sha384"
    prf: str           # "sha256" or "sha384" (TLS 1.2 PRF; TLS 1.3 HKDF hash)


def _s(name: str, kind: str, key_len: int, mac: str | None = None, prf: str = "sha256") -> Suite:
    return Suite(name, kind, key_len, mac, prf)


# TLS 1.3 (RFC 8446 B.4): all five.
SUITES_13: dict[int, Suite] = {
    0x1301: _s("TLS_AES_128_GCM_SHA256", "gcm", 16),
    0x1302: _s("TLS_AES_256_GCM_SHA384", "gcm", 32, prf="sha384"),
    0x1303: _s("TLS_CHACHA20_POLY1305_SHA256", "chacha", 32),
    0x1304: _s("TLS_AES_128_CCM_SHA256", "ccm", 16),
    0x1305: _s("TLS_AES_128_CCM_8_SHA256", "ccm8", 16),
}

# TLS 1.2 (IANA TLS Cipher Suites registry): AES-GCM, AES-CCM, ChaCha20-Poly1305, AES-CBC.
SUITES_12: dict[int, Suite] = {}
for _code, _name in ((0x009C, "RSA_WITH_AES_128_GCM_SHA256"), (0x009E, "DHE_RSA_WITH_AES_128_GCM_SHA256"),
                     (0x00A2, "DHE_DSS_WITH_AES_128_GCM_SHA256"), (0x00A8, "PSK_WITH_AES_128_GCM_SHA256"),
                     (0x00AA, "DHE_PSK_WITH_AES_128_GCM_SHA256"), (0x00AC, "RSA_PSK_WITH_AES_128_GCM_SHA256"),
                     (0xC02B, "ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"), (0xC02D, "ECDH_ECDSA_WITH_AES_128_GCM_SHA256"),
                     (0xC02F, "ECDHE_RSA_WITH_AES_128_GCM_SHA256"), (0xC031, "ECDH_RSA_WITH_AES_128_GCM_SHA256")):
    SUITES_12[_code] = _s("TLS_" + _name, "gcm", 16)
for _code, _name in ((0x009D, "RSA_WITH_AES_256_GCM_SHA384"), (0x009F, "DHE_RSA_WITH_AES_256_GCM_SHA384"),
                     (0x00A3, "DHE_DSS_WITH_AES_256_GCM_SHA384"), (0x00A9, "PSK_WITH_AES_256_GCM_SHA384"),
                     (0x00AB, "DHE_PSK_WITH_AES_256_GCM_SHA384"), (0x00AD, "RSA_PSK_WITH_AES_256_GCM_SHA384"),
                     (0xC02C, "ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"), (0xC02E, "ECDH_ECDSA_WITH_AES_256_GCM_SHA384"),
                     (0xC030, "ECDHE_RSA_WITH_AES_256_GCM_SHA384"), (0xC032, "ECDH_RSA_WITH_AES_256_GCM_SHA384")):
    SUITES_12[_code] = _s("TLS_" + _name, "gcm", 32, prf="sha384")
for _code, _name in ((0xCCA8, "ECDHE_RSA"), (0xCCA9, "ECDHE_ECDSA"), (0xCCAA, "DHE_RSA"), (0xCCAB, "PSK"),
                     (0xCCAC, "ECDHE_PSK"), (0xCCAD, "DHE_PSK"), (0xCCAE, "RSA_PSK")):
    SUITES_12[_code] = _s(f"TLS_{_name}_WITH_CHACHA20_POLY1305_SHA256", "chacha", 32)
for _code, _name, _kind, _klen in ((0xC09C, "RSA_WITH_AES_128_CCM", "ccm", 16), (0xC09D, "RSA_WITH_AES_256_CCM", "ccm", 32),
                                   (0xC09E, "DHE_RSA_WITH_AES_128_CCM", "ccm", 16),
                                   (0xC09F, "DHE_RSA_WITH_AES_256_CCM", "ccm", 32),
                                   (0xC0A0, "RSA_WITH_AES_128_CCM_8", "ccm8", 16),
                                   (0xC0A1, "RSA_WITH_AES_256_CCM_8", "ccm8", 32),
                                   (0xC0AC, "ECDHE_ECDSA_WITH_AES_128_CCM", "ccm", 16),
                                   (0xC0AD, "ECDHE_ECDSA_WITH_AES_256_CCM", "ccm", 32),
                                   (0xC0AE, "ECDHE_ECDSA_WITH_AES_128_CCM_8", "ccm8", 16),
                                   (0xC0AF, "ECDHE_ECDSA_WITH_AES_256_CCM_8", "ccm8", 32)):
    SUITES_12[_code] = _s("TLS_" + _name, _kind, _klen)
for _code, _name, _klen, _mac in (
        (0x002F, "RSA_WITH_AES_128_CBC_SHA", 16, "sha1"), (0x0035, "RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0x0032, "DHE_DSS_WITH_AES_128_CBC_SHA", 16, "sha1"), (0x0038, "DHE_DSS_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0x0033, "DHE_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"), (0x0039, "DHE_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0x008C, "PSK_WITH_AES_128_CBC_SHA", 16, "sha1"), (0x008D, "PSK_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0xC004, "ECDH_ECDSA_WITH_AES_128_CBC_SHA", 16, "sha1"), (0xC005, "ECDH_ECDSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0xC009, "ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 16, "sha1"),
        (0xC00A, "ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0xC00E, "ECDH_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"), (0xC00F, "ECDH_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0xC013, "ECDHE_RSA_WITH_AES_128_CBC_SHA", 16, "sha1"), (0xC014, "ECDHE_RSA_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0xC035, "ECDHE_PSK_WITH_AES_128_CBC_SHA", 16, "sha1"), (0xC036, "ECDHE_PSK_WITH_AES_256_CBC_SHA", 32, "sha1"),
        (0x003C, "RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"), (0x003D, "RSA_WITH_AES_256_CBC_SHA256", 32, "sha256"),
        (0x0040, "DHE_DSS_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        (0x006A, "DHE_DSS_WITH_AES_256_CBC_SHA256", 32, "sha256"),
        (0x0067, "DHE_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        (0x006B, "DHE_RSA_WITH_AES_256_CBC_SHA256", 32, "sha256"),
        (0x00AE, "PSK_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        (0xC023, "ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        (0xC025, "ECDH_ECDSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        (0xC027, "ECDHE_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        (0xC029, "ECDH_RSA_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        (0xC037, "ECDHE_PSK_WITH_AES_128_CBC_SHA256", 16, "sha256"),
        (0x00AF, "PSK_WITH_AES_256_CBC_SHA384", 32, "sha384"),
        (0xC024, "ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 32, "sha384"),
        (0xC026, "ECDH_ECDSA_WITH_AES_256_CBC_SHA384", 32, "sha384"),
        (0xC028, "ECDHE_RSA_WITH_AES_256_CBC_SHA384", 32, "sha384"),
        (0xC02A, "ECDH_RSA_WITH_AES_256_CBC_SHA384", 32, "sha384"),
        (0xC038, "ECDHE_PSK_WITH_AES_256_CBC_SHA384", 32, "sha384")):
    # RFC 5246 5: the PRF is SHA-256 unless the suite names SHA-384 for it (the *_SHA384 suites)
    SUITES_12[_code] = _s("TLS_" + _name, "cbc", _klen, _mac, "sha384" if _mac == "sha384" else "sha256")

_HASHES = {"sha1": hashes.SHA1, "sha256": hashes.SHA256, "sha384": hashes.SHA384}
_MAC_LEN = {"sha1": 20, "sha256": 32, "sha384": 48}


# --------------------------------------------------------------------------------------------
# Key derivation
# --------------------------------------------------------------------------------------------
def _hmac(hash_name: str, key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, _HASHES[hash_name]())
    h.update(data)
    return h.finalize()


def prf12(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """TLS 1.2 PRF (RFC 5246 5): P_hash(secret, label + seed) with HMAC from `cryptography`."""
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        a = _hmac(hash_name, secret, a)
        out += _hmac(hash_name, secret, a + seed)
    return bytes(out[:length])


def hkdf_expand_label(hash_name: str, secret: bytes, label: str, context: bytes, length: int) -> bytes:
    """HKDF-Expand-Label (RFC 8446 7.1) with `cryptography`'s HKDFExpand."""
    full = b"tls13 " + label.encode()
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + bytes([len(context)]) + context
    return HKDFExpand(_HASHES[hash_name](), length, info).derive(secret)


# --------------------------------------------------------------------------------------------
# Record protection
# --------------------------------------------------------------------------------------------
class _Keys:
    """One direction's keys of one generation and its record sequence number."""

    __slots__ = ("suite", "tls13", "key", "iv", "mac_key", "etm", "aead", "seq", "secret")

    def __init__(self, suite: Suite, tls13: bool, key: bytes, iv: bytes, mac_key: bytes = b"",
                 etm: bool = False, secret: bytes = b"") -> None:
        self.suite, self.tls13, self.key, self.iv, self.mac_key, self.etm = suite, tls13, key, iv, mac_key, etm
        self.secret = secret  # TLS 1.3 traffic secret (for KeyUpdate)
        self.seq = 0
        kind = suite.kind
        self.aead = (AESGCM(key) if kind == "gcm" else AESCCM(key, 16) if kind == "ccm"
                     else AESCCM(key, 8) if kind == "ccm8" else ChaCha20Poly1305(key) if kind == "chacha" else None)

    @property
    def tag_len(self) -> int:
        return 8 if self.suite.kind == "ccm8" else 16

    def decrypt(self, ctype: int, version: bytes, body: bytes, header: bytes, seq: int) -> tuple[int, bytes]:
        """(inner content type, plaintext) of one record at sequence number `seq`; raises ValueError."""
        if self.tls13:
            nonce = bytes(a ^ b for a, b in zip(self.iv, seq.to_bytes(12, "big"), strict=True))
            try:
                inner = self.aead.decrypt(nonce, body, header)
            except InvalidTag:
                raise ValueError("authentication tag mismatch") from None
            end = len(inner)
            while end and inner[end - 1] == 0:   # RFC 8446 5.4: zero padding after the type
                end -= 1
            if not end:
                raise ValueError("inner plaintext has no content type")
            return inner[end - 1], inner[:end - 1]
        seqb = seq.to_bytes(8, "big")
        if self.aead is not None:
            tag = self.tag_len
            if self.suite.kind == "chacha":   # RFC 7905 2: 12-byte IV xor sequence, no explicit nonce
                nonce = bytes(a ^ b for a, b in zip(self.iv, seq.to_bytes(12, "big"), strict=True))
                ct = body
            else:                             # RFC 5288 3 / RFC 6655 3: 4-byte salt + 8-byte explicit nonce
                if len(body) < 8 + tag:
                    raise ValueError("record shorter than nonce and tag")
                nonce, ct = self.iv[:4] + body[:8], body[8:]
            if len(ct) < tag:
                raise ValueError("record shorter than the tag")
            aad = seqb + bytes([ctype]) + version + (len(ct) - tag).to_bytes(2, "big")
            try:
                return ctype, self.aead.decrypt(nonce, ct, aad)
            except InvalidTag:
                raise ValueError("authentication tag mismatch") from None
        # CBC (RFC 5246 6.2.3.2; RFC 7366 for encrypt-then-MAC)
        mac_name = self.suite.mac or "sha1"
        mlen = _MAC_LEN[mac_name]
        if self.etm:
            if len(body) < 16 + 16 + mlen:
                raise ValueError("record too short for IV, a block and the MAC")
            enc, mac = body[:-mlen], body[-mlen:]
            want = _hmac(mac_name, self.mac_key, seqb + bytes([ctype]) + version + len(enc).to_bytes(2, "big") + enc)
            if not constant_time.bytes_eq(want, mac):
                raise ValueError("MAC mismatch (encrypt-then-MAC)")
        else:
            enc = body
        if len(enc) < 32 or len(enc) % 16:
            raise ValueError("CBC record is not a whole number of blocks")
        dec = Cipher(algorithms.AES(self.key), modes.CBC(enc[:16])).decryptor()
        plain = dec.update(enc[16:]) + dec.finalize()
        pad = plain[-1]
        if pad + 1 > len(plain) or any(b != pad for b in plain[-pad - 1:]):
            raise ValueError("bad CBC padding")
        plain = plain[:-pad - 1]
        if not self.etm:
            if len(plain) < mlen:
                raise ValueError("record shorter than its MAC")
            plain, mac = plain[:-mlen], plain[-mlen:]
            want = _hmac(mac_name, self.mac_key, seqb + bytes([ctype]) + version + len(plain).to_bytes(2, "big") + plain)
            if not constant_time.bytes_eq(want, mac):
                raise ValueError("MAC mismatch")
        return ctype, plain


def _keys13(suite: Suite, secret: bytes) -> _Keys:
    key = hkdf_expand_label(suite.prf, secret, "key", b"", suite.key_len)
    iv = hkdf_expand_label(suite.prf, secret, "iv", b"", 12)
    return _Keys(suite, True, key, iv, secret=secret)


def _next_secret13(suite: Suite, secret: bytes) -> bytes:
    """RFC 8446 7.2: application_traffic_secret_N+1."""
    return hkdf_expand_label(suite.prf, secret, "traffic upd", b"", _MAC_LEN[suite.prf])


# --------------------------------------------------------------------------------------------
# The per-connection state machine
# --------------------------------------------------------------------------------------------
@dataclass(slots=True)
class Plain:
    """What one record carried: inner content type and plaintext when decrypted."""

    content_type: int
    data: bytes
    decrypted: bool = False          # True: `data` is plaintext recovered with the secrets
    encrypted: bool = False          # True: the record was protected (decrypted or not)
    error: str = ""                  # why an encrypted record could not be decrypted


@dataclass(slots=True)
class _Dir:
    keys: _Keys | None = None
    pending: _Keys | None = None     # TLS 1.2: active after this direction's ChangeCipherSpec
    next13: bytes = b""              # TLS 1.3: the secret after this direction's Finished
    skip_until_ok: bool = False      # TLS 1.3 without the handshake secret: skip records until one decrypts
    clear_hs: bytearray = field(default_factory=bytearray)
    enc_hs: bytearray = field(default_factory=bytearray)


class TlsDecryptor:
    """Decrypts one connection's records (see the module docstring)."""

    def __init__(self, secrets: Mapping[tuple[str, bytes], bytes]) -> None:
        self.secrets = secrets
        self.dirs = (_Dir(), _Dir())
        self.client_random: bytes | None = None
        self.server_random: bytes | None = None
        self.version: int | None = None
        self.suite_code: int | None = None
        self.suite: Suite | None = None
        self.etm = False
        self.status = "pending"      # pending | ready | unavailable | failed
        self.problem = ""

    # ---------------------------------------------------------------- public
    def record(self, direction: int, rec: bytes) -> Plain:
        """Process one whole record (5-byte header included) of `direction` (0 client, 1 server)."""
        if len(rec) < 5:
            return Plain(0, b"", error="short record")
        ctype = rec[0]
        body = rec[5:]
        d = self.dirs[direction]
        if ctype == CT_CCS:
            if d.pending is not None and self.version != 0x0304:
                d.keys, d.pending = d.pending, None
            return Plain(ctype, body)
        if d.keys is None:
            if ctype == CT_HANDSHAKE and self.status == "pending":
                self._clear_handshake(direction, body)
            if ctype == CT_APPDATA:   # 0-RTT data, or a connection we have no keys for
                return Plain(ctype, b"", encrypted=True, error=self.problem or "no keys for this record")
            return Plain(ctype, body)
        if self.status != "ready":
            return Plain(ctype, b"", encrypted=True, error=self.problem or "decryption stopped")
        try:
            inner, plain = self._decrypt(direction, rec)
        except ValueError as exc:
            if d.skip_until_ok:   # an encrypted handshake record we have no secret for
                return Plain(ctype, b"", encrypted=True, error="no handshake secret for this record")
            self.status = "failed"
            self.problem = f"{'client' if direction == 0 else 'server'} record did not decrypt ({exc})"
            return Plain(ctype, b"", encrypted=True, error=self.problem)
        d.skip_until_ok = False
        if inner == CT_HANDSHAKE and self.version == 0x0304:
            self._encrypted_handshake(direction, plain)
        return Plain(inner, plain, decrypted=True, encrypted=True)

    # ---------------------------------------------------------------- decryption with lookahead
    def _decrypt(self, direction: int, rec: bytes) -> tuple[int, bytes]:
        d = self.dirs[direction]
        keys = d.keys
        assert keys is not None
        header, body = rec[:5], rec[5:]
        first_err: ValueError | None = None
        tries = SEQ_LOOKAHEAD
        for k in range(tries):
            try:
                out = keys.decrypt(rec[0], rec[1:3], body, header, keys.seq + k)
                keys.seq += k + 1
                return out
            except ValueError as exc:
                first_err = first_err or exc
        # TLS 1.3: a Finished or KeyUpdate the capture lost: the next generation may fit
        if self.version == 0x0304 and self.suite is not None:
            nxt = d.next13 or _next_secret13(self.suite, keys.secret)
            cand = _keys13(self.suite, nxt)
            try:
                out = cand.decrypt(rec[0], rec[1:3], body, header, 0)
                cand.seq = 1
                d.keys, d.next13 = cand, b""
                return out
            except ValueError:
                pass
        raise first_err or ValueError("undecryptable")

    # ---------------------------------------------------------------- handshake in clear
    def _clear_handshake(self, direction: int, body: bytes) -> None:
        d = self.dirs[direction]
        d.clear_hs += body
        while len(d.clear_hs) >= 4:
            n = int.from_bytes(d.clear_hs[1:4], "big")
            if len(d.clear_hs) < 4 + n:
                break
            htype, msg = d.clear_hs[0], bytes(d.clear_hs[4:4 + n])
            del d.clear_hs[:4 + n]
            try:
                if htype == HS_CLIENT_HELLO and direction == 0:
                    if len(msg) >= 34:
                        self.client_random = msg[2:34]
                elif htype == HS_SERVER_HELLO and direction == 1:
                    self._server_hello(msg)
            except (IndexError, ValueError):
                self._unavailable("ServerHello could not be read")

    def _server_hello(self, msg: bytes) -> None:
        if len(msg) < 38:
            raise ValueError("short ServerHello")
        random = msg[2:34]
        if random == HRR_RANDOM:
            return  # HelloRetryRequest: the real ServerHello follows
        p = 34
        sid_len = msg[p]
        p += 1 + sid_len
        suite = int.from_bytes(msg[p:p + 2], "big")
        p += 3   # suite, compression
        version = int.from_bytes(msg[0:2], "big")
        etm = False
        if p + 2 <= len(msg):
            end = p + 2 + int.from_bytes(msg[p:p + 2], "big")
            p += 2
            while p + 4 <= end:
                etype = int.from_bytes(msg[p:p + 2], "big")
                elen = int.from_bytes(msg[p + 2:p + 4], "big")
                ebody = msg[p + 4:p + 4 + elen]
                if etype == EXT_SUPPORTED_VERSIONS and len(ebody) == 2:
                    version = int.from_bytes(ebody, "big")
                elif etype == EXT_ENCRYPT_THEN_MAC:
                    etm = True
                p += 4 + elen
        self.server_random, self.version, self.suite_code = random, version, suite
        self._setup(etm)

    def _unavailable(self, why: str) -> None:
        self.status = "unavailable"
        self.problem = why

    def _secret(self, label: str) -> bytes | None:
        if self.client_random is None:
            return None
        return self.secrets.get((label, self.client_random))

    def _setup(self, etm: bool) -> None:
        code = self.suite_code or 0
        if self.client_random is None:
            return self._unavailable("no ClientHello seen (capture started after it)")
        cr = self.client_random.hex()[:16]
        if self.version == 0x0304:
            suite = SUITES_13.get(code)
            if suite is None:
                return self._unavailable(f"TLS 1.3 cipher suite 0x{code:04x} not supported")
            c_ap, s_ap = self._secret(CLIENT_AP0), self._secret(SERVER_AP0)
            if c_ap is None or s_ap is None:
                missing = CLIENT_AP0 if c_ap is None else SERVER_AP0
                return self._unavailable(f"key log has no {missing} for client random {cr}...")
            self.suite = suite
            for di, hs_label, ap in ((0, CLIENT_HS, c_ap), (1, SERVER_HS, s_ap)):
                hs = self._secret(hs_label)
                d = self.dirs[di]
                d.next13 = ap
                # without the handshake secret the application key is tried from the start
                # (the encrypted handshake records then do not decrypt and are skipped)
                d.keys = _keys13(suite, hs) if hs is not None else _keys13(suite, ap)
                if hs is None:
                    d.next13 = b""
                    d.skip_until_ok = True
            self.status = "ready"
            return None
        if self.version != 0x0303:
            return self._unavailable(f"version 0x{(self.version or 0):04x} not supported (TLS 1.2 and 1.3 only)")
        suite = SUITES_12.get(code)
        if suite is None:
            return self._unavailable(f"TLS 1.2 cipher suite 0x{code:04x} not supported")
        master = self._secret(CLIENT_RANDOM)
        if master is None:
            return self._unavailable(f"key log has no CLIENT_RANDOM for client random {cr}...")
        self.suite = suite
        self.etm = etm and suite.kind == "cbc"
        mac_len = _MAC_LEN[suite.mac] if suite.kind == "cbc" else 0
        iv_len = 12 if suite.kind == "chacha" else 4 if suite.kind != "cbc" else 16
        kb = prf12(suite.prf, master, b"key expansion", self.server_random + self.client_random,
                   2 * (mac_len + suite.key_len + iv_len))
        parts = []
        p = 0
        for n in (mac_len, mac_len, suite.key_len, suite.key_len, iv_len, iv_len):
            parts.append(kb[p:p + n])
            p += n
        cmac, smac, ckey, skey, civ, siv = parts
        self.dirs[0].pending = _Keys(suite, False, ckey, civ, cmac, self.etm)
        self.dirs[1].pending = _Keys(suite, False, skey, siv, smac, self.etm)
        self.status = "ready"
        return None

    # ---------------------------------------------------------------- TLS 1.3 encrypted handshake
    def _encrypted_handshake(self, direction: int, plain: bytes) -> None:
        """Switch keys after this direction's Finished (to traffic secret 0) or KeyUpdate (next)."""
        d = self.dirs[direction]
        d.enc_hs += plain
        switch: bytes | None = None
        while len(d.enc_hs) >= 4:
            n = int.from_bytes(d.enc_hs[1:4], "big")
            if len(d.enc_hs) < 4 + n:
                break
            htype = d.enc_hs[0]
            del d.enc_hs[:4 + n]
            if htype == HS_FINISHED and d.next13:
                switch, d.next13 = d.next13, b""
            elif htype == HS_KEY_UPDATE and d.keys is not None and self.suite is not None:
                switch = _next_secret13(self.suite, (switch or d.keys.secret))
        if switch is not None and self.suite is not None:
            d.keys = _keys13(self.suite, switch)   # the next record uses the new keys, sequence 0
