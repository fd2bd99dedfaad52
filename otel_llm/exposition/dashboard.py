"""``/dashboard``: one self-contained HTML page (inline CSS and JS, no CDN, no build step).

It fetches ``summary`` (relative to itself, so it works under any mount path) every few seconds and
draws tiles, SVG charts and tables with DOM text nodes only (model names are data, never markup).
When only a bearer token protects the endpoints, open it as ``.../dashboard#token=<token>``: the
fragment never leaves the browser, and the page sends the token with each request.
"""

from __future__ import annotations

import html
import json

_PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
:root { --bg:#111217; --panel:#181b1f; --border:#2c3235; --text:#d8d9da; --muted:#8e8e8e; --ok:#73bf69;
        --warn:#fade2a; --bad:#f2495c; --blue:#5794f2; --purple:#b877d9; --orange:#ff9830; }
* { box-sizing:border-box; }
body { margin:0; background:var(--bg); color:var(--text); font:14px/1.4 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; }
header { display:flex; align-items:center; gap:16px; padding:12px 20px; border-bottom:1px solid var(--border); }
header h1 { font-size:18px; margin:0; font-weight:600; }
.badge { padding:2px 10px; border-radius:10px; font-weight:600; font-size:12px; text-transform:uppercase; }
.badge.healthy { background:#1f3a1d; color:var(--ok); } .badge.degraded { background:#3d3514; color:var(--warn); }
.badge.unhealthy, .badge.error { background:#4a1c22; color:var(--bad); } .badge.unknown { background:#2c3235; color:var(--muted); }
.muted { color:var(--muted); } .spacer { flex:1; }
main { padding:16px 20px; display:grid; gap:16px; }
.tiles { display:grid; grid-template-columns:repeat(auto-fill, minmax(200px, 1fr)); gap:12px; }
.tile { background:var(--panel); border:1px solid var(--border); border-radius:4px; padding:10px 12px; }
.tile .label { color:var(--muted); font-size:12px; }
.tile .value { font-size:22px; font-weight:600; margin-top:2px; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.tile .sub { color:var(--muted); font-size:12px; margin-top:2px; }
.charts { display:grid; grid-template-columns:repeat(auto-fill, minmax(320px, 1fr)); gap:12px; }
.panel { background:var(--panel); border:1px solid var(--border); border-radius:4px; padding:10px 12px; }
.panel h2 { font-size:13px; margin:0 0 8px; font-weight:600; }
svg.chart { width:100%; height:130px; display:block; }
svg.chart text { fill:var(--muted); font-size:10px; }
.legend { font-size:11px; color:var(--muted); margin-top:4px; } .legend span { margin-right:12px; }
.legend i { display:inline-block; width:10px; height:3px; vertical-align:middle; margin-right:4px; }
table { width:100%; border-collapse:collapse; font-size:13px; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--border); white-space:nowrap; }
th { color:var(--muted); font-weight:600; font-size:12px; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
.bar { display:inline-block; width:80px; height:8px; background:#2c3235; border-radius:4px; vertical-align:middle; margin-right:6px; }
.bar > i { display:block; height:100%; border-radius:4px; }
.state-closed { color:var(--ok); } .state-half_open { color:var(--warn); } .state-open { color:var(--bad); }
.invalid { color:var(--bad); } .active { color:var(--ok); }
#error { display:none; background:#4a1c22; color:#ffb3bd; padding:8px 20px; }
footer { padding:8px 20px 20px; color:var(--muted); font-size:12px; } footer a { color:var(--blue); margin-right:12px; }
</style>
</head>
<body>
<header><h1>__TITLE__</h1><span id="service" class="muted"></span><span id="status" class="badge unknown">loading</span>
<span class="spacer"></span><span id="updated" class="muted">waiting for data</span></header>
<div id="error"></div>
<main>
<section class="tiles" id="tiles"></section>
<section class="charts">
 <div class="panel"><h2>Request rate and errors</h2><svg class="chart" id="chart-rate"></svg><div class="legend" id="legend-rate"></div></div>
 <div class="panel"><h2>Latency percentiles</h2><svg class="chart" id="chart-latency"></svg><div class="legend" id="legend-latency"></div></div>
 <div class="panel"><h2>Tokens per minute</h2><svg class="chart" id="chart-tokens"></svg><div class="legend" id="legend-tokens"></div></div>
 <div class="panel"><h2>Cost per hour (USD)</h2><svg class="chart" id="chart-cost"></svg><div class="legend" id="legend-cost"></div></div>
</section>
<section class="panel"><h2>Providers</h2><table id="providers"></table></section>
<section class="panel"><h2>Models</h2><table id="models"></table></section>
<section class="panel"><h2>API key pools</h2><table id="pools"></table></section>
<section class="panel"><h2>Served (server side: requests this service answered)</h2><table id="served"></table></section>
</main>
<footer><a href="metrics">metrics</a><a href="metrics/providers">metrics/providers</a><a href="summary">summary (JSON)</a>
<a href="metrics.csv">CSV</a><a href="catalog">catalog</a><a href="health/detailed">health</a>
<span>refreshes every __REFRESH__ s</span></footer>
<script>
"use strict";
const REFRESH_MS = __REFRESH__ * 1000;
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}
const dash = "\u2013";
function num(v, digits) { return v == null ? dash : Number(v).toLocaleString("en-US", {maximumFractionDigits: digits ?? 1}); }
function dur(s) { if (s == null) return dash; return s < 1 ? (s * 1000).toFixed(s < 0.01 ? 1 : 0) + " ms" : s.toFixed(2) + " s"; }
function pct(r) { return r == null ? dash : (r * 100).toFixed(r < 0.1 ? 2 : 1) + " %"; }
function usd(v) { if (v == null) return dash; return "$" + (v < 1 ? v.toFixed(4) : v.toFixed(2)); }
function compact(v) {
  if (v == null) return dash;
  const a = Math.abs(v);
  if (a >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (a >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return num(v, a < 10 ? 2 : 0);
}

function tile(label, value, sub) {
  return el("div", {class: "tile"}, el("div", {class: "label"}, label), el("div", {class: "value"}, value),
            el("div", {class: "sub"}, sub || "\u00a0"));
}

function renderTiles(s) {
  const w = s.window, t = s.totals;
  $("tiles").replaceChildren(
    tile("Requests / s", num(w.requests_per_second, 2), `${num(t.requests, 0)} total`),
    tile("Error rate", pct(w.error_rate), `${num(t.errors, 0)} errors total`),
    tile("Latency p50 / p95", `${dur(w.latency_p50)} / ${dur(w.latency_p95)}`, `p99 ${dur(w.latency_p99)}`),
    tile("Time to first token", `${dur(w.ttft_p50)} / ${dur(w.ttft_p95)}`, "p50 / p95 (streams)"),
    tile("Tokens / min", compact(w.tokens_per_minute), `in ${compact(w.input_tokens_per_minute)} \u00b7 out ${compact(w.output_tokens_per_minute)}`),
    tile("Cost", usd(t.cost_usd), `${usd(w.cost_per_hour)} / hour now`),
    tile("In flight", num(s.in_flight, 0), `${num(s.active_streams, 0)} streams`),
    tile("Anomalies", num(Object.values(s.anomalies || {}).reduce((a, b) => a + b, 0), 0),
         Object.entries(s.anomalies || {}).map(([k, v]) => `${k} ${v}`).join(" \u00b7 ") || "none"),
  );
}

function chart(id, legendId, points, series, format) {
  const svg = $(id), W = Math.max(svg.clientWidth, 200), H = Math.max(svg.clientHeight, 80), L = 52, B = 16;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);  // one unit per pixel: text is never stretched
  svg.replaceChildren();
  const values = points.flatMap((p) => series.map((s) => p[s.key]).filter((v) => v != null));
  const legend = $(legendId);
  legend.replaceChildren(...series.map((s) => el("span", {}, el("i", {style: `background:${s.color}`}), s.label)));
  if (points.length < 2 || !values.length) {
    const text = document.createElementNS(SVG, "text");
    text.setAttribute("x", W / 2); text.setAttribute("y", H / 2); text.setAttribute("text-anchor", "middle");
    text.textContent = "collecting data\u2026";
    svg.append(text);
    return;
  }
  const max = Math.max(...values) || 1, t0 = points[0].t, t1 = points[points.length - 1].t || t0 + 1;
  const x = (t) => L + (W - L - 4) * (t - t0) / Math.max(t1 - t0, 1e-9);
  const y = (v) => 9 + (H - B - 13) * (1 - v / max);
  for (const frac of [0, 0.5, 1]) {
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", L); line.setAttribute("x2", W); line.setAttribute("y1", y(max * frac)); line.setAttribute("y2", y(max * frac));
    line.setAttribute("stroke", "#2c3235"); svg.append(line);
    const label = document.createElementNS(SVG, "text");
    label.setAttribute("x", 2); label.setAttribute("y", y(max * frac) + 3); label.textContent = format(max * frac);
    svg.append(label);
  }
  const span = document.createElementNS(SVG, "text");
  span.setAttribute("x", W - 4); span.setAttribute("y", H - 2); span.setAttribute("text-anchor", "end");
  span.textContent = `last ${Math.round(t1 - t0)} s`; svg.append(span);
  for (const s of series) {
    const pts = points.filter((p) => p[s.key] != null).map((p) => `${x(p.t).toFixed(1)},${y(p[s.key]).toFixed(1)}`);
    if (!pts.length) continue;
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.join(" ")); line.setAttribute("fill", "none");
    line.setAttribute("stroke", s.color); line.setAttribute("stroke-width", "2"); line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line);
  }
}

function renderCharts(s) {
  const h = s.history || [];
  const withErrors = h.map((p) => ({...p, errors_per_second: p.requests_per_second == null || p.error_rate == null ? null : p.requests_per_second * p.error_rate}));
  chart("chart-rate", "legend-rate", withErrors, [
    {key: "requests_per_second", label: "requests/s", color: "#5794f2"},
    {key: "errors_per_second", label: "errors/s", color: "#f2495c"}], (v) => num(v, 1));
  chart("chart-latency", "legend-latency", h, [
    {key: "latency_p50", label: "p50", color: "#73bf69"}, {key: "latency_p95", label: "p95", color: "#ff9830"},
    {key: "ttft_p95", label: "TTFT p95", color: "#b877d9"}], dur);
  chart("chart-tokens", "legend-tokens", h, [{key: "tokens_per_minute", label: "tokens/min", color: "#5794f2"}], compact);
  chart("chart-cost", "legend-cost", h, [{key: "cost_per_hour", label: "USD/h", color: "#fade2a"}], (v) => "$" + v.toFixed(v < 1 ? 3 : 2));
}

function table(id, headers, rows) {
  const head = el("tr", {}, ...headers.map(([label, cls]) => el("th", cls ? {class: cls} : {}, label)));
  const body = rows.length ? rows.map((cells) => el("tr", {}, ...cells.map(([value, cls]) => el("td", cls ? {class: cls} : {}, value))))
    : [el("tr", {}, el("td", {colspan: headers.length, class: "muted"}, "no data yet"))];
  $(id).replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
}

function healthCell(score) {
  if (score == null) return dash;
  const color = score >= 0.9 ? "var(--ok)" : score >= 0.6 ? "var(--warn)" : "var(--bad)";
  return el("span", {}, el("span", {class: "bar"}, el("i", {style: `width:${Math.round(score * 100)}%;background:${color}`})), score.toFixed(2));
}

function renderTables(s) {
  table("providers", [["Provider"], ["Health"], ["Breaker"], ["Req/s", "num"], ["Errors", "num"], ["p95", "num"],
                      ["Remaining req", "num"], ["Remaining tokens", "num"], ["In flight", "num"], ["Anomalies", "num"]],
    s.providers.map((p) => [[p.provider], [healthCell(p.health)],
      [p.circuit_breaker ? el("span", {class: "state-" + p.circuit_breaker}, p.circuit_breaker.replace("_", " ")) : dash],
      [num(p.requests_per_second, 2), "num"], [pct(p.error_rate), "num"], [dur(p.latency_p95), "num"],
      [compact(p.rate_limit_remaining.requests), "num"], [compact(p.rate_limit_remaining.tokens), "num"],
      [num(p.in_flight, 0), "num"], [num(Object.values(p.anomalies).reduce((a, b) => a + b, 0), 0), "num"]]));
  table("models", [["Provider"], ["Model"], ["Requests", "num"], ["Req/s", "num"], ["Errors", "num"], ["p95", "num"],
                   ["TTFT p95", "num"], ["Tokens in", "num"], ["Tokens out", "num"], ["Cost", "num"], ["Availability 24 h", "num"]],
    s.models.map((m) => [[m.provider], [m.model], [num(m.requests, 0), "num"], [num(m.requests_per_second, 2), "num"],
      [pct(m.error_rate), "num"], [dur(m.latency_p95), "num"], [dur(m.ttft_p95), "num"], [compact(m.input_tokens), "num"],
      [compact(m.output_tokens), "num"], [usd(m.cost_usd), "num"], [pct(m.availability), "num"]]));
  table("pools", [["Group"], ["Active", "num"], ["Invalid", "num"], ["Keys (ids, never the keys)"]],
    s.key_pools.map((p) => [[p.group], [num(p.active, 0), "num"], [num(p.invalid, 0), p.invalid ? "num invalid" : "num"],
      [el("span", {}, ...(p.keys || []).flatMap((k) => [el("span", {class: k.state}, k.id), " "]))]]));
  table("served", [["Route"], ["Model"], ["Requests", "num"], ["Req/s", "num"], ["Errors", "num"], ["Error types"],
                   ["TTFT p95", "num"], ["Time/token p95", "num"], ["Tokens out/s", "num"], ["Streams now", "num"]],
    (s.served || []).map((r) => [[r.route], [r.model || dash], [num(r.requests, 0), "num"],
      [num(r.requests_per_second, 2), "num"], [pct(r.error_rate), "num"],
      [Object.entries(r.error_types || {}).map(([k, v]) => `${k} ${v}`).join(" \u00b7 ") || dash],
      [dur(r.ttft_p95), "num"], [dur(r.time_per_output_token_p95), "num"], [num(r.output_tokens_per_second, 1), "num"],
      [num(r.active_streams, 0), "num"]]));
}

async function refresh() {
  try {
    const response = await fetch("summary", {headers: token ? {Authorization: "Bearer " + token} : {}, cache: "no-store"});
    if (!response.ok) throw new Error(`summary: HTTP ${response.status}`);
    const s = await response.json();
    $("error").style.display = "none";
    $("service").textContent = s.service ? "service " + s.service : "";
    const status = s.health ? s.health.status : "unknown";
    $("status").className = "badge " + status;
    $("status").textContent = status;
    $("status").title = s.health ? s.health.reason : "";
    $("updated").textContent = "updated " + new Date().toLocaleTimeString("en-GB");
    renderTiles(s); renderCharts(s); renderTables(s);
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("error").style.display = "block";
    $("error").textContent = "cannot load the summary: " + err.message;
    $("status").className = "badge error"; $("status").textContent = "no data";
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}
refresh();
</script>
</body>
</html>
"""


def render(title: str, refresh_seconds: float) -> bytes:
    return (
        _PAGE.replace("__TITLE__", html.escape(title))
        .replace("__REFRESH__", json.dumps(float(refresh_seconds)))
        .encode()
    )
