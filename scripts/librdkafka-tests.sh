#!/usr/bin/env bash
# librdkafka's own test suite (tests/ of librdkafka 2.12.1, from the crates.io crate rdkafka-sys)
# against `logbrook serve`.
#   scripts/librdkafka-tests.sh build           -> builds tests/test-runner once (tools cache dir,
#                                                  the tree scripts/rdkafka-perf.sh uses), prints
#                                                  the tests dir
#   scripts/librdkafka-tests.sh run [NAME...]   -> the tests of scripts/librdkafka-allowlist.txt (or
#                                                  the given test names, NAME:full for full mode)
#                                                  against a fresh server; exits non-zero if any
#                                                  of them does not pass
#   scripts/librdkafka-tests.sh survey [NUM...] -> every test (or those numbers) once, a table of
#                                                  outcomes, for maintaining the allowlist
#   scripts/librdkafka-tests.sh table LOGDIR    -> the survey table of a run's logs again
#   scripts/librdkafka-tests.sh list            -> every test name with its kind and scenario
# A test name is test-runner's (0012_produce_consume); test-runner selects tests by number only
# (TESTS=0012), so each number runs in its own test-runner process, `-L` when only its broker
# tests are wanted, `-l` when only its local (broker-less, mock cluster) ones; a test of the same
# number that is not wanted may run along and is not judged. Tests of the `noautocreate` scenario
# run against a second server that creates no topics on Metadata (`-s noautocreate`).
# Environment:
#   LOGBROOK_BIN               server binary (default target/debug/logbrook)
#   LIBRDKAFKA_ALLOWLIST       the allowlist file (default scripts/librdkafka-allowlist.txt)
#   LIBRDKAFKA_TEST_JOBS       test-runner processes at a time (default 3: the tests mostly wait)
#   LIBRDKAFKA_TEST_TIMEOUT    seconds one test number may take before it is killed (default 300)
#   LIBRDKAFKA_SURVEY_MODE     quick (test-runner -Q, the default) or full, for survey
#   LIBRDKAFKA_TEST_LOGS       keep each test's output and the server logs here (default: a temp
#                              dir, removed when everything passed)
#   RUST_LOG                   passed to the server (e.g. logbrook_serve=debug)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
. "$ROOT/scripts/rdkafka-build.sh"
TESTDIR="$RDKAFKA_DIR/tests"
RUNNER="$TESTDIR/test-runner"
ALLOWLIST="${LIBRDKAFKA_ALLOWLIST:-$ROOT/scripts/librdkafka-allowlist.txt}"
LOGBROOK_BIN="${LOGBROOK_BIN:-$ROOT/target/debug/logbrook}"
JOBS="${LIBRDKAFKA_TEST_JOBS:-3}"
TIMEOUT="${LIBRDKAFKA_TEST_TIMEOUT:-300}"
# The broker version the tests assume (they skip or adapt what a broker of that version lacks).
# `logbrook serve` has Kafka 4.0's lowest versions (KIP-896: Produce >= 3, so only message
# format v2, Fetch >= 4, ListOffsets >= 1, OffsetCommit >= 2, ...) and 3.x's highest (Metadata
# 12, OffsetFetch 8, JoinGroup 9), no KIP-848 groups, no group configs. With 4.0.0 the tests
# that produce with `api.version.request=false` or message format v1 (which Kafka 4.0, like
# logbrook, refuses) skip those parts instead of failing; nothing else in them needs more than
# what 3.x brokers had.
export TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-4.0.0}"

build() {
  [ -x "$RUNNER" ] && [ -f "$TESTDIR/interceptor_test/interceptor_test.so" ] && return
  rdkafka_libs
  echo "building librdkafka's test-runner (about 2 minutes, once)" >&2
  rdkafka_make tests build
}

# list: "NAME KIND SCENARIO" for every test in test.c's table (manual tests left out), KIND one of
# broker, local, sockem (broker tests that go through test-runner's socket emulator).
list() {
  sed -n '/^struct test tests\[\] = {/,/^    {NULL}};/p' "$TESTDIR/test.c" | tr '\n' ' ' |
    sed 's/_TEST(/\n_TEST(/g' | grep '^_TEST(' |
    awk '{
      line = $0
      sub(/^_TEST\(/, "", line)
      name = line; sub(/,.*/, "", name)
      flags = line; sub(/^[^,]*,[ ]*/, "", flags); sub(/[,)].*/, "", flags)
      scen = "default"
      if (match(line, /\.scenario = "[^"]*"/)) { scen = substr(line, RSTART + 13, RLENGTH - 14) }
      kind = "broker"
      if (flags ~ /TEST_F_LOCAL/) kind = "local"
      if (flags ~ /TEST_F_SOCKEM/) kind = "sockem"
      if (flags ~ /TEST_F_MANUAL/) next
      print name, kind, scen
    }'
}

# start_server VAR_PREFIX AUTOCREATE: a server on a fresh data dir; sets ${prefix}_pid, ${prefix}_addr.
start_server() {
  local prefix=$1 auto=$2 dir="$LOGS/server-$1" args=()
  mkdir -p "$dir"
  # The background job opens its redirections after the fork: the poll below must find a file.
  : >"$dir/stdout.log"
  if "$LOGBROOK_BIN" serve --help | grep -q -- '--auto-create-topics'; then
    args=(--auto-create-topics "$auto")
    [ "$auto" = true ] && args+=(--num-partitions 4)
  elif [ "$auto" = true ]; then
    echo "warning: $LOGBROOK_BIN serve has no --auto-create-topics: tests that produce to new topics fail" >&2
  fi
  "$LOGBROOK_BIN" serve --data-dir "$dir/data" --listen 127.0.0.1:0 --http-listen off "${args[@]}" \
    >"$dir/stdout.log" 2>"$dir/server.log" &
  local pid=$! addr="" i
  for i in $(seq 1 200); do
    addr=$(sed -n 's/^logbrook serve: listening on //p' "$dir/stdout.log" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -z "$addr" ]; then
    echo "error: logbrook serve did not start; its log:" >&2
    cat "$dir/server.log" >&2
    return 1
  fi
  printf 'bootstrap.servers=%s\n' "$addr" >"$dir/test.conf"
  eval "${prefix}_pid=$pid; ${prefix}_addr=$addr"
  SERVERS+=("$pid")
}

stop_servers() {
  local pid
  for pid in "${SERVERS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${SERVERS[@]}"; do
    wait "$pid" 2>/dev/null || echo "warning: logbrook serve (pid $pid) exited with status $?" >&2
  done
  SERVERS=()
}

# one NUM FLAG SCENARIO MODE: runs one test number in its own test-runner (FLAG -L, -l or "",
# SCENARIO "" for the default one, MODE quick (-Q) or full); its output in $LOGS/TAG.log, then one
# "NAME STATUS SECONDS" line per test it ran in $LOGS/TAG.result.
one() {
  local num=$1 flag=$2 scen=$3 mode=$4 tag conf rc=0 start quick=-Q
  [ "$mode" = full ] && quick=
  tag="$num${flag}${scen:+-$scen}-${mode:-quick}"
  conf="$LOGS/server-main/test.conf"
  [ "$scen" = noautocreate ] && conf="$LOGS/server-noauto/test.conf"
  start=$(date +%s)
  (cd "$LOGS/work" && env -u CI RDKAFKA_TEST_CONF="$conf" TESTS="$num" \
    LD_LIBRARY_PATH="$RDKAFKA_DIR/src:$RDKAFKA_DIR/src-cpp" \
    timeout -k 10 "$TIMEOUT" "$TESTDIR/test-runner" $quick $flag ${scen:+-s $scen} </dev/null) \
    >"$LOGS/$tag.log" 2>&1 || rc=$?
  # A test's outcome: its "=== Test NAME PASSED/FAILED/SKIPPED ===" banner, FAILED if it reported
  # a failure ("### Test "NAME (subtest)" failed at ..."); its duration from the summary table
  # (not printed when test-runner aborts on a failure outside a test's thread).
  sed 's/\x1b\[[0-9;]*m//g' "$LOGS/$tag.log" | awk '
    /^\[[0-9][0-9][0-9][0-9]_.*= Test [0-9a-z_]+ (PASSED|FAILED|SKIPPED) =/ {
      n = $0; sub(/.*= Test /, "", n); st = n; sub(/ .*/, "", n); sub(/^[^ ]* /, "", st); sub(/ .*/, "", st)
      if (!(n in seen)) { seen[n] = 1; order[++cnt] = n }
      status[n] = st
    }
    /^### Test "[0-9][0-9][0-9][0-9]_/ {
      n = $0; sub(/^### Test "/, "", n); sub(/[" ].*/, "", n)
      if (!(n in seen)) { seen[n] = 1; order[++cnt] = n }
      failed[n] = 1
    }
    /^\| [0-9][0-9][0-9][0-9]_/ {
      split($0, f, "|"); n = f[2]; gsub(/ /, "", n); t = f[4]; gsub(/[ s]/, "", t); secs[n] = t
      if (!(n in seen)) { seen[n] = 1; order[++cnt] = n }
      if (!(n in status)) { st = f[3]; gsub(/ /, "", st); status[n] = st }
    }
    END {
      for (i = 1; i <= cnt; i++) {
        n = order[i]; st = failed[n] ? "FAILED" : status[n]
        if (st == "") st = "FAILED"
        print n, st, (n in secs) ? secs[n] : "-"
      }
    }' >"$LOGS/$tag.result"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "$num$flag TIMEOUT $(($(date +%s) - start))" >>"$LOGS/$tag.result"
  elif [ ! -s "$LOGS/$tag.result" ]; then
    echo "$num$flag CRASHED(rc=$rc) $(($(date +%s) - start))" >>"$LOGS/$tag.result"
  fi
  echo "  $tag: $(awk '{printf "%s%s %s", sep, $1, $2; sep=", "}' "$LOGS/$tag.result") ($(($(date +%s) - start)) s)" >&2
}

# plan: reads "NAME MODE [SECONDS]" lines, prints the test-runner invocations that run these tests,
# "NUM FLAG SCENARIO MODE SECONDS", the longest first (SECONDS: the allowlist's estimate).
plan() {
  local all
  all=$(list)
  sort -u | while read -r name mode secs; do
    echo "$all" | awk -v n="$name" -v m="${mode:-quick}" -v t="${secs:-0}" '$1 == n { print $0, m, t; found = 1 }
      END { if (!found) print n, "unknown", "-", m, t }'
  done | awk '
    $2 == "unknown" { print "unknown test: " $1 > "/dev/stderr"; bad = 1; next }
    {
      num = substr($1, 1, 4); scen = ($3 ~ /default/) ? "default" : $3; key = num " " scen " " $4
      if ($2 == "local") loc[key] = 1; else rem[key] = 1
      if ($5 + 0 > secs[key] + 0) secs[key] = $5
      keys[key] = 1
    }
    END {
      for (k in keys) {
        split(k, a, " ")
        flag = (loc[k] && rem[k]) ? "-" : (loc[k] ? "-l" : "-L")
        print a[1], flag, a[2], a[3], secs[k] + 0
      }
      exit bad
    }' | sort -k5,5nr -k1,1
}

# execute PLAN_FILE: runs the planned invocations, JOBS at a time, against fresh servers.
execute() {
  local planfile=$1
  SERVERS=()
  trap 'stop_servers' EXIT
  start_server main true
  if grep -q ' noautocreate ' "$planfile"; then
    start_server noauto false
  fi
  # test-runner writes its files (stats_*.json, offset files) to its working dir and loads
  # interceptor_test/ and ../src/statistics_schema.json from there
  mkdir -p "$LOGS/work"
  ln -sfn "$TESTDIR/interceptor_test" "$LOGS/work/interceptor_test"
  ln -sfn "$RDKAFKA_DIR/src" "$LOGS/src"
  echo "logbrook serve on $main_addr (logs in $LOGS); TEST_KAFKA_VERSION=$TEST_KAFKA_VERSION," \
    "$JOBS at a time, ${TIMEOUT}s per test number" >&2
  export -f one
  export LOGS TESTDIR RDKAFKA_DIR TIMEOUT
  sed -e 's/ - / "" /' -e 's/ default / "" /' "$planfile" |
    xargs -P "$JOBS" -L 1 bash -c 'one "$@"' _
  stop_servers
  trap - EXIT
  cat "$LOGS"/*.result | sort -u >"$LOGS/results.txt"
}

run() {
  build
  local entries
  if [ $# -eq 0 ]; then
    # allowlist lines: NAME [full] [# comment, "~N s": how long it takes, longest start first];
    # "full": without test-runner's -Q (quick mode skips most of some tests)
    entries=$(grep -v '^[[:space:]]*#' "$ALLOWLIST" | awk '
      { secs = 0; if (match($0, /~[0-9]+ s/)) secs = substr($0, RSTART + 1, RLENGTH - 3); sub(/#.*/, "") }
      NF { print $1, ($2 == "full") ? "full" : "quick", secs }')
  else
    # NAME or NAME:full
    entries=$(printf '%s\n' "$@" | awk -F: '{ print $1, ($2 == "full") ? "full" : "quick" }')
  fi
  local names
  mapfile -t names < <(echo "$entries" | awk '{print $1}')
  LOGS="${LIBRDKAFKA_TEST_LOGS:-$(mktemp -d /tmp/librdkafka-tests.XXXXXX)}"
  mkdir -p "$LOGS"
  local start=$SECONDS
  echo "$entries" | plan >"$LOGS/plan.txt"
  echo "librdkafka tests: ${#names[@]} tests in $(wc -l <"$LOGS/plan.txt") test-runner processes" >&2
  execute "$LOGS/plan.txt"
  local name status passed=0 failed=()
  for name in "${names[@]}"; do
    status=$(awk -v n="$name" '$1 == n { print $2 }' "$LOGS/results.txt" | head -1)
    if [ "$status" = PASSED ]; then
      passed=$((passed + 1))
    else
      # a test that did not report: its number's test-runner timed out or crashed
      [ -n "$status" ] ||
        status=$(awk -v n="${name:0:4}" 'substr($1, 1, 4) == n && $2 !~ /^(PASSED|FAILED|SKIPPED)$/ { print $2 }' \
          "$LOGS/results.txt" | head -1)
      failed+=("$name: ${status:-NOT RUN}")
    fi
  done
  echo "librdkafka tests: ${#names[@]} allowlisted, $passed passed, ${#failed[@]} failed ($((SECONDS - start)) s)"
  if [ ${#failed[@]} -gt 0 ]; then
    printf '  FAILED %s\n' "${failed[@]}"
    echo "  logs: $LOGS (a test's output: NUM-FLAG.log; the server's: server-*/server.log)"
    return 1
  fi
  [ -n "${LIBRDKAFKA_TEST_LOGS:-}" ] || rm -rf "$LOGS"
}

survey() {
  build
  local nums=("$@") names
  if [ ${#nums[@]} -eq 0 ]; then
    names=$(list | awk '{print $1}' | tr '\n' ' ')
  else
    names=$(list | awk -v want=" ${nums[*]} " 'index(want, " " substr($1, 1, 4) " ") { print $1 }' | tr '\n' ' ')
  fi
  LOGS="${LIBRDKAFKA_TEST_LOGS:-$(mktemp -d /tmp/librdkafka-survey.XXXXXX)}"
  mkdir -p "$LOGS"
  # every number twice at most: its broker tests (-L) and its local ones (-l), each scenario
  # shellcheck disable=SC2086
  printf "%s ${LIBRDKAFKA_SURVEY_MODE:-quick}\n" $names | plan |
    awk '$2 == "-" { print $1, "-L", $3, $4, $5; print $1, "-l", $3, $4, $5; next } { print }' >"$LOGS/plan.txt"
  execute "$LOGS/plan.txt"
  table "$names"
  echo "logs: $LOGS" >&2
}

# table NAMES: the outcome of each test in $LOGS/results.txt, a test that did not report as its
# number's test-runner (TIMEOUT, CRASHED).
table() {
  local names=$1 all
  all=$(list)
  printf '%-52s %-7s %-12s %-8s %s\n' TEST KIND SCENARIO OUTCOME SECONDS
  echo "$all" | while read -r name kind scen; do
    case " $names " in *" $name "*) ;; *) continue ;; esac
    local r
    r=$(awk -v n="$name" '$1 == n { print $2, $3 }' "$LOGS/results.txt" | head -1)
    [ -n "$r" ] || r=$(awk -v n="${name:0:4}" 'substr($1, 1, 4) == n && $2 !~ /^(PASSED|FAILED|SKIPPED)$/ { print $2, $3 }' \
      "$LOGS/results.txt" | head -1)
    printf '%-52s %-7s %-12s %-8s %s\n' "$name" "$kind" "$scen" ${r:-NOT-RUN -}
  done | tee "$LOGS/survey.txt"
}

case "${1:-}" in
  build) build; echo "$TESTDIR" ;;
  list) build; list ;;
  run) shift; run "$@" ;;
  survey) shift; survey "$@" ;;
  table) LOGS=$2; table "$(list | awk '{print $1}' | tr '\n' ' ')" ;;
  *) echo "usage: $0 build | list | run [NAME[:full]...] | survey [NUM...] | table LOGDIR" >&2; exit 2 ;;
esac
