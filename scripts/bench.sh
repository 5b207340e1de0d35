#!/usr/bin/env bash
# Measures Logbrook's log engine next to this machine's own disk limits, in the same run:
#   dd to the page cache, fio with fdatasync, then `logbrook perf produce|consume`; then the CLI's
#   `produce < file` and `consume > /dev/null` next to `perf` for the same records.
# Each comparison runs 3 times, alternating the reference and Logbrook; the summary prints the
# median with min-max, and the ratios BENCHMARKS.md records. Needs ~15 GB free on the bench disk.
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

settle() { sync; sleep 2; } # let writeback of the previous step finish before measuring

run_perf() { # name dir args...
  local name=$1 dir=$2; shift 2
  local out
  out=$("$lb" --data-dir "$dir" perf "$@" --json)
  record "$name" "$out"
  echo "    $out"
}

# 2 GiB stays under the kernel's dirty-page limits here, so dd and the 1 KiB run both measure
# writing to the page cache rather than the disk's writeback speed.
for run in 1 2 3; do
  echo "==> [$run/3] dd: 2 GiB sequential write to the page cache (bs=1M)"
  settle
  start=$(date +%s.%N)
  dd if=/dev/zero of="$bench_dir/dd.bin" bs=1M count=2048 status=none
  end=$(date +%s.%N)
  dd_mbs=$(python3 -c "print(2048*1048576/($end-$start)/1e6)")
  record dd_page_cache "{\"mb_per_sec\":$dd_mbs}"
  rm -f "$bench_dir/dd.bin"
  echo "    ${dd_mbs%.*} MB/s"
  echo "==> [$run/3] perf produce: 2M x 1 KiB (2 GiB), flush never"
  settle
  run_perf produce_1k_2g "$bench_dir/d2g" produce --records 2097152 --record-size 1024 --flush never --batch-size 262144
  rm -rf "$bench_dir/d2g"

  echo "==> [$run/3] fio: 16 KiB writes, fdatasync after each"
  settle
  fio --name=fsync --rw=write --bs=16k --size=128m --fdatasync=1 --ioengine=sync \
    --filename="$bench_dir/fio.bin" --output-format=json >"$bench_dir/fio.json"
  fio_iops=$(python3 -c "import json;print(json.load(open('$bench_dir/fio.json'))['jobs'][0]['write']['iops'])")
  record fio_fdatasync_16k "{\"fsyncs_per_sec\":$fio_iops}"
  rm -f "$bench_dir/fio.bin"
  echo "    ${fio_iops%.*} fsyncs/s"
  echo "==> [$run/3] perf produce: flush always, one 16 KiB batch per append and fsync"
  run_perf produce_always_each_batch "$bench_dir/da" produce --records 400000 --record-size 100 --flush always --batch-size 16384 --wait-each-batch
  rm -rf "$bench_dir/da"

  echo "==> [$run/3] perf produce: 10M x 100 B, flush never, one producer"
  rm -rf "$bench_dir/d100"
  settle
  run_perf produce_100b_never "$bench_dir/d100" produce --records 10000000 --record-size 100 --flush never --batch-size 262144
done
for run in 1 2 3; do
  echo "==> [$run/3] perf consume: 10M x 100 B from the page cache"
  run_perf consume_100b "$bench_dir/d100" consume
done
rm -rf "$bench_dir/d100"

echo "==> perf produce: flush always, pipelined (group commit)"
settle
run_perf produce_always_pipelined "$bench_dir/dp" produce --records 2000000 --record-size 100 --flush always --batch-size 16384 --linger-ms 1
rm -rf "$bench_dir/dp"

echo "==> perf produce: 10M x 1 KiB (10 GB), flush never: memory must stay flat"
settle
run_perf produce_1k_never "$bench_dir/d1k" produce --records 10000000 --record-size 1024 --flush never --batch-size 262144
echo "==> perf consume: the same 10 GB"
run_perf consume_1k "$bench_dir/d1k" consume
rm -rf "$bench_dir/d1k"

# `logbrook produce < file` and `logbrook consume > /dev/null` next to `perf produce|consume` of
# the same records (flush never, 256 KiB batches as the CLI's producer uses), timed two ways:
# - the whole process, as a user waits for it: open the data dir (a CRC check of the active
#   segment), run, close (an fsync of what `flush never` left in the page cache);
# - the run alone: perf's own timer, and the CLI's `RUST_LOG=logbrook=debug` line.
figures() { # json start end records size [stderr-file key] -> the json with rates added
  python3 -c '
import json, re, sys
o = json.loads(sys.argv[1])
n, size = int(sys.argv[4]), int(sys.argv[5])
secs = float(sys.argv[3]) - float(sys.argv[2])
o.update(wall_seconds=secs, wall_records_per_sec=n / secs)
if len(sys.argv) > 6:
    log = re.sub(r"\x1b\[[0-9;]*m", "", open(sys.argv[6]).read())
    secs = int(re.search(sys.argv[7] + r"=(\d+)", log).group(1)) / 1000
    o.update(seconds=secs, records_per_sec=n / secs, mb_per_sec=n * size / secs / 1e6)
print(json.dumps(o))' "$@"
}
cli_vs_perf() { # size count
  local size=$1 count=$2 tag start end out
  tag=$([ "$size" = 1024 ] && echo 1k || echo "${size}b")
  python3 -c "import sys; sys.stdout.buffer.write((b'x' * $size + b'\n') * $count)" >"$bench_dir/lines.txt"
  for run in 1 2 3; do
    echo "==> [$run/3] perf produce, then logbrook produce < file: $count x $size B, flush never"
    rm -rf "$bench_dir/dperf" "$bench_dir/dcli"
    settle
    start=$(date +%s.%N)
    out=$("$lb" --data-dir "$bench_dir/dperf" perf produce --records "$count" --record-size "$size" --flush never --batch-size 262144 --json)
    end=$(date +%s.%N)
    record "perf_produce_$tag" "$(figures "$out" "$start" "$end" "$count" "$size")"
    settle
    "$lb" --data-dir "$bench_dir/dcli" topic create t --flush never >/dev/null
    start=$(date +%s.%N)
    RUST_LOG=logbrook=debug "$lb" --data-dir "$bench_dir/dcli" produce t <"$bench_dir/lines.txt" 2>"$bench_dir/stderr"
    end=$(date +%s.%N)
    record "cli_produce_$tag" "$(figures '{}' "$start" "$end" "$count" "$size" "$bench_dir/stderr" produce_ms)"
    echo "==> [$run/3] perf consume, then logbrook consume > /dev/null: the same topic"
    settle
    start=$(date +%s.%N)
    out=$("$lb" --data-dir "$bench_dir/dcli" perf consume --topic t --json)
    end=$(date +%s.%N)
    record "perf_consume_$tag" "$(figures "$out" "$start" "$end" "$count" "$size")"
    start=$(date +%s.%N)
    RUST_LOG=logbrook=debug "$lb" --data-dir "$bench_dir/dcli" consume t >/dev/null 2>"$bench_dir/stderr"
    end=$(date +%s.%N)
    record "cli_consume_$tag" "$(figures '{}' "$start" "$end" "$count" "$size" "$bench_dir/stderr" consume_ms)"
    tail -4 "$results" | sed 's/^/    /'
  done
  rm -rf "$bench_dir/dperf" "$bench_dir/dcli" "$bench_dir/lines.txt" "$bench_dir/stderr"
}
cli_vs_perf 100 2000000
cli_vs_perf 1024 500000

echo
echo "==> summary (median of 3 runs, min-max in brackets)"
python3 - "$results" <<'PY'
import json, sys, statistics
runs = {}
for line in open(sys.argv[1]):
    o = json.loads(line)
    runs.setdefault(o["name"], []).append(o["result"])
def med(name, key, scale=1.0):
    xs = sorted(r[key] / scale for r in runs[name])
    return statistics.median(xs), xs[0], xs[-1]
def fmt(m, lo, hi, digits):
    return f"{m:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]"
dd = med("dd_page_cache", "mb_per_sec")
fio = med("fio_fdatasync_16k", "fsyncs_per_sec")
p2g = med("produce_1k_2g", "mb_per_sec")
each = med("produce_always_each_batch", "fsyncs_per_sec")
p100 = med("produce_100b_never", "records_per_sec", 1e6)
c100 = med("consume_100b", "records_per_sec", 1e6)
pipe = runs["produce_always_pipelined"][0]
p1k = runs["produce_1k_never"][0]
c1k = runs["consume_1k"][0]
rows = [
    ("append 100 B, flush never", f"{fmt(*p100, 2)} M records/s", "target >= 3 M/s"),
    ("append 1 KiB, flush never (2 GiB)", f"{fmt(*p2g, 0)} MB/s vs dd {fmt(*dd, 0)} MB/s = {p2g[0] / dd[0]:.2f}x", "target >= 0.7x dd"),
    ("flush always, 16 KiB per fsync", f"{fmt(*each, 0)} vs fio {fmt(*fio, 0)} fsyncs/s = {each[0] / fio[0]:.2f}x", "target >= 0.8x fio"),
    ("flush always, pipelined", f'{pipe["records_per_sec"] / 1e6:.2f} M records/s, {pipe["fsyncs_per_sec"]:.0f} fsyncs/s, p99 {pipe["latency_ms"]["p99"]:.1f} ms', ""),
    ("consume 100 B, page cache", f"{fmt(*c100, 2)} M records/s", "target >= 5 M/s"),
    ("consume 1 KiB, 10 GB", f'{c1k["mb_per_sec"]:.0f} MB/s, {c1k["records_per_sec"] / 1e6:.2f} M records/s', ""),
    ("max RSS producing 10 GB", f'{p1k["max_rss_mb_at_half"]:.0f} MB after 5 GB, {p1k["max_rss_mb"]:.0f} MB after 10 GB', "flat"),
    ("max RSS consuming 10 GB", f'{c1k["max_rss_mb"]:.0f} MB', "flat"),
    ("append 1 KiB, flush never, 10 GB", f'{p1k["mb_per_sec"]:.0f} MB/s (past the dirty-page limit: writeback-bound)', ""),
]
for name, figure, target in rows:
    print(f"{name:36} {figure:75} {target}")

print()
print("CLI next to perf, same records, M records/s: whole processes; runs alone (perf's own timer)")
for what in ("produce", "consume"):
    for tag, label in (("100b", "100 B"), ("1k", "1 KiB")):
        cli_wall = med(f"cli_{what}_{tag}", "wall_records_per_sec", 1e6)
        perf_wall = med(f"perf_{what}_{tag}", "wall_records_per_sec", 1e6)
        cli = med(f"cli_{what}_{tag}", "records_per_sec", 1e6)
        perf = med(f"perf_{what}_{tag}", "records_per_sec", 1e6)
        print(
            f"{what} {label:6} {fmt(*cli_wall, 2)} vs {fmt(*perf_wall, 2)} = {cli_wall[0] / perf_wall[0]:.2f}x;"
            f" {fmt(*cli, 2)} vs {fmt(*perf, 2)} = {cli[0] / perf[0]:.2f}x   target >= 0.7x"
        )
PY

echo
echo "==> Nexmark q1 q2 q5 q7 q8 on the streams runtime (exactly-once), 1M events"
"$lb" --data-dir "$bench_dir" perf nexmark --events 1000000

echo
echo "==> Connect: file source and file sink, 1M x 100 B lines, next to cat and dd conv=fsync"
"$lb" --data-dir "$bench_dir" perf connect --records 1000000 --record-size 100

echo
echo "==> Connect: postgres source and sink, 1M rows, next to psql \\copy on the same server"
pg_port=55532
while (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; do pg_port=$((pg_port + 1)); done
export LOGBROOK_PG_PORT=$pg_port LOGBROOK_PG_DATA="$bench_dir/pg"
trap 'scripts/pg-server.sh destroy' EXIT
scripts/pg-server.sh start
"$lb" --data-dir "$bench_dir" perf postgres --url "$(scripts/pg-server.sh url)" --rows 1000000

echo
echo "==> Connect: s3-sink, 1M x 1 KB records, next to a raw aws-sdk multipart upload of the same bytes"
s3_port=59100
while (exec 3<>"/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null; do s3_port=$((s3_port + 1)); done
export LOGBROOK_S3_PORT=$s3_port LOGBROOK_S3_DATA="$bench_dir/s3"
trap 'scripts/pg-server.sh destroy; scripts/s3-server.sh destroy' EXIT
scripts/s3-server.sh start
export LOGBROOK_S3_ENDPOINT="$(scripts/s3-server.sh url)"
export LOGBROOK_S3_ACCESS_KEY="$(scripts/s3-server.sh access-key)"
export LOGBROOK_S3_SECRET_KEY="$(scripts/s3-server.sh secret-key)"
for format in json parquet; do
  for run in 1 2 3; do
    echo "--> [$run/3] format $format"
    "$lb" --data-dir "$bench_dir" perf s3 --records 1000000 --record-size 1000 --format "$format"
  done
done

echo
scripts/bench-serve.sh "$lb" "$bench_dir/serve"
