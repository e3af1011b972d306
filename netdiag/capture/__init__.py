"""Reading capture files into columnar packet chunks.

CONTRACT (other modules code against this; the implementation fills it in):

- `iter_chunks(paths, *, chunk_packets=1_000_000, progress=NO_PROGRESS, stats=None)`
  yields `PacketChunk`s in analysis order (time order; frame order breaks ties) across all
  files (several files or a directory are merged in time order; frame numbers stay Wireshark's:
  1-based, file order, files in the order given). Memory stays flat: at most about one chunk of
  packets and payload is held at a time. SPAN duplicates are removed and counted in `stats`.
- `PacketChunk.packets` is a polars DataFrame with exactly `netdiag.schema.PACKETS`;
  `PacketChunk.payload` is a numpy uint8 buffer and `packets["payload_offset"]` indexes into it
  (`payload[off : off + payload_captured]` are the L4 payload bytes of that packet).
- `read_capture(paths)` reads everything into one `Capture` (for notebooks and small files).
- Problems in part of a file become `CaptureWarning`s in `ReadStats.warnings` (file, frame,
  byte offset); `CaptureError` is raised only when nothing at all could be read.
- `netdiag.capture.addresses.format_ip(hi, lo)` turns the hi/lo address columns into strings
  (IPv4 for v4-mapped addresses) as a polars expression.
"""
