// Object storage page: private and public tabs, prefix navigation (keys
// folded at "/"), uploads with progress, downloads, deletes, and an object's
// URL: presigned (900 s) for private objects, permanent for public ones.

import { call, encodePath, query, send } from "./api.js";
import {
  attempt, bytes, clear, confirmAction, copyText, el, notify, progressRow, time,
} from "./ui.js";

const PAGE_OBJECTS = 500;
const UPLOADS_IN_FLIGHT_MAX = 2;
const PRESIGN_EXPIRES_S = 900;

let root = null;
let bucket = "private";
let prefix = "";
let nextAfter = null;

export function enter(section) {
  root = section;
  clear(section);
  const tab = (name, label) =>
    el(
      "button",
      {
        type: "button", role: "tab", id: `tab-${name}`, "aria-controls": "object-panel",
        onclick: () => openBucket(name),
      },
      label,
    );
  section.append(
    el("h1", { id: "objects-title" }, "Object storage"),
    el("div", { role: "tablist", class: "tabs", "aria-label": "Buckets" }, tab("private", "Private"), tab("public", "Public")),
    el(
      "div",
      { id: "object-panel", role: "tabpanel" },
      el("nav", { id: "prefix-crumbs", class: "breadcrumbs", "aria-label": "Prefix" }),
      el(
        "div",
        { class: "bar", role: "toolbar", "aria-label": "Object actions" },
        el(
          "label",
          { class: "button", for: "upload-objects" },
          "Upload objects",
          el("input", {
            id: "upload-objects", type: "file", multiple: true, class: "visually-hidden",
            onchange: (event) => {
              const chosen = [...event.target.files];
              event.target.value = "";
              uploadAll(chosen);
            },
          }),
        ),
        el("button", { type: "button", onclick: () => list() }, "Refresh"),
      ),
      el("div", { class: "field inline" },
        el("label", { for: "object-url" }, "Last copied URL"),
        el("input", { id: "object-url", type: "text", readonly: true, size: 80 })),
      el("ul", { id: "object-transfers", class: "transfers", "aria-label": "Uploads" }),
      el(
        "table",
        { id: "object-list" },
        el("caption", { class: "visually-hidden" }, "Objects"),
        el("thead", {}, el("tr", {}, ...["Key", "Size", "Modified", "Actions"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", { id: "object-rows" }),
      ),
      el("button", { type: "button", id: "more-objects", hidden: true, onclick: () => list(true) }, "Load more"),
    ),
  );
  openBucket(bucket);
}

function openBucket(name) {
  bucket = name;
  prefix = "";
  for (const b of ["private", "public"]) {
    const tab = root.querySelector(`#tab-${b}`);
    tab.setAttribute("aria-selected", String(b === name));
    tab.tabIndex = b === name ? 0 : -1;
  }
  list();
}

function crumbs() {
  const nav = clear(root.querySelector("#prefix-crumbs"));
  const parts = prefix ? prefix.replace(/\/$/, "").split("/") : [];
  const items = [["", bucket]];
  parts.forEach((part, i) => items.push([parts.slice(0, i + 1).join("/") + "/", part]));
  const ol = el("ol");
  items.forEach(([p, label], i) => {
    const last = i === items.length - 1;
    ol.append(el("li", {}, last
      ? el("span", { "aria-current": "location" }, label)
      : el("button", { type: "button", class: "link", onclick: () => { prefix = p; list(); } }, label)));
  });
  nav.append(ol);
}

async function list(more = false) {
  crumbs();
  const after = more ? nextAfter : "";
  const page = await attempt(() =>
    call("GET", `/cairn/objects/${bucket}${query({ prefix, delimiter: "/", after, limit: PAGE_OBJECTS })}`),
  );
  if (!page) {
    return;
  }
  const rows = root.querySelector("#object-rows");
  if (!more) {
    clear(rows);
  }
  for (const p of page.prefixes) {
    rows.append(
      el("tr", { dataset: { prefix: p } },
        el("td", {}, el("button", { type: "button", class: "link dir", onclick: () => { prefix = p; list(); } }, p.slice(prefix.length))),
        el("td", {}), el("td", {}), el("td", {})),
    );
  }
  for (const object of page.objects) {
    rows.append(row(object));
  }
  if (!more && !page.objects.length && !page.prefixes.length) {
    rows.append(el("tr", { class: "empty" }, el("td", { colspan: 4 }, "No objects here.")));
  }
  nextAfter = page.next_after;
  root.querySelector("#more-objects").hidden = !nextAfter;
}

function row(object) {
  const name = object.key.slice(prefix.length);
  return el(
    "tr",
    { dataset: { key: object.key } },
    el("td", {}, name),
    el("td", {}, bytes(object.size)),
    el("td", {}, time(object.last_modified_ms)),
    el(
      "td",
      { class: "actions" },
      el("button", { type: "button", onclick: () => download(object), "aria-label": `Download ${name}` }, "Download"),
      el("button", { type: "button", class: "copy-url", onclick: () => copyUrl(object), "aria-label": `Copy URL of ${name}` },
        bucket === "public" ? "Copy public URL" : "Copy presigned URL"),
      el("button", { type: "button", class: "danger", onclick: () => remove(object), "aria-label": `Delete ${name}` }, "Delete"),
    ),
  );
}

async function urlOf(key, method) {
  const params = bucket === "public" && method === "GET"
    ? { key, public: true }
    : { key, method, expires_s: PRESIGN_EXPIRES_S };
  return call("GET", `/cairn/objects/${bucket}/url${query(params)}`);
}

async function download(object) {
  await attempt(async () => {
    const { path } = await urlOf(object.key, "GET");
    const link = el("a", { href: path, download: object.key.split("/").pop() });
    document.body.append(link);
    link.click();
    link.remove();
  });
}

async function copyUrl(object) {
  await attempt(async () => {
    const { url, expires_at_s: expires } = await urlOf(object.key, "GET");
    root.querySelector("#object-url").value = url;
    const copied = await copyText(url);
    const until = expires ? `, valid until ${time(expires * 1000)}` : "";
    notify(copied ? `URL copied${until}` : `URL shown above${until} (the browser refused the clipboard)`, "info");
  });
}

async function remove(object) {
  if (!(await confirmAction(`Delete ${object.key}?`))) {
    return;
  }
  const path = `/object_storage/${bucket}/${encodePath(object.key)}`;
  if ((await attempt(() => call("DELETE", path))) !== undefined) {
    notify(`Deleted ${object.key}`, "info");
    list();
  }
}

async function uploadAll(files) {
  const transfers = root.querySelector("#object-transfers");
  const at = prefix;
  const queue = files.map((file) => ({ file, key: at + file.name, progress: progressRow(transfers, at + file.name) }));
  let failed = 0;
  const worker = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      try {
        const { path } = await urlOf(item.key, "PUT");
        // The presigned URL is the credential: no token goes with the bytes.
        await send("PUT", path, item.file, {
          authorized: false,
          progress: (sent, total) => item.progress.update(sent, total),
        });
        item.progress.done();
      } catch (error) {
        failed += 1;
        item.progress.failed(error.message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(UPLOADS_IN_FLIGHT_MAX, queue.length) }, worker));
  notify(failed ? `${failed} of ${files.length} uploads failed` : `Uploaded ${files.length} object${files.length === 1 ? "" : "s"}`, failed ? "error" : "info");
  list();
}
