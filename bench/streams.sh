#!/usr/bin/env bash
# Stream benchmark: memory per open /stream client, time for one tick to
# reach every client, and /track throughput with 1,000 streams open versus
# none. Builds the release binaries, runs the server on a SQLite file in a
# temp dir (streams do not touch the database), prints one table.
#
#   bench/streams.sh            1,000 and 10,000 streams, 10 s throughput runs
#   bench/streams.sh --smoke    100 and 500 streams, 2 s runs (CI)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZES=(1000 10000)
DURATION=10
HOLD_CLIENTS=1000
INTERVAL=1s
PROFILE=release
case "${1:-}" in
# The smoke run uses the debug build CI has just made for the tests: its
# numbers mean nothing, only that the script still runs end to end.
--smoke) SIZES=(100 500) DURATION=2 HOLD_CLIENTS=200 PROFILE=dev ;;
"") ;;
*) echo "usage: bench/streams.sh [--smoke]" >&2; exit 2 ;;
esac

log() { printf '[streams] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

TMP=$(mktemp -d)
SERVER_PID=
cleanup() {
    # `|| true`: a server that already exited must not stop the cleanup.
    [[ -z $SERVER_PID ]] || { kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null; } || true
    jobs -p | xargs -r kill 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

log "building the $PROFILE binaries"
(cd "$ROOT" && cargo build --profile "$PROFILE" --quiet -p beacon -p beacon-loadgen -p beacon-streamgen)
DIR=${CARGO_TARGET_DIR:-$ROOT/target}/$([[ $PROFILE == dev ]] && echo debug || echo "$PROFILE")
BEACON=$DIR/beacon
LOADGEN=$DIR/beacon-loadgen
STREAMGEN=$DIR/beacon-streamgen

PORT=$((20000 + RANDOM % 20000))
RUST_LOG=warn "$BEACON" serve --bind "127.0.0.1:$PORT" --database-url "sqlite://$TMP/streams.db" \
    --stream-interval "$INTERVAL" --stream-max 19000 >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/up" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/server.log" >&2; die "server did not start"; }
    sleep 0.1
done

rss_kib() { awk '/VmRSS/ { print $2 }' "/proc/$SERVER_PID/status"; }
field() { sed -E "s/.*\"$2\":\"?([^,\"}]*).*/\1/" <<<"$1"; }
gauge() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
wait_streams_closed() {
    for _ in $(seq 1 100); do
        [[ $(gauge beacon_open_streams) == 0 ]] && return
        sleep 0.2
    done
    die "open streams did not return to 0 (now $(gauge beacon_open_streams))"
}

# A little traffic first so snapshots carry realistic content.
"$LOADGEN" --url "http://127.0.0.1:$PORT/track" --connections 4 --duration 1 --run-id warm >/dev/null

ROWS=()
for n in "${SIZES[@]}"; do
    wait_streams_closed
    before=$(rss_kib)
    out_file="$TMP/streamgen-$n.out"
    "$STREAMGEN" --addr "127.0.0.1:$PORT" --clients "$n" --ticks 5 --hold 2 >"$out_file" &
    sg=$!
    for _ in $(seq 1 1200); do grep -q holding "$out_file" 2>/dev/null && break; sleep 0.1; done
    grep -q holding "$out_file" || die "streamgen with $n clients did not finish measuring"
    open=$(gauge beacon_open_streams)
    after=$(rss_kib)
    wait "$sg"
    result=$(head -1 "$out_file")
    log "$n streams: $result; server RSS ${before} -> ${after} KiB"
    [[ $(field "$result" all_clients_got_every_tick) == true ]] || die "some clients missed ticks"
    per=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.1f", (a - b) / n }')
    ROWS+=("$(printf '%-8s %-10s %-14s %-16s %-16s %-12s' "$n" "$open" "$per" \
        "$(field "$result" spread_ms_p50)" "$(field "$result" spread_ms_max)" "$(field "$result" connect_secs)")")
done
wait_streams_closed

log "throughput without streams"
none=$("$LOADGEN" --url "http://127.0.0.1:$PORT/track" --connections 64 --duration "$DURATION" --run-id none)
log "throughput with $HOLD_CLIENTS streams open"
"$STREAMGEN" --addr "127.0.0.1:$PORT" --clients "$HOLD_CLIENTS" --ticks 1 --hold $((DURATION + 5)) >"$TMP/hold.out" &
sg=$!
for _ in $(seq 1 600); do grep -q holding "$TMP/hold.out" 2>/dev/null && break; sleep 0.1; done
grep -q holding "$TMP/hold.out" || die "streamgen did not connect"
with=$("$LOADGEN" --url "http://127.0.0.1:$PORT/track" --connections 64 --duration "$DURATION" --run-id with)
kill "$sg" 2>/dev/null || true
wait "$sg" 2>/dev/null || true

echo
echo "== /stream: memory and fan-out (tick every $INTERVAL; SQLite; $(nproc) cores; git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'))"
printf '%-8s %-10s %-14s %-16s %-16s %-12s\n' streams open_gauge KiB/stream tick_spread_p50 tick_spread_max connect_s
printf '%s\n' "${ROWS[@]}"
echo
echo "== /track with streams open (64 connections, ${DURATION} s each)"
printf '%-22s %-12s %-10s %-10s\n' case events/s p50_ms p99_ms
printf '%-22s %-12s %-10s %-10s\n' "no streams" "$(field "$none" events_per_s)" "$(field "$none" p50_ms)" "$(field "$none" p99_ms)"
printf '%-22s %-12s %-10s %-10s\n' "$HOLD_CLIENTS streams" "$(field "$with" events_per_s)" "$(field "$with" p50_ms)" "$(field "$with" p99_ms)"
awk -v a="$(field "$with" events_per_s)" -v b="$(field "$none" events_per_s)" \
    'BEGIN { printf "ratio with/without: %.2f\n", a / b }'
