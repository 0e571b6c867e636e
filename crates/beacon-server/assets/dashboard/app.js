// Beacon's built-in dashboard. Plain JavaScript, run as written: no build
// step. It reads only Beacon's own read API (docs/api.md) on its own origin,
// by relative URLs, so it also works behind a proxy under a path prefix;
// when a read token is set, the session cookie from /auth/signin carries it.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  const numberFormat = new Intl.NumberFormat();
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const dateTimeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
  const dayTimeFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", second: "2-digit" });
  // A time of today, or a day and time for anything older.
  const when = (iso) => {
    const t = new Date(iso);
    return (t.toDateString() === new Date().toDateString() ? timeFormat : dayTimeFormat).format(t);
  };

  // A country code as its flag (regional indicator letters) and its name
  // in the browser's language; the code itself is the cell's data-item.
  const regionNames = (() => {
    try { return new Intl.DisplayNames(undefined, { type: "region" }); } catch { return null; }
  })();
  function country(code) {
    if (!/^[A-Z]{2}$/.test(code || "")) return code || "(none)";
    const flag = String.fromCodePoint(...[...code].map((c) => 0x1f1e6 + c.charCodeAt(0) - 65));
    let name = code;
    try { name = (regionNames && regionNames.of(code)) || code; } catch { /* not a region: the code */ }
    return [el("span", { class: "flag", "aria-hidden": "true", text: flag }), name === code ? code : `${name} (${code})`];
  }
  const device = (type) => (type ? type.charAt(0).toUpperCase() + type.slice(1) : "(none)");

  // Tables of the live panel and of the history. Later capabilities add an
  // entry here; a live table shows only when the snapshot carries its
  // field, an optional history table only when the server has its list
  // (a server that answers 404 for it is older than the list).
  const LIVE_TABLES = [
    { field: "top_pages", title: "Live top pages", item: "url", itemTitle: "Page", value: "visitors", valueTitle: "Visitors" },
    { field: "top_referrers", title: "Live top referrers", item: "referrer", itemTitle: "Referrer", value: "visitors", valueTitle: "Visitors" },
    { field: "top_countries", title: "Live top countries", item: "country", itemTitle: "Country", value: "visitors", valueTitle: "Visitors", format: country },
    { field: "top_devices", title: "Live devices", item: "device", itemTitle: "Device", value: "visitors", valueTitle: "Visitors", format: device },
    { field: "top_clicks", title: "Top clicks, 24 hours", item: "label", itemTitle: "Label", value: "count", valueTitle: "Clicks" },
  ];
  const TOP_TABLES = [
    { path: "top-pages", id: "top-pages", title: "Top pages", item: "url", itemTitle: "Page" },
    { path: "top-referrers", id: "top-referrers", title: "Top referrers", item: "referrer", itemTitle: "Referrer" },
    { path: "top-clicks", id: "top-clicks", title: "Top clicks", item: "label", itemTitle: "Label" },
    { path: "top-countries", id: "top-countries", title: "Top countries", item: "country", itemTitle: "Country", format: country, optional: true },
    { path: "top-browsers", id: "top-browsers", title: "Top browsers", item: "browser", itemTitle: "Browser", optional: true },
    { path: "top-os", id: "top-os", title: "Top operating systems", item: "os", itemTitle: "System", optional: true },
    { path: "top-devices", id: "top-devices", title: "Top devices", item: "device", itemTitle: "Device", format: device, optional: true },
  ];
  const TOTALS = [
    ["page_views", "Page views"], ["visitors", "Visitors"], ["events", "Events"],
    ["sessions", "Sessions"], ["clicks", "Clicks"],
  ];

  class Unauthorized extends Error {}

  // Reads in flight; signing out aborts them, so that none comes back
  // refused (a 401 in the console) after the cookie is gone.
  let reads = new AbortController();

  async function api(path, params) {
    const url = params ? `${path}?${new URLSearchParams(params)}` : path;
    const response = await fetch(url, {
      credentials: "same-origin", headers: { Accept: "application/json" }, signal: reads.signal,
    });
    if (response.status === 401) throw new Unauthorized("unauthorized");
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = new Error(body.message || `${path} answered ${response.status}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value == null) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) if (child != null) node.append(child);
    return node;
  }

  function setFigure(node, value) {
    node.dataset.value = String(value);
    node.textContent = numberFormat.format(value);
  }

  function table(spec, rows, valueColumns) {
    const head = el("tr", null, el("th", { scope: "col", text: spec.itemTitle }),
      ...valueColumns.map(([, title]) => el("th", { scope: "col", class: "num", text: title })));
    const body = el("tbody");
    if (!rows.length) {
      body.append(el("tr", null, el("td", { colspan: String(valueColumns.length + 1), class: "note", text: "Nothing yet" })));
    }
    for (const row of rows) {
      const item = row[spec.item];
      const shown = spec.format ? spec.format(item) : item || "(none)";
      body.append(el("tr", null, el("td", { class: "item", "data-item": item ?? "" }, ...[shown].flat()),
        ...valueColumns.map(([key]) => el("td", { class: "num", "data-value": String(row[key]), text: numberFormat.format(row[key]) }))));
    }
    return el("div", { class: "scroll" },
      el("table", { id: spec.id, "data-table": spec.field || spec.id }, el("caption", { text: spec.title }), el("thead", null, head), body));
  }

  // ---- access ---------------------------------------------------------

  async function start() {
    let status;
    try {
      status = await api("auth/status");
    } catch (error) {
      $("access").hidden = false;
      $("access").textContent = `Cannot reach Beacon: ${error.message}`;
      return;
    }
    const access = $("access");
    access.hidden = false;
    if (!status.token_required) {
      access.textContent = "Open dashboard: no read token is set, so anyone who can reach this server can read these figures.";
    } else {
      access.textContent = "Signed in with the read token.";
    }
    if (status.token_required && !status.authorized) return showSignIn();
    $("signout").hidden = !status.token_required;
    showDashboard();
  }

  function showSignIn(message) {
    stopLive();
    $("dashboard").hidden = true;
    $("signout").hidden = true;
    $("access").textContent = "This Beacon requires its read token.";
    $("signin").hidden = false;
    $("signin-error").textContent = message || "";
    $("token").focus();
  }

  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = $("token").value;
    let response;
    try {
      response = await fetch("auth/signin", {
        method: "POST", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token }),
      });
    } catch {
      $("signin-error").textContent = "Cannot reach Beacon: try again.";
      return;
    }
    if (!response.ok) {
      $("signin-error").textContent = response.status === 401 ? "Wrong token." : `Sign-in failed (${response.status}).`;
      $("token").select();
      return;
    }
    $("token").value = "";
    $("signin").hidden = true;
    start();
  });

  $("signout").addEventListener("click", async () => {
    stopLive();
    reads.abort();
    reads = new AbortController();
    try {
      await fetch("auth/signout", { method: "POST", credentials: "same-origin" });
    } catch {
      $("history-error").textContent = "Cannot reach Beacon: not signed out, try again.";
      return;
    }
    showSignIn();
  });

  function showDashboard() {
    $("signin").hidden = true;
    $("dashboard").hidden = false;
    startLive();
    loadHistory();
  }

  function handle(error, target) {
    if (error.name === "AbortError") return; // signing out
    if (error instanceof Unauthorized) return showSignIn("Your sign-in has ended: enter the read token again.");
    $(target).textContent = error.message;
  }

  // ---- live -------------------------------------------------------------

  let source = null, reconnectTimer = 0, staleTimer = 0;
  const spark = [];

  // The state is a live region, announced when it changes; the time of
  // the last update is not, or a screen reader would read it every tick.
  function liveStatus(state, text, updated) {
    const node = $("live-status");
    if (node.dataset.state !== state || node.textContent !== text) {
      node.dataset.state = state;
      node.textContent = text;
    }
    if (updated !== undefined) $("live-updated").textContent = updated;
  }

  function stopLive() {
    if (source) source.close();
    source = null;
    clearTimeout(reconnectTimer);
    clearTimeout(staleTimer);
  }

  function startLive() {
    stopLive();
    liveStatus("connecting", "Connecting…");
    source = new EventSource("stream");
    source.onmessage = (event) => {
      let snapshot;
      try { snapshot = JSON.parse(event.data); } catch { return; }
      if (snapshot.message === "stream-open") return liveStatus("live", "Live");
      renderLive(snapshot);
    };
    source.onerror = () => {
      // EventSource retries by itself after a dropped connection; after a
      // refused one (401, 503) it gives up, and we start over ourselves.
      liveStatus("disconnected", "Disconnected: reconnecting…", "");
      if (source && source.readyState === EventSource.CLOSED) {
        clearTimeout(reconnectTimer);
        reconnectTimer = setTimeout(async () => {
          try {
            const status = await api("auth/status");
            if (status.token_required && !status.authorized) return showSignIn("Your sign-in has ended: enter the read token again.");
          } catch { /* still unreachable: try the stream anyway */ }
          startLive();
        }, 5000);
      }
    };
  }

  function renderLive(s) {
    // No snapshot for a while means the data on screen is old.
    clearTimeout(staleTimer);
    staleTimer = setTimeout(() => liveStatus("stale", "Stale: no update for 30 s"), 30000);
    const updated = `updated ${timeFormat.format(new Date(s.timestamp))}`;
    if (s.stale) liveStatus("stale", "Stale: the database is unreachable", updated);
    else liveStatus("live", "Live", updated);
    setFigure($("live-active"), s.active_users);
    setFigure($("live-visits"), s.visits_last_min);
    if (s.events_last_min != null) setFigure($("live-events"), s.events_last_min);

    spark.push(s.events_last_min ?? s.visits_last_min ?? 0);
    if (spark.length > 60) spark.shift();
    const max = Math.max(1, ...spark);
    const step = 300 / Math.max(1, spark.length - 1);
    const points = spark.map((v, i) => `${(i * step).toFixed(1)},${(38 - (v / max) * 36).toFixed(1)}`);
    $("sparkline").querySelector("polyline").setAttribute("points", points.join(" "));
    $("sparkline").querySelector("polygon").setAttribute("points",
      `0,40 ${points.join(" ")} ${((spark.length - 1) * step).toFixed(1)},40`);
    $("sparkline").setAttribute("aria-label", `Events in the last minute, latest ${spark.at(-1)}, highest ${max}`);

    // Dropped before storage (bots, unless the server keeps them): a small,
    // honest count, so that filtered traffic is not a mystery.
    const bots = $("live-bots");
    bots.hidden = typeof s.bots_last_min !== "number";
    if (!bots.hidden) {
      const n = s.bots_last_min;
      const other = Object.entries(s.dropped_last_min || {})
        .filter(([reason]) => reason !== "bot").reduce((sum, [, count]) => sum + count, 0);
      bots.dataset.value = String(n);
      bots.textContent = `${numberFormat.format(n)} bot ${n === 1 ? "hit" : "hits"} filtered in the last minute`
        + (other ? `, ${numberFormat.format(other)} other ${other === 1 ? "event" : "events"} dropped` : "");
    }

    const tables = $("live-tables");
    tables.replaceChildren(...LIVE_TABLES.filter((spec) => Array.isArray(s[spec.field])).map((spec) =>
      table({ ...spec, id: `live-${spec.field}` }, s[spec.field], [[spec.value, spec.valueTitle]])));

    if (window.BeaconAnomalies && window.BeaconAnomalies.live(s.anomalies) && range) loadAnomalies(range);

    $("feed").replaceChildren(...(s.recent_events || []).map((e) => {
      const label = e.metadata && e.metadata.label ? ` “${e.metadata.label}”` : "";
      return el("li", { "data-type": e.type },
        el("time", { datetime: e.timestamp, text: when(e.timestamp) }),
        el("span", { class: "type", text: e.type }), `${e.url || ""}${label}`);
    }));
  }

  // ---- history ----------------------------------------------------------

  const DAY = 24 * 3600 * 1000;
  let chart = null, range = null, sessionsCursor = null;

  function midnight(date) { return new Date(date.getFullYear(), date.getMonth(), date.getDate()); }
  function addDays(date, days) { return new Date(date.getFullYear(), date.getMonth(), date.getDate() + days); }
  function isoDate(date) {
    const pad = (n) => String(n).padStart(2, "0");
    return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  }

  // The range in the browser's time zone, as instants [from, to).
  function currentRange() {
    const today = midnight(new Date());
    const choice = $("range").value;
    let from, to;
    if (choice === "today") { from = today; to = addDays(today, 1); }
    else if (choice === "yesterday") { from = addDays(today, -1); to = today; }
    else if (choice === "30d") { from = addDays(today, -29); to = addDays(today, 1); }
    else if (choice === "custom" && $("from").value && $("to").value) {
      const [fy, fm, fd] = $("from").value.split("-").map(Number);
      const [ty, tm, td] = $("to").value.split("-").map(Number);
      from = new Date(fy, fm - 1, fd);
      to = new Date(ty, tm - 1, td + 1);
    } else { from = addDays(today, -6); to = addDays(today, 1); }
    const interval = to - from <= 2 * DAY + 3600 * 1000 ? "hourly" : "daily";
    return { choice, from: from.toISOString(), to: to.toISOString(), fromDate: from, toDate: to, interval };
  }

  $("range").addEventListener("change", () => {
    const custom = $("range").value === "custom";
    $("custom").hidden = !custom;
    if (custom) {
      if (!$("from").value) $("from").value = isoDate(addDays(new Date(), -6));
      if (!$("to").value) $("to").value = isoDate(new Date());
      $("from").focus();
    }
    loadHistory();
  });
  $("range-form").addEventListener("submit", (event) => { event.preventDefault(); loadHistory(); });

  async function loadHistory() {
    range = currentRange();
    const history = $("history");
    history.dataset.from = range.from;
    history.dataset.to = range.to;
    history.dataset.tz = tz;
    history.dataset.interval = range.interval;
    history.setAttribute("aria-busy", "true");
    $("history-error").textContent = "";
    const last = addDays(range.toDate, -1);
    const days = isoDate(range.fromDate) === isoDate(last) ? dateFormat.format(last)
      : `${dateFormat.format(range.fromDate)} to ${dateFormat.format(last)}`;
    $("range-label").textContent = `${days}, ${range.interval === "hourly" ? "per hour" : "per day"} (${tz})`;
    const params = { from: range.from, to: range.to, tz };
    for (const [format, id] of [["csv", "export-csv"], ["ndjson", "export-ndjson"]]) {
      $(id).href = `events?${new URLSearchParams({ from: range.from, to: range.to, format })}`;
      $(id).setAttribute("download", `beacon-events-${isoDate(range.fromDate)}-${isoDate(last)}.${format}`);
    }
    const loaded = range;
    try {
      const [stats, ...tops] = await Promise.all([
        api(`stats/${range.interval}`, params),
        ...TOP_TABLES.map((spec) => (spec.missing ? null : api(spec.path, { ...params, limit: 10 }).catch((error) => {
          if (!spec.optional || error.status !== 404) throw error;
          spec.missing = true; // this server has no such list: not asked again
          return null;
        }))),
      ]);
      if (loaded !== range) return; // a newer range was asked for meanwhile
      renderTotals(stats.totals);
      renderChart(stats);
      $("top-tables").replaceChildren(...TOP_TABLES.flatMap((spec, i) => (tops[i]
        ? [table(spec, tops[i].items, [["count", spec.path === "top-clicks" ? "Clicks" : "Views"], ["visitors", "Visitors"]])]
        : [])));
      await loadSessions(true);
      await loadAnomalies(loaded);
    } catch (error) {
      handle(error, "history-error");
    } finally {
      if (loaded === range) history.setAttribute("aria-busy", "false");
    }
  }

  // The anomalies of the range, as bands on the chart and a list; a
  // failure costs only them, not the figures.
  async function loadAnomalies(loaded) {
    if (!window.BeaconAnomalies) return;
    try {
      const body = await api("anomalies", { from: loaded.from, to: loaded.to });
      if (loaded === range) window.BeaconAnomalies.show(body, chart);
    } catch (error) {
      handle(error, "history-error");
    }
  }

  function renderTotals(totals) {
    $("totals").replaceChildren(...TOTALS.map(([key, title]) => {
      const dd = el("dd", { id: `total-${key}` });
      setFigure(dd, totals[key]);
      return el("div", null, el("dt", { text: title }), dd);
    }));
  }

  function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

  function renderChart(stats) {
    const xs = stats.buckets.map((b) => Date.parse(b.start) / 1000);
    const data = [xs, ...["page_views", "visitors", "events"].map((k) => stats.buckets.map((b) => b[k]))];
    const container = $("chart");
    container.dataset.buckets = String(xs.length);
    container.dataset.interval = stats.interval;
    container.dataset.total = String(stats.totals.page_views);

    const rows = stats.buckets.map((b) => el("tr", null,
      el("td", { text: stats.interval === "hour" ? dateTimeFormat.format(new Date(b.start)) : new Date(b.start).toLocaleDateString() }),
      ...["page_views", "visitors", "events"].map((k) => el("td", { class: "num", "data-value": String(b[k]), text: numberFormat.format(b[k]) }))));
    $("buckets").tBodies[0].replaceChildren(...rows);

    if (chart) chart.destroy();
    chart = null;
    if (typeof window.uPlot !== "function") return;
    const width = Math.max(280, container.clientWidth);
    const grid = { stroke: cssVar("--line") };
    const axis = { stroke: cssVar("--muted"), grid, ticks: grid };
    const daily = stats.interval === "day";
    const xAxis = daily
      ? { ...axis, space: 60, incrs: [86400, 2 * 86400, 7 * 86400, 14 * 86400, 28 * 86400],
          values: (u, splits) => splits.map((x) => dateFormat.format(new Date(x * 1000))) }
      : axis;
    chart = new window.uPlot({
      width, height: 280,
      plugins: window.BeaconAnomalies ? [window.BeaconAnomalies.plugin()] : [],
      scales: { x: { time: true } },
      axes: [xAxis, axis],
      series: [
        { label: "Time" },
        { label: "Page views", stroke: cssVar("--accent"), width: 2, fill: "transparent" },
        { label: "Visitors", stroke: cssVar("--accent2"), width: 2 },
        { label: "Events", stroke: cssVar("--accent3"), width: 1, dash: [4, 4] },
      ],
    }, data, container);
  }

  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (chart) chart.setSize({ width: Math.max(280, $("chart").clientWidth), height: 280 });
    }, 150);
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => { if (range) loadHistory(); });

  async function loadSessions(reset) {
    const params = { from: range.from, to: range.to, limit: 25 };
    if (!reset && sessionsCursor) params.cursor = sessionsCursor;
    const page = await api("sessions", params);
    const body = $("sessions").tBodies[0];
    if (reset) { body.replaceChildren(); $("timeline").hidden = true; }
    for (const s of page.sessions) {
      const open = el("button", { type: "button", class: "link", "data-token": s.token,
        "aria-label": `Show the events of the session started ${dateTimeFormat.format(new Date(s.first_seen))}`,
        text: dateTimeFormat.format(new Date(s.first_seen)) });
      open.addEventListener("click", () => showSession(s.token));
      body.append(el("tr", { "data-token": s.token },
        el("td", null, open), el("td", { class: "item", text: s.entry_url || "" }),
        el("td", { class: "item", text: s.referrer || "" }),
        el("td", { class: "num", "data-value": String(s.events), text: numberFormat.format(s.events) }),
        el("td", { class: "num", text: duration(s.duration_seconds) })));
    }
    if (reset && !page.sessions.length) {
      body.append(el("tr", null, el("td", { colspan: "5", class: "note", text: "No sessions in this range" })));
    }
    sessionsCursor = page.next_cursor;
    $("more-sessions").hidden = !sessionsCursor;
  }

  $("more-sessions").addEventListener("click", () => loadSessions(false).catch((e) => handle(e, "history-error")));

  function duration(seconds) {
    const s = Math.round(seconds || 0);
    return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`;
  }

  async function showSession(token) {
    try {
      const { session, events } = await api(`sessions/${encodeURIComponent(token)}`);
      $("timeline-title").textContent = `Session started ${dateTimeFormat.format(new Date(session.first_seen))}: ${events.length} events, ${duration(session.duration_seconds)}`;
      $("timeline-events").replaceChildren(...events.map((e) => el("li", { "data-type": e.type },
        el("time", { datetime: e.timestamp, text: when(e.timestamp) }),
        el("span", { class: "type", text: e.type }),
        `${e.url || ""}${e.label ? ` “${e.label}”` : ""}`)));
      $("timeline").hidden = false;
      $("timeline").dataset.token = token;
      $("timeline-title").tabIndex = -1;
      $("timeline-title").focus();
    } catch (error) {
      handle(error, "history-error");
    }
  }

  start();
})();
