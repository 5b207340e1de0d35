#!/usr/bin/env bash
# Measures Logbrook's log engine next to this machine's own disk limits, in the same run:
#   dd to the page cache, fio with fdatasync, then `logbrook perf produce|consume`.
# Prints every figure and the ratios BENCHMARKS.md records. Needs ~25 GB free on the bench disk.
# Usage: scripts/bench.sh [BENCH_DIR]   (default: target/bench, same disk as the build)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
bench_dir=${1:-$root/target/bench}
rm -rf "$bench_dir" && mkdir -p "$bench_dir"

if ! command -v fio >/dev/null 2>&1; then
  echo "==> installing fio"
  (apt-get update -qq && apt-get install -y -qq fio) >/dev/null
fi
echo "==> cargo build --release -p logbrook-cli"
cargo build --release --locked -p logbrook-cli 2>&1 | tail -1
lb="$root/target/release/logbrook"
results="$bench_dir/results.jsonl"

record() { # name json
  printf '{"name":"%s","result":%s}\n' "$1" "$2" >>"$results"
}

# 2 GiB stays under the kernel's dirty-page limits here, so dd and the 1 KiB run below both
# measure writing to the page cache rather than the disk's writeback speed.
echo "==> dd: 2 GiB sequential write to the page cache (bs=1M)"
sync
start=$(date +%s.%N)
dd if=/dev/zero of="$bench_dir/dd.bin" bs=1M count=2048 status=none
end=$(date +%s.%N)
dd_mbs=$(python3 -c "print(2048*1048576/($end-$start)/1e6)")
record dd_page_cache "{\"mb_per_sec\":$dd_mbs}"
rm -f "$bench_dir/dd.bin"
sync
echo "    ${dd_mbs%.*} MB/s"

echo "==> fio: 16 KiB writes, fdatasync after each (the disk's fsync rate at batch size 16 KiB)"
fio --name=fsync --rw=write --bs=16k --size=256m --fdatasync=1 --ioengine=sync \
  --filename="$bench_dir/fio.bin" --output-format=json >"$bench_dir/fio.json"
fio_iops=$(python3 -c "import json;print(json.load(open('$bench_dir/fio.json'))['jobs'][0]['write']['iops'])")
record fio_fdatasync_16k "{\"fsyncs_per_sec\":$fio_iops}"
rm -f "$bench_dir/fio.bin"
echo "    ${fio_iops%.*} fsyncs/s"

run_perf() { # name dir args...
  local name=$1 dir=$2; shift 2
  local out
  out=$("$lb" --data-dir "$dir" perf "$@" --json)
  record "$name" "$out"
  echo "    $out"
}

echo "==> perf produce: 10M x 100 B, flush never, one producer"
run_perf produce_100b_never "$bench_dir/d100" produce --records 10000000 --record-size 100 --flush never --batch-size 262144
echo "==> perf consume: the same 10M x 100 B from the page cache"
run_perf consume_100b "$bench_dir/d100" consume
rm -rf "$bench_dir/d100"

echo "==> perf produce: 2M x 1 KiB (2 GiB, as dd above), flush never"
run_perf produce_1k_2g "$bench_dir/d2g" produce --records 2097152 --record-size 1024 --flush never --batch-size 262144
rm -rf "$bench_dir/d2g"; sync

echo "==> perf produce: 1M x 1 KiB (1 GB), flush never: memory baseline"
run_perf produce_1k_1g "$bench_dir/d1g" produce --records 1000000 --record-size 1024 --flush never --batch-size 262144
rm -rf "$bench_dir/d1g"; sync

echo "==> perf produce: 10M x 1 KiB (10 GB), flush never: memory must stay at the baseline"
run_perf produce_1k_never "$bench_dir/d1k" produce --records 10000000 --record-size 1024 --flush never --batch-size 262144
echo "==> perf consume: the same 10 GB"
run_perf consume_1k "$bench_dir/d1k" consume
rm -rf "$bench_dir/d1k"

echo "==> perf produce: flush always, one 16 KiB batch per fsync (compare with fio)"
run_perf produce_always_each_batch "$bench_dir/da" produce --records 200000 --record-size 100 --flush always --batch-size 16384 --linger-ms 0 --wait-each-batch
rm -rf "$bench_dir/da"
echo "==> perf produce: flush always, pipelined (group commit)"
run_perf produce_always_pipelined "$bench_dir/dp" produce --records 2000000 --record-size 100 --flush always --batch-size 16384 --linger-ms 1
rm -rf "$bench_dir/dp"

echo
echo "==> summary"
python3 - "$results" <<'PY'
import json, sys
r = {}
for line in open(sys.argv[1]):
    o = json.loads(line); r[o["name"]] = o["result"]
dd = r["dd_page_cache"]["mb_per_sec"]; fio = r["fio_fdatasync_16k"]["fsyncs_per_sec"]
p100 = r["produce_100b_never"]; c100 = r["consume_100b"]; p1k = r["produce_1k_never"]; c1k = r["consume_1k"]
each = r["produce_always_each_batch"]; pipe = r["produce_always_pipelined"]
p2g = r["produce_1k_2g"]; p1g = r["produce_1k_1g"]
rows = [
  ("append 100 B, flush never", f'{p100["records_per_sec"]/1e6:.2f} M records/s', "target >= 3 M records/s"),
  ("append 1 KiB, flush never (2 GiB)", f'{p2g["mb_per_sec"]:.0f} MB/s vs dd {dd:.0f} MB/s = {p2g["mb_per_sec"]/dd:.2f}x', "target >= 0.7x dd"),
  ("flush always, 16 KiB per fsync", f'{each["fsyncs_per_sec"]:.0f} vs fio {fio:.0f} fsyncs/s = {each["fsyncs_per_sec"]/fio:.2f}x', "target >= 0.8x fio"),
  ("flush always, pipelined", f'{pipe["records_per_sec"]/1e6:.2f} M records/s, {pipe["fsyncs_per_sec"]:.0f} fsyncs/s, p99 {pipe["latency_ms"]["p99"]:.1f} ms', ""),
  ("consume 100 B, page cache", f'{c100["records_per_sec"]/1e6:.2f} M records/s', "target >= 5 M records/s"),
  ("consume 1 KiB (10 GB)", f'{c1k["mb_per_sec"]:.0f} MB/s, {c1k["records_per_sec"]/1e6:.2f} M records/s', ""),
  ("max RSS producing 1 GB / 10 GB", f'{p1g["max_rss_mb"]:.0f} MB / {p1k["max_rss_mb"]:.0f} MB', "flat"),
  ("max RSS consuming 10 GB", f'{c1k["max_rss_mb"]:.0f} MB', "flat"),
  ("append 1 KiB, flush never (10 GB)", f'{p1k["mb_per_sec"]:.0f} MB/s (past the dirty-page limit: writeback-bound)', ""),
]
for name, figure, target in rows:
    print(f"{name:36} {figure:62} {target}")
PY
