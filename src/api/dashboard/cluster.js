// Cluster page: every member's own report (role, term, log and applied index,
// lag behind the leader, chunk store), gathered by the node serving the page
// and refreshed live; a member that does not answer is shown as unreachable.

import { call } from "./api.js";
import { bytes, clear, el } from "./ui.js";

const REFRESH_MS = 1500;

let root = null;
let timer = null;

export function enter(section) {
  root = section;
  clear(section);
  section.append(
    el("h1", { id: "cluster-title" }, "Cluster"),
    el("p", { id: "cluster-summary", "aria-live": "polite" }, "loading…"),
    el(
      "table",
      { id: "member-list" },
      el("caption", { class: "visually-hidden" }, "Members"),
      el("thead", {}, el("tr", {}, ...["Node", "Role", "Voter", "Health", "Term", "Last log", "Applied", "Lag", "Snapshot", "Chunks", "Chunk bytes", "Missing", "Addresses"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", { id: "member-rows" }),
    ),
    el("p", { class: "muted" }, "Lag: entries between the leader's last log index and the member's applied index. Refreshes every 1.5 s."),
    el("p", { id: "cluster-updated", class: "muted" }),
  );
  refresh();
}

export function leave() {
  clearTimeout(timer);
  timer = null;
  root = null;
}

async function refresh() {
  clearTimeout(timer);
  const section = root;
  if (!section) {
    return;
  }
  let view = null;
  let failure = "";
  try {
    view = await call("GET", "/cairn/cluster");
  } catch (error) {
    failure = error.message;
  }
  if (section !== root) {
    return;
  }
  const summary = section.querySelector("#cluster-summary");
  if (view) {
    const leader = view.leader_id;
    summary.textContent = leader === null || leader === undefined
      ? `No leader known (term ${view.term}): an election may be under way.`
      : `Leader: node ${leader} · term ${view.term} · ${view.members.length} members`;
    summary.dataset.leader = leader ?? "";
    summary.dataset.term = view.term;
    const rows = clear(section.querySelector("#member-rows"));
    for (const m of view.members) {
      rows.append(row(m, leader));
    }
    section.querySelector("#cluster-updated").textContent = `Updated ${new Date().toISOString()} from node ${view.node_id}`;
  } else {
    summary.textContent = `Could not read the cluster: ${failure}`;
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function row(m, leader) {
  const ok = m.health === "ok";
  const cells = ok
    ? [m.role, m.voter ? "yes" : "learner", "ok", m.term, m.last_log_index, m.applied_index, m.lag_entries,
      m.snapshot_index, m.chunks, bytes(m.chunk_bytes), m.chunks_missing]
    : ["?", m.voter ? "yes" : "learner", `unreachable: ${m.error}`, "", "", "", "", "", "", "", ""];
  return el(
    "tr",
    { dataset: { node: m.id, role: ok ? m.role : "unreachable", health: m.health }, class: m.id === leader ? "leader" : "" },
    el("th", { scope: "row" }, `node ${m.id}`),
    ...cells.map((c, i) => el("td", { class: i === 2 && !ok ? "error" : "" }, String(c))),
    el("td", { class: "mono small" }, `gRPC ${m.grpc_addr} · HTTP ${m.http_addr}`),
  );
}
