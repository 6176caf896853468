// factoryOS floor display: draws the state the server pushes over server-sent events.
// Plain JS, no build step. Every server value goes through esc() before it meets HTML, and
// through clean() before it is set as textContent. The server escapes control characters
// already; doing it here too keeps an older server's document from reordering the page.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
window.fosRender = { count: 0, lastMs: 0, firstAtMs: 0, generation: -1 };

// C0, DEL, C1, ALM, LRM/RLM, line/paragraph separators, bidi embeddings and isolates.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function clean(value) {
  return String(value).replace(UNSAFE, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, "0")}`
      : `\\u${code.toString(16).padStart(4, "0")}`;
  });
}

function esc(value) {
  return clean(value).replace(/[&<>"']/g, (c) => ({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;",
  })[c]);
}

function ago(unixSeconds) {
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

function clock(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

function renderGraph(graph) {
  const w = graph.node_width, h = graph.node_height;
  const at = new Map(graph.nodes.map((n) => [n.id, n]));
  const parts = [];
  parts.push(`<defs>
    <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrow"/></marker>
    <marker id="arrow-backup" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrow backup"/></marker>
  </defs>`);
  // edges under nodes; backups first so primaries draw on top
  const edges = [...graph.edges].sort((a, b) => b.rank - a.rank);
  for (const e of edges) {
    const s = at.get(e.supplier), c = at.get(e.consumer);
    const x1 = s.x + w, y1 = s.y + h / 2, x2 = c.x, y2 = c.y + h / 2;
    const bend = Math.max(40, Math.abs(x2 - x1) / 2);
    const cls = e.rank === 0 ? "edge primary" : "edge backup";
    const marker = e.rank === 0 ? "arrow" : "arrow-backup";
    parts.push(`<path class="${cls}" data-supplier="${esc(e.supplier)}" data-consumer="${esc(e.consumer)}" data-rank="${esc(e.rank)}" d="M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}" marker-end="url(#${marker})"><title>${esc(e.supplier)} → ${esc(e.consumer)}: ${esc(e.qty)} x ${esc(e.item)}${e.rank ? ` (backup ${esc(e.rank)})` : ""}</title></path>`);
  }
  for (const n of graph.nodes) {
    parts.push(`<g class="node ${esc(n.state)}" data-node-id="${esc(n.id)}" data-state="${esc(n.state)}" transform="translate(${esc(n.x)},${esc(n.y)})">
      <title>${esc(n.id)}: ${esc(n.reason)}</title>
      <rect width="${w}" height="${h}" rx="7"/>
      <text x="10" y="14" class="id">${esc(n.id)}</text>
      <text x="10" y="26" class="item">${esc(n.item)}${n.state === "in-flow" || n.state === "standby" ? "" : " · " + esc(n.state)}</text>
    </g>`);
  }
  const width = Math.max(graph.width, 200), height = Math.max(graph.height, 60);
  const box = document.getElementById("graph");
  box.innerHTML = `<svg xmlns="${SVG_NS}" viewBox="0 0 ${width} ${height}" role="img" aria-label="flow graph">${parts.join("")}</svg>`;
  // fill the card's width, but enlarge a small factory at most 1.5 times (and never shrink
  // a large one below readable size: the box scrolls instead)
  const svg = box.firstElementChild;
  svg.style.maxWidth = `${width * 1.5}px`;
  svg.style.minWidth = `${width * 0.8}px`;
  document.getElementById("flow-version").textContent =
    `version ${graph.version} · ${graph.nodes.length} nodes · ${graph.edges.length} edges`;
}

function list(names) {
  return names.length ? names.map(esc).join("<br>") : '<span class="muted">—</span>';
}

function renderNodes(rows) {
  const html = rows.map((r) => {
    const st = r.stats || {};
    const receipt = st.last_receipt
      ? `<span title="${esc(st.last_receipt.batch_id)}">${esc(st.last_receipt.item)} from ${esc(st.last_receipt.supplier)}</span><br><span class="ago muted" data-unix="${st.last_receipt.unix_ms / 1000}">${ago(st.last_receipt.unix_ms / 1000)}</span>`
      : '<span class="muted">—</span>';
    const cycles = r.cycles ? esc(r.cycles) : '<span class="muted">no report yet</span>';
    return `<tr data-node-id="${esc(r.id)}"><td><b>${esc(r.id)}</b><br><span class="muted">${esc(r.address)}</span></td>
      <td><span class="badge ${esc(r.state)}">${esc(r.state)}</span></td><td class="why">${esc(r.reason)}</td>
      <td>${esc(r.produces)}${r.requires ? `<br><span class="muted">from ${esc(r.requires)}</span>` : ""}</td>
      <td>${list(r.suppliers)}</td><td>${list(r.consumers)}</td><td>${receipt}</td><td class="cycles">${cycles}</td></tr>`;
  });
  document.getElementById("node-rows").innerHTML = html.join("");
}

function renderEvents(events) {
  const box = document.getElementById("event-list");
  if (!events.length) {
    box.innerHTML = '<li class="muted">nothing has happened since the display started</li>';
    return;
  }
  box.innerHTML = events.slice(0, 60).map((e) =>
    `<li class="event ${esc(e.kind)}"><span class="time">${clock(e.unix)}</span><span class="badge ${esc(e.kind)}">${esc(e.kind)}</span> ${esc(e.text)}</li>`).join("");
}

function sparkline(trend) {
  if (!trend || !trend.length) return "";
  const w = 180, h = 36, top = Math.max(1, ...trend);
  const step = w / Math.max(1, trend.length - 1);
  const pts = trend.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / top) * (h - 4)).toFixed(1)}`);
  return `<svg class="trend" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="finished per minute, last hour"><title>finished batches per minute over the last hour (highest: ${esc(top)})</title><polyline points="${pts.join(" ")}"/></svg>`;
}

function renderProduction(p) {
  const box = document.getElementById("production-items");
  if (!p || !p.final_items || !p.final_items.length) {
    box.innerHTML = '<p class="muted">no production reported yet</p>';
    document.getElementById("bottleneck").textContent = "";
    return;
  }
  box.innerHTML = p.final_items.map((it) => {
    const target = it.target_per_hour
      ? `<span class="target ${it.of_target >= 1 ? "met" : "short"}" title="the catalog's target_per_hour for ${esc(it.item)}">${Math.round(it.of_target * 100)}% of ${esc(it.target_per_hour)}/h target</span>`
      : '<span class="muted" title="set target_per_hour on the catalog node(s) that make it, and start the display with --catalog">no target set</span>';
    const last = it.last_finished_unix
      ? `last one <span class="ago" data-unix="${esc(it.last_finished_unix)}">${ago(it.last_finished_unix)}</span>`
      : "none finished yet";
    return `<div class="item-card" data-item="${esc(it.item)}">
      <div class="item-name">${esc(it.item)}</div>
      <div class="finished" title="batches of ${esc(it.item)} finished in the last hour (made by ${esc(it.producers.join(", "))})">${esc(it.finished)}</div>
      <div class="rate" title="finished per hour over the time the coordinator has figures for (up to one hour)">${esc(it.rate_per_hour)} per hour${it.observed_s < (p.since_s || 3600) ? ` <span class="muted">(over ${esc(Math.round(it.observed_s))} s)</span>` : ""} · ${target}</div>
      ${sparkline(it.trend)}
      <div class="muted small">${last}</div></div>`;
  }).join("");
  document.getElementById("bottleneck").textContent = clean(p.bottleneck ? p.bottleneck.text : "");
}

function renderCluster(c) {
  const box = document.getElementById("cluster-body");
  document.getElementById("cluster-short").textContent = !c.reachable ? "· no answer"
    : c.has_quorum ? `· healthy, ${c.replicas.length} replicas` : "· NO QUORUM";
  if (!c.reachable) {
    box.innerHTML = '<p class="muted">no answer from the coordinators yet</p>';
    return;
  }
  const replicas = c.replicas.map((r) =>
    `<tr><td>${esc(r.raft)}</td><td>${esc(r.grpc)}</td><td>${r.leader ? '<span class="badge leader">leader</span>' : "follower"}</td><td>${r.connected ? "connected" : '<span class="badge down">cut off</span>'}</td></tr>`).join("");
  box.innerHTML = `<dl class="facts">
      <dt>leader</dt><dd>${c.leader ? esc(c.leader) : '<span class="badge down">none: election</span>'}</dd>
      <dt>quorum</dt><dd>${c.has_quorum ? '<span class="badge in-flow">yes</span>' : '<span class="badge down">no</span>'}</dd>
      <dt>term</dt><dd>${esc(c.term)}</dd><dt>flow version</dt><dd>${esc(c.flow_version)}</dd></dl>
    <table class="replicas"><thead><tr><th>raft</th><th>gRPC</th><th>role</th><th>link</th></tr></thead><tbody>${replicas}</tbody></table>`;
}

function renderSummary(state) {
  const counts = {};
  for (const n of state.graph.nodes) counts[n.state] = (counts[n.state] || 0) + 1;
  document.getElementById("summary").innerHTML = ["in-flow", "standby", "not-started", "stale", "drained", "down"]
    .filter((k) => counts[k]).map((k) => `<span class="badge ${k}">${counts[k]} ${k}</span>`).join(" ");
  const banner = document.getElementById("banner");
  banner.hidden = !state.coordinator_error;
  banner.textContent = clean(state.coordinator_error || "");
}

function render(state) {
  const t0 = performance.now();
  renderProduction(state.production);
  renderGraph(state.graph);
  renderNodes(state.nodes);
  renderEvents(state.events);
  renderCluster(state.cluster);
  renderSummary(state);
  const r = window.fosRender;
  r.count += 1;
  r.lastMs = performance.now() - t0;
  if (r.count === 1) r.firstAtMs = performance.now();  // since navigation start
  r.generation = state.generation;
  document.body.dataset.generation = String(state.generation);
}

function connect() {
  const link = document.getElementById("link");
  const source = new EventSource("/api/events");
  source.addEventListener("state", (msg) => render(JSON.parse(msg.data)));
  source.onopen = () => { link.className = "link live"; link.textContent = "live"; };
  source.onerror = () => { link.className = "link connecting"; link.textContent = "reconnecting…"; };
}

function traceCell(text) {
  const td = document.createElement("td");
  td.textContent = clean(text);
  return td;
}

function showTrace(body) {
  const out = document.getElementById("trace-result");
  const table = document.getElementById("trace-table");
  const rows = table.querySelector("tbody");
  rows.replaceChildren();
  table.hidden = !body.batches;
  if (!body.batches) { out.textContent = clean(body.error || "no answer"); return; }
  const missing = body.unreachable.map((u) => `${u.node} (${u.reason})`).join(", ");
  out.textContent = clean(`${body.batches.length} batches, ${body.direction} from ${body.batch}` +
    (body.complete ? "" : ` — partial: unreachable ${missing}`));
  for (const b of body.batches) {
    const tr = document.createElement("tr");
    tr.dataset.batchId = b.batch_id;
    for (const text of [b.batch_id, b.node, b.item, String(b.qty), b.made_at,
                        b.inputs.join(" "), b.outputs.join(" "), b.delivered_to || ""]) {
      tr.appendChild(traceCell(text));
    }
    rows.appendChild(tr);
  }
}

function setupTrace() {
  document.getElementById("trace-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const batch = document.getElementById("trace-batch").value.trim();
    const direction = document.getElementById("trace-direction").value;
    const out = document.getElementById("trace-result");
    if (!batch) { out.textContent = "enter a batch id (producer:sequence)"; return; }
    out.textContent = "tracing…";
    const query = `batch=${encodeURIComponent(batch)}&direction=${direction}`;
    const reply = await fetch(`/api/trace?${query}`);
    showTrace(await reply.json());
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupTrace();
  connect();
  setInterval(() => {
    for (const el of document.querySelectorAll(".ago")) el.textContent = ago(Number(el.dataset.unix));
  }, 1000);
});
