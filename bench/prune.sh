#!/usr/bin/env bash
# Ingest while a prune deletes a large backlog, on PostgreSQL: how much of
# its throughput and latency ingestion keeps.
#
#   bench/prune.sh [BACKLOG_EVENTS]
#   bench/prune.sh --smoke      20,000 events, 2 s windows, one round, with
#                               the debug build it makes (CI)
#
# Loads BACKLOG_EVENTS (default 2,000,000) old events (ten days ago, 20 per
# session) straight into a fresh database behind a running server, marks
# them rolled up (the watermark; what the rollups hold does not matter to
# the delete), then runs the closed-loop load generator for DURATION
# seconds without a prune ("baseline"), then starts `beacon prune --before
# <five days ago>` and runs the load generator in windows of DURATION
# seconds until the prune has finished ("prune N", each window with the
# last progress line the prune logged), then one more window without it
# ("after": with baseline, it brackets the prune against a machine whose
# load drifts). ROUNDS (default 2) repeats it all on a new backlog. Prints one line per window in bench/quick.sh's format,
# then what the prune printed.
#
# Environment as bench/quick.sh: BEACON, LOADGEN, BENCH_PG, DURATION (12),
# CONNECTIONS (64), LOADGEN_FLAGS. Builds nothing (cargo build --release
# -p beacon -p beacon-loadgen first); removes its database and processes at
# the end, also on failure.
set -euo pipefail

if [[ ${1:-} == -h || ${1:-} == --help ]]; then
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 0
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ ${1:-} == --smoke ]]; then
    (cd "$ROOT" && cargo build --quiet -p beacon -p beacon-loadgen)
    BEACON=$ROOT/target/debug/beacon LOADGEN=$ROOT/target/debug/beacon-loadgen
    DURATION=2 ROUNDS=1 CONNECTIONS=8
    set -- 20000
fi
BACKLOG=${1:-2000000}
BEACON=${BEACON:-$ROOT/target/release/beacon}
LOADGEN=${LOADGEN:-$ROOT/target/release/beacon-loadgen}
BENCH_PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
DURATION=${DURATION:-12}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-2}
DB="beacon_prune_$$"
URL="$BENCH_PG/$DB?sslmode=disable"
LOG=$(mktemp "${TMPDIR:-/tmp}/beacon-prune.XXXXXX")
PRUNE_LOG=$(mktemp "${TMPDIR:-/tmp}/beacon-prune-run.XXXXXX")
SERVER=
PRUNE=

cleanup() {
    [[ -z $PRUNE ]] || kill -KILL "$PRUNE" 2>/dev/null || true
    [[ -z $SERVER ]] || kill -KILL "$SERVER" 2>/dev/null || true
    psql "$BENCH_PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"$DB\" WITH (FORCE)" >/dev/null 2>&1 || true
    rm -f "$LOG" "$PRUNE_LOG"
}
trap cleanup EXIT

# shellcheck source=bench/cpu.sh
source "$ROOT/bench/cpu.sh"

psql "$BENCH_PG/postgres" -qAtc "CREATE DATABASE \"$DB\"" >/dev/null
PORT=$((30000 + RANDOM % 5000))
RUST_LOG=warn "$BEACON" serve --bind "127.0.0.1:$PORT" --database-url "$URL" >"$LOG" 2>&1 &
SERVER=$!
for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/up" 2>/dev/null && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.1
done

# One closed-loop window; prints a line like bench/quick.sh's.
window() {
    local name=$1 cpu0 pg0 cpu1 pg out
    cpu0=$(ticks "$SERVER")
    pg0=$(pg_ticks)
    # shellcheck disable=SC2086
    out=$("$LOADGEN" --url "http://127.0.0.1:$PORT/track" --connections "$CONNECTIONS" \
        --duration "$DURATION" --run-id "p$$-$name" ${LOADGEN_FLAGS:-})
    cpu1=$(ticks "$SERVER")
    pg=$(pg_ticks_diff <(echo "$pg0") <(pg_ticks))
    field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/" <<<"$out"; }
    awk -v n="$name" -v e="$(field events_acked)" -v eps="$(field events_per_s)" \
        -v p99="$(field p99_ms)" -v max="$(field max_ms)" -v c=$((cpu1 - cpu0)) -v p="$pg" \
        -v err=$(($(field req_4xx) + $(field req_5xx) + $(field req_err))) -v hz="$(getconf CLK_TCK)" 'BEGIN {
        printf "%-12s %8.0f events/s  p99 %6.2f ms  max %7.1f ms  server %5.1f us/event  postgres %5.1f us/event  failed requests %d",
            n, eps, p99, max, e ? 1e6 * c / hz / e : 0, e ? 1e6 * p / hz / e : 0, err }'
}

BEFORE=$(date -u -d '5 days ago' +%Y-%m-%d)
T0=$(($(date -u -d '10 days ago' +%s) * 1000000))
SESSIONS=$((BACKLOG / 20))
for round in $(seq "$ROUNDS"); do
    psql "$URL" -qAt -v ON_ERROR_STOP=1 <<SQL
INSERT INTO sessions (token, user_agent, entry_url, first_seen, last_seen)
SELECT 'old-$round-' || g, 'Mozilla/5.0', 'https://site.example/', $T0 + g::bigint * 1000000,
       $T0 + g::bigint * 1000000 + 19000000
FROM generate_series(0, $SESSIONS - 1) g;
INSERT INTO events (public_id, session_id, kind, url, user_agent, metadata, occurred_at, received_at)
SELECT 'e' || g, s.id, CASE WHEN g % 4 = 0 THEN 'visit' ELSE 'heartbeat' END,
       'https://site.example/p' || (g % 50), 'Mozilla/5.0', '{}', s.first_seen + (g % 20)::bigint * 1000000,
       s.first_seen + 20000000
FROM generate_series(0, $BACKLOG - 1) g JOIN sessions s ON s.token = 'old-$round-' || (g / 20);
UPDATE rollup_watermark SET last_event_id = (SELECT MAX(id) FROM events);
SQL
    psql "$URL" -qAtc "VACUUM ANALYZE sessions, events" >/dev/null
    echo "round $round: $(psql "$URL" -qAtc "SELECT count(*) FROM events") events stored, $BACKLOG old"
    echo "$(window baseline)"
    RUST_LOG=info "$BEACON" prune --before "$BEFORE" --database-url "$URL" >"$PRUNE_LOG" 2>&1 &
    PRUNE=$!
    n=1
    while kill -0 "$PRUNE" 2>/dev/null; do
        line=$(window "prune $n")
        echo "$line  [$(grep -o 'pruning before.*' "$PRUNE_LOG" | tail -1)]"
        n=$((n + 1))
    done
    wait "$PRUNE" || { cat "$PRUNE_LOG" >&2; exit 1; }
    PRUNE=
    echo "$(window after)"
    grep -v 'pruning before' "$PRUNE_LOG" || true
done
