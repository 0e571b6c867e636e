/*! Beacon tracker, no cookies. Options and events: docs/tracker.md */
(function (w, d, L) {
  "use strict";
  var s = d.currentScript, ss, sid, q = [], fly = [], timer = 0, back = 1e3,
    page = "", depth = 0, sent = 0, navT = 0, K = "beacon_queue";
  try {
    if (localStorage.getItem("beacon_opt_out")) return;
    ss = sessionStorage;
  } catch (e) { /* storage blocked: track without it */ }
  if (!s || !w.fetch) return;
  function at(n) { return s.getAttribute("data-" + n); }
  var url = at("endpoint") || new URL("track", s.src).href,
    hash = at("hash") != null, beat = +(at("heartbeat") || 30) * 1e3;
  function get(k) { try { return ss.getItem(k); } catch (e) { return null; } }
  function put(k, v) { try { ss.setItem(k, v); } catch (e) { /* full or blocked */ } }
  function rnd() { return Math.random().toString(36).slice(2); }
  sid = get("beacon_sid") || Date.now() + "-" + rnd().slice(0, 6);
  put("beacon_sid", sid);
  try { q = JSON.parse(get(K)) || []; } catch (e) { /* none */ }

  function push(type, data) {
    q.push({ id: w.crypto && crypto.randomUUID ? crypto.randomUUID() : rnd() + rnd() + rnd(),
      type: type, data: data || {}, url: L.href, referrer: d.referrer,
      timestamp: new Date().toISOString(), sessionId: sid, userAgent: navigator.userAgent });
    if (q.length > 500) q.splice(0, q.length - 500); // a server away for long
    put(K, JSON.stringify(q));
    if (q.length > 20) flush(); else later(1e3);
  }
  function later(ms) { if (!timer) timer = setTimeout(flush, ms); }
  function not(list) { return function (e) { return list.indexOf(e) < 0; }; }

  function flush() {
    clearTimeout(timer); timer = 0;
    var b = q.filter(not(fly)).slice(0, 100);
    if (!b.length) return;
    fly = fly.concat(b);
    function done(ok) {
      fly = fly.filter(not(b));
      if (ok) { q = q.filter(not(b)); put(K, JSON.stringify(q)); back = 1e3; if (q.length) later(0); }
      else { later(back); back = Math.min(back * 2, 6e4); }
    }
    fetch(url, { method: "POST", body: JSON.stringify({ batch: b }), keepalive: true })
      .then(function (r) { done(r.status < 500 && r.status != 429 && r.status != 408); },
        function () { done(0); });
    if (q.some(not(fly))) flush(); // more than one batch's worth
  }

  function key() { return hash ? L.href : L.href.split("#")[0]; }
  function depthOut() { if (depth > sent) push("scroll", { depth: sent = depth }); }
  function view() {
    clearTimeout(navT); navT = 0;
    if (key() == page) return;
    depthOut();
    page = key(); depth = sent = 0;
    push("visit", { page_title: d.title });
  }
  function nav() { clearTimeout(navT); navT = setTimeout(view, 100); }
  function leave(end) {
    if (navT) view();
    depthOut();
    if (end) push("session_end", {});
    flush();
  }

  function start() {
    ["pushState", "replaceState"].forEach(function (m) {
      var f = history[m];
      history[m] = function () { var r = f.apply(this, arguments); nav(); return r; };
    });
    w.addEventListener("popstate", nav);
    if (hash) w.addEventListener("hashchange", nav);
    w.addEventListener("scroll", function () {
      var h = d.documentElement.scrollHeight,
        p = h ? Math.min(100, Math.round((w.scrollY + w.innerHeight) / h * 100)) : 0;
      if (p > depth) depth = p;
    }, { passive: true });
    d.addEventListener("click", function (ev) {
      var t = ev.target, el, a, out, text, data;
      if (!t || !t.closest) return;
      el = t.closest("[data-track]"); a = t.closest("a[href]");
      out = a && /^https?:$/.test(a.protocol) && a.host != L.host;
      if (!el && !out) return;
      el = el || a;
      text = (el.innerText || el.textContent || "").trim().slice(0, 100);
      data = { label: el.getAttribute("data-track") || (out ? a.href : text),
        element_type: el.tagName.toLowerCase(), element_text: text };
      if (out) { data.outbound = true; data.href = a.href; }
      push("click", data);
    }, true);
    d.addEventListener("visibilitychange", function () {
      if (d.visibilityState == "hidden") leave();
    });
    w.addEventListener("pagehide", function () { leave(1); });
    w.addEventListener("pageshow", function (e) { if (e.persisted) { page = ""; view(); } });
    if (beat > 0) setInterval(function () {
      if (d.visibilityState == "visible") push("heartbeat", { active_time: beat / 1e3 });
    }, beat);
    w.beacon = push;
    view();
    if (q.length) later(0);
  }

  if (d.prerendering) d.addEventListener("prerenderingchange", start, { once: true });
  else start();
})(window, document, location);
