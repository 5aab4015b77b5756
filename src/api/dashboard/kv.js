// Key-value page: namespaces (create, delete), keys with prefix search and
// paging, and one key's value as text or hex with its TTL, to edit or delete.

import { call, query } from "./api.js";
import { attempt, clear, confirmAction, el, notify } from "./ui.js";

const PAGE_KEYS = 50;
/// Hex view shows at most this much of a value.
const HEX_BYTES_MAX = 64 * 1024;

let root = null;
let namespace = "";
let prefix = "";
/// Cursors of the pages before the current one (for "Previous").
let cursors = [];
let cursor = 0;
let current = null;

export function enter(section) {
  root = section;
  clear(section);
  section.append(
    el("h1", { id: "kv-title" }, "Key-value"),
    el(
      "div",
      { class: "columns" },
      el(
        "div",
        { class: "column" },
        el("h2", {}, "Namespaces"),
        el(
          "form",
          { id: "ns-create", class: "bar", onsubmit: createNamespace },
          el("label", { for: "ns-name" }, "New namespace"),
          el("input", { id: "ns-name", type: "text", required: true }),
          el("button", { type: "submit" }, "Create"),
        ),
        el("ul", { id: "ns-list", class: "pick-list", "aria-label": "Namespaces" }),
      ),
      el("div", { class: "column wide", id: "ns-panel" }),
    ),
  );
  loadNamespaces();
}

async function loadNamespaces() {
  const list = await attempt(() => call("GET", "/kv/namespaces"));
  if (!list) {
    return;
  }
  const ul = clear(root.querySelector("#ns-list"));
  if (!list.length) {
    ul.append(el("li", { class: "muted" }, "No namespaces yet."));
  }
  for (const ns of list) {
    ul.append(
      el(
        "li",
        { dataset: { namespace: ns.name }, class: ns.name === namespace ? "selected" : "" },
        el("button", { type: "button", class: "link", onclick: () => openNamespace(ns.name) }, ns.name),
        el("button", { type: "button", class: "danger small", onclick: () => deleteNamespace(ns.name), "aria-label": `Delete namespace ${ns.name}` }, "Delete"),
      ),
    );
  }
  if (namespace && !list.some((ns) => ns.name === namespace)) {
    namespace = "";
    clear(root.querySelector("#ns-panel"));
  }
}

async function createNamespace(event) {
  event.preventDefault();
  const input = root.querySelector("#ns-name");
  const name = input.value.trim();
  if ((await attempt(() => call("POST", `/kv/namespaces/${encodeURIComponent(name)}`))) !== undefined) {
    input.value = "";
    notify(`Created namespace ${name}`, "info");
    await loadNamespaces();
    openNamespace(name);
  }
}

async function deleteNamespace(name) {
  if (!(await confirmAction(`Delete namespace ${name} and all its keys?`))) {
    return;
  }
  if ((await attempt(() => call("DELETE", `/kv/namespaces/${encodeURIComponent(name)}`))) !== undefined) {
    notify(`Deleted namespace ${name}`, "info");
    loadNamespaces();
  }
}

function openNamespace(name) {
  namespace = name;
  prefix = "";
  cursors = [];
  cursor = 0;
  current = null;
  for (const li of root.querySelectorAll("#ns-list li")) {
    li.classList.toggle("selected", li.dataset.namespace === name);
  }
  const panel = clear(root.querySelector("#ns-panel"));
  panel.append(
    el("h2", {}, `Keys in ${name}`),
    el(
      "form",
      { class: "bar", role: "search", onsubmit: (e) => { e.preventDefault(); prefix = root.querySelector("#key-prefix").value; cursors = []; cursor = 0; listKeys(); } },
      el("label", { for: "key-prefix" }, "Key prefix"),
      el("input", { id: "key-prefix", type: "search" }),
      el("button", { type: "submit" }, "Search"),
    ),
    el("ul", { id: "key-list", class: "pick-list mono", "aria-label": "Keys" }),
    el(
      "div",
      { class: "bar" },
      el("button", { type: "button", id: "keys-prev", onclick: previousPage }, "Previous"),
      el("button", { type: "button", id: "keys-next", onclick: nextPage }, "Next"),
    ),
    el("div", { id: "key-view" }),
    el(
      "details",
      { id: "key-new-box", class: "card", open: true },
      el("summary", {}, "Put a new key"),
      el(
        "form",
        { id: "key-new", onsubmit: putNew },
        el("label", { for: "new-key" }, "Key"),
        el("input", { id: "new-key", type: "text", required: true }),
        el("label", { for: "new-value" }, "Value (text)"),
        el("textarea", { id: "new-value", rows: 3 }),
        el("label", { for: "new-ttl" }, "TTL in seconds (empty: none)"),
        el("input", { id: "new-ttl", type: "number", min: 1 }),
        el("button", { type: "submit" }, "Put"),
      ),
    ),
  );
  listKeys();
}

let nextCursor = null;

async function listKeys() {
  const page = await attempt(() =>
    call("GET", `/kv/namespaces/${encodeURIComponent(namespace)}/keys${query({ prefix, cursor: cursor || undefined, limit: PAGE_KEYS })}`),
  );
  if (!page) {
    return;
  }
  const ul = clear(root.querySelector("#key-list"));
  if (!page.keys.length) {
    ul.append(el("li", { class: "muted" }, prefix ? "No keys with this prefix." : "No keys yet."));
  }
  for (const key of page.keys) {
    ul.append(el("li", { dataset: { key } }, el("button", { type: "button", class: "link", onclick: () => viewKey(key) }, key)));
  }
  nextCursor = page.cursor;
  root.querySelector("#keys-next").disabled = nextCursor === null || nextCursor === undefined;
  root.querySelector("#keys-prev").disabled = cursors.length === 0;
}

function nextPage() {
  if (nextCursor === null || nextCursor === undefined) {
    return;
  }
  cursors.push(cursor);
  cursor = nextCursor;
  listKeys();
}

function previousPage() {
  if (!cursors.length) {
    return;
  }
  cursor = cursors.pop();
  listKeys();
}

function ttlSeconds(input) {
  const text = input.value.trim();
  if (!text) {
    return undefined;
  }
  return Math.round(Number(text) * 1000);
}

async function put(key, value, ttlMs) {
  const form = new FormData();
  form.append("value", new Blob([value]), "value");
  return attempt(() =>
    call("POST", `/kv/namespaces/${encodeURIComponent(namespace)}/values/${encodeURIComponent(key)}${query({ ttl_ms: ttlMs })}`, { body: form }),
  );
}

async function putNew(event) {
  event.preventDefault();
  const key = root.querySelector("#new-key").value;
  const value = root.querySelector("#new-value").value;
  if ((await put(key, value, ttlSeconds(root.querySelector("#new-ttl")))) !== undefined) {
    notify(`Put ${key}`, "info");
    root.querySelector("#new-key").value = "";
    root.querySelector("#new-value").value = "";
    root.querySelector("#new-ttl").value = "";
    listKeys();
    viewKey(key);
  }
}

function hex(bytesArray) {
  const lines = [];
  const shown = bytesArray.subarray(0, HEX_BYTES_MAX);
  for (let i = 0; i < shown.length; i += 16) {
    const row = [...shown.subarray(i, i + 16)];
    const hexPart = row.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const text = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${i.toString(16).padStart(8, "0")}  ${hexPart.padEnd(47)}  ${text}`);
  }
  if (bytesArray.length > HEX_BYTES_MAX) {
    lines.push(`… ${bytesArray.length - HEX_BYTES_MAX} more bytes`);
  }
  return lines.join("\n");
}

function ttlText(expiresAtMs) {
  if (!expiresAtMs) {
    return "no TTL";
  }
  const left = Math.max(0, Math.round((expiresAtMs - Date.now()) / 1000));
  return `expires in ${left} s (at ${new Date(expiresAtMs).toISOString()})`;
}

async function viewKey(key) {
  const response = await attempt(() =>
    call("GET", `/kv/namespaces/${encodeURIComponent(namespace)}/values/${encodeURIComponent(key)}`, { raw: true }),
  );
  if (!response) {
    return;
  }
  const value = new Uint8Array(await response.arrayBuffer());
  const expires = Number(response.headers.get("x-cairn-expires-at-ms") || 0);
  current = { key, value, expires };
  let text = null;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(value);
  } catch (_) {
    text = null;
  }
  const view = clear(root.querySelector("#key-view"));
  const shown = el("pre", { id: "value-shown", class: "value", tabindex: 0 });
  const showAs = (mode) => {
    shown.textContent = mode === "hex" || text === null ? hex(value) : text;
    for (const b of view.querySelectorAll(".view-mode")) {
      b.setAttribute("aria-pressed", String(b.dataset.mode === mode));
    }
  };
  const editor = el("textarea", { id: "value-edit", rows: 6 });
  editor.value = text ?? "";
  const ttlInput = el("input", { id: "edit-ttl", type: "number", min: 1 });
  if (expires) {
    ttlInput.value = String(Math.max(1, Math.round((expires - Date.now()) / 1000)));
  }
  view.append(
    el("h3", {}, "Key ", el("code", { id: "viewed-key" }, key)),
    el("p", { id: "value-meta", class: "muted" }, `${value.length} bytes · ${ttlText(expires)}`),
    el(
      "div",
      { class: "bar" },
      el("button", { type: "button", class: "view-mode", dataset: { mode: "text" }, disabled: text === null, onclick: () => showAs("text") }, "Text"),
      el("button", { type: "button", class: "view-mode", dataset: { mode: "hex" }, onclick: () => showAs("hex") }, "Hex"),
    ),
    shown,
    el(
      "form",
      { id: "key-edit", onsubmit: saveEdit },
      el("label", { for: "value-edit" }, text === null ? "New value (text; the current value is not UTF-8)" : "Edit value"),
      editor,
      el("label", { for: "edit-ttl" }, "TTL in seconds (empty: none)"),
      ttlInput,
      el(
        "div",
        { class: "actions" },
        el("button", { type: "submit" }, "Save"),
        el("button", { type: "button", class: "danger", id: "key-delete", onclick: deleteKey }, "Delete key"),
      ),
    ),
  );
  showAs(text === null ? "hex" : "text");
}

async function saveEdit(event) {
  event.preventDefault();
  const value = root.querySelector("#value-edit").value;
  if ((await put(current.key, value, ttlSeconds(root.querySelector("#edit-ttl")))) !== undefined) {
    notify(`Saved ${current.key}`, "info");
    viewKey(current.key);
  }
}

async function deleteKey() {
  if (!(await confirmAction(`Delete key ${current.key}?`))) {
    return;
  }
  const key = current.key;
  if ((await attempt(() => call("DELETE", `/kv/namespaces/${encodeURIComponent(namespace)}/values/${encodeURIComponent(key)}`))) !== undefined) {
    notify(`Deleted ${key}`, "info");
    clear(root.querySelector("#key-view"));
    listKeys();
  }
}
