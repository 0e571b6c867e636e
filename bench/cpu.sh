# CPU accounting shared by the benchmark scripts (sourced, not run).

# utime + stime of a process, in clock ticks (0 once it has exited). The
# fields are counted after the command name, which may hold spaces.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# CPU ticks of every PostgreSQL process, as "pid ticks" lines.
pg_ticks() {
    local pid
    for pid in $(pgrep -x postgres || true); do
        echo "$pid $(ticks "$pid")"
    done
}

# Ticks PostgreSQL used between two pg_ticks snapshots (files): processes
# new in the second count from 0; one that exited in between takes its
# ticks with it (a backend's are gone once it has exited).
pg_ticks_diff() {
    awk 'NR == FNR { before[$1] = $2; next }
         { d = $2 - (($1 in before) ? before[$1] : 0); if (d > 0) total += d }
         END { print total + 0 }' "$1" "$2"
}
