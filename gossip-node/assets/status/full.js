"use strict";
// Full views: GET /v1/members, /v1/aggregate, /v1/leader and /v1/kv-stats
// besides what every page reads (/v1/stats and the event stream).
async function loadMembers() {
  const members = await getJSON("/v1/members");
  members.sort((a, b) => (b.self === true) - (a.self === true) || String(a.id).localeCompare(String(b.id)));
  const counts = {};
  $("#members tbody").innerHTML = members.map(m => {
    counts[m.state] = (counts[m.state] || 0) + 1;
    if (m.self) $("#self").textContent = m.id;
    return `<tr data-id="${esc(m.id)}" data-state="${esc(m.state)}">` +
      `<td class="mono">${esc(m.id)}${m.self ? " <b>(self)</b>" : ""}</td>` +
      `<td><span class="state ${esc(m.state)}">${esc(m.state)}</span></td>` +
      `<td class="num">${esc(m.incarnation)}</td><td class="num">${esc(m.generation)}</td>` +
      `<td class="mono muted">${esc(m.metadata_hex || "")}</td></tr>`;
  }).join("");
  $("#summary").textContent = `${members.length} members: ` +
    Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
}

async function loadAggregate() {
  const a = await getJSON("/v1/aggregate");
  $("#estimate").textContent = fmt(a.estimate, 4);
  $("#input").textContent = fmt(a.input, 4);
}

async function loadLeader() {
  const l = await getJSON("/v1/leader");
  $("#leader").textContent = (l.leader ?? "none") + (l.is_leader ? " (this node)" : "");
  $("#term").textContent = l.term;
  $("#quorum").textContent = l.has_quorum ? "yes" : "no";
  $("#partition").textContent = l.partition.suspected ?
    `SUSPECTED, ${l.partition.lost} unreachable` : "none suspected";
}

async function loadKv() {
  const k = await getJSON("/v1/kv-stats"), c = k.counters;
  $("#kv-keys").textContent = k.live;
  $("#kv-bytes").textContent = k.stored_bytes;
  $("#kv-gc").textContent = `${k.tombstones} tombstones, ${k.guards} guards, ` +
    `${c.collected_early} collected early, ${c.collected} after grace`;
  $("#kv-sync").textContent = `${c.local_writes} written here, ${c.applied} applied, ` +
    `${c.exchanges} exchanges` + (k.catching_up ? ", CATCHING UP" : "");
}

const refreshMembersSoon = soon(loadMembers);
start({
  reload: () => Promise.all([loadMembers(), loadAggregate()]),
  onEvent: e => {
    if (e.event === "lagged" || (typeof e.event === "string" && e.event.startsWith("member_"))) {
      refreshMembersSoon();
    }
    if (e.event === "estimate") $("#estimate").textContent = fmt(e.value, 4);
  },
});
loadLeader().catch(report);
loadKv().catch(report);
setInterval(() => loadKv().catch(report), 2000);
setInterval(() => loadLeader().catch(report), 2000);
setInterval(() => loadMembers().catch(report), 15000);
