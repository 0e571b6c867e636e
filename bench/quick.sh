#!/usr/bin/env bash
# One short closed-loop run of scenario 2 (or any /track load) against a
# fresh PostgreSQL database, for A/B comparisons while working on ingest:
#
#   bench/quick.sh NAME [beacon serve flags...]
#
# Prints one line: events/s, p99 and max latency, the CPU per acknowledged
# event of the server and of every PostgreSQL process, the events an ingest
# transaction carried on average (from /metrics), and acknowledged vs
# stored. Run two binaries or two flag sets alternately, several times:
# one run of a 2-core machine is noisy (±10%, and more on some machines).
#
# Environment: BEACON (binary, default target/release/beacon), LOADGEN
# (default target/release/beacon-loadgen), BENCH_PG (default
# postgres://postgres@127.0.0.1:5432), DURATION (12), CONNECTIONS (64),
# LOADGEN_FLAGS (e.g. "--client-ids" or "--rate 4800"), PERF=1 (record
# `perf record -a -g` for 6 s in the middle, to /tmp/perf-NAME.data).
# It builds nothing (cargo build --release -p beacon -p beacon-loadgen
# first; bench/ingest.sh builds the same binary with --features
# beacon/bench-routes, which only adds POST /bench/noop), binds 127.0.0.1 only, and removes its database and server at the
# end, also on failure.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help || $# -lt 1 ]]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
NAME=$1
shift
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BEACON=${BEACON:-$ROOT/target/release/beacon}
LOADGEN=${LOADGEN:-$ROOT/target/release/beacon-loadgen}
BENCH_PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DURATION=${DURATION:-12}
CONNECTIONS=${CONNECTIONS:-64}
DB="beacon_quick_$$_${NAME//[^a-zA-Z0-9_]/_}"
URL="$BENCH_PG/$DB?sslmode=disable"
LOG=$(mktemp "${TMPDIR:-/tmp}/beacon-quick.XXXXXX")
SERVER=
PERF_PID=

cleanup() {
    # `|| true`: a process that already exited must not stop the cleanup
    # (set -e) before the database is dropped.
    [[ -z $PERF_PID ]] || kill "$PERF_PID" 2>/dev/null || true
    [[ -z $SERVER ]] || kill -KILL "$SERVER" 2>/dev/null || true
    psql "$BENCH_PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -f "$LOG"
}
trap cleanup EXIT

# shellcheck source=bench/cpu.sh
source "$ROOT/bench/cpu.sh"

psql "$BENCH_PG/postgres" -qAtc "CREATE DATABASE \"$DB\"" >/dev/null
PORT=$((30000 + RANDOM % 5000))
RUST_LOG=warn "$BEACON" serve --bind "127.0.0.1:$PORT" --database-url "$URL" "$@" >"$LOG" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/up" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.1
done

cpu0=$(ticks "$SERVER")
pg0=$(pg_ticks)
if [[ ${PERF:-0} == 1 ]]; then
    (sleep 3 && exec perf record -F 499 -a -g -o "/tmp/perf-$NAME.data" -- sleep 6 >/dev/null 2>&1) &
    PERF_PID=$!
fi
# shellcheck disable=SC2086
out=$("$LOADGEN" --url "http://127.0.0.1:$PORT/track" --connections "$CONNECTIONS" \
    --duration "$DURATION" --run-id "q$$" ${LOADGEN_FLAGS:-})
cpu1=$(ticks "$SERVER")
pg1=$(pg_ticks)
if [[ -n $PERF_PID ]]; then
    wait "$PERF_PID" || true
    PERF_PID=
fi
tx=$(curl -fsS "http://127.0.0.1:$PORT/metrics" | awk '$1 == "beacon_ingest_transactions_total" { print $2 }')
kill -TERM "$SERVER"
wait "$SERVER" || true
SERVER=

field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/" <<<"$out"; }
stored=$(psql "$URL" -qAtc "SELECT count(*) FROM events")
awk -v n="$NAME" -v e="$(field events_acked)" -v eps="$(field events_per_s)" \
    -v p99="$(field p99_ms)" -v max="$(field max_ms)" -v c=$((cpu1 - cpu0)) -v p="$(pg_ticks_diff <(echo "$pg0") <(echo "$pg1"))" -v s="$stored" \
    -v tx="${tx:-0}" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    printf "%-20s %8.0f events/s  p99 %6.2f ms  max %7.1f ms  server %5.1f us/event  postgres %5.1f us/event  %5.1f events/commit  acked %d stored %d\n",
        n, eps, p99, max, e ? 1e6 * c / hz / e : 0, e ? 1e6 * p / hz / e : 0, tx ? e / tx : 0, e, s }'
