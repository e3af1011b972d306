"""Messages and transactions: packets -> TCP analysis -> byte streams -> parsers -> paired requests.

The streams -> messages -> transactions stage. One pass over the capture:

1. `netdiag.capture.iter_chunks` yields packet chunks; `netdiag.tcp.TcpAnalyzer.feed` turns
   each into SEGMENTS rows (conn_id, direction, relative sequence numbers, retransmission
   flags) and UDP rows (`last_udp`).
2. Payload-carrying segments of each connection are placed into per-direction byte streams
   (`netdiag.tcp.streams.StreamDir`: first copy wins, out-of-order placed, gaps recorded).
   A connection is *recognised* by the protocol registry (netdiag/protocols/registry.py): a
   protocol recognised by port (DNS: 53/5353/5355), else the first whose parser's `looks_like`
   accepts the first bytes of either direction (GIOP by its magic on any port, then TLS, then
   HTTP), else a magic found in those bytes (GIOP joined mid-message).
   Connections nobody recognises release their bytes and are skipped cheaply from then on;
   a recognised one is released as soon as both directions ended (FIN/RST) and are parsed
   (only its later resends still count), so memory follows open connections, not the capture.
3. Each recognised stream is cut into messages with the parser's `cut`, in time order across
   the two directions (HTTP framing of a response depends on its request; TLS on the
   ChangeCipherSpec of each side). A `malformed` cut is recorded with the frame where it
   starts and parsing resynchronises after it (GIOP: next magic; HTTP: next start line; TLS: next
   plausible record header); a parser that raises loses only the message it raised on (the
   parser's `resync()` says where the next one starts), never the rest of the direction. A hole
   the capture will never fill (see streams.py) ends the message in progress as malformed
   ("capture gap") and parsing resumes after the hole.
4. MESSAGES rows get their timing from the stream pieces; `resend_s` comes afterwards from the
   analyzer's retransmissions (see below). DNS over UDP is parsed from the UDP rows.
5. TRANSACTIONS pair requests with responses, each protocol by its own rules
   (netdiag/protocols/<name>/pairing.py, run in registry order): GIOP by (connection, request direction,
   request id), fragments joined to their message (1.2 by request id, 1.1 to the previous
   fragmented message of that direction), LocateRequest/LocateReply alike, CancelRequest
   noted; HTTP in order per connection (pipelining; 1xx interim answers skipped); DNS
   answers by (client socket, server socket, id, question), resends of an unanswered question
   folded into one transaction (rules in netdiag/protocols/dns/pairing.py); TLS one 'tls' transaction per handshake and
   'turn' transactions (confidence 'inferred') for application data, a turn being the
   client's records up to the server's records that follow them. In TLS 1.3 without keys,
   session tickets, key updates and alerts are inferred and are neither requests nor answers
   (netdiag/protocols/tls/pairing.py, docs/tls.md). With a key log (`tls_keylog`) TLS connections whose
   secrets it holds are decrypted and the GIOP/HTTP inside is paired like cleartext instead of
   as turns (netdiag/protocols/tls/plaintext.py).

Modules: streams.py (per-connection byte streams, recognition, the cut/parse loop), sink.py
(message rows, counts), resend.py (resend intervals -> seconds), build.py (pairing through the
registry, then the columnar transactions table), analysis.py (`analyze_streams` and helpers).

Timing definitions (also in the schema):

- A message's `first_ts_ns` is the earliest first-seen time of its bytes and `last_ts_ns` the
  latest (when it was complete at the capture point); `last_frame` is the frame completing it
  (Wireshark's "reassembled in").
- `resend_s` (messages) and `retransmission_stall_s` (transactions): every resent segment
  (segments.resend: tshark's retransmissions and resends of captured bytes, whatever tshark
  calls them; not spurious ones, whose bytes the receiver had acknowledged) stands for the
  interval [first copy, resend] (resend_wait_s, else tshark's rto_s); the union of the intervals of the segments that overlap the message's (or the
  transaction's request and response) bytes, in seconds. A resend counts even when it came
  after the message was complete at the capture point (a loss downstream of a sender-side
  capture).
- `server_think_s` = (rsp_first_ts - req_last_ts) - rtt_server_side - request resend stall
  inside that interval, clipped at 0. rtt_server_side (capture point -> server -> capture
  point) is the smaller of the connection's SYN -> SYN/ACK time (connections.rtt_server_side_ms)
  and the quickest ACK the server sent for client data on that connection (min of the
  analyzer's ack_rtt_s on server segments): ~0 at a server-side capture, the network round trip
  at a client-side one. The minimum guards against a handshake that was slow once (a retried
  SYN met a busy accept queue: 4 ms in the lab's dropped-SYN capture against 0.2 ms per
  exchange). 0 when neither was seen, e.g. DNS over UDP. The request resend stall is removed
  because a request lost after the capture point reaches the server only with its resend.
  What is left is the server's own time.
  `server_rtt_s` is that round trip, so the logon budget (netdiag/logons/budget.py) places the
  server's time with the same rule: its `server_s` interval is [req_last + rtt/2, rsp_first - rtt/2]
  (request resends inside it go to loss_recovery_s by precedence), i.e. server_think_s.
- `request_transfer_s` = req_last - req_first; `response_transfer_s` = rsp_last - rsp_first.
"""

from __future__ import annotations

from netdiag.transactions.analysis import (
    Source,
    StreamsStage,
    _assemble,
    analyze_streams,
    filter_transactions,
    iter_protocols,
    messages,
    summarize,
    transactions,
)
from netdiag.transactions.build import build_transactions
from netdiag.transactions.sink import PAIR_KEYS, StreamAnalysis, StreamStats
from netdiag.transactions.streams import HEAD_DECISION_BYTES, StreamParser

__all__ = ["HEAD_DECISION_BYTES", "PAIR_KEYS", "Source", "StreamAnalysis", "StreamParser", "StreamStats",
           "StreamsStage", "_assemble", "analyze_streams", "build_transactions", "filter_transactions", "iter_protocols",
           "messages", "summarize", "transactions"]
