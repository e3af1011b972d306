"""Decrypted TLS as plaintext byte streams, cut by the GIOP/HTTP parsers, timed by their TLS records.

Used by netdiag.transactions when a key log is given (the TLS spec's decryptor). Per TLS connection,
`TlsPlaintext` takes each TLS record the stream driver cut (direction, where it sits in the TCP
stream, its bytes), has netdiag.protocols.tls.decrypt decrypt it, and:

- returns the TLS record as the tls parser sees it once decrypted: a TLS 1.3 record's inner
  handshake messages (EncryptedExtensions, Certificate, Finished, NewSessionTicket, KeyUpdate)
  and alerts (close_notify...) are decoded like clear ones, with `decrypted=True`;
- appends application data to a per-direction plaintext stream and cuts it with the inner
  parser (GIOP by its magic, else HTTP; chosen on the first application bytes), so one GIOP
  message may span several records and one record may carry several messages;
- maps every inner message back to the TCP stream: its span starts at the first byte of the
  first record carrying it and ends at the end of the record carrying its last byte. The
  message's times and frames are then those of these records ("a message's timing is the
  timing of the TLS records carrying it": first_ts the earliest first-seen time of their bytes,
  last_ts the latest), its `size_bytes` the TLS bytes on the wire, and `detail.plaintext_bytes`
  its own length. Record timing is taken when the record is cut (the caller passes it), because
  the TCP bytes of a record may be released before the message it starts is complete.

Records that carried application data into an inner parser get `detail.plaintext_protocol`,
so the TLS turn pairing leaves them out (their requests are paired as GIOP/HTTP instead).
Nothing here does I/O; the decryptor is pure and this is per-connection state.
"""

from __future__ import annotations

from typing import Any

from netdiag.protocols import Cut, Record
from netdiag.protocols.tls import parser as tls_mod
from netdiag.protocols.tls.decrypt import CT_APPDATA, TlsDecryptor

# Inner parsers, in the order their looks_like is tried on the first application bytes.
INNER_PARSERS = ("giop", "http")
# Application bytes after which a direction nobody recognised stops waiting for more.
HEAD_DECISION_BYTES = 64
# An inner message: (outer start, outer end, (first_ts, last_ts, first_frame, last_frame), record).
Inner = tuple[int, int, tuple[int, int, int, int], Record]


class TlsPlaintext:
    """Per-connection decryption and inner parsing (see the module docstring)."""

    __slots__ = ("dec", "parsers", "buf", "maps", "proto", "mod", "ctx", "undecided", "warned")

    def __init__(self, secrets: Any, parsers: dict[str, Any]) -> None:
        self.dec = TlsDecryptor(secrets)
        self.parsers = {n: parsers[n] for n in INNER_PARSERS if n in parsers}
        self.buf = (bytearray(), bytearray())
        # per direction, per record: [plaintext end offset within buf, outer start, outer end,
        # first_ts, last_ts, first_frame, last_frame]
        self.maps: tuple[list[list[int]], list[list[int]]] = ([], [])
        self.proto: str | None = None
        self.mod: Any = None
        self.ctx: Any = None
        self.undecided = True
        self.warned = False

    @property
    def active(self) -> bool:
        """Decrypting (secrets found, suite supported, nothing failed yet)."""
        return self.dec.status == "ready"

    @property
    def problem(self) -> str:
        return self.dec.problem if self.dec.status in ("unavailable", "failed") else ""

    def record(self, d: int, start: int, rec: bytes, tls_ctx: Any, parsed: list[Record],
               timing: Any) -> tuple[list[Record], list[Inner]]:
        """One TLS record of direction d at TCP stream offset `start`.

        `timing()` gives the record's (first_ts, last_ts, first_frame, last_frame); it is called
        only for records that carry application data. Returns (records for the TLS record
        itself, inner messages). Without usable keys the parser's own records come back and
        there are no inner messages.
        """
        status_before = self.dec.status
        try:
            plain = self.dec.record(d, rec)
        except Exception as exc:  # a decryptor bug must not stop the run: the connection goes without keys
            self.dec.status, self.dec.problem = "failed", f"decryption error: {exc!r}"
            return parsed, []
        if not plain.decrypted or status_before == "unavailable":
            return parsed, []
        # the TLS record as the parser sees it in clear: same header fields, inner type and plaintext
        clear = bytes([plain.content_type]) + rec[1:3] + len(plain.data).to_bytes(2, "big") + plain.data
        if plain.content_type != CT_APPDATA:
            try:
                recs = tls_mod.parse(clear, context=tls_ctx, direction=d)
            except Exception:  # never: parse() does not raise
                recs = parsed
            for r in recs:
                r.detail = {**r.detail, "record_bytes": len(rec), "decrypted": True}
            return recs, []
        out: list[Inner] = []
        detail = {**(parsed[0].detail if parsed else {}), "decrypted": True, "plaintext_bytes": len(plain.data)}
        detail.pop("encrypted_handshake", None)
        own = Record("tls", "ApplicationData", detail=detail)
        if self.undecided:
            self._classify(d, plain.data)
        if self.mod is None and not self.undecided:
            return [own], []      # application bytes no inner parser knows: TLS turns as without keys
        self.buf[d].extend(plain.data)
        self.maps[d].append([len(self.buf[d]), start, start + len(rec), *timing()])
        own.detail["plaintext_protocol"] = self.proto or "pending"
        if self.mod is not None:
            out = self._cut(d, at_end=False)
        return [own], out

    def gap(self, d: int, reason: str) -> list[Inner]:
        """TLS records of direction d were lost from the capture: the plaintext waiting for the rest
        of its message becomes one malformed message, and the inner parser starts afresh after it
        (GIOP finds the next magic, HTTP the next start line)."""
        if not self.buf[d] or not self.maps[d]:
            return []
        n = len(self.buf[d])
        s, e, timing = self._span(d, 0, n)
        rec = Record(self.proto or "", "malformed", malformed=True, reason=reason,
                     detail={"plaintext_bytes": n, "tls_decrypted": True})
        self.buf[d].clear()
        self.maps[d].clear()
        return [(s, e, timing, rec)]

    def finish(self, d: int) -> list[Inner]:
        """The direction ended: cut what is left (a body delimited by the close, or a malformed tail)."""
        if self.mod is None or not self.buf[d]:
            return []
        return self._cut(d, at_end=True)

    # ------------------------------------------------------------------
    def _classify(self, d: int, data: bytes) -> None:
        head = bytes(self.buf[d][:256]) + data[:256]
        for name, mod in self.parsers.items():
            if mod.looks_like(head):
                self.proto, self.mod, self.ctx = name, mod, mod.new_context()
                self.undecided = False
                return
        if len(head) >= HEAD_DECISION_BYTES:
            self.undecided = False

    def _span(self, d: int, a: int, b: int) -> tuple[int, int, tuple[int, int, int, int]]:
        """Outer (TCP stream) span and timing of the records carrying plaintext bytes [a, b)."""
        maps = self.maps[d]
        lo = next(i for i, m in enumerate(maps) if m[0] > a)
        hi = next((i for i, m in enumerate(maps) if m[0] >= b), len(maps) - 1)
        recs = maps[lo:hi + 1]
        first = min(recs, key=lambda m: (m[3], m[5]))
        last = max(recs, key=lambda m: (m[4], m[6]))
        return maps[lo][1], maps[hi][2], (first[3], last[4], first[5], last[6])

    def _cut(self, d: int, at_end: bool) -> list[Inner]:
        out: list[Inner] = []
        buf = self.buf[d]
        data = buf   # the parsers' cut() reads a bytearray as it is: no copy of a long message per record
        pos = 0
        mod = self.mod
        while pos < len(data):
            try:
                c = mod.cut(data, pos, at_end=at_end, context=self.ctx, direction=d)
            except Exception as exc:  # a parser bug must not stop the run
                c = Cut("malformed", len(data) - pos, f"parser error in cut: {exc!r}")
            if c.status == "need_more":
                if not at_end:
                    break
                c = Cut("malformed", len(data) - pos, "stream ended inside the message")
            n = min(max(int(c.length), 1), len(data) - pos)
            msg = bytes(data[pos:pos + n])
            if c.status == "message":
                try:
                    recs = mod.parse(msg, context=self.ctx, direction=d)
                except Exception as exc:
                    recs = [Record(self.proto or "", "malformed", malformed=True, reason=f"parser error: {exc!r}")]
            else:
                recs = [Record(self.proto or "", "malformed", malformed=True, reason=c.reason or "malformed")]
            s, e, timing = self._span(d, pos, pos + n)
            for r in recs:
                r.detail = {**r.detail, "plaintext_bytes": n, "tls_decrypted": True}
                out.append((s, e, timing, r))
            pos += n
        if pos:
            del buf[:pos]
            maps = self.maps[d]
            for m in maps:
                m[0] -= pos
            while maps and maps[0][0] <= 0:
                maps.pop(0)
        return out
