#!/usr/bin/env python3
"""Latency of each history endpoint over one keep-alive connection.

usage: measure.py BASE_URL TOKEN NOW_US REQUESTS SESSIONS

Every request asks for a 30-day range ending near the end of the data,
shifted by a few quarters each time (so no two are identical), with the
read token in the Authorization header. Pagination follows next_cursor
deep into the range. Prints one line per endpoint: p50, p99, max (ms).
"""
import http.client
import json
import random
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

base, token, now_us, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sessions = int(sys.argv[5])
url = urllib.parse.urlparse(base)
conn = http.client.HTTPConnection(url.hostname, url.port)
headers = {"Authorization": f"Bearer {token}"}
now = datetime.fromtimestamp(now_us / 1e6, tz=timezone.utc)
rng = random.Random(1)


def get(path):
    start = time.perf_counter()
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    elapsed = (time.perf_counter() - start) * 1000
    if r.status != 200:
        raise SystemExit(f"GET {path}: {r.status} {body[:300]!r}")
    return elapsed, body


def iso(t):
    return urllib.parse.quote(t.strftime("%Y-%m-%dT%H:%M:%SZ"))


def window():
    to = now - timedelta(minutes=15 * rng.randrange(0, 400))
    return f"from={iso(to - timedelta(days=30))}&to={iso(to)}"


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def report(name, times, note=""):
    print(f"{name:<44} p50 {percentile(times, 50):7.1f} ms  p99 {percentile(times, 99):7.1f} ms"
          f"  max {max(times):7.1f} ms  (n={len(times)}){note}")


def run(name, make_path):
    for _ in range(5):  # warm-up
        get(make_path())
    report(name, [get(make_path())[0] for _ in range(n)])


def run_if_served(name, make_path):
    """run(), or a note when the server has no such endpoint (an older build)."""
    conn.request("GET", make_path(), headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status == 404:
        print(f"{name:<44} not served by this build")
        return
    run(name, make_path)


def paged(name, first_path):
    times, path, pages = [], first_path, 0
    sep = "&" if "?" in first_path else "?"
    while len(times) < n:
        t, body = get(path)
        times.append(t)
        cursor = json.loads(body)["next_cursor"]
        path = f"{first_path}{sep}cursor={cursor}" if cursor else first_path
    report(name, times)


run("/stats/hourly 30 d, Europe/Berlin", lambda: f"/stats/hourly?tz=Europe/Berlin&{window()}")
run("/stats/hourly 30 d, Asia/Kolkata", lambda: f"/stats/hourly?tz=Asia/Kolkata&{window()}")
run("/stats/daily 30 d, America/New_York", lambda: f"/stats/daily?tz=America/New_York&{window()}")
run("/top-pages 30 d, limit 10", lambda: f"/top-pages?{window()}")
run("/top-referrers 30 d, limit 10", lambda: f"/top-referrers?{window()}")
run("/top-clicks 30 d, limit 10", lambda: f"/top-clicks?{window()}")
run_if_served("/top-countries 30 d, limit 10", lambda: f"/top-countries?{window()}")
run_if_served("/top-regions 30 d, limit 10", lambda: f"/top-regions?{window()}")
run_if_served("/top-cities 30 d, limit 10", lambda: f"/top-cities?{window()}")
run_if_served("/top-browsers 30 d, limit 10", lambda: f"/top-browsers?{window()}")
run_if_served("/top-os 30 d, limit 10", lambda: f"/top-os?{window()}")
run_if_served("/top-devices 30 d, limit 10", lambda: f"/top-devices?{window()}")
start = iso(now - timedelta(days=30))
paged("/events pages of 100 (cursor chain)", f"/events?limit=100&from={start}")
paged("/events?type=click pages of 100", f"/events?limit=100&type=click&from={start}")
paged("/sessions pages of 50 (cursor chain)", f"/sessions?limit=50&from={start}")
paged("/sessions?country=JP pages of 50", f"/sessions?limit=50&country=JP&from={start}")
run("/sessions/{token} (10 events)", lambda: f"/sessions/bench-{rng.randrange(0, sessions)}")

# Export throughput: one day as NDJSON and CSV.
day = f"from={iso(now - timedelta(days=2))}&to={iso(now - timedelta(days=1))}"
for fmt in ("ndjson", "csv"):
    t, body = get(f"/events?format={fmt}&{day}")
    lines = body.count(b"\n")
    print(f"/events?format={fmt} one day: {lines} lines, {len(body) / 1e6:.1f} MB in {t:.0f} ms"
          f" ({lines / t * 1000:,.0f} lines/s)")
