"""Anomalies on the dashboard: stored anomalies show as bands on the
history chart (kind and figures in their tooltip), in the list under it
with the detector's mode, and the open ones on the live panel.

The anomalies are written into a freshly migrated database before the
server starts, with the detector's lease held by "another instance" for a
day: this server shows what is stored and detects nothing itself."""

import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from conftest import SCREENSHOTS, TIMEZONE, USER_AGENT, Beacon

TOKEN = "anomalies-test-token"


def micros(t):
    return int(t.timestamp() * 1_000_000)


def seed(now):
    spike_start = now - timedelta(days=2, hours=3)
    drop_start = now - timedelta(hours=1)

    def prepare(path):
        db = sqlite3.connect(path)
        db.execute("INSERT INTO leases (name, holder, expires_us) VALUES ('anomaly-detector', 'another-instance', ?)",
                   (micros(now + timedelta(days=1)),))
        rows = [
            ("page:https://site.example/pricing", "spike", spike_start - timedelta(minutes=10), spike_start,
             spike_start + timedelta(hours=1), 320.0, 80.4, 12.3),
            ("site", "drop", drop_start - timedelta(minutes=10), drop_start, None, 40.0, 130.2, 5.1),
        ]
        for series, kind, onset, start, end, observed, expected, severity in rows:
            db.execute(
                "INSERT INTO anomalies (series, kind, onset_us, start_us, end_us, observed, expected, severity, "
                "opened_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (series, kind, micros(onset), micros(start), micros(end) if end else None, observed, expected,
                 severity, micros(now), micros(now)))
        db.execute("INSERT INTO anomaly_detector_state (name, mode, history_us, series, updated_us) "
                   "VALUES ('anomaly-detector', 'cautious', ?, 7, ?)", (3 * 86_400_000_000, micros(now)))
        db.commit()
        db.close()

    return prepare


@pytest.fixture(scope="module")
def beacon():
    now = datetime.now(timezone.utc)
    server = Beacon(token=TOKEN, prepare=seed(now))
    views = [{"type": "visit", "sessionId": f"s{i}", "url": "https://site.example/pricing",
              "timestamp": (now - timedelta(days=i % 5, minutes=i)).isoformat().replace("+00:00", "Z"),
              "userAgent": USER_AGENT, "id": str(uuid.uuid4())} for i in range(20)]
    assert server.track(views)["accepted"] == len(views)
    yield server
    server.stop()


def signed_in(new_page, beacon):
    page = new_page()
    page.goto(beacon.url("/"))
    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#history")).to_have_attribute("aria-busy", "false")
    return page


def test_stored_anomalies_show_as_bands_on_the_chart_and_in_a_list(new_page, beacon):
    page = signed_in(new_page, beacon)
    # The last 7 days, the default range, hold both anomalies.
    bands = page.locator("#chart .anomaly-band")
    expect(bands).to_have_count(2)
    spike = page.locator('#chart .anomaly-band[data-kind="spike"]')
    expect(spike).to_have_attribute("data-series", "page:https://site.example/pricing")
    expect(spike).to_have_attribute("data-open", "false")
    title = spike.get_attribute("title")
    assert title.startswith("Spike on page https://site.example/pricing"), title
    assert "320 page views where 80 were expected (severity 12.3)" in title, title
    drop = page.locator('#chart .anomaly-band[data-kind="drop"]')
    expect(drop).to_have_attribute("data-open", "true")
    assert "still open" in drop.get_attribute("title")
    for band in (spike, drop):
        box = band.bounding_box()
        assert box and box["width"] >= 4 and box["height"] > 100, box
    spike.hover()  # the tooltip is the band's title; hovering must not throw

    items = page.locator("#anomaly-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_attribute("data-kind", "spike")
    expect(items.nth(0)).to_contain_text("on page https://site.example/pricing")
    expect(items.nth(1)).to_contain_text("Drop on the whole site")
    expect(items.nth(1)).to_contain_text("40 page views where 130 were expected")
    expect(page.locator("#detector-note")).to_have_attribute("data-mode", "cautious")
    expect(page.locator("#detector-note")).to_contain_text("3 days of history")

    # Two days of last week hold neither.
    today = datetime.now(ZoneInfo(TIMEZONE)).date()
    page.select_option("#range", "custom")
    page.fill("#from", (today - timedelta(days=6)).isoformat())
    page.fill("#to", (today - timedelta(days=5)).isoformat())
    page.click("#custom button[type=submit]")
    expect(page.locator("#history")).to_have_attribute("data-interval", "hourly")
    expect(page.locator("#history")).to_have_attribute("aria-busy", "false")
    expect(page.locator("#anomaly-list li")).to_have_text(["None in this range"])
    expect(bands).to_have_count(0)


def test_the_open_anomaly_shows_on_the_live_panel(new_page, beacon):
    page = signed_in(new_page, beacon)
    box = page.locator("#live-anomalies")
    # The server reads the open anomalies at start; each frame carries them.
    expect(box).to_be_visible()
    expect(page.locator("#open-anomalies li")).to_have_count(1)
    expect(page.locator("#open-anomalies li")).to_have_attribute("data-kind", "drop")
    expect(page.locator("#open-anomalies li")).to_contain_text("on the whole site")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard-anomalies.png"), full_page=True)
