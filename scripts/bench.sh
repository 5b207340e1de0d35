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

echo "==> dd: 4 GiB sequential write to the page cache (bs=1M)"
start=$(date +%s.%N)
dd if=/dev/zero of="$bench_dir/dd.bin" bs=1M count=4096 status=none
end=$(date +%s.%N)
dd_mbs=$(python3 -c "print(4096*1048576/($end-$start)/1e6)")
record dd_page_cache "{\"mb_per_sec\":$dd_mbs}"
rm -f "$bench_dir/dd.bin"
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

echo "==> perf produce: 10M x 1 KiB (10 GB), flush never (also: memory stays flat)"
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
rows = [
  ("append 100 B, flush never", f'{p100["records_per_sec"]/1e6:.2f} M records/s', "target >= 3 M/s", p100["records_per_sec"]/3e6),
  ("append 1 KiB, flush never", f'{p1k["mb_per_sec"]:.0f} MB/s vs dd {dd:.0f} MB/s', "target >= 0.7x dd", p1k["mb_per_sec"]/dd),
  ("flush always, 16 KiB per fsync", f'{each["fsyncs_per_sec"]:.0f} fsyncs/s vs fio {fio:.0f}/s', "target >= 0.8x fio", each["fsyncs_per_sec"]/fio),
  ("flush always, pipelined", f'{pipe["records_per_sec"]/1e3:.0f} k records/s, {pipe["fsyncs_per_sec"]:.0f} fsyncs/s, p99 {pipe["latency_ms"]["p99"]:.1f} ms', "", None),
  ("consume 100 B, page cache", f'{c100["records_per_sec"]/1e6:.2f} M records/s', "target >= 5 M/s", c100["records_per_sec"]/5e6),
  ("consume 1 KiB, page cache", f'{c1k["mb_per_sec"]:.0f} MB/s', "", None),
  ("max RSS, 10 GB produce / consume", f'{p1k["max_rss_mb"]:.0f} MB / {c1k["max_rss_mb"]:.0f} MB', "flat", None),
]
for name, figure, target, ratio in rows:
    print(f"{name:36} {figure:55} {target:20} {'' if ratio is None else f'{ratio:.2f}x of target'}")
PY
