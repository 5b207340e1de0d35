#!/usr/bin/env bash
# `logbrook serve` over loopback: librdkafka's rdkafka_performance and `logbrook perf
# --bootstrap-server` (the CLI through logbrook-client/librdkafka) against the server, next to the
# embedded `logbrook perf` on the same records, in one run. Client and server share the machine.
# Usage: scripts/bench-serve.sh [LOGBROOK_BINARY] [DIR]   (scripts/bench.sh calls it)
set -euo pipefail
cd "$(dirname "$0")/.."
lb=${1:-target/release/logbrook}
dir=${2:-target/bench/serve}
[ -x "$lb" ] || { echo "no logbrook binary at $lb (cargo build --release -p logbrook-cli)" >&2; exit 1; }
settle() { sync; sleep 2; }

echo "==> logbrook serve over loopback with librdkafka's rdkafka_performance, next to the embedded perf"
rp=$(scripts/rdkafka-perf.sh path)
rm -rf "$dir" && mkdir -p "$dir"
"$lb" --data-dir "$dir/data" topic create small --flush never >/dev/null
"$lb" --data-dir "$dir/data" topic create large --flush never >/dev/null
"$lb" --data-dir "$dir/data" topic create synced >/dev/null # flush always
port=19300
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
"$lb" --data-dir "$dir/data" serve --listen "127.0.0.1:$port" --http-listen off >"$dir/serve.log" 2>&1 &
serve_pid=$!
trap 'kill $serve_pid 2>/dev/null || true' EXIT
sleep 1
bootstrap="127.0.0.1:$port"
producer=(-X enable.idempotence=false -X linger.ms=5 -X batch.size=1000000 -X queue.buffering.max.messages=2000000 -u -q)
settle
echo "--> rdkafka_performance: produce 2M x 100 B (flush never)"
"$rp" -P -t small -p 0 -b "$bootstrap" -s 100 -c 2000000 "${producer[@]}" | tail -1
settle
echo "--> rdkafka_performance: produce 1M x 1 KiB (flush never)"
"$rp" -P -t large -p 0 -b "$bootstrap" -s 1024 -c 1000000 "${producer[@]}" | tail -1
settle
echo "--> rdkafka_performance: consume 1M x 1 KiB"
"$rp" -C -t large -p 0 -b "$bootstrap" -o beginning -c 1000000 \
  -X fetch.max.bytes=52428800 -X max.partition.fetch.bytes=10485760 -u -q | tail -2 | head -1
settle
echo "--> rdkafka_performance: produce 300k x 1 KiB, acks=all, flush always (fsync per batch)"
"$rp" -P -t synced -p 0 -b "$bootstrap" -s 1024 -c 300000 -X acks=all "${producer[@]}" | tail -1
perf=(--bootstrap-server "$bootstrap" --json)
settle
echo "--> logbrook perf --bootstrap-server: produce 2M x 100 B (flush never)"
"$lb" perf produce --topic small2 --records 2000000 --record-size 100 --flush never \
  --batch-size 1000000 "${perf[@]}"
settle
echo "--> logbrook perf --bootstrap-server: produce 1M x 1 KiB (flush never)"
"$lb" perf produce --topic large2 --records 1000000 --record-size 1024 --flush never \
  --batch-size 1000000 "${perf[@]}"
settle
echo "--> logbrook perf --bootstrap-server: consume 1M x 1 KiB"
"$lb" perf consume --topic large2 --fetch-max-bytes 10485760 "${perf[@]}"
settle
echo "--> logbrook perf --bootstrap-server: produce 300k x 1 KiB, acks=all, flush always"
"$lb" perf produce --topic synced2 --records 300000 --record-size 1024 --flush always \
  --batch-size 1000000 "${perf[@]}"
echo "--> logbrook perf --bootstrap-server: produce 500k x 1 KiB, idempotent (acks=all, flush always)"
echo "    vs transactional (commits every 100 ms: 4 MiB buffer, so each commit has little to drain)"
txn=(--records 500000 --record-size 1024 --flush always --batch-size 1000000 --buffer-mb 4)
for run in 1 2; do
  settle
  "$lb" perf produce --topic idem$run "${txn[@]}" "${perf[@]}" | tee "$dir/idem$run.json"
  settle
  "$lb" perf produce --topic txn$run "${txn[@]}" --transactional-id bench-$run \
    --commit-interval-ms 100 "${perf[@]}" | tee "$dir/txn$run.json"
done
python3 - "$dir" <<'PY'
import json, sys, statistics
rate = lambda name: json.load(open(f"{sys.argv[1]}/{name}.json"))["mb_per_sec"]
idem = statistics.median([rate("idem1"), rate("idem2")])
txn = statistics.median([rate("txn1"), rate("txn2")])
print(f"transactional {txn:.1f} MB/s vs idempotent {idem:.1f} MB/s: {txn / idem:.2f}x (target >= 0.8x)")
PY
kill -TERM $serve_pid && wait $serve_pid || true
echo "--> the same on the embedded log"
for args in "small 2000000 100 never" "large 1000000 1024 never" "synced 300000 1024 always"; do
  set -- $args
  "$lb" --data-dir "$dir/embedded" perf produce --topic "$1" --records "$2" --record-size "$3" \
    --flush "$4" --json
done
"$lb" --data-dir "$dir/embedded" perf consume --topic large --json
