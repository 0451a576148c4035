"use strict";
// Partial views: GET /v1/view (this node's active view, its tree links and
// its passive view) besides what every page reads (/v1/stats and the event
// stream). A partial view knows only its neighbourhood: there is no member
// list, leader, store or aggregate here.
async function loadView() {
  const v = await getJSON("/v1/view");
  $("#self").textContent = v.id;
  const eager = new Set(v.eager);
  $("#active tbody").innerHTML = v.active.map(id =>
    `<tr data-id="${esc(id)}" data-view="active"><td class="mono">${esc(id)}</td>` +
    `<td><span class="state active">active</span></td>` +
    `<td>${eager.has(id) ? "tree" : "<span class=\"muted\">lazy</span>"}</td></tr>`).join("");
  $("#passive tbody").innerHTML = v.passive.map(id =>
    `<tr data-id="${esc(id)}" data-view="passive"><td class="mono">${esc(id)}</td>` +
    `<td><span class="state passive">passive</span></td></tr>`).join("");
  $("#summary").textContent = `partial views: ${v.active.length} active ` +
    `(${v.eager.length} tree links), ${v.passive.length} passive`;
}

// Neighbours that left the active view, by reason ("silent": the pings
// found it dead).
const downs = {};
function countDown(reason) {
  downs[reason] = (downs[reason] || 0) + 1;
  $("#downs").textContent = Object.entries(downs).map(([r, n]) => `${n} ${r}`).join(", ");
}

const refreshViewSoon = soon(loadView);
start({
  reload: loadView,
  onEvent: e => {
    if (e.event === "neighbour_down") countDown(e.reason ?? "other");
    if (e.event === "lagged" || e.event === "neighbour_up" || e.event === "neighbour_down") {
      refreshViewSoon();
    }
  },
});
setInterval(() => loadView().catch(report), 5000);
