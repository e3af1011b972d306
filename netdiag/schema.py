"""Every table netdiag produces, declared once: column name, type, one-line meaning.

Like Zeek's log records, these declarations are the contract other tools read (Parquet files,
JSON output, notebooks). Code that builds a table finishes with `TABLE.conform(df)`, which
puts the columns in declared order with declared types and fails loudly on a missing column.
`netdiag schema` prints these declarations as Markdown (docs/schema.md is generated from it).

Conventions: timestamps are `*_ts_ns` (int64 nanoseconds since the epoch); durations carry
their unit (`_s`, `_ms`); `frame` numbers are Wireshark's (1-based, file order, across files
in the order given); `conn_id` ties every table to the connections table.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from netdiag.protocols.registry import specs as protocol_specs


@dataclass(frozen=True)
class Column:
    """One column: its name, polars type and a one-line meaning (with caveats)."""

    name: str
    dtype: pl.DataType
    meaning: str


@dataclass(frozen=True)
class Table:
    """A documented table: a name, what one row is, and its columns in order."""

    name: str
    row: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> pl.Schema:
        """The polars schema (names and types in declared order)."""
        return pl.Schema({c.name: c.dtype for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def empty(self) -> pl.DataFrame:
        """A zero-row frame with this table's schema."""
        return pl.DataFrame(schema=self.schema)

    def conform(self, df: pl.DataFrame) -> pl.DataFrame:
        """Select the declared columns in order and cast to the declared types.

        Raises KeyError naming the missing columns: a builder that forgot a column is a bug.
        """
        missing = [n for n in self.names if n not in df.columns]
        if missing:
            raise KeyError(f"{self.name} table is missing columns: {', '.join(missing)}")
        return df.select([pl.col(c.name).cast(c.dtype, strict=False) for c in self.columns])

    def markdown(self) -> str:
        """The declaration as a Markdown section (for docs and `netdiag schema`)."""
        lines = [f"## `{self.name}`", "", f"One row per {self.row}.", "",
                 "| column | type | meaning |", "|---|---|---|"]
        for c in self.columns:
            lines.append(f"| `{c.name}` | {c.dtype} | {c.meaning} |")
        return "\n".join(lines) + "\n"


def _t(name: str, row: str, *cols: tuple[str, pl.DataType, str]) -> Table:
    return Table(name, row, tuple(Column(*c) for c in cols))



def _with_protocol_columns(table: Table) -> Table:
    """`table` with each registered protocol's own columns inserted after their anchor column."""
    cols = list(table.columns)
    for spec in protocol_specs():
        for pc in spec.columns:
            at = next(i for i, c in enumerate(cols) if c.name == pc.after)
            cols.insert(at + 1, Column(pc.name, pc.dtype, pc.meaning))
    return Table(table.name, table.row, tuple(cols))

# --------------------------------------------------------------------------------------------
# packets: the ingest table (netdiag.capture). No payload bytes: payload lives in the chunk's
# payload buffer, addressed by payload_offset.
# --------------------------------------------------------------------------------------------
PACKETS = _t(
    "packets", "captured frame kept after SPAN de-duplication",
    ("frame", pl.Int64, "Wireshark frame number: 1-based, file order, counted across files in the order given"),
    ("file_id", pl.UInt16, "index (0-based) of the capture file in the order given"),
    ("ts_ns", pl.Int64, "capture timestamp, ns since the epoch (pcapng if_tsresol/if_tsoffset applied; a pcapng Simple Packet Block has none and takes the previous packet's)"),
    ("interface_id", pl.UInt16, "pcapng interface id (0 for classic pcap)"),
    ("link_type", pl.UInt16, "LINKTYPE_* of the frame's interface (1 Ethernet, 113 SLL, 276 SLL2, 101 raw, 0 BSD loopback...)"),
    ("frame_len", pl.UInt32, "original length of the frame on the wire"),
    ("cap_len", pl.UInt32, "bytes of the frame present in the capture (less than frame_len when snaplen-cut)"),
    ("vlan_id", pl.UInt16, "outermost 802.1Q VLAN id (0 when untagged)"),
    ("ip_version", pl.UInt8, "4 or 6; 0 when the frame carries no IP packet we could decode. Tunnels are followed (MPLS, GRE, ERSPAN I/II/III, VXLAN, IP in IP, pseudowire Ethernet): the IP and TCP/UDP columns describe the innermost packet, as Wireshark shows it"),
    ("src_ip_hi", pl.UInt64, "source address, high 64 bits (IPv4 is stored v4-mapped ::ffff:a.b.c.d)"),
    ("src_ip_lo", pl.UInt64, "source address, low 64 bits"),
    ("dst_ip_hi", pl.UInt64, "destination address, high 64 bits"),
    ("dst_ip_lo", pl.UInt64, "destination address, low 64 bits"),
    ("ip_proto", pl.UInt8, "upper-layer protocol after IPv6 extension headers (6 TCP, 17 UDP, ...)"),
    ("ip_ttl", pl.UInt8, "IPv4 TTL or IPv6 hop limit"),
    ("ip_id", pl.UInt16, "IPv4 identification (0 for IPv6)"),
    ("ip_fragment", pl.Boolean, "IP fragment (MF set or non-zero offset); ports/TCP fields only on the first fragment"),
    ("ip_len", pl.UInt32, "IP packet length (IPv4 total length, IPv6 40 + payload length) as the header says, but never more than the frame had on the wire after the headers before it (like Wireshark; such frames are counted in ReadStats.ip_length_clamped_frames); for a tunnelled frame, the innermost packet's"),
    ("src_port", pl.UInt16, "TCP/UDP source port (0 when not TCP/UDP)"),
    ("dst_port", pl.UInt16, "TCP/UDP destination port"),
    ("tcp_flags", pl.UInt16, "TCP flags: FIN 0x01 SYN 0x02 RST 0x04 PSH 0x08 ACK 0x10 URG 0x20 ECE 0x40 CWR 0x80 NS 0x100"),
    ("tcp_seq", pl.UInt32, "raw TCP sequence number"),
    ("tcp_ack", pl.UInt32, "raw TCP acknowledgement number"),
    ("tcp_window", pl.UInt16, "raw (unscaled) TCP window field"),
    ("tcp_mss", pl.UInt16, "MSS option value (0 when absent)"),
    ("tcp_wscale", pl.Int8, "window-scale option shift count (-1 when absent)"),
    ("tcp_sack_perm", pl.Boolean, "SACK-permitted option present"),
    ("tcp_has_ts", pl.Boolean, "timestamps option present"),
    ("tcp_ts_val", pl.UInt32, "timestamps option TSval (0 when absent)"),
    ("tcp_ts_ecr", pl.UInt32, "timestamps option TSecr (0 when absent)"),
    ("tcp_sack_blocks", pl.UInt8, "number of SACK blocks in the options"),
    ("tcp_sack_left", pl.UInt32, "left edge of the first SACK block (raw sequence; 0 when none)"),
    ("tcp_sack_right", pl.UInt32, "right edge of the first SACK block (raw sequence; 0 when none)"),
    ("payload_len", pl.UInt32, "TCP/UDP payload length on the wire, from the IP lengths (not reduced by snaplen; 0 when the snaplen cut the TCP header itself, as in Wireshark)"),
    ("payload_captured", pl.UInt32, "payload bytes actually present in the capture (< payload_len when snaplen-cut)"),
    ("payload_offset", pl.Int64, "offset of the first payload byte in the chunk's payload buffer (-1 when none captured)"),
)

# --------------------------------------------------------------------------------------------
# segments: per-TCP-segment analysis (netdiag.tcp), the same judgements as Wireshark's
# tcp.analysis.* fields. Joins to packets on `frame`.
# --------------------------------------------------------------------------------------------
SEGMENTS = _t(
    "segments", "TCP segment (a packets row with ip_proto 6)",
    ("frame", pl.Int64, "Wireshark frame number of the segment"),
    ("ts_ns", pl.Int64, "capture timestamp, ns since the epoch"),
    ("conn_id", pl.UInt32, "connection this segment belongs to (connections.conn_id)"),
    ("direction", pl.UInt8, "0 = client to server, 1 = server to client"),
    ("tcp_flags", pl.UInt16, "TCP flags, as in packets.tcp_flags"),
    ("seq_rel", pl.Int64, "relative sequence number (tcp.seq): from the SYN's ISN, or from the first seen segment's seq - 1 without a SYN"),
    ("next_seq_rel", pl.Int64, "relative sequence number after this segment (tcp.nxtseq; SYN/FIN count 1)"),
    ("ack_rel", pl.Int64, "relative acknowledgement number (tcp.ack; 0 when ACK flag unset)"),
    ("payload_len", pl.UInt32, "TCP payload length on the wire (tcp.len)"),
    ("window_bytes", pl.Int64, "advertised window after scaling (tcp.window_size): shifted only when the shift is known from the SYNs; raw field when unknown (no SYN seen) or for SYNs, exactly as tshark shows it"),
    ("bytes_in_flight", pl.Int64, "unacknowledged bytes after this segment (tcp.analysis.bytes_in_flight; null when not data). Differs on purpose: SACK blocks are not subtracted, so it can be higher than tshark's during SACK recovery"),
    ("retransmission", pl.Boolean, "tcp.analysis.retransmission: resends data already seen; true for fast and spurious retransmissions too, as tshark's field is. SPAN duplicates never reach the analysis (removed by the reader), unlike tshark"),
    ("fast_retransmission", pl.Boolean, "tcp.analysis.fast_retransmission: resend after >= 2 duplicate ACKs within 20 ms"),
    ("spurious_retransmission", pl.Boolean, "tcp.analysis.spurious_retransmission: resends data the receiver had already ACKed"),
    ("out_of_order", pl.Boolean, "tcp.analysis.out_of_order: does not advance the sequence, arrives within the reordering window after the highest segment (the connection's initial RTT; 3 ms without a handshake), and is not a fast retransmission"),
    ("lost_segment", pl.Boolean, "tcp.analysis.lost_segment: previous segment not captured (a sequence gap before this one)"),
    ("ack_lost_segment", pl.Boolean, "tcp.analysis.ack_lost_segment: ACKs a segment that was never captured"),
    ("duplicate_ack", pl.Boolean, "tcp.analysis.duplicate_ack"),
    ("duplicate_ack_num", pl.UInt16, "tcp.analysis.duplicate_ack_num (0 when not a duplicate ACK)"),
    ("duplicate_ack_frame", pl.Int64, "tcp.analysis.duplicate_ack_frame: the ACK this one duplicates (null otherwise)"),
    ("zero_window", pl.Boolean, "tcp.analysis.zero_window: advertises a zero window"),
    ("zero_window_probe", pl.Boolean, "tcp.analysis.zero_window_probe"),
    ("zero_window_probe_ack", pl.Boolean, "tcp.analysis.zero_window_probe_ack"),
    ("window_full", pl.Boolean, "tcp.analysis.window_full: fills the receiver's advertised window"),
    ("window_update", pl.Boolean, "tcp.analysis.window_update"),
    ("keep_alive", pl.Boolean, "tcp.analysis.keep_alive"),
    ("keep_alive_ack", pl.Boolean, "tcp.analysis.keep_alive_ack"),
    ("rto_s", pl.Float64, "tcp.analysis.rto: seconds since the original transmission this retransmission repeats"),
    ("rto_frame", pl.Int64, "tcp.analysis.rto_frame: frame of that original transmission"),
    ("ack_rtt_s", pl.Float64, "tcp.analysis.ack_rtt: seconds from the acknowledged data segment to this ACK"),
    ("acks_frame", pl.Int64, "tcp.analysis.acks_frame: the data segment this ACK acknowledges"),
    ("resend", pl.Boolean, "netdiag's resend: flagged retransmission (fast, spurious included) or carrying bytes the capture already saw, whatever tshark calls it (a quick resend is tshark's out-of-order); what connections.retransmitted_segments counts"),
    ("bytes_seen_before", pl.Boolean, "some of the segment's bytes were captured before (below the highest sequence seen and outside the sequence holes): a resend of captured bytes; false for a first copy filling a hole"),
    ("resend_of_frame", pl.Int64, "for a resend of captured bytes: the earliest still-unacknowledged frame that carried them (null when none, e.g. already acknowledged)"),
    ("resend_wait_s", pl.Float64, "seconds from resend_of_frame to this resend"),
    ("dsack_left_rel", pl.Int64, "first SACK block's left edge (relative, like tcp.ack) when it is a D-SACK (RFC 2883: below the cumulative ACK): the receiver got those bytes twice; null otherwise"),
    ("dsack_right_rel", pl.Int64, "that D-SACK block's right edge (relative)"),
    ("ip_id", pl.UInt16, "IPv4 identification of the packet (per-socket counter on Linux, one counter per host on Windows)"),
    ("ip_ttl", pl.UInt8, "IPv4 TTL / IPv6 hop limit of the packet"),
)

# --------------------------------------------------------------------------------------------
# connections: one row per TCP connection (and per UDP flow, transport = "udp").
# Column names are a contract other tools read.
# --------------------------------------------------------------------------------------------
CONNECTIONS = _t(
    "connections", "TCP connection (or UDP flow, transport = 'udp')",
    ("conn_id", pl.UInt32, "stable id of the connection in this analysis; ties every table together"),
    ("transport", pl.String, "'tcp' or 'udp'"),
    ("client_ip", pl.String, "address of the side that sent the SYN (without one: ephemeral port side)"),
    ("client_port", pl.UInt16, "client port"),
    ("server_ip", pl.String, "address of the side that accepted (or the well-known/listed port side)"),
    ("server_port", pl.UInt16, "server port"),
    ("first_ts_ns", pl.Int64, "timestamp of the connection's first packet"),
    ("last_ts_ns", pl.Int64, "timestamp of its last packet"),
    ("first_frame", pl.Int64, "frame of its first packet"),
    ("last_frame", pl.Int64, "frame of its last packet"),
    ("duration_s", pl.Float64, "last minus first packet time, seconds"),
    ("syn_ts_ns", pl.Int64, "first SYN (null when not captured)"),
    ("synack_ts_ns", pl.Int64, "first SYN/ACK answering it (null when none)"),
    ("established_ts_ns", pl.Int64, "the handshake's final ACK (null when not seen)"),
    ("syn_retransmissions", pl.UInt16, "SYNs sent after the first one for this connection"),
    ("connect_s", pl.Float64, "first SYN to the handshake's final ACK, seconds (includes SYN retries)"),
    ("rtt_server_side_ms", pl.Float64, "last SYN before the first SYN/ACK to that SYN/ACK: capture point to server and back, ms (null without a SYN/ACK, e.g. a SYN refused by RST, where tshark's initial_rtt still counts the RST/ACK)"),
    ("rtt_client_side_ms", pl.Float64, "SYN/ACK to the final ACK: capture point to client and back, ms (tshark tcp.analysis.initial_rtt = sum of both)"),
    ("mss_client", pl.UInt16, "MSS option in the client's SYN (null when absent)"),
    ("mss_server", pl.UInt16, "MSS option in the server's SYN/ACK (null when absent)"),
    ("wscale_client", pl.Int8, "window scale in the client's SYN (null when absent)"),
    ("wscale_server", pl.Int8, "window scale in the server's SYN/ACK (null when absent)"),
    ("sack_permitted", pl.Boolean, "both SYNs carried SACK-permitted"),
    ("packets_c2s", pl.UInt64, "packets client to server"),
    ("packets_s2c", pl.UInt64, "packets server to client"),
    ("bytes_c2s", pl.UInt64, "payload bytes client to server (all segments, resends included, like tshark conv)"),
    ("bytes_s2c", pl.UInt64, "payload bytes server to client"),
    ("frame_bytes_c2s", pl.UInt64, "frame bytes client to server (what tshark -z conv,tcp counts)"),
    ("frame_bytes_s2c", pl.UInt64, "frame bytes server to client"),
    ("ip_bytes_c2s", pl.UInt64, "IP bytes client to server (sum of packets.ip_len; Zeek's orig_ip_bytes)"),
    ("ip_bytes_s2c", pl.UInt64, "IP bytes server to client (Zeek's resp_ip_bytes)"),
    ("retransmitted_segments", pl.UInt32, "resent segments: flagged retransmission (fast and spurious included), and any segment carrying bytes the capture already saw whatever tshark calls it (tshark labels a resend within about one RTT of the highest segment out-of-order); segments.resend"),
    ("retransmitted_bytes", pl.UInt64, "payload bytes in those segments"),
    ("retransmission_stall_s", pl.Float64, "time lost waiting for resends: per resend, the gap since the previous packet of the connection, bounded by rto_s, summed without overlap"),
    ("fast_retransmissions", pl.UInt32, "segments flagged fast retransmission"),
    ("out_of_order_segments", pl.UInt32, "segments flagged out-of-order"),
    ("duplicate_acks", pl.UInt32, "duplicate ACKs"),
    ("lost_segments", pl.UInt32, "'previous segment not captured' events"),
    ("zero_window_events", pl.UInt32, "segments advertising a zero window"),
    ("zero_window_s", pl.Float64, "time a zero window was advertised (until the window reopened or the connection ended)"),
    ("window_full_events", pl.UInt32, "segments that filled the receiver's window"),
    ("keep_alives", pl.UInt32, "keep-alive segments"),
    ("nagle_stalls", pl.UInt32, "Nagle x delayed-ACK stalls: a small segment held until the peer's delayed ACK (30-500 ms beyond its round trip) of the sender's last data, then sent right after it (rule in netdiag/tcp/nagle.py; null for UDP)"),
    ("nagle_stall_s", pl.Float64, "seconds those held segments waited: per stall, the previous data segment to the held one, summed"),
    ("unseen_bytes", pl.UInt64, "bytes ACKed but never captured: sequence holes (and the tail past the last captured byte) below the peer's highest ACK, both directions; the capture dropped them, not the network"),
    ("unseen_gaps", pl.UInt32, "in how many gaps those bytes were (holes the receiver acknowledged past; an unseen tail counts as one)"),
    ("state", pl.String, "Zeek conn_state: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH, from Zeek's endpoint states (rules in netdiag/tcp/connections.py; UDP: SF both sides sent, S0 client only, SHR server only); a SYN after a FIN or RST starts a new row, as in Zeek"),
    ("history", pl.String, "Zeek history (upper case = client, as Zeek's originator): ^ first packet from the server (missed SYN), S/s SYN, H/h SYN+ACK, A/a pure ACK, D/d payload, F/f FIN, R/r RST (S, F, R again at a new sequence number), I FIN+RST, Q other multi-flag, T/t resent payload, W/w zero window, G/g content gap (these three at the 1st, 10th, 100th...); no C: checksums are not verified. Rules and Zeek sources: netdiag/tcp/connections.py"),
)

# --------------------------------------------------------------------------------------------
# messages: one row per protocol message parsed from a byte stream (netdiag.messages).
# --------------------------------------------------------------------------------------------
MESSAGES = _t(
    "messages", "protocol message (GIOP, HTTP, TLS record/handshake message, DNS)",
    ("conn_id", pl.UInt32, "connection (or UDP flow) carrying the message"),
    ("direction", pl.UInt8, "0 = client to server, 1 = server to client"),
    ("protocol", pl.String, "giop, http, tls, dns"),
    ("msg_type", pl.String, "Request, Reply, LocateRequest, ..., GET/response, ClientHello, ..., query/answer"),
    ("request_id", pl.Int64, "GIOP request id / DNS id (null when the protocol has none)"),
    ("operation", pl.String, "GIOP operation, HTTP method + path, DNS question name, TLS SNI"),
    ("status", pl.String, "GIOP reply status, HTTP status code, DNS rcode, TLS alert"),
    ("size_bytes", pl.Int64, "bytes of the message on the stream (headers included)"),
    ("stream_offset", pl.Int64, "offset of the message's first byte in its direction's byte stream"),
    ("first_frame", pl.Int64, "frame carrying the message's first byte"),
    ("last_frame", pl.Int64, "frame carrying its last byte"),
    ("first_ts_ns", pl.Int64, "when its first byte was first seen (earliest first-seen time over its bytes)"),
    ("last_ts_ns", pl.Int64, "when its last byte was first seen (latest first-seen time over its bytes: complete at the capture point)"),
    ("resend_s", pl.Float64, "time its bytes waited on retransmissions: union, over retransmitted segments overlapping it, of [original send, resend], seconds"),
    ("malformed", pl.Boolean, "the parser could not fully decode it (reason in detail)"),
    ("detail", pl.String, "protocol-specific fields as compact JSON (exception id, forward host:port, User-Agent, ...)"),
)

# --------------------------------------------------------------------------------------------
# transactions: a request paired with its response (netdiag.transactions). The columns only one
# protocol fills (GIOP exception id and forward IOR, HTTP User-Agent, TLS version) are declared by
# that protocol's spec (netdiag/protocols/<name>/__init__.py) and placed here in registry order.
# --------------------------------------------------------------------------------------------
TRANSACTIONS = _with_protocol_columns(_t(
    "transactions", "request paired with its response (or an unanswered request)",
    ("conn_id", pl.UInt32, "connection carrying the transaction"),
    ("client_ip", pl.String, "client address"),
    ("client_port", pl.UInt16, "client port (ties the transaction to the client process's socket)"),
    ("server_ip", pl.String, "server address"),
    ("server_port", pl.UInt16, "server port"),
    ("protocol", pl.String, "giop, http, tls (handshake), dns, turn (request/response turns of TLS read without keys; with --tls-keylog the GIOP/HTTP inside is giop/http: docs/tls.md)"),
    ("operation", pl.String, "GIOP operation or LocateRequest, HTTP method + path, DNS name, TLS handshake"),
    ("request_id", pl.Int64, "GIOP request id / DNS id / HTTP sequence number on the connection"),
    ("status", pl.String, "GIOP reply status, HTTP status, DNS rcode; 'unanswered' when no response was seen"),
    ("req_first_ts_ns", pl.Int64, "first request byte first seen"),
    ("req_last_ts_ns", pl.Int64, "last request byte first seen"),
    ("rsp_first_ts_ns", pl.Int64, "first response byte first seen (null when unanswered)"),
    ("rsp_last_ts_ns", pl.Int64, "last response byte first seen (null when unanswered)"),
    ("request_bytes", pl.Int64, "request size on the stream"),
    ("response_bytes", pl.Int64, "response size on the stream"),
    ("request_transfer_s", pl.Float64, "first to last request byte, seconds"),
    ("server_think_s", pl.Float64, "last request byte to first response byte, less the capture-to-server round trip (the smaller of connections.rtt_server_side_ms and the server's quickest ACK of client data on the connection; 0 when unknown, e.g. DNS over UDP) and less request resends inside that interval, clipped at 0: the server's own time wherever the capture was taken"),
    ("response_transfer_s", pl.Float64, "first to last response byte, seconds"),
    ("server_rtt_s", pl.Float64, "the capture-to-server round trip taken off server_think_s (seconds; 0 when unknown); "
     "the logon budget takes the same one, so its server_s is server_think_s"),
    ("retransmission_stall_s", pl.Float64, "time the transaction's bytes waited on retransmissions"),
    ("confidence", pl.String, "how sure the pairing is: exact (id/order), inferred (record turns)"),
    ("first_frame", pl.Int64, "first frame of the request"),
    ("last_frame", pl.Int64, "last frame of the response (of the request when unanswered)"),
    ("detail", pl.String, "protocol-specific JSON: TLS phases [msg, direction, s since ClientHello, frame], DNS retries, GIOP cancelled, ..."),
))

# --------------------------------------------------------------------------------------------
# logons and findings (netdiag.logons); the budget columns sum exactly to duration_s.
# --------------------------------------------------------------------------------------------
# Sessions that are not logons (netdiag.logons.stage: Analysis.not_logons), a plain schema; here so that
# a run that stops before the logons stage makes its empty table without importing that stage.
NOT_LOGON_SCHEMA = {"client_ip": pl.String, "server_ip": pl.String, "start_ts_ns": pl.Int64, "end_ts_ns": pl.Int64,
                    "conn_ids": pl.List(pl.UInt32), "requests": pl.Int64, "reason": pl.String}

BUDGET_COLUMNS = (
    "dns_s", "connect_s", "tls_s", "network_rtt_s", "request_transfer_s", "server_s",
    "response_transfer_s", "loss_recovery_s", "flow_control_s", "nagle_delayed_ack_s",
    "client_s", "unexplained_s",
)

LOGONS = _t(
    "logons", "client logon (the chain of connections one client process opens)",
    ("logon_id", pl.UInt32, "id of the logon in this analysis"),
    ("client_ip", pl.String, "client address"),
    ("client_group", pl.String, "ward/site from the profile's client groups (null when none)"),
    ("server_ip", pl.String, "bootstrap server address"),
    ("start_ts_ns", pl.Int64, "logon start (profile's start rule)"),
    ("end_ts_ns", pl.Int64, "logon end (profile's end rule)"),
    ("duration_s", pl.Float64, "end minus start, seconds"),
    ("outcome", pl.String, "completed, failed, abandoned, or incomplete (cut by the capture's start or end)"),
    ("dns_s", pl.Float64, "waiting on DNS answers"),
    ("connect_s", pl.Float64, "TCP connect, SYN retries included"),
    ("tls_s", pl.Float64, "TLS handshakes"),
    ("network_rtt_s", pl.Float64, "round-trip propagation paid per application turn"),
    ("request_transfer_s", pl.Float64, "sending requests"),
    ("server_s", pl.Float64, "the server's own time (capture-point round trip removed)"),
    ("response_transfer_s", pl.Float64, "receiving responses"),
    ("loss_recovery_s", pl.Float64, "waiting on retransmissions"),
    ("flow_control_s", pl.Float64, "zero window / window full"),
    ("nagle_delayed_ack_s", pl.Float64, "small segments held by Nagle until a delayed ACK"),
    ("client_s", pl.Float64, "the client's own time between a reply and its next request"),
    ("unexplained_s", pl.Float64, "time no rule accounts for"),
    ("connections", pl.UInt32, "connections in the logon"),
    ("requests", pl.UInt32, "application requests (GIOP, HTTP, turns)"),
    ("location_forwards", pl.UInt32, "LOCATION_FORWARD replies and OBJECT_FORWARD locate replies"),
    ("exceptions", pl.UInt32, "system and user exception replies"),
    ("retransmissions", pl.UInt32, "retransmitted segments in the logon's connections"),
    ("dominant_cause", pl.String, "finding cause with the most seconds in this logon"),
    ("separation_confidence", pl.String, "how sure the split from other logons of the same address is: high, medium, low"),
    ("conn_ids", pl.List(pl.UInt32), "connections that make up the logon"),
    ("evidence_frames", pl.List(pl.Int64), "frames that show the dominant cause"),
    ("wireshark_filter", pl.String, "display filter that shows the logon's traffic"),
)

FINDINGS = _t(
    "findings", "labelled cause of lost time",
    ("id", pl.String, "stable id, e.g. F001"),
    ("cause", pl.String, "syn_retransmission, server_think, loss_recovery, ... (see docs)"),
    ("severity", pl.String, "info, warning, critical"),
    ("seconds_lost", pl.Float64, "seconds of logon time attributed to this cause"),
    ("logons_affected", pl.UInt32, "logons in which it occurs"),
    ("summary", pl.String, "one sentence a hospital manager understands"),
    ("detail", pl.String, "what was measured and how"),
    ("evidence_frames", pl.List(pl.Int64), "frame numbers that show it"),
    ("wireshark_filter", pl.String, "frame-number display filter of the evidence frames: valid in the original capture "
     "only (an evidence file or a merged capture numbers its frames anew; use the filters below there)"),
    ("logon_ids", pl.List(pl.UInt32), "affected logons"),
    ("conn_ids", pl.List(pl.UInt32), "involved connections"),
    ("action", pl.String, "the next step for the engineer: what to check or change, and where (the cause's text in "
     "netdiag/logons/causes/, reviewed against the domain notes)"),
    ("operations", pl.List(pl.Struct({"protocol": pl.String, "operation": pl.String, "count": pl.UInt32,
                                      "total_s": pl.Float64, "p95_s": pl.Float64, "share": pl.Float64})),
     "for a cause measured per operation (server_think): one entry per operation, most seconds first (at most 10): "
     "calls, total seconds, p95 of one call's seconds, share of the complete logons' time; null for other causes"),
    ("conversation_filter", pl.String, "display filter of the finding's connections as address/port pairs "
     "(ip.addr/ipv6.addr with tcp.port/udp.port): works in the original, the evidence file and a merged capture"),
    ("protocol_filter", pl.String, "display filter of the requests and answers the finding is about (GIOP request ids "
     "and operations, HTTP paths, DNS ids and names, TLS handshakes); empty when it is about no request"),
    ("tcp_filter", pl.String, "display filter of the cause's TCP events (tcp.analysis.retransmission, zero windows, "
     "SYN retries ...) within the conversation; empty for a cause that is no TCP event"),
    ("evidence_filter", pl.String, "display filter of the frames annotated for this finding in its evidence file "
     "(frame.comment contains \"[F003]\")"),
)

ALL_TABLES: tuple[Table, ...] = (PACKETS, SEGMENTS, CONNECTIONS, MESSAGES, TRANSACTIONS, LOGONS, FINDINGS)


def markdown() -> str:
    """All table declarations as one Markdown document."""
    head = "# netdiag tables\n\nGenerated from `netdiag/schema.py` by `netdiag schema`.\n\n"
    return head + "\n".join(t.markdown() for t in ALL_TABLES)
