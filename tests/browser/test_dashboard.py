"""The built-in dashboard (`GET /`) in Chromium, on a known data set: the
figures it shows are the API's for the same range and time zone, the live
panel follows `/track`, sign-in exchanges the token for a cookie, and it
works at desktop and phone width."""

import csv
import io
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from conftest import SCREENSHOTS, TIMEZONE, USER_AGENT, Beacon

TOKEN = "dashboard-test-token"


def iso_start_of(day):
    """The UTC instant the dashboard sends for the start of a local day."""
    start = datetime.combine(day, datetime.min.time(), ZoneInfo(TIMEZONE))
    return iso(start)


def iso(t):
    return t.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def known_events(now):
    """Four sessions: two some days ago, two in the last minutes."""
    def ev(sid, minutes_ago, type_, url, data=None, referrer=""):
        return {"type": type_, "sessionId": sid, "url": f"https://site.example{url}", "data": data or {},
                "referrer": referrer, "timestamp": iso(now - timedelta(minutes=minutes_ago)),
                "userAgent": USER_AGENT, "id": str(uuid.uuid4())}
    g, hn = "https://www.google.com/", "https://news.ycombinator.com/"
    d3, d2 = 3 * 24 * 60, 2 * 24 * 60
    return [
        ev("s1", d3, "visit", "/", {"page_title": "Home"}, g),
        ev("s1", d3 - 1, "visit", "/pricing", {"page_title": "Pricing"}, g),
        ev("s1", d3 - 2, "click", "/pricing", {"label": "Buy"}, g),
        ev("s2", d2, "visit", "/", {"page_title": "Home"}, hn),
        ev("s2", d2 - 1, "click", "/", {"label": "Buy"}, hn),
        ev("s2", d2 - 2, "click", "/", {"label": "Docs"}, hn),
        ev("s3", 5, "visit", "/", {"page_title": "Home"}),
        ev("s3", 4, "visit", "/blog", {"page_title": "Blog"}),
        ev("s3", 3, "scroll", "/blog", {"depth": 80}),
        ev("s4", 3, "visit", "/blog", {"page_title": "Blog"}, g),
        ev("s4", 2, "click", "/blog", {"label": "Subscribe"}, g),
    ]


@pytest.fixture(scope="module")
def beacon():
    server = Beacon(token=TOKEN)
    events = known_events(datetime.now(timezone.utc))
    assert server.track(events)["accepted"] == len(events)
    # The history is read from rollups, folded in about a second later.
    server.wait_for(
        lambda: server.request("/stats/daily", {"tz": TIMEZONE})["totals"]["events"] == len(events)
        and len(server.request("/sessions")["sessions"]) == 4,
        "the rollups",
    )
    yield server
    server.stop()


def sign_in(page, beacon, token=TOKEN):
    page.goto(beacon.url("/"))
    expect(page.locator("#signin")).to_be_visible()
    page.fill("#token", token)
    page.press("#token", "Enter")  # the keyboard alone signs in


# The history's lists by place, browser, system and device, and their item.
OPTIONAL_TOPS = {"top-countries": "country", "top-browsers": "browser", "top-os": "os", "top-devices": "device"}


def rows_of(page, table):
    """`[item, number, ...]` of a table's rows: the item as the data
    (`data-item`: a country's code, not its flag and name)."""
    return page.eval_on_selector_all(
        f"{table} tbody tr", "rows => rows.filter(r => r.querySelector('td.num')).map(r => "
        "[r.querySelector('td.item').dataset.item, ...[...r.querySelectorAll('td.num')].map(c => Number(c.dataset.value))])")


def history_loaded(page):
    expect(page.locator("#history")).to_have_attribute("aria-busy", "false")
    return page.evaluate("({...document.getElementById('history').dataset})")


def values(page, selector):
    return page.eval_on_selector_all(selector, "els => els.map(e => Number(e.dataset.value))")


def check_history_against_api(page, beacon):
    """Every figure of the history panel equals the API's for its range."""
    shown = history_loaded(page)
    assert shown["tz"] == TIMEZONE
    params = {"from": shown["from"], "to": shown["to"], "tz": shown["tz"]}
    stats = beacon.request(f"/stats/{shown['interval']}", params)
    totals = stats["totals"]
    for key in ["page_views", "visitors", "events", "sessions", "clicks"]:
        expect(page.locator(f"#total-{key}")).to_have_attribute("data-value", str(totals[key]))
    rows = page.locator("#buckets tbody tr")
    expect(rows).to_have_count(len(stats["buckets"]))
    assert values(page, "#buckets tbody td.num") == [
        b[k] for b in stats["buckets"] for k in ["page_views", "visitors", "events"]
    ]
    assert page.get_attribute("#chart", "data-buckets") == str(len(stats["buckets"]))
    assert page.locator("#chart canvas").count() == 1, "the chart is drawn"

    for path, table in [("/top-pages", "top-pages"), ("/top-referrers", "top-referrers"), ("/top-clicks", "top-clicks")]:
        items = beacon.request(path, dict(params, limit=10))["items"]
        key = {"top-pages": "url", "top-referrers": "referrer", "top-clicks": "label"}[table]
        shown_items = page.eval_on_selector_all(
            f"#{table} tbody tr", "rows => rows.filter(r => r.querySelector('td.num')).map(r => "
            "[r.querySelector('td.item').textContent, ...[...r.querySelectorAll('td.num')].map(c => Number(c.dataset.value))])")
        assert shown_items == [[i[key], i["count"], i["visitors"]] for i in items], table

    # The lists by place, browser, system and device: shown as the API has
    # them, or, on a Beacon without them (404), not shown at all. Either way
    # something is checked; which one depends on the server under test.
    for table, key in OPTIONAL_TOPS.items():
        try:
            items = beacon.request(f"/{table}", dict(params, limit=10))["items"]
        except urllib.error.HTTPError as error:
            assert error.code == 404, table
            expect(page.locator(f"#{table}")).to_have_count(0)
            continue
        assert rows_of(page, f"#{table}") == [[i[key], i["count"], i["visitors"]] for i in items], table

    sessions = beacon.request("/sessions", {"from": shown["from"], "to": shown["to"], "limit": 25})["sessions"]
    assert page.eval_on_selector_all("#sessions tbody tr[data-token]", "rs => rs.map(r => r.dataset.token)") == [
        s["token"] for s in sessions
    ]
    assert values(page, "#sessions tbody td.num[data-value]") == [s["events"] for s in sessions]

    events = beacon.events(**{"from": shown["from"], "to": shown["to"]})
    assert totals["events"] == len(events)
    exported = page.request.get(page.eval_on_selector("#export-csv", "a => a.href"))
    assert exported.ok and exported.headers["content-type"].startswith("text/csv")
    records = list(csv.reader(io.StringIO(exported.text())))
    assert len(records) - 1 == len(events), "the CSV export holds the range's events"
    ndjson = page.request.get(page.eval_on_selector("#export-ndjson", "a => a.href"))
    assert ndjson.ok and len(ndjson.text().splitlines()) == len(events)
    return stats


def test_the_dashboard_shows_the_apis_figures_and_a_range_change_updates_them(new_page, beacon):
    page = new_page()
    sign_in(page, beacon)
    expect(page.locator("#dashboard")).to_be_visible()
    week = check_history_against_api(page, beacon)
    # The known data set, and whatever the live test has posted meanwhile.
    assert week["interval"] == "day" and week["totals"]["events"] >= 11

    page.select_option("#range", "today")
    expect(page.locator("#history")).to_have_attribute("data-interval", "hourly")
    today = check_history_against_api(page, beacon)
    assert today["interval"] == "hour"
    assert today["totals"]["events"] < week["totals"]["events"], "the range changed what is counted"
    assert page.get_attribute("#chart", "data-buckets") == str(len(today["buckets"]))

    page.select_option("#range", "30d")
    expect(page.locator("#history")).to_have_attribute("data-interval", "daily")
    check_history_against_api(page, beacon)

    page.select_option("#range", "yesterday")
    expect(page.locator("#history")).to_have_attribute("data-interval", "hourly")
    check_history_against_api(page, beacon)

    # A custom range of two days of the browser's calendar, ending the day
    # before yesterday: the two older sessions, and nothing of today.
    local_today = datetime.now(ZoneInfo(TIMEZONE)).date()
    page.select_option("#range", "custom")
    page.fill("#from", (local_today - timedelta(days=3)).isoformat())
    page.fill("#to", (local_today - timedelta(days=2)).isoformat())
    page.click("#custom button[type=submit]")
    expect(page.locator("#history")).to_have_attribute(
        "data-from", iso_start_of(local_today - timedelta(days=3))
    )
    custom = check_history_against_api(page, beacon)
    assert custom["interval"] == "hour"
    assert custom["totals"]["events"] <= 6


def test_a_sessions_timeline_lists_its_events(new_page, beacon):
    page = new_page()
    sign_in(page, beacon)
    history_loaded(page)
    first = page.locator("#sessions tbody tr[data-token]").first
    token = first.get_attribute("data-token")
    first.locator("button").click()
    expect(page.locator("#timeline")).to_have_attribute("data-token", token)
    events = beacon.request(f"/sessions/{token}")["events"]
    types = page.eval_on_selector_all("#timeline-events li", "lis => lis.map(li => li.dataset.type)")
    assert types == [e["type"] for e in events]


def test_a_tracked_event_shows_on_the_live_panel(new_page, beacon):
    page = new_page()
    sign_in(page, beacon)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    url = f"https://site.example/live/{uuid.uuid4()}"
    beacon.track([{"type": "visit", "sessionId": f"live-{uuid.uuid4()}", "url": url, "data": {"page_title": "Live"}}])
    # One tick is a second here (--stream-interval 1s): the default wait of
    # a few seconds is a generous bound, and not what is tested.
    expect(page.locator("#feed")).to_contain_text(url)
    expect(page.locator("#live-top_pages")).to_contain_text(url)
    assert int(page.get_attribute("#live-active", "data-value")) >= 1
    assert int(page.get_attribute("#live-visits", "data-value")) >= 1


def test_a_wrong_token_is_refused_and_sign_out_ends_the_cookie(new_page, beacon, console):
    page = new_page()
    console.allow(r"status of 401 \(Unauthorized\) @ \{'url': 'http://127\.0\.0\.1:\d+/auth/signin'")
    sign_in(page, beacon, token="wrong")
    expect(page.locator("#signin-error")).to_have_text("Wrong token.")
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.context.cookies() == []

    page.fill("#token", TOKEN)
    page.click("#signin button[type=submit]")
    expect(page.locator("#dashboard")).to_be_visible()
    [cookie] = page.context.cookies()
    assert cookie["name"] == "beacon_session" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert not cookie["secure"], "plain http: not Secure"
    assert TOKEN not in cookie["value"]
    assert page.evaluate("document.cookie") == "", "invisible to scripts"
    assert page.request.get(beacon.url("/stats/daily")).status == 200

    page.click("#signout")
    expect(page.locator("#signin")).to_be_visible()
    assert page.context.cookies() == []
    assert page.request.get(beacon.url("/stats/daily")).status == 401


def test_without_a_read_token_the_dashboard_is_open_and_says_so(new_page):
    server = Beacon(token=None)
    try:
        page = new_page()
        page.goto(server.url("/"))
        expect(page.locator("#dashboard")).to_be_visible()
        expect(page.locator("#access")).to_contain_text("no read token is set")
        expect(page.locator("#signout")).to_be_hidden()
        history_loaded(page)
    finally:
        server.stop()


@pytest.mark.parametrize(
    "width,height,scheme", [(1920, 1080, "light"), (360, 800, "light"), (1920, 1080, "dark"), (360, 800, "dark")]
)
def test_the_dashboard_fits_desktop_and_phone_widths_in_both_colour_schemes(new_page, beacon, width, height, scheme):
    page = new_page(width=width, height=height, color_scheme=scheme)
    sign_in(page, beacon)
    history_loaded(page)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.locator("#feed li").first).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "no sideways scrolling"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{width}-{scheme}.png"), full_page=True)
    # The first screen (the README's picture is the one of
    # test_the_live_panel_shows_countries_devices_and_the_bots_filtered).
    page.screenshot(path=str(SCREENSHOTS / f"dashboard-{width}-{scheme}-first-screen.png"))


def test_a_first_visit_transfers_under_150_kb_and_the_tracker_under_2_kb(new_page, beacon):
    page = new_page()
    sign_in(page, beacon)
    history_loaded(page)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    entries = page.evaluate("""() => [...performance.getEntriesByType('navigation'),
        ...performance.getEntriesByType('resource')].map(e =>
        ({name: e.name, transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize}))""")
    assert sum(e["transfer"] for e in entries) < 150_000, entries
    static = [e for e in entries if "/dashboard/" in e["name"] or e["name"] == beacon.url("/")]
    assert len(static) == 6, static
    assert all(e["encoded"] < e["decoded"] for e in static), "every static file travels gzipped"

    request = urllib.request.Request(beacon.url("/beacon.js"), headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert len(response.read()) < 2048


def test_the_live_panel_shows_a_lost_connection_and_reconnects_by_itself(new_page, console):
    console.allow(r"ERR_CONNECTION_REFUSED|ERR_INCOMPLETE_CHUNKED_ENCODING|status of 503")
    server = Beacon(token=None)
    port = server.port
    try:
        page = new_page()
        page.goto(server.url("/"))
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        server.stop()
        expect(page.locator("#live-status")).to_have_attribute("data-state", "disconnected")
        server = Beacon(token=None, port=port)
        url = f"https://site.example/back/{uuid.uuid4()}"
        server.track([{"type": "visit", "sessionId": "back-1", "url": url}])
        # EventSource retries after the stream's `retry:` (5 s): waited for,
        # not timed.
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live", timeout=30_000)
        expect(page.locator("#feed")).to_contain_text(url)
    finally:
        server.stop()


def test_the_keyboard_alone_reaches_and_opens_a_session(new_page, beacon):
    page = new_page()
    sign_in(page, beacon)
    history_loaded(page)
    target = page.locator("#sessions tbody button").first
    for _ in range(80):
        page.keyboard.press("Tab")
        if target.evaluate("b => b === document.activeElement"):
            break
    else:
        raise AssertionError("Tab never reached the sessions list")
    page.keyboard.press("Enter")
    expect(page.locator("#timeline")).to_be_visible()
    assert page.evaluate("document.activeElement.id") == "timeline-title", "focus moves to the timeline"


# People as the pixel reports them: (session, user agent, the country the
# page's script guessed, page). tab-1 and tab-2 are one browser's two tabs:
# one visitor (same address, same user agent).
LINUX_CHROME = USER_AGENT
WINDOWS_EDGE = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Version/17.5 Mobile/15E148 Safari/604.1")
IPAD = ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Mobile Safari/537.36")
PEOPLE = [
    ("tab-1", LINUX_CHROME, "France", "/pricing"),
    ("tab-2", LINUX_CHROME, "France", "/pricing"),
    ("phone", IPHONE, "Germany", "/"),
    ("laptop", WINDOWS_EDGE, "United States", "/"),
    ("ipad", IPAD, "United Kingdom", "/blog"),
    ("commute", ANDROID, "Japan", "/"),
]


def test_the_live_panel_shows_countries_devices_and_the_bots_filtered(new_page):
    server = Beacon(token=None)
    try:
        page = new_page(width=1920, height=1080)
        page.goto(server.url("/"))
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        # Nothing dropped yet: the count says so rather than hiding.
        expect(page.locator("#live-bots")).to_be_visible()
        expect(page.locator("#live-bots")).to_have_text("0 bot hits filtered in the last minute")

        events = [{"type": "visit", "sessionId": session, "url": f"https://site.example{path}",
                   "referrer": "https://www.google.com/", "userAgent": agent, "data": {"country": country}}
                  for session, agent, country, path in PEOPLE]
        events.append({"type": "click", "sessionId": "tab-1", "url": "https://site.example/pricing",
                       "userAgent": LINUX_CHROME, "data": {"label": "Buy"}})
        # A crawler is answered as anyone, dropped, and counted.
        events.append({"type": "visit", "sessionId": "crawler", "url": "https://site.example/",
                       "userAgent": "Googlebot/2.1 (+http://www.google.com/bot.html)"})
        assert server.track(events)["accepted"] == len(events)

        expect(page.locator("#live-top_countries tbody td.num")).to_have_count(5)
        # One visitor per country (two tabs are one visitor), the crawler in none.
        assert rows_of(page, "#live-top_countries") == [["DE", 1], ["FR", 1], ["GB", 1], ["JP", 1], ["US", 1]]
        expect(page.locator("#live-top_countries td.item").nth(1)).to_have_text("🇫🇷France (FR)")
        assert rows_of(page, "#live-top_devices") == [["desktop", 2], ["mobile", 2], ["tablet", 1]]
        expect(page.locator("#live-top_devices td.item").first).to_have_text("Desktop")
        assert rows_of(page, "#live-top_pages") == [
            ["https://site.example/", 3], ["https://site.example/blog", 1], ["https://site.example/pricing", 1],
        ]
        assert rows_of(page, "#live-top_clicks") == [["Buy", 1]]
        expect(page.locator("#live-active")).to_have_attribute("data-value", "6")
        expect(page.locator("#feed li")).to_have_count(7)
        expect(page.locator("#live-bots")).to_have_attribute("data-value", "1")
        expect(page.locator("#live-bots")).to_have_text("1 bot hit filtered in the last minute")
        # Today's history, once the rollups hold these visits.
        server.wait_for(lambda: server.request("/stats/daily", {"tz": TIMEZONE})["totals"]["page_views"] == 6,
                        "the rollups")
        page.select_option("#range", "today")
        expect(page.locator("#total-page_views")).to_have_attribute("data-value", "6")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        # The README's picture: cp this file to docs/images/dashboard.png.
        page.screenshot(path=str(SCREENSHOTS / "dashboard-profiles-1920-light-first-screen.png"))
    finally:
        server.stop()
