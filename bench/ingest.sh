#!/usr/bin/env bash
# Ingest benchmark: every ingest scenario (docs/benchmarks.md, "The scenarios")
# in one run, one table at the end.
#
#   bench/ingest.sh            full run (release build, 20 s per scenario)
#   bench/ingest.sh --smoke    a few seconds per scenario, small load (CI);
#                              uses the debug build that the tests already made
#
# Options: --duration SECONDS, --connections N, --copy-rows N, --profile
# release|dev, --keep (keep the temp dir and databases for inspection).
# Environment: BENCH_PG (default postgres://postgres@127.0.0.1:5432), the
# PostgreSQL server to create the benchmark databases on (trust auth or a
# password in the URL); BENCH_PG_PARAMS (default sslmode=disable: the server
# is on this machine, and Beacon and psql's COPY get the same setting; set
# it empty to measure with TLS); BENCH_SERVER_FLAGS, extra flags for every
# `beacon serve` (e.g. "--writers 4"); BENCH_BEACON, a beacon binary to
# measure instead of the one built here (to compare before and after).
#
# Everything runs on 127.0.0.1, bounded in time; the script starts and stops
# its own server by PID, creates its own databases and SQLite files, and
# removes them at the end, also on failure. Numbers are printed, never
# asserted: the only failures are broken scenarios and failed verifications.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MODE=full
DURATION=20
CONNECTIONS=64
COPY_ROWS=1000000
PROFILE=release
KEEP=0
while (($#)); do
    case "$1" in
    --smoke)
        MODE=smoke DURATION=3 CONNECTIONS=8 COPY_ROWS=20000 PROFILE=dev
        ;;
    --duration) DURATION=$2 && shift ;;
    --connections) CONNECTIONS=$2 && shift ;;
    --copy-rows) COPY_ROWS=$2 && shift ;;
    --profile) PROFILE=$2 && shift ;;
    --keep) KEEP=1 ;;
    -h | --help)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
        exit 0
        ;;
    *)
        echo "unknown option $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

BENCH_PG=${BENCH_PG:-postgres://postgres@127.0.0.1:5432}
BENCH_PG_PARAMS=${BENCH_PG_PARAMS-sslmode=disable}
BENCH_SERVER_FLAGS=${BENCH_SERVER_FLAGS:-}
RUN=$$
TMP=$(mktemp -d "${TMPDIR:-/tmp}/beacon-bench.XXXXXX")
DATABASES=()
SERVER_PID=
CLK_TCK=$(getconf CLK_TCK)
# shellcheck source=bench/cpu.sh
source "$ROOT/bench/cpu.sh"

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

cleanup() {
    local status=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if ((KEEP)); then
        log "kept $TMP and databases: ${DATABASES[*]:-none}"
    else
        for db in "${DATABASES[@]}"; do
            psql "$BENCH_PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" \
                >/dev/null 2>&1 || log "could not drop database $db"
        done
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- build ----
command -v psql >/dev/null || die "psql is needed (apt-get install postgresql-client)"
command -v sqlite3 >/dev/null || die "sqlite3 is needed (apt-get install sqlite3)"
psql "$BENCH_PG/postgres" -qAtc 'select 1' >/dev/null || die "cannot reach PostgreSQL at $BENCH_PG"

# The `bench-routes` feature adds `POST /bench/noop` (scenario 1a), which a
# production build does not have.
log "building beacon (with bench-routes) and beacon-loadgen ($PROFILE profile)"
(cd "$ROOT" && cargo build --profile "$PROFILE" -p beacon -p beacon-loadgen \
    --features beacon/bench-routes --quiet)
DIR=$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BEACON=${BENCH_BEACON:-"$TARGET/$DIR/beacon"}
LOADGEN="$TARGET/$DIR/beacon-loadgen"

# ---------------------------------------------------------------- helpers --
# Field of the loadgen's one-line JSON.
field() { sed -E "s/.*\"$2\":\"?([^,\"}]*).*/\1/" <<<"$1"; }

free_port() {
    local port
    for _ in $(seq 1 50); do
        port=$((20000 + RANDOM % 20000))
        ss -Htln "sport = :$port" | grep -q . || {
            echo "$port"
            return
        }
    done
    die "no free port"
}

# Creates a database and sets PG_URL to it. Not for $(...): the cleanup
# must see the name, so it is recorded in this shell.
new_pg_db() {
    local db="beacon_bench_${RUN}_$1"
    DATABASES+=("$db")
    psql "$BENCH_PG/postgres" -qAtc "CREATE DATABASE \"$db\"" >/dev/null
    PG_URL="$BENCH_PG/$db${BENCH_PG_PARAMS:+?$BENCH_PG_PARAMS}"
}

# Drops the database a scenario is done with (unless --keep): left in place,
# its autovacuum (a million rows after 1c) would run during the next
# scenarios and be counted in their PostgreSQL CPU and their tail.
drop_pg_db() {
    ((KEEP)) || psql "$BENCH_PG/postgres" -qAtc "DROP DATABASE IF EXISTS \"${DATABASES[-1]}\" WITH (FORCE)" >/dev/null
}

start_server() { # url, flags...
    local url=$1 port
    shift
    port=$(free_port)
    # shellcheck disable=SC2086
    RUST_LOG=warn "$BEACON" serve --bind "127.0.0.1:$port" --database-url "$url" \
        $BENCH_SERVER_FLAGS "$@" >>"$TMP/server.log" 2>&1 &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/up" 2>/dev/null; then
            PORT=$port
            return
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -20 "$TMP/server.log" >&2
    die "the server did not start"
}

stop_server() {
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do
        kill -0 "$SERVER_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        log "the server did not stop in 15 s; killing it"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

ROWS=()
row() { ROWS+=("$(printf '%s\t' "$@")"); }

# Each scenario starts from a checkpoint, so that none pays for the dirty
# pages and WAL that the one before left (1c's million rows start a
# checkpoint that would otherwise run during scenario 2). Needs a superuser
# or pg_checkpoint; skipped with a notice otherwise.
checkpoint() {
    psql "$BENCH_PG/postgres" -qAtc CHECKPOINT >/dev/null 2>&1 ||
        log "could not run CHECKPOINT (not a superuser?): scenarios may pay for earlier ones' writes"
}

# Runs the loadgen against the running server and records one table row.
# name, backend (pg URL | sqlite path | none), loadgen args...
measure() {
    local name=$1 store=$2
    shift 2
    checkpoint
    local acked="$TMP/$name.acked" out cpu0 cpu1 pg0="$TMP/pg0" pg1="$TMP/pg1"
    cpu0=$(ticks "$SERVER_PID")
    pg_ticks >"$pg0"
    out=$("$LOADGEN" --url "http://127.0.0.1:$PORT$PATH_" --connections "$CONNECTIONS" \
        --duration "$DURATION" --run-id "r$RUN$name" --acked-file "$acked" "$@")
    cpu1=$(ticks "$SERVER_PID")
    pg_ticks >"$pg1"
    local rss
    rss=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status")
    echo "$out" >"$TMP/$name.json"
    # Transactions the server committed (its counter starts with the
    # server, and each scenario has a server of its own): events per commit.
    curl -fsS "http://127.0.0.1:$PORT/metrics" 2>/dev/null |
        awk '$1 == "beacon_ingest_transactions_total" { print $2 }' >"$TMP/$name.tx" || true
    log "$name: $out"
    local verify=-
    case "$store" in
    postgres*) verify=$(verify_pg "$store" "$acked" "$out") ;;
    sqlite*) verify=$(verify_sqlite "${store#sqlite://}" "$acked" "$out") ;;
    esac
    local events_s
    events_s=$(field "$out" events_per_s)
    if [[ $store == none ]]; then
        # Nothing is stored: report the events the server parsed (or read).
        events_s=$(awk -v e="$(field "$out" events_sent)" -v s="$(field "$out" elapsed_s)" \
            'BEGIN { printf "%.1f", e / s }')
    fi
    row "$name" "$events_s" "$(field "$out" req_per_s)" "$(field "$out" p50_ms)" \
        "$(field "$out" p99_ms)" "$(field "$out" p999_ms)" \
        "$(awk -v t=$((cpu1 - cpu0)) -v h="$CLK_TCK" 'BEGIN { printf "%.1f", t / h }')" \
        "$(awk -v t="$(pg_ticks_diff "$pg0" "$pg1")" -v h="$CLK_TCK" 'BEGIN { printf "%.1f", t / h }')" \
        "$rss" \
        "$(field "$out" req_2xx)/$(field "$out" req_4xx)/$(field "$out" req_5xx)/$(field "$out" req_err)" \
        "$verify"
    LAST=$out
}

# Verdict line: stored == acknowledged, no duplicates, none missing.
verdict() { # stored distinct missing acked errors
    local stored=$1 distinct=$2 missing=$3 acked=$4 errors=$5
    local extra=$((stored - (acked - missing)))
    if ((missing > 0 || stored != distinct)); then
        echo "FAIL stored=$stored acked=$acked missing=$missing dup=$((stored - distinct))"
    elif ((extra > 0 && errors == 0)); then
        echo "FAIL stored=$stored acked=$acked (unacked extra=$extra)"
    elif ((extra > 0)); then
        echo "ok $stored=$acked+$extra unacked"
    else
        echo "ok $stored=$acked"
    fi
}

# The stored bench id of an event: data.bench_id (the pixel's events carry
# no id; the server generates one), or public_id when the loadgen ran with
# --client-ids. VERIFY_KEY says which.
VERIFY_KEY=data
pg_bench_id() { [[ $VERIFY_KEY == data ]] && echo "metadata::jsonb->>'bench_id'" || echo public_id; }
sqlite_bench_id() { [[ $VERIFY_KEY == data ]] && echo "json_extract(metadata, '\$.bench_id')" || echo public_id; }

verify_pg() { # url acked-file loadgen-json
    local acked errors key
    key=$(pg_bench_id)
    acked=$(wc -l <"$2")
    errors=$(($(field "$3" req_5xx) + $(field "$3" req_err) + $(field "$3" req_partial)))
    [[ $acked == "$(field "$3" events_acked)" ]] || log "acked file has $acked ids, loadgen counted $(field "$3" events_acked)"
    local counts
    counts=$(psql "$1" -qAt -F ' ' <<SQL
CREATE TEMP TABLE acked (bench_id text PRIMARY KEY);
\copy acked FROM '$2'
CREATE TEMP TABLE stored AS SELECT $key AS bench_id FROM events;
SELECT (SELECT count(*) FROM stored), (SELECT count(DISTINCT bench_id) FROM stored),
       (SELECT count(*) FROM acked) -
       (SELECT count(DISTINCT s.bench_id) FROM stored s JOIN acked a USING (bench_id));
SQL
    )
    # shellcheck disable=SC2086
    verdict $(tail -1 <<<"$counts") "$acked" "$errors"
}

verify_sqlite() { # path acked-file loadgen-json
    local acked errors key
    key=$(sqlite_bench_id)
    acked=$(wc -l <"$2")
    errors=$(($(field "$3" req_5xx) + $(field "$3" req_err) + $(field "$3" req_partial)))
    local counts
    counts=$(sqlite3 -separator ' ' "$1" <<SQL
CREATE TEMP TABLE acked (bench_id text PRIMARY KEY);
.import '$2' acked
CREATE TEMP TABLE stored AS SELECT $key AS bench_id FROM events;
SELECT (SELECT count(*) FROM stored), (SELECT count(DISTINCT bench_id) FROM stored),
       (SELECT count(*) FROM acked) -
       (SELECT count(DISTINCT s.bench_id) FROM stored s JOIN acked a USING (bench_id));
SQL
    )
    # shellcheck disable=SC2086
    verdict $(tail -1 <<<"$counts") "$acked" "$errors"
}

# -------------------------------------------------------------- scenarios --
log "mode $MODE: ${DURATION}s per scenario, $CONNECTIONS connections, batches of 1 and 5 events"
PATH_=/track

# 1a. HTTP ceiling: a route that does no work, on the same binary (built
# with the `bench-routes` feature; a BENCH_BEACON without it skips 1a).
start_server "sqlite://$TMP/noop.db"
if [[ $(curl -sS -o /dev/null -w '%{http_code}' -X POST --data '{}' \
    "http://127.0.0.1:$PORT/bench/noop") == 200 ]]; then
    PATH_=/bench/noop
    measure "1a-http-noop" none
    PATH_=/track
    stop_server
else
    stop_server
    log "1a skipped: this beacon has no POST /bench/noop (build it with --features bench-routes)"
    row "1a-http-noop" n/a n/a n/a n/a n/a n/a n/a n/a n/a "no route"
fi

# 1b. HTTP + parse ceiling: /track with events that fail validation (400),
# so the body is read and parsed but nothing is queued or stored.
start_server "sqlite://$TMP/parse.db"
measure "1b-http-parse-400" none --payload invalid
stop_server

# 1c. Database ceiling: the same rows written with COPY through psql.
new_pg_db copy
copy_url=$PG_URL
DATABASE_URL=$copy_url "$BEACON" migrate >>"$TMP/server.log" 2>&1
sessions=$(((COPY_ROWS + 11) / 12)) # 4 requests of 3 events per session
now_us=$(($(date +%s) * 1000000))
awk -v n="$sessions" -v t="$now_us" -v r="$RUN" 'BEGIN { OFS = "\t"
    for (i = 0; i < n; i++)
        print "copy-" r "-" i, "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", \
            "https://www.google.com/", "https://portfolio.example/", "Germany", "Berlin", t, t }' \
    >"$TMP/sessions.tsv"
awk -v n="$COPY_ROWS" -v t="$now_us" -v r="$RUN" 'BEGIN { OFS = "\t"
    kinds[0] = "click"; kinds[1] = "scroll"; kinds[2] = "click"; kinds[3] = "heartbeat"
    for (i = 0; i < n; i++) {
        k = (i % 12 == 0) ? "visit" : kinds[i % 4]
        label = "\\N"; data = "{\"depth\":50}"
        if (k == "visit") data = "{\"city\":\"Berlin\",\"country\":\"Germany\",\"ip\":\"203.0.11...\",\"page_title\":\"Portfolio | Home\",\"region\":\"Land Berlin\",\"viewport\":\"1440x900\"}"
        if (k == "click") { label = "Projects"; data = "{\"element_text\":\"Projects\",\"element_type\":\"a\",\"label\":\"Projects\"}" }
        if (k == "heartbeat") data = "{\"active_time\":12,\"uptime\":30}"
        print "copy-" r "-" i, int(i / 12) + 1, k, "https://portfolio.example/", "https://www.google.com/", \
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", \
            label, data, t + i, t + i
    } }' >"$TMP/events.tsv"
# PostgreSQL's CPU is read from inside psql, after the copies and before
# its backend exits (a backend's ticks are gone once it has exited).
declare -f ticks pg_ticks >"$TMP/pg_ticks.sh"
echo pg_ticks >>"$TMP/pg_ticks.sh"
checkpoint
pg_ticks >"$TMP/copy-pg0"
t0=$(date +%s.%N)
psql "$copy_url" -qAt -v ON_ERROR_STOP=1 \
    -c "\\copy sessions (token, user_agent, referrer, entry_url, country, city, first_seen, last_seen) FROM '$TMP/sessions.tsv'" \
    -c "\\copy events (public_id, session_id, kind, url, referrer, user_agent, label, metadata, occurred_at, received_at) FROM '$TMP/events.tsv'" \
    -c "\\! bash '$TMP/pg_ticks.sh' >'$TMP/copy-pg1'" \
    >/dev/null
t1=$(date +%s.%N)
COPY_PG_S=$(awk -v t="$(pg_ticks_diff "$TMP/copy-pg0" "$TMP/copy-pg1")" -v h="$CLK_TCK" 'BEGIN { printf "%.1f", t / h }')
stored=$(psql "$copy_url" -qAtc "SELECT count(*) FROM events")
copy_verify=$([[ $stored == "$COPY_ROWS" ]] && echo "ok $stored=$COPY_ROWS" || echo "FAIL stored=$stored")
COPY_EPS=$(awk -v n="$COPY_ROWS" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", n / (b - a) }')
row "1c-pg-copy-psql" "$COPY_EPS" - - - - - "$COPY_PG_S" - "$COPY_ROWS rows" "$copy_verify"
log "1c-pg-copy-psql: $COPY_ROWS events (+$sessions sessions) in $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
drop_pg_db

# 2. /track on PostgreSQL, group commit (defaults).
new_pg_db group
pg2=$PG_URL
start_server "$pg2"
measure "2-pg-group-commit" "$pg2"
GROUP_REQ_S=$(field "$LAST" req_per_s)
GROUP_EPS=$(field "$LAST" events_per_s)
stop_server
drop_pg_db

# 2e / 2n. Enrichment at work, then off, with the same traffic: a GeoIP
# file of 100,000 networks, 24 real user agents (one in eight a bot's) and
# a client address per session through a trusted proxy. Both keep the bots
# (2e with --keep-bots, 2n with the hidden --no-enrichment, which stores
# events without a profile), so both store the same rows and the
# difference is what enrichment costs.
"$LOADGEN" --write-geoip "$TMP/bench.mmdb"
new_pg_db enriched
pg2e=$PG_URL
start_server "$pg2e" --trusted-proxies 127.0.0.1 --geoip-db "$TMP/bench.mmdb" --keep-bots
measure "2e-pg-enriched" "$pg2e" --user-agents mix --forwarded --bots-stored
ENRICHED_EPS=$(field "$LAST" events_per_s)
stop_server
drop_pg_db
new_pg_db plain
pg2n=$PG_URL
start_server "$pg2n" --trusted-proxies 127.0.0.1 --no-enrichment
measure "2n-pg-enrichment-off" "$pg2n" --user-agents mix --forwarded --bots-stored
PLAIN_EPS=$(field "$LAST" events_per_s)
stop_server
drop_pg_db

# 2b. The same with an `id` on every event (an API client's retry-safe
# ids): each event is checked for a duplicate (INSERT ... ON CONFLICT)
# instead of copied.
new_pg_db clientids
pg2b=$PG_URL
start_server "$pg2b"
VERIFY_KEY=public_id
measure "2b-pg-group-client-ids" "$pg2b" --client-ids
VERIFY_KEY=data
stop_server
drop_pg_db

# 3. /track on PostgreSQL, one commit per request.
new_pg_db single
pg3=$PG_URL
start_server "$pg3" --batch-max 1
measure "3-pg-batch-max-1" "$pg3"
SINGLE_EPS=$(field "$LAST" events_per_s)
stop_server
drop_pg_db

# 3b. One commit per request with eight writers: per-request commits at the
# concurrency that gave them the most events/s here (1, 2, 4, 8 and 16
# writers measured; docs/benchmarks.md, "The scenarios"), as a service committing in each
# request's handler would run them. Scenario 3 keeps the default writers.
# Set through the environment, so that BENCH_SERVER_FLAGS may still name
# --writers (a flag wins over its variable).
new_pg_db single8
pg3b=$PG_URL
BEACON_WRITERS=8 BEACON_POOL_SIZE=16 start_server "$pg3b" --batch-max 1
measure "3b-pg-batch-max-1-8-writers" "$pg3b"
SINGLE8_EPS=$(field "$LAST" events_per_s)
stop_server
drop_pg_db

# 4. /track on SQLite, group commit.
start_server "sqlite://$TMP/sqlite-group.db"
measure "4-sqlite-group-commit" "sqlite://$TMP/sqlite-group.db"
stop_server

# 5. Fixed rate at half of scenario 2's throughput (latency from the
# intended send time).
RATE=$(awk -v r="$GROUP_REQ_S" 'BEGIN { printf "%.0f", r / 2 }')
new_pg_db fixed
pg5=$PG_URL
start_server "$pg5"
measure "5-pg-fixed-rate" "$pg5" --rate "$RATE"
stop_server
drop_pg_db

# ------------------------------------------------------------------ table --
echo
echo "Beacon ingest benchmark ($MODE): $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores," \
    "git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')," \
    "PostgreSQL $(psql "$BENCH_PG/postgres" -qAtc 'SHOW server_version' | cut -d' ' -f1)," \
    "profile $PROFILE, ${BENCH_PG_PARAMS:-TLS as libpq prefers}, beacon $BEACON"
echo "${DURATION}s per scenario, $CONNECTIONS connections, batches of 1 and 5 events," \
    "a new session every 4 requests; scenario 5 at $RATE req/s"
{
    printf 'scenario\tevents/s\treq/s\tp50 ms\tp99 ms\tp99.9 ms\tsrv CPU s\tpg CPU s\tpeak RSS MB\t2xx/4xx/5xx/err\tverification\n'
    printf '%s\n' "${ROWS[@]}"
} | column -t -s $'\t'
echo
# A --writers in BENCH_SERVER_FLAGS wins over 3b's eight: say so.
WRITERS_3B="8 writers"
[[ " $BENCH_SERVER_FLAGS " == *" --writers"* ]] && WRITERS_3B="writers of BENCH_SERVER_FLAGS, not 8"
awk -v g="$GROUP_EPS" -v s="$SINGLE_EPS" -v s8="$SINGLE8_EPS" -v c="$COPY_EPS" -v w="$WRITERS_3B" 'BEGIN {
    printf "group commit / batch-max 1: %.1fx (3), %.1fx (3b, %s)    group commit / COPY ceiling: %.0f%%\n", \
        (s > 0 ? g / s : 0), (s8 > 0 ? g / s8 : 0), w, (c > 0 ? 100 * g / c : 0) }'
# The least CPU any HTTP-to-PostgreSQL design needs per stored event on
# this machine: reading and parsing the request with the loadgen beside it
# (1b: server + loadgen CPU per event) plus PostgreSQL writing the row the
# cheapest way it can (1c: its CPU per row copied). Nothing else (commit,
# session upsert, acknowledgement, rollups, live metrics) is counted.
parse_cpu=$(awk -F '\t' '$1 == "1b-http-parse-400" { print $7 }' < <(printf '%s\n' "${ROWS[@]}"))
parse_json=$(cat "$TMP/1b-http-parse-400.json")
# In us per event; empty when the scenario measured no event.
LEAST_HTTP=$(awk -v srv="$parse_cpu" -v lg="$(field "$parse_json" loadgen_cpu_s)" \
    -v ev="$(field "$parse_json" events_sent)" 'BEGIN { print ev ? 1e6 * (srv + lg) / ev : "" }')
LEAST_DB=$(awk -v pg="$COPY_PG_S" -v rows="$COPY_ROWS" 'BEGIN { print rows ? 1e6 * pg / rows : "" }')
awk -v http="$LEAST_HTTP" -v db="$LEAST_DB" -v cores="$(nproc)" -v c="$COPY_EPS" 'BEGIN {
    if (http == "" || db == "") exit
    printf "least CPU per stored event: %.1f us (HTTP + parse + loadgen, 1b) + %.1f us (PostgreSQL COPY, 1c) = %.1f us:\n", http, db, http + db
    printf "  at most %.0f events/s on %d cores, against %.0f events/s for 50%% of the COPY ceiling\n", cores * 1e6 / (http + db), cores, c / 2 }'
# What scenario 2 spent against that bound, and how busy it kept the cores:
# a run whose cores idle is bound by its commit cycle, one whose cores are
# busy by its CPU per event.
group_json=$(cat "$TMP/2-pg-group-commit.json")
awk -v row="$(printf '%s\n' "${ROWS[@]}" | awk -F '\t' '$1 == "2-pg-group-commit"')" \
    -v lg="$(field "$group_json" loadgen_cpu_s)" -v ev="$(field "$group_json" events_acked)" \
    -v secs="$(field "$group_json" elapsed_s)" -v cores="$(nproc)" 'BEGIN {
    split(row, f, "\t"); srv = f[7]; pg = f[8]
    if (ev == 0 || secs == 0) exit
    printf "scenario 2: %.1f us of CPU per acknowledged event (server %.1f + PostgreSQL %.1f + loadgen %.1f), the %d cores %.0f%% busy with them\n", \
        1e6 * (srv + pg + lg) / ev, 1e6 * srv / ev, 1e6 * pg / ev, 1e6 * lg / ev, cores, 100 * (srv + pg + lg) / (secs * cores) }'
# A commit's fixed CPU cost F and an event's c, from scenarios 2 and 3 of
# this run (x = c + F / n for commits of n events; both scenarios run the
# same binary), and what the two ratio targets then ask of scenario 2's
# CPU per event x2 (docs/benchmarks.md, "Targets"; the derivation is in
# bench/results/2026-12-02-ingest-sixth-machine.md): 50% of the COPY ceiling needs x2 <= 2 * cores * u2
# / C; 10x scenario 3 needs F (1/n3 - rho/n2) >= (rho - 1) c with rho = 10
# u3 / u2, which is cheapest at c = the least-CPU bound above.
cost_line() { # name -> "cpu_s events secs transactions"
    local json row
    json=$(cat "$TMP/$1.json")
    row=$(printf '%s\n' "${ROWS[@]}" | awk -F '\t' -v n="$1" '$1 == n { print $7 + $8 }')
    echo "$(awk -v a="$row" -v b="$(field "$json" loadgen_cpu_s)" 'BEGIN { print a + b }')" \
        "$(field "$json" events_acked)" "$(field "$json" elapsed_s)" "$(cat "$TMP/$1.tx" 2>/dev/null || echo 0)"
}
awk -v g="$(cost_line 2-pg-group-commit)" -v s="$(cost_line 3-pg-batch-max-1)" \
    -v http="$LEAST_HTTP" -v db="$LEAST_DB" -v cores="$(nproc)" -v c="$COPY_EPS" 'BEGIN {
    split(g, G, " "); split(s, S, " ")
    if (G[2] == 0 || S[2] == 0 || G[4] == 0 || S[4] == 0 || G[3] == 0 || S[3] == 0 || c == 0) exit
    x2 = 1e6 * G[1] / G[2]; x3 = 1e6 * S[1] / S[2]; n2 = G[2] / G[4]; n3 = S[2] / S[4]
    u2 = G[1] / (G[3] * cores); u3 = S[1] / (S[3] * cores)
    if (n2 <= n3 || u2 == 0) exit
    F = (x3 - x2) / (1 / n3 - 1 / n2); e = x2 - F / n2; b = http + db
    printf "CPU per commit %.0f us, per event %.1f us (scenarios 2 and 3, at %.1f and %.1f events per commit), so scenario 2\n", F, e, n2, n3
    rho = 10 * u3 / u2; d = 1 / n3 - rho / n2
    if (rho <= 1) ratio = "any cost for 10x scenario 3, which kept the cores under a tenth as busy"
    else if (d > 0) ratio = sprintf("at least %.1f us for 10x scenario 3, even with events at the least-CPU bound", \
        b + (rho - 1) * b / d / n2)
    else ratio = sprintf("no cost reaches 10x scenario 3 at %.1f events per commit", n2)
    printf "  (%.1f us per event) needs at most %.1f us per event for 50%% of COPY; %s\n", x2, 2e6 * cores * u2 / c, ratio }'
awk -v e="$ENRICHED_EPS" -v p="$PLAIN_EPS" 'BEGIN { if (p > 0)
    printf "enrichment: %.0f events/s with it (2e) against %.0f without (2n): %.1f%%\n", e, p, 100 * e / p }'
echo "raw loadgen output: $TMP/*.json (removed at exit unless --keep)"

failed=0
for r in "${ROWS[@]}"; do
    [[ $r == *FAIL* ]] && failed=1
done
((failed == 0)) || die "a verification failed"
