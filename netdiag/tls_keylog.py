"""Read a TLS key log (the NSS SSLKEYLOGFILE format) into {(label, client_random): secret}.

The format (https://firefox-source-docs.mozilla.org/security/nss/legacy/key_log_format/, also
written by curl, OpenSSL's SSL_CTX_set_keylog_callback, Python's `ssl` keylog_filename, Go's
KeyLogWriter and Java agents such as extract-tls-secrets): one line per secret,
`LABEL <client_random hex> <secret hex>`; `#` starts a comment. Labels used by
netdiag.protocols.tls.decrypt: CLIENT_RANDOM (TLS 1.2 master secret),
CLIENT_HANDSHAKE_TRAFFIC_SECRET, SERVER_HANDSHAKE_TRAFFIC_SECRET, CLIENT_TRAFFIC_SECRET_0 and
SERVER_TRAFFIC_SECRET_0 (TLS 1.3). Other labels (EXPORTER_SECRET, CLIENT_EARLY_TRAFFIC_SECRET,
RSA) are kept but not used.

Bad input: a line that is not three fields of the right hex shape is skipped and counted
(`KeyLog.bad_lines`, first bad line number in `first_bad_line`); an unreadable file raises
`UsageError` naming it. This module only reads the file; the secrets never leave memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netdiag.errors import UsageError

_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass
class KeyLog:
    """Secrets by (label, client random bytes); a Mapping for TlsDecryptor."""

    path: str = ""
    secrets: dict[tuple[str, bytes], bytes] = field(default_factory=dict)
    bad_lines: int = 0
    first_bad_line: int = 0

    def get(self, key: tuple[str, bytes], default: bytes | None = None) -> bytes | None:
        return self.secrets.get(key, default)

    def __len__(self) -> int:
        return len(self.secrets)

    @property
    def client_randoms(self) -> int:
        """How many sessions the file has secrets for."""
        return len({cr for _, cr in self.secrets})


def parse_keylog(text: str, path: str = "") -> KeyLog:
    """Parse key log text (see the module docstring)."""
    kl = KeyLog(path=path)
    for no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        ok = (len(parts) == 3 and len(parts[1]) == 64 and set(parts[1]) <= _HEX and len(parts[2]) % 2 == 0
              and 32 <= len(parts[2]) <= 256 and set(parts[2]) <= _HEX)
        if not ok:
            kl.bad_lines += 1
            kl.first_bad_line = kl.first_bad_line or no
            continue
        kl.secrets[(parts[0], bytes.fromhex(parts[1]))] = bytes.fromhex(parts[2])
    return kl


def read_keylog(path: str | Path) -> KeyLog:
    """Read a key log file; `UsageError` (exit 2) naming the file when it cannot be read."""
    p = Path(path)
    try:
        text = p.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise UsageError(f"{p}: cannot read the TLS key log: {exc.strerror or exc}") from None
    kl = parse_keylog(text, str(p))
    if not kl.secrets:
        raise UsageError(f"{p}: no TLS secrets in this file (expected NSS key log lines such as "
                         "'CLIENT_RANDOM <64 hex> <96 hex>')")
    return kl


def profile_with_keylog(profile: Any, keylog: str | Path | None) -> Any:
    """The profile (a Profile, a TOML path or None) with `--tls-keylog` set, which wins over the
    profile's `[tls] keylog`; unchanged when no keylog is given. The file is read here once so a
    missing or empty key log stops the command before the analysis (exit 2)."""
    if keylog is None:
        return profile
    from dataclasses import replace

    from netdiag.profile import Profile, load_profile

    read_keylog(keylog)
    prof = profile if isinstance(profile, Profile) else (load_profile(profile) if profile is not None else Profile())
    return replace(prof, tls_keylog=str(keylog))
