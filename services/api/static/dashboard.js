// persd dashboard: SVG line charts, live refresh from the API's event stream, adapter actions.
// No dependencies; served from /static like every other asset.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#2f5bd3", "#d94f2b", "#127a3d", "#8e44ad", "#b54708", "#0e7490", "#be185d"];

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function formatX(x, numeric) {
  if (numeric) return String(Math.round(x * 100) / 100);
  const d = new Date(x);
  return d.toISOString().slice(11, 16);
}

// Draw series [{name, points: [[x, y], ...]}] into an <svg class="chart" data-series=...>.
// x is an ISO time (default) or a number (data-numeric-x); y is scaled to [0, data-ymax or max].
// data-x-labels (a JSON list) names the numeric x positions 0, 1, ... (e.g. versions of a
// lineage): one tick per label instead of four evenly spaced numbers.
function drawChart(svg) {
  let series, labels = null;
  try { series = JSON.parse(svg.dataset.series || "[]"); } catch (e) { return; }
  try { labels = svg.dataset.xLabels ? JSON.parse(svg.dataset.xLabels) : null; } catch (e) { labels = null; }
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const numeric = svg.dataset.numericX === "1";
  const percent = svg.dataset.percent === "1";
  const box = svg.getBoundingClientRect();
  const W = Math.max(box.width, 300), H = Math.max(box.height, 120);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const pad = { l: 46, r: 12, t: 10, b: 34 + 16 * Math.ceil(series.length / 4) };
  const xs = [], ys = [];
  for (const s of series) for (const [x, y] of s.points) {
    xs.push(numeric ? Number(x) : Date.parse(x)); ys.push(Number(y));
  }
  if (!xs.length) {
    svg.appendChild(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data yet"));
    return;
  }
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (labels && labels.length) { x0 = 0; x1 = labels.length - 1; }
  // A single x (one bucket so far) gets room around it: an hour for times, one for steps.
  if (x0 === x1) { const pad1 = numeric ? 1 : 3600000; x0 -= pad1; x1 += pad1; }
  const yMax = svg.dataset.ymax ? Number(svg.dataset.ymax) : Math.max(...ys, 0) * 1.1 || 1;
  const yMin = svg.dataset.ymax ? 0 : Math.min(0, ...ys);
  const px = (x) => pad.l + ((x - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const py = (y) => H - pad.b - ((y - yMin) / (yMax - yMin || 1)) * (H - pad.t - pad.b);
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4, y = py(v);
    svg.appendChild(svgEl("line", { class: "grid", x1: pad.l, x2: W - pad.r, y1: y, y2: y }));
    const label = percent ? `${Math.round(v * 100)}%` : (Math.abs(v) >= 10 ? v.toFixed(0) : v.toPrecision(2));
    svg.appendChild(svgEl("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end" }, label));
  }
  const axisY = H - pad.b;
  svg.appendChild(svgEl("line", { class: "axis", x1: pad.l, x2: W - pad.r, y1: axisY, y2: axisY }));
  const ticks = labels && labels.length
    ? labels.map((label, i) => [i, String(label)])
    : [0, 1, 2, 3, 4].map((i) => { const xv = x0 + ((x1 - x0) * i) / 4; return [xv, formatX(xv, numeric)]; });
  for (const [xv, text] of ticks) {
    svg.appendChild(svgEl("text", { x: px(xv), y: axisY + 14, "text-anchor": "middle" }, text));
  }
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const pts = s.points.map(([x, y]) => [px(numeric ? Number(x) : Date.parse(x)), py(Number(y))]);
    svg.appendChild(svgEl("polyline", { class: "line", stroke: color, points: pts.map((p) => p.join(",")).join(" ") }));
    if (pts.length <= 60) for (const [x, y] of pts) svg.appendChild(svgEl("circle", { class: "dot", cx: x, cy: y, r: 3, fill: color }));
    const lx = pad.l + (i % 4) * 190, ly = H - pad.b + 30 + 16 * Math.floor(i / 4);
    svg.appendChild(svgEl("rect", { x: lx, y: ly - 9, width: 10, height: 10, fill: color }));
    svg.appendChild(svgEl("text", { x: lx + 14, y: ly }, s.name));
  });
}

function drawCharts(root) {
  (root || document).querySelectorAll("svg.chart").forEach(drawChart);
}

// Live updates: every pipeline event schedules one re-fetch of this page, whose [data-live]
// regions replace the current ones. The server stays the only renderer.
let refreshTimer = null;
async function refreshLive() {
  refreshTimer = null;
  const regions = document.querySelectorAll("[data-live][id]");
  if (!regions.length) return;
  const res = await fetch(location.href, { headers: { Accept: "text/html" } });
  if (!res.ok) return;
  const doc = new DOMParser().parseFromString(await res.text(), "text/html");
  regions.forEach((region) => {
    const fresh = doc.getElementById(region.id);
    if (fresh) { region.replaceWith(fresh); drawCharts(fresh); }
  });
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}
function scheduleRefresh(delayMs) {
  if (refreshTimer === null) refreshTimer = setTimeout(refreshLive, delayMs);
}

function connectEvents() {
  const state = document.getElementById("live-state");
  if (!state || !window.EventSource) return;
  const source = new EventSource("/v1/events");
  source.onerror = () => { state.className = "live off"; state.title = "reconnecting"; };
  source.onmessage = (msg) => {
    let event = {};
    try { event = JSON.parse(msg.data); } catch (e) { /* a malformed event still means "changed" */ }
    if (event.kind === "stream.subscribed") {
      // The server is subscribed: every change from now on arrives here. Changes made while
      // we were disconnected are picked up by refreshing once.
      if (state.className === "live off" && state.dataset.seen) scheduleRefresh(0);
      state.className = "live on"; state.title = "live"; state.dataset.seen = "1";
      return;
    }
    document.body.dataset.lastEvent = event.kind || "message";
    scheduleRefresh(Number(document.body.dataset.refreshDelayMs) || 1500);
  };
  // A fallback for when events cannot flow (a proxy that buffers): refresh now and then anyway.
  setInterval(() => scheduleRefresh(0), 30000);
}

async function adapterAction(button) {
  const status = document.getElementById("action-status");
  const promote = button.dataset.action === "promote";
  const url = promote ? `/v1/adapters/${button.dataset.version}/promote` : "/v1/adapters/rollback";
  const what = promote ? `promote adapter v${button.dataset.version}` : "roll back to the previous version";
  if (!window.confirm(`Really ${what}?`)) return;
  button.disabled = true;
  status.className = ""; status.textContent = `Working: ${what}…`;
  try {
    const res = await fetch(url, {
      method: "POST",
      // The header proves the request came from this page's script (CSRF guard for the cookie).
      headers: { "Content-Type": "application/json", "X-Requested-With": "persd-dashboard" },
      body: JSON.stringify({ reason: "dashboard" }),
    });
    const body = await res.json();
    if (res.ok) {
      status.className = "ok";
      status.textContent = `v${body.version} is active. ${body.detail || ""}`.trim();
      await refreshLive();
    } else {
      status.className = "bad";
      status.textContent = `${res.status}: ${body.error ? body.error.message : res.statusText}`;
    }
  } catch (e) {
    status.className = "bad"; status.textContent = `failed: ${e}`;
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-action]");
  if (button) adapterAction(button);
});
document.addEventListener("DOMContentLoaded", () => {
  drawCharts();
  connectEvents();
  window.addEventListener("resize", () => drawCharts());
});
