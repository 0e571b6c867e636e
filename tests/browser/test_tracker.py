"""Beacon's tracker (`/beacon.js`) on a page of another origin, in Chromium:
what it stores for a visit with single-page navigation, clicks, a scroll,
hiding and leaving the page, and how it survives a failed flush."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from conftest import Beacon

SPA = """<!doctype html>
<html><head><meta charset="utf-8"><title>Home</title>
<script src="{beacon}/beacon.js" defer data-heartbeat="0"></script></head>
<body style="min-height: 4000px">
<button id="cta" data-track="Hero CTA">See my work</button>
<div id="pricing" data-track="Pricing card" tabindex="0">Pricing</div>
<button id="plain">Not tracked</button>
<a id="internal" href="/spa/">Home (same site)</a>
<a id="out" href="{outbound}">Elsewhere</a>
<script>
  // A router: it changes the url first and the title just after.
  const titles = {{"/spa/": "Home", "/spa/a": "Page A", "/spa/b": "Page B"}};
  window.go = (path) => {{ history.pushState({{}}, "", path); document.title = titles[path]; }};
  addEventListener("popstate", () => {{ document.title = titles[location.pathname]; }});
</script>
</body></html>"""


@pytest.fixture(scope="module")
def beacon():
    server = Beacon()
    yield server
    server.stop()


def spa_page(site, beacon, name):
    outbound = f"http://localhost:{beacon.port}/up"
    site.pages[f"/{name}/"] = SPA.format(beacon=beacon.base, outbound=outbound).replace("/spa/", f"/{name}/")
    return site.url(f"/{name}/"), outbound


def posted(request):
    """The events of a /track request (an empty list for anything else)."""
    if request.method != "POST" or not request.url.endswith("/track"):
        return []
    return json.loads(request.post_data or "{}").get("batch", [])


def has(type_, **fields):
    def check(request):
        return any(
            e["type"] == type_ and all(e.get(k) == v or e["data"].get(k) == v for k, v in fields.items())
            for e in posted(request)
        )
    return check


def hide(page):
    page.evaluate("""() => {
        Object.defineProperty(document, "visibilityState", {value: "hidden", configurable: true});
        Object.defineProperty(document, "hidden", {value: true, configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""")


def show(page):
    page.evaluate("""() => {
        delete document.visibilityState; delete document.hidden;
        document.dispatchEvent(new Event("visibilitychange"));
    }""")


def test_a_visit_with_spa_navigation_clicks_scroll_hide_and_leave_stores_exactly_its_events(
    new_page, site, beacon
):
    home, outbound = spa_page(site, beacon, "spa")
    page = new_page()

    with page.expect_request(has("visit", page_title="Home")):
        page.goto(home)
    sid = page.evaluate("sessionStorage.getItem('beacon_sid')")
    with page.expect_request(has("visit", page_title="Page A")):
        page.evaluate("go('/spa/a')")
    with page.expect_request(has("visit", page_title="Page B")):
        page.evaluate("go('/spa/b')")
    with page.expect_request(has("visit", page_title="Page A")):
        page.go_back()
    assert page.evaluate("location.pathname") == "/spa/a"

    with page.expect_request(has("click", label="Pricing card")):
        page.click("#cta")
        page.click("#plain")  # not tracked: neither data-track nor outbound
        page.click("#pricing")
    page.evaluate("""() => new Promise((resolve) => {
        addEventListener("scroll", () => resolve(), {once: true});
        scrollTo(0, document.documentElement.scrollHeight);
    })""")
    with page.expect_request(has("scroll", depth=100)):
        hide(page)
    show(page)
    page.click("#out")  # leaves the page for another origin
    page.wait_for_url(outbound)

    expected = [
        ("visit", "/spa/", "Home"),
        ("visit", "/spa/a", "Page A"),
        ("visit", "/spa/b", "Page B"),
        ("visit", "/spa/a", "Page A"),
        ("click", "/spa/a", "Hero CTA"),
        ("click", "/spa/a", "Pricing card"),
        ("scroll", "/spa/a", 100),
        ("click", "/spa/a", outbound),
        ("session_end", "/spa/a", None),
    ]
    stored = beacon.wait_for(
        lambda: (lambda ev: ev if len(ev) >= len(expected) else None)(beacon.events(session=sid)),
        "the visit's events",
    )

    def summary(e):
        path = e["url"].removeprefix(site.url(""))
        data = e["metadata"] or {}
        detail = {"visit": data.get("page_title"), "click": data.get("label"), "scroll": data.get("depth")}
        return (e["type"], path, detail.get(e["type"]))

    assert sorted(map(summary, stored), key=repr) == sorted(expected, key=repr)
    visits = [summary(e) for e in stored if e["type"] == "visit"]
    assert visits == expected[:4], "page views in the order they happened"
    assert len({e["event_id"] for e in stored}) == len(stored)
    outbound_click = next(e for e in stored if e["type"] == "click" and e["metadata"].get("outbound"))
    assert outbound_click["metadata"]["href"] == outbound
    assert all(e["user_agent"].startswith("Mozilla/5.0 (X11") for e in stored)


def test_a_failed_flush_is_retried_with_the_same_ids_and_stored_once(new_page, site, beacon, console):
    home, _ = spa_page(site, beacon, "retry")
    page = new_page()
    console.allow(r"ERR_FAILED|Failed to fetch|ERR_INTERNET_DISCONNECTED")
    batches, aborted = [], []

    def handle(route):
        batch = posted(route.request)
        batches.append(batch)
        if not aborted:
            aborted.append(batch)
            route.abort("internetdisconnected")
        else:
            route.continue_()

    page.route(f"{beacon.base}/track", handle)
    page.goto(home)
    sid = page.evaluate("sessionStorage.getItem('beacon_sid')")
    page.click("#cta")
    stored = beacon.wait_for(
        lambda: (lambda ev: ev if len(ev) >= 2 else None)(beacon.events(session=sid)),
        "the retried events",
        page=page,
    )
    failed_ids = {e["id"] for e in aborted[0]}
    assert failed_ids, "the first flush carried events"
    retried = [b for b in batches[1:] if failed_ids & {e["id"] for e in b}]
    assert retried, "a later flush carried the failed batch again"
    assert failed_ids <= {e["id"] for e in retried[0]}, "with the same ids"
    sent_ids = {e["id"] for b in batches for e in b}
    assert sorted(e["event_id"] for e in stored) == sorted(sent_ids), "each event stored once"
    assert sorted(e["type"] for e in stored) == ["click", "visit"]


def test_the_opt_out_flag_stops_the_tracker(new_page, site, beacon):
    home, _ = spa_page(site, beacon, "optout")
    page = new_page()
    requests = []
    page.on("request", lambda r: posted(r) and requests.append(r))
    page.add_init_script("localStorage.setItem('beacon_opt_out', '1')")
    page.goto(home)
    page.wait_for_load_state("load")
    assert page.evaluate("performance.getEntriesByType('resource').some(e => e.name.endsWith('/beacon.js'))")
    assert page.evaluate("typeof window.beacon") == "undefined", "the tracker did not start"
    assert requests == []


def test_a_prerendered_page_is_counted_only_once_shown(new_page, site, beacon):
    home, _ = spa_page(site, beacon, "prerender")
    page = new_page()
    page.add_init_script(
        "Object.defineProperty(document, 'prerendering', {value: true, configurable: true})"
    )
    page.goto(home)
    page.wait_for_load_state("load")
    assert page.evaluate("typeof window.beacon") == "undefined", "waiting while prerendered"
    with page.expect_request(has("visit", page_title="Home")):
        page.evaluate("""() => {
            delete document.prerendering;
            document.dispatchEvent(new Event("prerenderingchange"));
        }""")
    assert page.evaluate("typeof window.beacon") == "function"


def test_custom_events_and_the_endpoint_override_reach_the_given_server(new_page, site, beacon):
    other = Beacon()
    try:
        site.pages["/endpoint/"] = (
            f'<!doctype html><title>Custom</title><script src="{beacon.base}/beacon.js" '
            f'data-endpoint="{other.base}/track" data-heartbeat="0"></script>'
        )
        page = new_page()
        page.goto(site.url("/endpoint/"))
        sid = page.evaluate("sessionStorage.getItem('beacon_sid')")
        with page.expect_request(has("signup", plan="pro")):
            page.evaluate("beacon('signup', {plan: 'pro'})")
        stored = other.wait_for(
            lambda: (lambda ev: ev if len(ev) >= 2 else None)(other.events(session=sid)),
            "events on the endpoint server",
        )
        assert sorted(e["type"] for e in stored) == ["signup", "visit"]
        assert beacon.events(session=sid) == []
    finally:
        other.stop()


def test_heartbeats_are_sent_only_while_the_page_is_visible(new_page, site, beacon):
    home, _ = spa_page(site, beacon, "heartbeat")
    site.pages["/heartbeat/"] = site.pages["/heartbeat/"].replace('data-heartbeat="0"', 'data-heartbeat="60"')
    page = new_page()
    # The page's clock is playwright's: it runs at the real pace until
    # paused, well short of the heartbeat period, then only as told.
    start = datetime.now(timezone.utc)
    page.clock.install(time=start)
    page.goto(home)
    page.clock.pause_at(start + timedelta(seconds=30))
    sid = page.evaluate("sessionStorage.getItem('beacon_sid')")
    page.clock.run_for(60_000)  # visible: one heartbeat
    hide(page)
    page.clock.run_for(300_000)  # hidden for five periods: none
    show(page)
    page.evaluate("beacon('marker')")
    hide(page)  # flushes the marker at once
    stored = beacon.wait_for(
        lambda: (lambda ev: ev if any(e["type"] == "marker" for e in ev) else None)(beacon.events(session=sid)),
        "the marker event",
    )
    assert [e["type"] for e in stored].count("heartbeat") == 1


def test_a_long_queue_is_sent_in_several_batches_when_the_page_is_hidden(new_page, site, beacon):
    home, _ = spa_page(site, beacon, "many")
    page = new_page()
    bodies = []
    page.on("request", lambda r: posted(r) and bodies.append(len(posted(r))))
    page.goto(home)
    sid = page.evaluate("sessionStorage.getItem('beacon_sid')")
    page.evaluate("for (let i = 0; i < 250; i++) beacon('tick', {i})")
    hide(page)
    stored = beacon.wait_for(
        lambda: (lambda ev: ev if len(ev) >= 251 else None)(beacon.events(session=sid)),
        "every queued event",
    )
    assert sorted(e["metadata"]["i"] for e in stored if e["type"] == "tick") == list(range(250))
    assert len(stored) == 251
    assert max(bodies) <= 100, "no request carries more than 100 events"
