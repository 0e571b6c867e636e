"""Fixtures for the browser tests: Beacon servers started from the built
binary (each on a free port with a fresh SQLite database, stopped by PID),
a small static site for the tracker's test pages, and Debian's Chromium
driven by playwright (never a downloaded browser)."""

import http.server
import json
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
BEACON_BIN = os.environ.get("BEACON_BIN", str(ROOT / "target" / "debug" / "beacon"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("BEACON_SCREENSHOTS", ROOT / "target" / "browser-screenshots"))
# Headless Chromium says "HeadlessChrome", which bot filters drop: the tests
# present an ordinary desktop browser.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
TIMEZONE = "Europe/Berlin"
# Waits, not timings: CI machines are shared and slow, and what the tests
# check is that a thing appears, not how fast.
expect.set_options(timeout=15_000)
# The user agent is set on the browser too, not only on each context:
# playwright's per-context override does not reach a page that is
# unloading, whose last beacon (the tracker's session_end) would otherwise
# say "HeadlessChrome" and be dropped as a bot.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    f"--user-agent={USER_AGENT}",
]


class Beacon:
    """One `beacon` process on 127.0.0.1 with its own database."""

    def __init__(self, token=None, stream_interval="1s", port=0, prepare=None):
        """`prepare(path)`, when given, is called with the SQLite file of a
        freshly migrated database before the server starts on it."""
        self.token = token
        self.dir = tempfile.TemporaryDirectory(prefix="beacon-browser-")
        self.log_path = Path(self.dir.name) / "beacon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("BEACON_") and k != "DATABASE_URL"}
        env["RUST_LOG"] = "info"
        database_url = f"sqlite://{self.dir.name}/beacon.db"
        if prepare:
            subprocess.run([BEACON_BIN, "migrate", "--database-url", database_url], env=env, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            prepare(Path(self.dir.name) / "beacon.db")
        args = [
            BEACON_BIN, "--bind", f"127.0.0.1:{port}",
            "--database-url", database_url,
            "--stream-interval", stream_interval,
        ]
        if token:
            args += ["--read-token", token]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while True:
            text = self.log_path.read_text()
            match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", text)
            if match:
                self.port = int(match.group(1))
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"beacon did not start:\n{text}")
            time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path="/"):
        return self.base + path

    def request(self, path, params=None, body=None, token=True):
        url = self.url(path)
        if params:
            url += "?" + urllib.parse.urlencode(params)
        headers = {"User-Agent": USER_AGENT}
        if token and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as response:
            raw = response.read()
            kind = response.headers.get("Content-Type", "")
        return json.loads(raw) if kind.startswith("application/json") else raw.decode()

    def track(self, events):
        return self.request("/track", body={"batch": events})

    def events(self, **params):
        """Every event matching `params`, oldest first (all pages)."""
        out, cursor = [], None
        while True:
            query = dict(params, limit=1000)
            if cursor:
                query["cursor"] = cursor
            page = self.request("/events", query)
            out += page["events"]
            cursor = page.get("next_cursor")
            if not cursor:
                return out

    def wait_for(self, condition, what, timeout=20, page=None):
        """Polls until `condition()` is truthy; the event's arrival time is
        not what the tests check, only that it arrives. With a `page`, waits
        through playwright so that its route handlers keep running."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            if page is not None:
                page.wait_for_timeout(100)
            else:
                time.sleep(0.1)

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
        self.dir.cleanup()


class Site:
    """A static site on another port: pages registered by the tests."""

    def __init__(self):
        self.pages = {}
        pages = self.pages

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = urllib.parse.urlsplit(self.path).path
                body = pages.get(path)
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"Chromium is missing at {CHROMIUM}: tests/browser/run.sh installs Debian's chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def site():
    site = Site()
    yield site
    site.stop()


class Console:
    """Console errors and uncaught exceptions of the pages of a test."""

    def __init__(self):
        self.errors = []
        # Pages other than the dashboard (the test pages, Beacon's JSON
        # answers after an outbound click) have no icon. A Beacon without a
        # top list the dashboard knows answers 404 for it, once: the
        # dashboard hides that table (test_dashboard.py checks which case
        # it is).
        self.allowed = [
            re.compile(r"404 \(Not Found\) @ \{'url': 'http://[^']*/favicon\.ico'"),
            re.compile(r"404 \(Not Found\) @ \{'url': 'http://[^']*/top-(countries|browsers|os|devices)\?"),
        ]

    def allow(self, pattern):
        self.allowed.append(re.compile(pattern))

    def watch(self, page):
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"{m.text} @ {m.location}"))
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def unexpected(self):
        return [e for e in self.errors if not any(p.search(e) for p in self.allowed)]


@pytest.fixture
def console():
    return Console()


@pytest.fixture
def new_page(browser, console):
    """Opens pages in fresh contexts with an ordinary user agent, the test
    time zone and the given viewport; fails the test on any console error
    it did not expect."""
    contexts = []

    def open_page(width=1280, height=900, color_scheme="light"):
        context = browser.new_context(
            user_agent=USER_AGENT, timezone_id=TIMEZONE, locale="en-GB",
            viewport={"width": width, "height": height}, color_scheme=color_scheme,
        )
        contexts.append(context)
        page = context.new_page()
        console.watch(page)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert console.unexpected() == [], "console errors"


_outcomes = {"passed": 0, "failed": 0, "skipped": 0}


def pytest_runtest_logreport(report):
    if report.when == "call" or report.outcome != "passed":
        if hasattr(report, "wasxfail"):
            # No test is expected to fail: a marked one counts as failed.
            _outcomes["failed"] += 1
        elif report.outcome == "passed" and report.when == "call":
            _outcomes["passed"] += 1
        elif report.outcome == "failed":
            _outcomes["failed"] += 1
        elif report.outcome == "skipped":
            _outcomes["skipped"] += 1


def pytest_sessionfinish(session, exitstatus):
    # A skipped browser test is a failed one: CI must not pass without a browser.
    if _outcomes["skipped"] or _outcomes["failed"] or (_outcomes["passed"] == 0 and exitstatus == 0):
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(
        f"browser tests: {_outcomes['passed']} passed, {_outcomes['failed']} failed"
        + (f", {_outcomes['skipped']} skipped (counted as failure)" if _outcomes["skipped"] else "")
    )
