// fanout dashboard: polls /dashboard/data every second and updates the tables in place
// (rows are made once per route and only changed cells are written), so 200 routes
// cost little per update. Read-only: the data endpoint is the only request it makes.
"use strict";

const DATA = "/dashboard/data";
const TOKEN_KEY = "fanout-admin-token";
const SVG = "http://www.w3.org/2000/svg";
const PERIOD_MS = 1000;

// Measured by the browser test: how long applying one update took.
const metrics = { updates: 0, lastRenderMs: 0, maxRenderMs: 0 };
window.fanoutDashboard = metrics;

const $ = (id) => document.getElementById(id);
let timer = null;

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

const REFUSED = "The token was refused.";
const UNSENDABLE = "The token holds characters a request header cannot carry (a line break, or a letter beyond Latin-1): paste it again.";

// `problem`: why the token is asked again (null: asked for the first time).
function showLogin(problem) {
  $("data").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = problem === null;
  if (problem !== null) $("login-error").textContent = problem;
  setState("token needed", "down");
  $("token").focus();
}

// Whether `value` can be sent as a header value: fetch throws on one that cannot,
// which would look like the gateway being unreachable, forever.
function sendable(value) {
  try {
    new Headers({ Authorization: value });
    return true;
  } catch (e) {
    return false;
  }
}

function setState(text, kind) {
  const el = $("state");
  el.textContent = text;
  el.className = "pill " + kind;
}

// One update; polling goes on whatever happens to it (a garbled body, a render that
// throws), except while the token is asked for.
async function poll() {
  timer = null;
  let again = true;
  try {
    again = await update();
  } catch (e) {
    setState("bad data", "down");
  } finally {
    if (again) schedule();
  }
}

// Fetches and applies one update; false when the page now waits for a token.
async function update() {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t !== null) {
    if (!sendable("Bearer " + t)) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(UNSENDABLE);
      return false;
    }
    headers.Authorization = "Bearer " + t;
  }
  let response;
  try {
    response = await fetch(DATA, { headers, cache: "no-store", credentials: "omit" });
  } catch (e) {
    setState("unreachable", "down");
    return true;
  }
  if (response.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(t !== null ? REFUSED : null);
    return false;
  }
  if (!response.ok) {
    setState("error " + response.status, "down");
    return true;
  }
  const data = await response.json();
  const started = performance.now();
  render(data);
  const took = performance.now() - started;
  metrics.updates += 1;
  metrics.lastRenderMs = took;
  metrics.maxRenderMs = Math.max(metrics.maxRenderMs, took);
  $("login").hidden = true;
  $("data").hidden = false;
  setState("live", "live");
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  return true;
}

function schedule() {
  if (timer === null) timer = setTimeout(poll, PERIOD_MS);
}

function set(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

function setClass(el, name) {
  if (el.className !== name) el.className = name;
}

const fmt = {
  ms: (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)),
  rate: (v) => (v < 10 ? v.toFixed(1) : v.toFixed(0)),
  int: (v) => (v === null || v === undefined ? "–" : String(v)),
  pct: (v) => (v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0) + "%",
  bytes: (v) => {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v : v.toFixed(1)) + " " + units[i];
  },
  time: (unix) => new Date(unix * 1000).toLocaleString(),
};

// Keyed rows: made once, then updated cell by cell.
function rowsOf(table) {
  if (!table.rows_) table.rows_ = new Map();
  return table.rows_;
}

function row(tableId, key, cells, numeric, build) {
  const table = $(tableId);
  const rows = rowsOf(table);
  let tr = rows.get(key);
  if (!tr) {
    tr = document.createElement("tr");
    tr.dataset.key = key;
    for (let i = 0; i < cells; i++) {
      const td = document.createElement("td");
      if (numeric.includes(i)) td.className = "num";
      tr.appendChild(td);
    }
    if (build) build(tr);
    table.tBodies[0].appendChild(tr);
    rows.set(key, tr);
  }
  tr.seen_ = true;
  return tr;
}

// Removes the rows not seen in this update (a reload removed their route).
function prune(tableId) {
  const rows = rowsOf($(tableId));
  for (const [key, tr] of rows) {
    if (!tr.seen_) { tr.remove(); rows.delete(key); }
    tr.seen_ = false;
  }
}

function spark(td) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 22");
  svg.setAttribute("preserveAspectRatio", "none");
  const line = document.createElementNS(SVG, "polyline");
  svg.appendChild(line);
  td.appendChild(svg);
  td.line_ = line;
}

function drawSpark(td, series, step) {
  const max = Math.max(1, ...series);
  const dx = 120 / Math.max(1, series.length - 1);
  let points = "";
  for (let i = 0; i < series.length; i++) {
    points += (i * dx).toFixed(1) + "," + (21 - (series[i] / max) * 20).toFixed(1) + " ";
  }
  if (td.points_ !== points) {
    td.line_.setAttribute("points", points);
    td.points_ = points;
  }
  const peak = (max / step).toFixed(1);
  if (td.title_ !== peak) { td.title = "peak " + peak + " req/s"; td.title_ = peak; }
}

function statusCell(td, tr, status) {
  set(td, status);
  setClass(td, "status " + status);
  setClass(tr, status);
  tr.dataset.status = status;
}

function render(d) {
  const c = d.config;
  set($("config-hash"), c.hash.slice(0, 16));
  if ($("config-hash").title !== c.hash) $("config-hash").title = c.hash;
  set($("config-loaded"), "loaded " + fmt.time(c.loaded_at));
  const r = c.last_reload;
  set($("reload-result"), r.ok ? "ok" : "rejected");
  setClass($("reload-result"), "value " + (r.ok ? "good" : "bad"));
  setClass($("reload-card"), "card" + (r.ok ? "" : " bad"));
  set($("reload-detail"), r.trigger + " · " + fmt.time(r.at));
  const problems = $("reload-problems");
  const text = r.problems.join("\n");
  if (problems.text_ !== text) {
    problems.replaceChildren(...r.problems.map((p) => { const li = document.createElement("li"); li.textContent = p; return li; }));
    problems.hidden = r.problems.length === 0;
    problems.text_ = text;
  }
  set($("in-flight"), d.in_flight);
  const cache = d.cache;
  set($("cache-ratio"), cache.hit_ratio === null ? "–" : fmt.pct(cache.hit_ratio) + " hits");
  set($("cache-detail"), cache.entries + (cache.entries === 1 ? " entry · " : " entries · ") + fmt.bytes(cache.bytes) + " of " + fmt.bytes(cache.max_bytes));

  set($("route-count"), "(" + d.routes.length + ")");
  const step = d.chart_step_seconds;
  for (const route of d.routes) {
    const key = route.methods + " " + route.path;
    const tr = row("routes", key, 10, [3, 4, 5, 6, 7], (tr) => spark(tr.cells[9]));
    const td = tr.cells;
    set(td[0], route.path); setClass(td[0], "path");
    set(td[1], route.methods);
    set(td[2], route.kind + (route.upstream ? " → " + route.upstream : ""));
    set(td[3], fmt.rate(route.rps));
    set(td[4], fmt.ms(route.p50_ms));
    set(td[5], fmt.ms(route.p99_ms));
    set(td[6], route.requests ? route.errors + " (" + fmt.pct(route.error_rate) + ")" : "0");
    set(td[7], route.limited);
    statusCell(td[8], tr, route.status);
    drawSpark(td[9], route.series, step);
    for (const b of route.backends) {
      const br = row("backends", key + " " + b.name, 13, [3, 4, 5, 6, 7, 8, 9, 10, 11]);
      const bd = br.cells;
      set(bd[0], route.path); setClass(bd[0], "path");
      set(bd[1], b.name);
      set(bd[2], b.upstream);
      const o = b.outcomes;
      [o.ok, o.hit, o.stale, o.timeout, o.error, o.default, o.skipped].forEach((n, i) => set(bd[3 + i], n));
      set(bd[10], fmt.ms(b.p50_ms));
      set(bd[11], fmt.ms(b.p99_ms));
      statusCell(bd[12], br, b.status);
    }
  }
  prune("routes");
  prune("backends");

  for (const u of d.upstreams) {
    const tr = row("upstreams", u.name, 8, [4, 5, 6, 7]);
    const td = tr.cells;
    set(td[0], u.name);
    set(td[1], u.url); setClass(td[1], "path");
    set(td[2], u.health);
    setClass(td[2], u.health === "unhealthy" ? "bad" : u.health === "healthy" ? "good" : "");
    set(td[3], u.circuit);
    setClass(td[3], u.circuit === "open" ? "bad" : u.circuit === "half_open" ? "warn" : "");
    const failing = u.health === "unhealthy" || u.circuit === "open";
    setClass(tr, failing ? "failing" : "");
    tr.dataset.status = failing ? "failing" : "ok";
    set(td[4], fmt.int(u.in_flight));
    set(td[5], fmt.int(u.max_in_flight));
    set(td[6], fmt.int(u.pool_idle));
    set(td[7], fmt.int(u.pool_max));
  }
  prune("upstreams");
}

function start() {
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value;
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $("token").value = "";
    $("login").hidden = true;
    setState("connecting…", "");
    if (timer !== null) { clearTimeout(timer); timer = null; }
    poll();
  });
  poll();
}

start();
