#!/usr/bin/env bash
# Buffered mode (Redis Streams) against the direct database path, in one
# run, on this machine, load generator included (docs/benchmarks.md,
# "Buffered mode: bench/redis.sh").
#
#   bench/redis.sh            full run (release build)
#   bench/redis.sh --smoke    seconds per scenario, small load (CI), debug
#                             build
#
# Scenarios: Redis's own XADD ceiling (redis-benchmark, the same entries,
# pipelined), psql's COPY ceiling, then /track closed loop direct and
# buffered (with the time the backlog took to drain), both at a fixed rate
# of half their peak (p99), accepting alone (the buffered server with its
# database's backends stopped: what /track takes when the drain stores
# nothing), and a burst at twice the direct path's peak (every answer, p99,
# backlog, drain time and drain rate). The peaks and A1 also print their
# CPU per acknowledged event: server, redis-server, PostgreSQL, load
# generator.
# Options: --duration SECONDS (20), --burst SECONDS (60), --connections N
# (64), --copy-rows N (1000000), --profile release|dev.
# Environment: BENCH_PG (default postgres://postgres@127.0.0.1:5432);
# REDIS_FSYNC (default always: the setting under which a 200 survives a
# power loss; everysec or no to compare).
#
# Everything runs on 127.0.0.1, bounded in time; the script starts its own
# redis-server (temp dir, free port) and servers, stops them by PID, and
# drops its databases at the end, also on failure. Numbers are printed,
# never asserted: the only failures are broken scenarios and failed
# verifications (every acknowledged event stored, once).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=20 BURST=60 CONNECTIONS=64 COPY_ROWS=1000000 PROFILE=release
while (($#)); do
    case "$1" in
    --smoke) DURATION=2 BURST=3 CONNECTIONS=8 COPY_ROWS=20000 PROFILE=dev ;;
    --duration) DURATION=$2 && shift ;;
    --burst) BURST=$2 && shift ;;
    --connections) CONNECTIONS=$2 && shift ;;
    --copy-rows) COPY_ROWS=$2 && shift ;;
    --profile) PROFILE=$2 && shift ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *) echo "unknown option $1 (see --help)" >&2 && exit 2 ;;
    esac
    shift
done

BENCH_PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
REDIS_FSYNC=${REDIS_FSYNC:-always}
RUN=$$
TMP=$(mktemp -d "${TMPDIR:-/tmp}/beacon-redis-bench.XXXXXX")
DATABASES=()
SERVER_PID= REDIS_PID=

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "FAILED: $*" && exit 1; }

cleanup() {
    local status=$?
    [[ -z $SERVER_PID ]] || kill -KILL "$SERVER_PID" 2>/dev/null || true
    [[ -z $REDIS_PID ]] || kill -KILL "$REDIS_PID" 2>/dev/null || true
    for db in "${DATABASES[@]}"; do
        psql "$BENCH_PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$TMP"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v redis-server >/dev/null || die "redis-server is needed (apt-get install redis-server)"
psql "$BENCH_PG/postgres" -qAtc 'select 1' >/dev/null || die "cannot reach PostgreSQL at $BENCH_PG"
# The same features as bench/ingest.sh's build, so that the two scripts
# in a row do not rebuild each other's binary.
log "building beacon and beacon-loadgen ($PROFILE profile)"
(cd "$ROOT" && cargo build --profile "$PROFILE" -p beacon -p beacon-loadgen \
    --features beacon/bench-routes --quiet)
DIR=$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BEACON="$TARGET/$DIR/beacon"
LOADGEN="$TARGET/$DIR/beacon-loadgen"
[[ -x $BEACON && -x $LOADGEN ]] || die "build beacon and beacon-loadgen first"

field() { sed -E "s/.*\"$2\":\"?([^,\"}]*).*/\1/" <<<"$1"; }
free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        ss -Htln "sport = :$port" | grep -q . || { echo "$port" && return; }
    done
    die "no free port"
}
new_pg_db() {
    local db="beacon_rbench_${RUN}_$1"
    DATABASES+=("$db")
    psql "$BENCH_PG/postgres" -qAtc "CREATE DATABASE \"$db\"" >/dev/null
    PG_URL="$BENCH_PG/$db?sslmode=disable"
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
stored() { psql "$PG_URL" -qAtc "SELECT count(*) FROM events"; }
stored_twice() { psql "$PG_URL" -qAtc "SELECT count(*) FROM (SELECT 1 FROM events GROUP BY session_id, public_id HAVING count(*) > 1) d"; }

# --------------------------------------------------------------- Redis ----
RPORT=$(free_port)
redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$TMP" --save '' \
    --appendonly yes --appendfsync "$REDIS_FSYNC" --daemonize no >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
disown "$REDIS_PID" # killed by PID in the cleanup, without the shell's notice
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_URL="redis://127.0.0.1:$RPORT"
log "redis-server $(redis-server --version | awk '{print $3}') on port $RPORT, appendfsync $REDIS_FSYNC"

ROWS=()
row() { ROWS+=("$(printf '%-28s %10s %8s %8s %10s %9s  %s' "$@")"); }
row scenario events/s p99_ms max_ms non-2xx backlog "notes"

# ------------------------------------------------ R0: Redis XADD ceiling --
# A pixel click as the buffer writes it (about 400 bytes).
PAYLOAD='{"id":"0192f3b4-5c6d-7e8f-9a0b-1c2d3e4f5a6b","generated":true,"type":"click","session":"1764496800000-k3j9x2","url":"https://portfolio.example/","referrer":"https://www.google.com/","user_agent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36","data":"{\"element_text\":\"Projects\",\"element_type\":\"a\",\"label\":\"Projects\"}","occurred_us":1764496800000000,"received_us":1764496800000000}'
N=$((COPY_ROWS / 2))
rb=$(redis-benchmark -h 127.0.0.1 -p "$RPORT" -n "$N" -c 16 -P 64 -q XADD rbench:stream '*' v 1 e "$PAYLOAD" 2>/dev/null | tr '\r' '\n' | grep -Eo '[0-9.]+ requests per second' | tail -1 | awk '{print $1}')
redis-cli -p "$RPORT" DEL rbench:stream >/dev/null
row "R0-redis-benchmark-xadd" "${rb:-?}" - - - - "$N XADDs, 16 clients, pipeline 64 (Redis alone)"

# ------------------------------------------------ R1: COPY ceiling --------
new_pg_db copy
DATABASE_URL=$PG_URL "$BEACON" migrate >/dev/null 2>&1
sessions=$(((COPY_ROWS + 11) / 12))
t=$(($(date +%s) * 1000000))
awk -v n="$sessions" -v t="$t" 'BEGIN { OFS = "\t"; for (i = 0; i < n; i++)
    print "copy-" i, "Mozilla/5.0", "https://www.google.com/", "https://portfolio.example/", "Germany", "Berlin", t, t }' >"$TMP/sessions.tsv"
awk -v n="$COPY_ROWS" -v t="$t" 'BEGIN { OFS = "\t"; for (i = 0; i < n; i++)
    print "copy-" i, int(i / 12) + 1, "click", "https://portfolio.example/", "https://www.google.com/", \
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", \
        "Projects", "{\"element_text\":\"Projects\",\"element_type\":\"a\",\"label\":\"Projects\"}", t + i, t + i }' >"$TMP/events.tsv"
psql "$PG_URL" -qAt -c "\\copy sessions (token, user_agent, referrer, entry_url, country, city, first_seen, last_seen) FROM '$TMP/sessions.tsv'" >/dev/null
t0=$(now)
psql "$PG_URL" -qAt -c "\\copy events (public_id, session_id, kind, url, referrer, user_agent, label, metadata, occurred_at, received_at) FROM '$TMP/events.tsv'" >/dev/null
t1=$(now)
COPY_EPS=$(awk -v n="$COPY_ROWS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
row "R1-pg-copy-psql" "$COPY_EPS" - - - - "$COPY_ROWS rows with psql's COPY (the database alone)"
# The same rows through a path that skips stored ones: COPY into a
# temporary table, then INSERT … ON CONFLICT DO NOTHING (what a drain that
# checked every entry could use instead of the unnest insert).
COLS="public_id, session_id, kind, url, referrer, user_agent, label, metadata, occurred_at, received_at"
psql "$PG_URL" -qAtc "TRUNCATE events" >/dev/null
t0=$(now)
psql "$PG_URL" -qAt -v ON_ERROR_STOP=1 \
    -c "CREATE TEMP TABLE incoming AS SELECT $COLS FROM events WITH NO DATA" \
    -c "\\copy incoming FROM '$TMP/events.tsv'" \
    -c "INSERT INTO events ($COLS) SELECT $COLS FROM incoming ON CONFLICT (session_id, public_id) DO NOTHING" >/dev/null
t1=$(now)
TEMP_EPS=$(awk -v n="$COPY_ROWS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", n / (b - a) }')
row "R1b-pg-copy-temp-on-conflict" "$TEMP_EPS" - - - - "the same rows: COPY into a temp table, INSERT ON CONFLICT DO NOTHING"
psql "$BENCH_PG/postgres" -qAtc "DROP DATABASE \"${DATABASES[-1]}\" WITH (FORCE)" >/dev/null

# --------------------------------------------------------- the servers ----
# start NAME [--buffered]: a fresh database (and Redis prefix), a server.
start() {
    new_pg_db "$1"
    # From a checkpoint, as in bench/ingest.sh: no scenario pays for the
    # writes of the one before (the COPY ceilings above leave gigabytes).
    psql "$BENCH_PG/postgres" -qAtc CHECKPOINT >/dev/null 2>&1 || log "could not run CHECKPOINT"
    PORT=$(free_port)
    local extra=()
    [[ ${2:-} == --buffered ]] && extra=(--redis-url "$REDIS_URL" --redis-prefix "bench-$1")
    RUST_LOG=warn "$BEACON" serve --bind "127.0.0.1:$PORT" --database-url "$PG_URL" "${extra[@]}" \
        >>"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 200); do
        curl -fsS -o /dev/null "http://127.0.0.1:$PORT/up" 2>/dev/null && return
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2 && die "server did not start"; }
        sleep 0.1
    done
    die "server did not come up"
}
stop() {
    kill -TERM "$SERVER_PID" && wait "$SERVER_PID" || true
    SERVER_PID=
    psql "$BENCH_PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"${DATABASES[-1]}\" WITH (FORCE)" >/dev/null
}
load() { "$LOADGEN" --url "http://127.0.0.1:$PORT/track" --connections "$CONNECTIONS" --run-id "$1" "${@:2}"; }
# Waits for the backlog to drain; prints the seconds it took.
drain() {
    local t0 b
    t0=$(now)
    while :; do
        b=$(metric beacon_buffer_backlog_events)
        [[ $b == 0 ]] && break
        sleep 0.2
    done
    elapsed "$t0" "$(now)"
}
verify() {
    local acked=$1 stored twice
    stored=$(stored)
    twice=$(stored_twice)
    [[ $twice == 0 ]] || die "$2: $twice events stored twice"
    ((stored >= acked)) || die "$2: acknowledged $acked, stored $stored"
    echo "stored $stored >= acked $acked, none twice"
}
result() {
    local name=$1 out=$2 backlog=$3 notes=$4
    row "$name" "$(field "$out" events_per_s)" "$(field "$out" p99_ms)" "$(field "$out" max_ms)" \
        $(($(field "$out" req_4xx) + $(field "$out" req_5xx) + $(field "$out" req_err))) "$backlog" "$notes"
}

# CPU per acknowledged event of the server, redis-server, every PostgreSQL
# process and the load generator, between a `cpu_mark` and now.
CLK_TCK=$(getconf CLK_TCK)
# shellcheck source=bench/cpu.sh
source "$ROOT/bench/cpu.sh"
cpu_mark() { # into $TMP/mark: server and redis ticks, then the pg_ticks lines
    { echo "$(ticks "$SERVER_PID") $(ticks "$REDIS_PID")" && pg_ticks; } >"$TMP/mark"
}
cpu_per_event() { # ACKED LOADGEN_CPU_S
    local before after pg
    read -ra before <"$TMP/mark"
    after=("$(ticks "$SERVER_PID")" "$(ticks "$REDIS_PID")")
    pg=$(pg_ticks_diff <(tail -n +2 "$TMP/mark") <(pg_ticks))
    awk -v a="$1" -v s=$((after[0] - before[0])) -v r=$((after[1] - before[1])) -v g="$pg" \
        -v l="$2" -v t="$CLK_TCK" 'BEGIN { if (a > 0) printf "CPU us/event: server %.1f, redis %.1f, postgres %.1f, loadgen %.1f", \
            s * 1e6 / t / a, r * 1e6 / t / a, g * 1e6 / t / a, l * 1e6 / a }'
}

# ------------------------------------------------ peaks (closed loop) -----
start direct
cpu_mark
out=$(load d --duration "$DURATION")
cpu=$(cpu_per_event "$(field "$out" events_acked)" "$(field "$out" loadgen_cpu_s)")
DIRECT_RPS=$(field "$out" req_per_s)
DIRECT_EPS=$(field "$out" events_per_s)
result "D1-direct-peak" "$out" - "$cpu; $(verify "$(field "$out" events_acked)" direct)"
stop

start buffered --buffered
t0=$(now)
cpu_mark
out=$(load b --duration "$DURATION")
backlog=$(metric beacon_buffer_backlog_events)
secs=$(drain)
acked=$(field "$out" events_acked)
# Until drained: the drain's work is the buffered path's too.
cpu=$(cpu_per_event "$acked" "$(field "$out" loadgen_cpu_s)")
BUF_RPS=$(field "$out" req_per_s)
sustained=$(awk -v n="$acked" -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.0f", n / (b - a) }')
result "B1-buffered-peak" "$out" "$backlog" "drained in ${secs}s; stored/s over run+drain $sustained; $cpu; $(verify "$acked" buffered)"
stop

# ------------------------------------------------ accepting alone ---------
# The buffered server with its database's backends stopped (SIGSTOP): the
# drain stores nothing and /track's closed loop measures what accepting
# into Redis alone costs (and allows) on these cores. Resumed, the backlog
# drains and is verified.
start accept --buffered
sleep 1
BACKENDS=$(psql "$BENCH_PG/postgres" -qAtc "SELECT pid FROM pg_stat_activity WHERE datname = '${DATABASES[-1]}'")
cpu_mark
# shellcheck disable=SC2086 # one pid per word
kill -STOP $BACKENDS
out=$(load a --duration "$DURATION")
cpu=$(cpu_per_event "$(field "$out" events_acked)" "$(field "$out" loadgen_cpu_s)")
# shellcheck disable=SC2086
kill -CONT $BACKENDS
backlog=$(metric beacon_buffer_backlog_events)
secs=$(drain)
acked=$(field "$out" events_acked)
ACCEPT_EPS=$(field "$out" events_per_s)
result "A1-buffered-accept-only" "$out" "$backlog" "drain stopped; $cpu; drained in ${secs}s after; $(verify "$acked" accept)"
stop

# ------------------------------------------------ fixed rate: half peak ---
start direct-half
out=$(load dh --duration "$DURATION" --rate "$(awk -v r="$DIRECT_RPS" 'BEGIN { printf "%d", r / 2 }')")
result "D2-direct-half-peak" "$out" - "$(verify "$(field "$out" events_acked)" direct-half)"
stop

start buffered-half --buffered
out=$(load bh --duration "$DURATION" --rate "$(awk -v r="$BUF_RPS" 'BEGIN { printf "%d", r / 2 }')")
backlog=$(metric beacon_buffer_backlog_events)
secs=$(drain)
result "B2-buffered-half-peak" "$out" "$backlog" "drained in ${secs}s; $(verify "$(field "$out" events_acked)" buffered-half)"
stop

# ------------------------------------------------ burst: 2x the database --
start burst --buffered
rate=$(awk -v r="$DIRECT_RPS" 'BEGIN { printf "%d", 2 * r }')
out=$(load x --duration "$BURST" --rate "$rate")
backlog=$(metric beacon_buffer_backlog_events)
before=$(stored)
t0=$(now)
secs=$(drain)
after=$(stored)
drain_eps=$(awk -v n="$((after - before))" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }')
result "X1-buffered-burst-2x-db" "$out" "$backlog" "$rate req/s for ${BURST}s; drained in ${secs}s at $drain_eps events/s (COPY ceiling $COPY_EPS); $(verify "$(field "$out" events_acked)" burst)"
stop

printf '\n%s\n' "Beacon $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, Redis appendfsync $REDIS_FSYNC, ${CONNECTIONS} connections, ${DURATION}s per scenario (burst ${BURST}s), direct peak $DIRECT_EPS events/s, accepting alone $ACCEPT_EPS events/s"
printf '%s\n' "${ROWS[@]}"
