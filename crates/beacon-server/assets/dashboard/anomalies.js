// Anomalies on Beacon's dashboard (docs/anomalies.md): shaded bands on the
// history chart, with kind and observed/expected figures in their tooltip,
// the list of the range's anomalies with the detector's mode, and the open
// ones on the live panel. Loaded before app.js, which calls it; it reads
// what app.js fetched from `GET /anomalies` and `/stream`.
"use strict";

window.BeaconAnomalies = (function () {
  const $ = (id) => document.getElementById(id);
  const KIND = { spike: "Spike", drop: "Drop", dark: "Dark (no page views)" };
  const MODE = {
    learning: "learning the site's rhythm: it reports nothing during its first day",
    cautious: "cautious: with less than two weeks of history it asks for stronger evidence",
    ready: "ready",
  };
  const count = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
  const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  let shown = [];       // the anomalies of the history's range
  let liveKeys = null;  // the open ones last seen on the stream, as keys

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

  // `site`, `page:<url>`, `referrer:<referrer>` in words.
  function where(series) {
    if (series.startsWith("page:")) return `on page ${series.slice(5)}`;
    if (series.startsWith("referrer:")) return `in page views from referrer ${series.slice(9)}`;
    return series === "site" ? "on the whole site" : `on ${series}`;
  }

  function period(a) {
    const from = dateTime.format(new Date(a.onset));
    return a.end ? `${from} to ${dateTime.format(new Date(a.end))}` : `since ${from}, still open`;
  }

  function figures(a) {
    return `${count.format(a.observed)} page views where ${count.format(a.expected)} were expected (severity ${oneDecimal.format(a.severity)})`;
  }

  function describe(a) {
    return `${KIND[a.kind] || a.kind} ${where(a.series)}, ${period(a)}: ${figures(a)}`;
  }

  const key = (a) => `${a.series}|${a.kind}|${a.start}`;

  // Places one band per anomaly over the plot, from its onset to its end
  // (or now), clamped to the plot and at least a few pixels wide.
  function place(u) {
    let layer = u.over.querySelector(".anomaly-layer");
    if (!layer) {
      layer = el("div", { class: "anomaly-layer", "aria-hidden": "true" });
      u.over.append(layer);
    }
    const min = u.scales.x.min, max = u.scales.x.max;
    const bands = [];
    for (const a of shown) {
      const from = Date.parse(a.onset) / 1000;
      const to = a.end ? Date.parse(a.end) / 1000 : Date.now() / 1000;
      if (min == null || max == null || !(to >= min)) continue;
      const width = u.over.clientWidth || u.bbox.width / (window.devicePixelRatio || 1);
      const left = Math.min(Math.max(u.valToPos(Math.max(from, min), "x"), 0), width - 4);
      const right = Math.min(u.valToPos(Math.min(to, max), "x"), width);
      const band = el("div", {
        class: "anomaly-band", "data-kind": a.kind, "data-series": a.series,
        "data-open": String(!a.end), title: describe(a),
      });
      band.style.left = `${left}px`;
      band.style.width = `${Math.max(4, right - left)}px`;
      bands.push(band);
    }
    layer.replaceChildren(...bands);
  }

  // A uPlot plugin that keeps the bands in place on every redraw.
  function plugin() {
    return { hooks: { draw: [place] } };
  }

  // The answer of `GET /anomalies` for the history's range.
  function show(body, chart) {
    shown = body.anomalies || [];
    const list = $("anomaly-list");
    list.replaceChildren(...shown.map((a) => el("li", {
      "data-kind": a.kind, "data-series": a.series, "data-open": String(!a.end),
    }, el("span", { class: "kind", text: KIND[a.kind] || a.kind }),
    ` ${where(a.series)}, ${period(a)}: ${figures(a)}`)));
    if (!shown.length) list.append(el("li", { class: "note", text: "None in this range" }));
    const d = body.detector;
    $("detector-note").textContent = d
      ? `Detector ${MODE[d.mode] || d.mode}; ${oneDecimal.format(d.history_days)} days of history, ${d.series} series watched (the site, its busiest pages and referrers).`
      : "The anomaly detector has not reported yet.";
    $("detector-note").dataset.mode = d ? d.mode : "";
    if (chart) chart.redraw(false, false);
  }

  // The open anomalies of a `/stream` frame; true when they changed since
  // the last frame (the history's list is then worth reloading).
  function live(open) {
    const box = $("live-anomalies");
    if (!Array.isArray(open)) { box.hidden = true; return false; }
    box.hidden = open.length === 0;
    $("open-anomalies").replaceChildren(...open.map((a) => el("li", {
      "data-kind": a.kind, "data-series": a.series,
    }, el("span", { class: "kind", text: KIND[a.kind] || a.kind }), ` ${where(a.series)}, ${period(a)}: ${figures(a)}`)));
    const keys = open.map(key).sort().join("\n");
    const changed = liveKeys !== null && keys !== liveKeys;
    liveKeys = keys;
    return changed;
  }

  return { plugin, show, live, describe };
})();
