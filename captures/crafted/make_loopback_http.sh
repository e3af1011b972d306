#!/bin/sh
# Real traffic for the ingest oracle test: curl -> python -m http.server on loopback, captured
# by tcpdump (Linux "lo", so Ethernet framing with zero MACs). Needs root, tcpdump, curl.
# Usage: sh captures/crafted/make_loopback_http.sh [OUT.pcap]
set -eu
OUT=${1:-$(dirname "$0")/real_loopback_http.pcap}
PORT=${PORT:-18080}
DIR=$(mktemp -d)
head -c 20000 /dev/urandom | base64 > "$DIR/page.txt"
echo hello > "$DIR/small.txt"
python3 -m http.server "$PORT" --bind 127.0.0.1 --directory "$DIR" >/dev/null 2>&1 &
SRV=$!
tcpdump -i lo -U -s 0 -w "$OUT" "tcp port $PORT" >/dev/null 2>&1 &
DUMP=$!
trap 'kill $SRV $DUMP 2>/dev/null || true; rm -rf "$DIR"' EXIT
i=0; while [ $i -lt 50 ] && ! curl -s -o /dev/null "http://127.0.0.1:$PORT/small.txt"; do sleep 0.1; i=$((i+1)); done
sleep 0.5
curl -s -o /dev/null "http://127.0.0.1:$PORT/page.txt"
curl -s -o /dev/null -o /dev/null "http://127.0.0.1:$PORT/small.txt" "http://127.0.0.1:$PORT/missing"
sleep 0.5
kill $DUMP; wait $DUMP 2>/dev/null || true
