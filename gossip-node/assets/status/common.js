"use strict";
// What every status page shares: helpers, the counters, the propagation
// histogram, the event list and the live stream /v1/events. Each page
// then calls start({reload, onEvent}) with what it adds.
const MAX_EVENTS = 50, MAX_DELAYS = 200;
const delays = [];
let events = [];
let hooks = {reload: async () => {}, onEvent: () => {}};
const $ = sel => document.querySelector(sel);
const esc = v => String(v ?? "").replace(/[&<>"']/g,
  c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const fmt = (v, digits = 3) => typeof v === "number" && isFinite(v) ?
  (Math.abs(v) >= 1e6 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(digits) :
   String(+v.toFixed(digits))) : "\u2013";

async function getJSON(path) {
  const response = await fetch(path, {cache: "no-store"});
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

// Nested counters flattened to "group.name" rows.
function flatten(value, prefix, out) {
  for (const [key, v] of Object.entries(value)) {
    const name = prefix ? `${prefix}.${key}` : key;
    if (v && typeof v === "object" && !Array.isArray(v)) flatten(v, name, out);
    else if (typeof v === "number") out.push([name, v]);
  }
  return out;
}

async function loadStats() {
  const rows = flatten(await getJSON("/v1/stats"), "", []);
  $("#stats").innerHTML = rows.map(([k, v]) => `<dt>${esc(k)}</dt><dd class="mono">${esc(fmt(v, 0))}</dd>`).join("");
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function drawPropagation() {
  if (!delays.length) return;
  const sorted = [...delays].sort((a, b) => a - b);
  const max = sorted[sorted.length - 1];
  $("#prop-summary").textContent = `last ${delays.length} deliveries: p50 ${fmt(quantile(sorted, 0.5), 1)} ms, ` +
    `p99 ${fmt(quantile(sorted, 0.99), 1)} ms, max ${fmt(max, 1)} ms`;
  const bins = new Array(20).fill(0), top = max > 0 ? max : 1;
  for (const d of sorted) bins[Math.min(19, Math.floor(d / top * 20))]++;
  const tallest = Math.max(...bins);
  const bars = bins.map((n, i) => {
    const h = n / tallest * 70;
    return `<rect x="${i * 15 + 1}" y="${75 - h}" width="13" height="${h}" fill="#3b82f6"><title>${n}</title></rect>`;
  }).join("");
  $("#histogram").innerHTML = bars + `<line x1="0" y1="75.5" x2="300" y2="75.5" stroke="#9ca3af"/>` +
    `<text x="0" y="88">0 ms</text><text x="300" y="88" text-anchor="end">${esc(fmt(max, 1))} ms</text>`;
}

function describe(e) {
  // A member (full views) or a neighbour (partial views).
  const who = e.id ?? e.member ?? e.neighbour;
  switch (e.event) {
    case "delivered": case "broadcast_sent": {
      const id = e.id ?? (e.origin !== undefined ? `${e.origin}/${e.generation}/${e.sequence}` : "");
      const hops = typeof e.hops === "number" ? ` in ${e.hops} hop${e.hops === 1 ? "" : "s"}` : "";
      const delay = typeof e.delay_ms === "number" ? ` after ${fmt(e.delay_ms, 1)} ms` : "";
      return `${esc(id)} \u201c${esc(e.payload ?? e.payload_hex ?? "")}\u201d${hops}${delay}`;
    }
    case "estimate": return `estimate ${esc(fmt(e.value, 4))}`;
    case "lagged": return `<span class="muted">missed ${esc(e.missed)} events; re-read</span>`;
    default:
      if (who !== undefined) {
        const extra = [e.state, e.reason, e.incarnation !== undefined && `inc ${e.incarnation}`,
          e.generation !== undefined && `gen ${e.generation}`].filter(Boolean).join(", ");
        return `<span class="mono">${esc(who)}</span> <span class="muted">${esc(extra)}</span>`;
      }
      return `<span class="muted">${esc(JSON.stringify(e))}</span>`;
  }
}

function drawEvents() {
  $("#events").innerHTML = events.map(({at, e}) =>
    `<li data-event="${esc(e.event)}"><time>${at.toLocaleTimeString([], {hour12: false})}</time>` +
    `<span class="kind">${esc(e.event)}</span>${describe(e)}</li>`).join("");
  $("#event-count").textContent = `(last ${events.length})`;
}

function handle(e) {
  events.unshift({at: new Date(), e});
  events = events.slice(0, MAX_EVENTS);
  drawEvents();
  if (e.event === "delivered" && typeof e.delay_ms === "number") {
    delays.push(e.delay_ms);
    if (delays.length > MAX_DELAYS) delays.shift();
    drawPropagation();
  }
  if (e.event === "subscribed" && e.node) $("#self").textContent = e.node;
  hooks.onEvent(e);
}

// Runs `task` at most once per burst of calls (events come in bursts).
function soon(task) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(() => task().catch(report), 150);
  };
}

function report(error) { console.warn(error); }

let source = null, retry = 1000;
function connect() {
  source = new EventSource("/v1/events");
  source.onopen = () => {
    retry = 1000;
    $("#conn").textContent = "live";
    $("#conn").className = "live";
    // Events may have been missed while disconnected.
    hooks.reload().catch(report);
  };
  source.onmessage = message => {
    try { handle(JSON.parse(message.data)); } catch (error) { report(error); }
  };
  source.onerror = () => {
    $("#conn").textContent = "reconnecting";
    $("#conn").className = "";
    // The browser retries a dropped stream by itself, but gives up on an
    // error answer: then start over, backing off up to 30 s.
    if (source.readyState === EventSource.CLOSED) {
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    }
  };
}

// `page.reload` re-reads what events may have changed (on every
// (re)connection); `page.onEvent` sees each event after the list.
function start(page) {
  hooks = {...hooks, ...page};
  Promise.all([hooks.reload(), loadStats()]).catch(report);
  setInterval(() => loadStats().catch(report), 5000);
  connect();
}
