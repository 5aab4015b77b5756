// Queues page: queues with their lengths (create, delete), and for one queue:
// send a message, receive one (taken off the queue), or peek at the first ones
// without taking them.

import { call, query } from "./api.js";
import { attempt, clear, confirmAction, el, notify, time } from "./ui.js";

const PEEK_MESSAGES = 20;

let root = null;
let selected = "";

export function enter(section) {
  root = section;
  clear(section);
  section.append(
    el("h1", { id: "queues-title" }, "Queues"),
    el(
      "div",
      { class: "columns" },
      el(
        "div",
        { class: "column" },
        el(
          "form",
          { id: "queue-create", class: "bar", onsubmit: createQueue },
          el("label", { for: "queue-name" }, "New queue"),
          el("input", { id: "queue-name", type: "text", required: true }),
          el("button", { type: "submit" }, "Create"),
        ),
        el(
          "table",
          { id: "queue-list" },
          el("caption", { class: "visually-hidden" }, "Queues"),
          el("thead", {}, el("tr", {}, ...["Queue", "Length", "Created", ""].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", { id: "queue-rows" }),
        ),
      ),
      el("div", { class: "column wide", id: "queue-panel" }),
    ),
  );
  loadQueues();
}

async function loadQueues() {
  const answer = await attempt(() => call("GET", "/cairn/queues"));
  if (!answer) {
    return;
  }
  const rows = clear(root.querySelector("#queue-rows"));
  if (!answer.queues.length) {
    rows.append(el("tr", { class: "empty" }, el("td", { colspan: 4 }, "No queues yet.")));
  }
  for (const q of answer.queues) {
    rows.append(
      el(
        "tr",
        { dataset: { queue: q.name }, class: q.name === selected ? "selected" : "" },
        el("td", {}, el("button", { type: "button", class: "link", onclick: () => openQueue(q.name) }, q.name)),
        el("td", { class: "length" }, String(q.length)),
        el("td", {}, time(q.created_ms)),
        el("td", {}, el("button", { type: "button", class: "danger small", onclick: () => deleteQueue(q.name), "aria-label": `Delete queue ${q.name}` }, "Delete")),
      ),
    );
  }
}

async function createQueue(event) {
  event.preventDefault();
  const input = root.querySelector("#queue-name");
  const name = input.value.trim();
  if ((await attempt(() => call("POST", "/queue", { json: { name } }))) !== undefined) {
    input.value = "";
    notify(`Created queue ${name}`, "info");
    await loadQueues();
    openQueue(name);
  }
}

async function deleteQueue(name) {
  if (!(await confirmAction(`Delete queue ${name} and its messages?`))) {
    return;
  }
  if ((await attempt(() => call("DELETE", `/queue/${encodeURIComponent(name)}`))) !== undefined) {
    notify(`Deleted queue ${name}`, "info");
    if (selected === name) {
      selected = "";
      clear(root.querySelector("#queue-panel"));
    }
    loadQueues();
  }
}

function openQueue(name) {
  selected = name;
  for (const tr of root.querySelectorAll("#queue-rows tr")) {
    tr.classList.toggle("selected", tr.dataset.queue === name);
  }
  const panel = clear(root.querySelector("#queue-panel"));
  panel.append(
    el("h2", {}, `Queue ${name}`),
    el(
      "form",
      { id: "queue-send", onsubmit: sendMessage },
      el("label", { for: "queue-message" }, "Message"),
      el("textarea", { id: "queue-message", rows: 3, required: true }),
      el("button", { type: "submit" }, "Send"),
    ),
    el(
      "div",
      { class: "bar" },
      el("button", { type: "button", id: "queue-receive", onclick: receive }, "Receive one (takes it)"),
      el("button", { type: "button", id: "queue-peek", onclick: peek }, "Peek"),
    ),
    el("h3", {}, "Received"),
    el("pre", { id: "queue-received", class: "value", "aria-live": "polite" }),
    el("h3", {}, "First messages"),
    el("ol", { id: "queue-peeked", class: "messages" }),
  );
  peek();
}

async function sendMessage(event) {
  event.preventDefault();
  const box = root.querySelector("#queue-message");
  const message = box.value;
  if ((await attempt(() => call("POST", `/queue/${encodeURIComponent(selected)}/messages`, { json: { message } }))) !== undefined) {
    box.value = "";
    notify("Sent", "info");
    loadQueues();
    peek();
  }
}

async function receive() {
  const list = await attempt(() => call("GET", `/queue/${encodeURIComponent(selected)}/messages`));
  if (!list) {
    return;
  }
  root.querySelector("#queue-received").textContent = list.length ? list[0].message : "(the queue is empty)";
  loadQueues();
  peek();
}

async function peek() {
  const answer = await attempt(() => call("GET", `/cairn/queues/${encodeURIComponent(selected)}/peek${query({ limit: PEEK_MESSAGES })}`));
  if (!answer) {
    return;
  }
  const ol = clear(root.querySelector("#queue-peeked"));
  if (!answer.messages.length) {
    ol.append(el("li", { class: "muted" }, "No messages."));
  }
  for (const m of answer.messages) {
    const lease = m.leased_until_ms ? ` · leased until ${time(m.leased_until_ms)}` : "";
    ol.append(el("li", { dataset: { seq: m.seq } }, el("span", { class: "mono" }, m.message),
      el("span", { class: "muted" }, ` · sent ${time(m.sent_ms)} · delivered ${m.delivery_count}×${lease}`)));
  }
}
