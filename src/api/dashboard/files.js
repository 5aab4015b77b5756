// File systems page: pick a file system, browse it with breadcrumbs, upload
// files and whole folders (pickers or drag and drop) with per-file progress,
// download, delete, rename, make folders, and import from S3 or R2.

import { BASE, call, encodePath, query, saveResponse, send } from "./api.js";
import {
  attempt, bytes, clear, confirmAction, el, notify, progressRow, prompt, time,
} from "./ui.js";
import { openImportDialog, renderImports } from "./imports.js";

/// Files sent at once; the rest wait their turn.
const UPLOADS_IN_FLIGHT_MAX = 2;
/// Entries one listing page asks for.
const PAGE_ENTRIES = 500;
/// A directory tree dropped on the page is walked to at most this many files.
const DROPPED_FILES_MAX = 10_000;

let root = null;
let fsName = "default";
let cwd = "/";
let systems = [];
let nextAfter = null;

export function enter(section) {
  root = section;
  clear(section);
  section.append(
    el("h1", { id: "files-title" }, "File systems"),
    el(
      "div",
      { class: "bar" },
      el("label", { for: "fs-select" }, "File system"),
      el("select", { id: "fs-select", onchange: (e) => openFs(e.target.value) }),
      el("span", { id: "fs-usage", class: "muted" }),
    ),
    el("nav", { id: "breadcrumbs", class: "breadcrumbs", "aria-label": "Breadcrumb" }),
    el(
      "div",
      { class: "bar", role: "toolbar", "aria-label": "File actions" },
      picker("upload-files", "Upload files", { multiple: true }),
      picker("upload-folder", "Upload folder", { multiple: true, webkitdirectory: true }),
      el("button", { type: "button", id: "new-folder", onclick: newFolder }, "New folder"),
      el("button", { type: "button", id: "from-cloud", onclick: fromCloud }, "Upload from cloud…"),
      el("button", { type: "button", onclick: () => list() }, "Refresh"),
    ),
    el("ul", { id: "transfers", class: "transfers", "aria-label": "Uploads" }),
    el(
      "div",
      { id: "drop-zone", class: "drop-zone", "aria-label": "Directory listing; drop files or folders here to upload" },
      el(
        "table",
        { id: "file-list" },
        el("caption", { class: "visually-hidden" }, "Directory entries"),
        el(
          "thead",
          {},
          el("tr", {}, el("th", { scope: "col" }, "Name"), el("th", { scope: "col" }, "Size"),
            el("th", { scope: "col" }, "Modified"), el("th", { scope: "col" }, "Actions")),
        ),
        el("tbody", { id: "file-rows" }),
      ),
      el("p", { class: "muted drop-hint" }, "Drop files or folders here to upload them into this folder."),
    ),
    el("button", { type: "button", id: "more-entries", hidden: true, onclick: () => list(true) }, "Load more"),
    el("h2", {}, "Imports on this node"),
    el("div", { id: "imports" }),
  );
  wireDrop(section.querySelector("#drop-zone"));
  loadSystems();
  renderImports(section.querySelector("#imports"), refreshAfterImport);
}

function refreshAfterImport() {
  list();
  loadUsage();
}

export function leave() {
  renderImports(null);
}

function picker(id, label, attrs) {
  const input = el("input", {
    id, type: "file", class: "visually-hidden", ...attrs,
    onchange: (event) => {
      const chosen = [...event.target.files].map((file) => ({
        file,
        path: file.webkitRelativePath || file.name,
      }));
      event.target.value = "";
      uploadAll(chosen);
    },
  });
  return el("label", { class: "button", for: id }, label, input);
}

async function loadSystems() {
  const answer = await attempt(() => call("GET", "/cairn/storage"));
  if (!answer) {
    return;
  }
  systems = answer.file_systems;
  const select = root.querySelector("#fs-select");
  clear(select);
  for (const fs of systems) {
    const label = fs.local ? `local (node ${fs.node_id} only)` : fs.name;
    select.append(el("option", { value: fs.name }, label));
  }
  if (!systems.some((fs) => fs.name === fsName) && systems.length) {
    fsName = systems[0].name;
  }
  select.value = fsName;
  showUsage();
  list();
}

function showUsage() {
  const fs = systems.find((s) => s.name === fsName);
  const usage = root.querySelector("#fs-usage");
  if (!fs) {
    usage.textContent = "";
  } else if (fs.local) {
    usage.textContent = `this node's disk: ${bytes(fs.bytes_used)} used, ${bytes(fs.free_bytes)} free of ${bytes(fs.disk_bytes)}`;
  } else {
    const quota = fs.quota_bytes ? ` of ${bytes(fs.quota_bytes)} quota` : "";
    usage.textContent = `${bytes(fs.bytes_used)} used${quota} · ${fs.inodes_used} files and folders`;
  }
}

function openFs(name) {
  fsName = name;
  cwd = "/";
  showUsage();
  list();
}

function join(dir, name) {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

function storageUrl(path) {
  return `/storage/${encodeURIComponent(fsName)}${encodePath(path)}`;
}

function breadcrumbs() {
  const nav = clear(root.querySelector("#breadcrumbs"));
  const parts = cwd === "/" ? [] : cwd.slice(1).split("/");
  const crumbs = [["/", fsName]];
  parts.forEach((part, i) => crumbs.push(["/" + parts.slice(0, i + 1).join("/"), part]));
  const listEl = el("ol");
  crumbs.forEach(([path, label], i) => {
    const last = i === crumbs.length - 1;
    listEl.append(
      el(
        "li",
        {},
        last
          ? el("span", { "aria-current": "location" }, label)
          : el("button", { type: "button", class: "link", onclick: () => go(path) }, label),
      ),
    );
  });
  nav.append(listEl);
}

function go(path) {
  cwd = path;
  list();
}

async function list(more = false) {
  breadcrumbs();
  const rows = root.querySelector("#file-rows");
  const after = more ? nextAfter : "";
  const page = await attempt(() =>
    call("GET", `/cairn/storage/${encodeURIComponent(fsName)}/entries${query({ path: cwd, after, limit: PAGE_ENTRIES })}`),
  );
  if (!page) {
    return;
  }
  if (!more) {
    clear(rows);
    if (cwd !== "/") {
      const up = cwd.slice(0, cwd.lastIndexOf("/")) || "/";
      rows.append(el("tr", {}, el("td", { colspan: 4 }, el("button", { type: "button", class: "link", onclick: () => go(up) }, "↑ parent folder"))));
    }
  }
  for (const entry of page.entries) {
    rows.append(row(entry));
  }
  if (!more && page.entries.length === 0) {
    rows.append(el("tr", { class: "empty" }, el("td", { colspan: 4 }, "This folder is empty.")));
  }
  nextAfter = page.next_after;
  root.querySelector("#more-entries").hidden = !nextAfter;
}

function row(entry) {
  const isDir = entry.type === "dir";
  const name = isDir
    ? el("button", { type: "button", class: "link dir", onclick: () => go(entry.path) }, `${entry.name}/`)
    : el("span", { class: "file" }, entry.name);
  const actions = el("td", { class: "actions" });
  if (!isDir) {
    actions.append(el("button", { type: "button", onclick: () => download(entry), "aria-label": `Download ${entry.name}` }, "Download"));
  }
  actions.append(
    el("button", { type: "button", onclick: () => rename(entry), "aria-label": `Rename ${entry.name}` }, "Rename"),
    el("button", { type: "button", class: "danger", onclick: () => remove(entry), "aria-label": `Delete ${entry.name}` }, "Delete"),
  );
  return el(
    "tr",
    { dataset: { name: entry.name, type: entry.type } },
    el("td", {}, name),
    el("td", {}, isDir ? "" : bytes(entry.size)),
    el("td", {}, time(entry.mtime_ms)),
    actions,
  );
}

async function download(entry) {
  await attempt(async () => {
    const response = await call("GET", storageUrl(entry.path), { raw: true });
    await saveResponse(response, entry.name);
  });
}

async function rename(entry) {
  const answer = await prompt(`Rename ${entry.name}`, "New name (or a path from the root, starting with /)", entry.name);
  if (!answer || answer === entry.name) {
    return;
  }
  const parent = entry.path.slice(0, entry.path.lastIndexOf("/")) || "/";
  const to = answer.startsWith("/") ? answer : join(parent, answer);
  const done = await attempt(() =>
    call("POST", `/cairn/storage/${encodeURIComponent(fsName)}/rename`, { json: { from: entry.path, to } }),
  );
  if (done !== undefined) {
    notify(`Renamed ${entry.name} to ${to}`, "info");
    list();
  }
}

async function remove(entry) {
  const what = entry.type === "dir" ? `the folder ${entry.name} and everything in it` : entry.name;
  if (!(await confirmAction(`Delete ${what}?`))) {
    return;
  }
  const all = entry.type === "dir" ? "?removeall=true" : "";
  const done = await attempt(() => call("DELETE", storageUrl(entry.path) + all));
  if (done !== undefined) {
    notify(`Deleted ${entry.name}`, "info");
    list();
    loadUsage();
  }
}

async function loadUsage() {
  const answer = await attempt(() => call("GET", "/cairn/storage"));
  if (answer) {
    systems = answer.file_systems;
    showUsage();
  }
}

async function newFolder() {
  const name = await prompt("New folder", "Folder name");
  if (!name) {
    return;
  }
  const done = await attempt(() => call("PUT", storageUrl(join(cwd, name))));
  if (done !== undefined) {
    list();
  }
}

/// Uploads `{file, path}` items (path relative to the current folder), a
/// bounded number at a time, each with its own progress row.
async function uploadAll(items) {
  if (!items.length) {
    return;
  }
  const transfers = root.querySelector("#transfers");
  const dir = cwd;
  const queue = items.map((item) => ({ ...item, progress: progressRow(transfers, item.path) }));
  let failed = 0;
  const worker = async () => {
    for (let item = queue.shift(); item; item = queue.shift()) {
      const form = new FormData();
      form.append("file", item.file, item.file.name);
      try {
        await send("POST", BASE + storageUrl(join(dir, item.path)), form, {
          progress: (sent, total) => item.progress.update(sent, total),
        });
        item.progress.done();
      } catch (error) {
        failed += 1;
        item.progress.failed(error.message);
      }
    }
  };
  const workers = Array.from({ length: Math.min(UPLOADS_IN_FLIGHT_MAX, queue.length) }, worker);
  await Promise.all(workers);
  if (failed) {
    notify(`${failed} of ${items.length} uploads failed (see the list above)`);
  } else {
    notify(`Uploaded ${items.length} file${items.length === 1 ? "" : "s"}`, "info");
  }
  if (dir === cwd) {
    list();
  }
  loadUsage();
}

function wireDrop(zone) {
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", async (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    const entries = [...(event.dataTransfer.items || [])]
      .map((item) => item.webkitGetAsEntry?.())
      .filter(Boolean);
    const items = [];
    if (entries.length) {
      for (const entry of entries) {
        await walk(entry, "", items);
      }
    } else {
      for (const file of event.dataTransfer.files) {
        items.push({ file, path: file.name });
      }
    }
    uploadAll(items);
  });
}

/// Files under a dropped entry, with their paths relative to the drop.
async function walk(entry, prefix, items) {
  if (items.length >= DROPPED_FILES_MAX) {
    notify(`Only the first ${DROPPED_FILES_MAX} dropped files are uploaded`);
    return;
  }
  const path = prefix ? `${prefix}/${entry.name}` : entry.name;
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    items.push({ file, path });
    return;
  }
  const reader = entry.createReader();
  // readEntries answers in batches until it answers none.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) {
      break;
    }
    for (const child of batch) {
      await walk(child, path, items);
    }
  }
}

function fromCloud() {
  if (systems.find((s) => s.name === fsName)?.local) {
    notify("Imports write to a replicated file system; pick one other than local");
    return;
  }
  openImportDialog({ fs: fsName, dest: cwd }, () => renderImports(root.querySelector("#imports"), refreshAfterImport));
}
