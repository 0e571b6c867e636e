#!/usr/bin/env bash
# Historical API benchmark: loads 10 million events spread over 90 days
# (1 million sessions of 10 events) into a fresh PostgreSQL database with
# plain SQL, rebuilds the rollups with `beacon rollup --rebuild`, starts the
# release server and reports p50/p99 of each history endpoint for a 30-day
# range. The database is dropped at the end unless BENCH_KEEP=1.
#
#   bench/history.sh                       # 10M events, 200 requests per endpoint
#   SESSIONS=100000 bench/history.sh       # a quicker 1M-event run
#   BENCH_KEEP=1 bench/history.sh          # keep the loaded database afterwards
#   BENCH_REUSE=1 bench/history.sh         # measure the kept database again
#                                          # (no load, no rebuild; migrations run)
#   BENCH_REUSE=1 BENCH_REBUILD=1 bench/history.sh   # … after `rollup --rebuild`
#   BENCH_BEACON=/tmp/beacon-old BENCH_REUSE=1 bench/history.sh   # another build
#
# A kept database records the load's time origin (table bench_meta), so a
# reused run asks for the same ranges; drop it with
# `psql -c 'DROP DATABASE beacon_bench_history'`.
#
# Needs: a PostgreSQL server whose user may create databases
# (BENCH_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres),
# psql, python3. Results: docs/benchmarks.md, "Historical API".
set -euo pipefail
cd "$(dirname "$0")/.."

ADMIN_URL=${BENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=${BENCH_DB:-beacon_bench_history}
SESSIONS=${SESSIONS:-1000000}
REQUESTS=${REQUESTS:-200}
PORT=${PORT:-4097}
TOKEN=bench-read-token
DB_URL="${ADMIN_URL%/*}/$DB"

if pgrep -f bench/ingest.sh >/dev/null; then
  echo "bench/ingest.sh is running; wait for it to finish (2 cores)" >&2
  exit 1
fi

# BENCH_BEACON: another binary (e.g. a build of the tree before a change),
# measured as it is; otherwise this tree's release build.
if [[ -n ${BENCH_BEACON:-} ]]; then
  BEACON=$BENCH_BEACON
else
  cargo build --release --quiet --bin beacon
  BEACON=${CARGO_TARGET_DIR:-target}/release/beacon
fi

KEEP=${BENCH_KEEP:-0}
REUSE=${BENCH_REUSE:-0}
[[ $REUSE == 1 ]] && KEEP=1

cleanup() {
  [[ -n ${SERVER:-} ]] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  if [[ $KEEP == 1 ]]; then
    echo "kept database $DB_URL (BENCH_REUSE=1 measures it again)"
  else
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
  fi
}
trap cleanup EXIT

if [[ $REUSE == 1 ]]; then
  read -r NOW_US SESSIONS < <(psql -q -At -F ' ' "$DB_URL" -c "SELECT now_us, sessions FROM bench_meta") || {
    echo "no kept database $DB to reuse (run once with BENCH_KEEP=1)" >&2
    KEEP=1
    exit 1
  }
  RUST_LOG=warn $BEACON migrate --database-url "$DB_URL"
  echo "reusing $DB: $((SESSIONS * 10)) events loaded at $NOW_US"
else
  psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  RUST_LOG=warn $BEACON migrate --database-url "$DB_URL"

  # Data ends now and starts 90 days earlier; sessions start evenly spread,
  # events are 30 s apart.
  NOW_US=$(( $(date +%s) * 1000000 ))
  echo "loading $((SESSIONS * 10)) events ..."
  START=$(date +%s)
  psql -q -v ON_ERROR_STOP=1 "$DB_URL" \
    -v sessions="$SESSIONS" -v now_us="$NOW_US" -f bench/history/load.sql
  echo "loaded in $(( $(date +%s) - START )) s"
  psql -q "$DB_URL" -c "CREATE TABLE bench_meta AS SELECT $NOW_US::bigint AS now_us, $SESSIONS::bigint AS sessions"
fi

REBUILD_S=skipped
if [[ $REUSE != 1 || ${BENCH_REBUILD:-0} == 1 ]]; then
  START=$(date +%s)
  RUST_LOG=info $BEACON rollup --rebuild --database-url "$DB_URL"
  REBUILD_S="$(( $(date +%s) - START )) s"
fi
psql -q -At "$DB_URL" -c "SELECT 'events ' || (SELECT COUNT(*) FROM events) || ', sessions ' || (SELECT COUNT(*) FROM sessions) || ', rollup rows: seen ' || (SELECT COUNT(*) FROM rollup_seen) || ', counts ' || (SELECT COUNT(*) FROM rollup_counts) || ', visitors ' || (SELECT COUNT(*) FROM rollup_visitors) || ', session ' || (SELECT COUNT(*) FROM rollup_session) || ', stats ' || (SELECT COUNT(*) FROM rollup_stats) || ', rebuild ${REBUILD_S}'"

RUST_LOG=warn BEACON_READ_TOKEN=$TOKEN $BEACON --database-url "$DB_URL" \
  --bind "127.0.0.1:$PORT" --http-workers 2 &
SERVER=$!
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/up" >/dev/null && break
  sleep 0.2
done

python3 bench/history/measure.py "http://127.0.0.1:$PORT" "$TOKEN" "$NOW_US" "$REQUESTS" "$SESSIONS"
