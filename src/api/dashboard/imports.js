// "Upload from cloud": the dialog that starts an import from AWS S3 or
// Cloudflare R2 into a file system, and the list of this node's import jobs.
// The secret goes to the node in the start request and nowhere else: it is
// not kept in the page after the dialog closes.

import { call } from "./api.js";
import { attempt, bytes, clear, el, notify, time } from "./ui.js";

/// How often the job list refreshes while a job runs.
const IMPORTS_REFRESH_MS = 2000;

let timer = null;
let box = null;
/// Jobs seen running at the last refresh, and what to call when one ends.
let running = new Set();
let onEnded = () => {};

function field(id, label, attrs = {}) {
  return el(
    "div",
    { class: "field", id: `${id}-field` },
    el("label", { for: id }, label),
    el("input", { id, name: id, type: "text", autocomplete: "off", ...attrs }),
  );
}

/// Opens the dialog; `done` runs after a job started.
export function openImportDialog({ fs, dest }, done) {
  const provider = el(
    "fieldset",
    {},
    el("legend", {}, "Source"),
    el("label", {}, el("input", { type: "radio", name: "provider", value: "s3", id: "provider-s3", checked: true }), " AWS S3"),
    el("label", {}, el("input", { type: "radio", name: "provider", value: "r2", id: "provider-r2" }), " Cloudflare R2"),
  );
  const form = el(
    "form",
    { method: "dialog", id: "import-form" },
    el("h2", {}, "Upload from cloud"),
    el("p", { class: "muted" }, `Copies every object under the prefix into ${fs}:${dest}, keeping the key structure as folders. A rerun skips what was already imported.`),
    provider,
    field("import-endpoint", "Endpoint URL", { placeholder: "https://<account>.r2.cloudflarestorage.com" }),
    field("import-region", "Region", { value: "us-east-1" }),
    field("import-bucket", "Bucket", { required: true }),
    field("import-prefix", "Prefix (optional)"),
    field("import-key-id", "Access key ID", { required: true }),
    field("import-secret", "Secret access key", { type: "password", required: true }),
    field("import-dest", "Destination path", { value: dest, required: true }),
    el("p", { id: "import-error", class: "error", role: "alert" }),
    el(
      "div",
      { class: "actions" },
      el("button", { type: "submit", value: "start", id: "import-start" }, "Start import"),
      el("button", { type: "button", onclick: () => dialog.close() }, "Cancel"),
    ),
  );
  const dialog = el("dialog", { class: "card wide", "aria-labelledby": "import-title" }, form);
  form.querySelector("h2").id = "import-title";
  const endpointHint = () => {
    const r2 = form.querySelector("#provider-r2").checked;
    form.querySelector("#import-endpoint").required = r2;
    form.querySelector("#import-endpoint-field label").textContent = r2
      ? "Endpoint URL"
      : "Endpoint URL (optional: for S3-compatible services)";
    form.querySelector("#import-region").value = r2 ? "auto" : form.querySelector("#import-region").value === "auto" ? "us-east-1" : form.querySelector("#import-region").value;
  };
  provider.addEventListener("change", endpointHint);
  endpointHint();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = (id) => form.querySelector(`#${id}`).value.trim();
    const region = value("import-region") || "us-east-1";
    const endpoint = value("import-endpoint") || `https://s3.${region}.amazonaws.com`;
    const prefix = value("import-prefix").replace(/^\/+/, "");
    const request = {
      source: {
        url: `s3://${value("import-bucket")}${prefix ? "/" + prefix : ""}`,
        endpoint,
        region,
        access_key_id: value("import-key-id"),
        secret_access_key: form.querySelector("#import-secret").value,
      },
      dest: value("import-dest"),
      fs,
    };
    const button = form.querySelector("#import-start");
    button.disabled = true;
    try {
      const job = await call("POST", "/cairn/imports", { json: request });
      dialog.close();
      notify(`Import ${job.id} started`, "info");
      // Counted as running until a refresh shows it ended, however fast it is.
      running.add(job.id);
      done();
    } catch (error) {
      form.querySelector("#import-error").textContent = error.message;
    } finally {
      button.disabled = false;
    }
  });
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  form.querySelector("#import-bucket").focus();
}

function jobsOf(answer) {
  return answer?.imports || [];
}

function count(job, name) {
  return job[name] ?? 0;
}

function failuresText(job) {
  const listed = job.failures.map((f) => `${f.key}: ${f.reason}`);
  if (job.failures_unlisted) {
    listed.push(`and ${job.failures_unlisted} more`);
  }
  return [job.error, ...listed].filter(Boolean).join("; ");
}

/// Shows this node's jobs in `target` (null stops the refresh); `ended`
/// runs when a job seen running has ended.
export async function renderImports(target, ended) {
  clearTimeout(timer);
  box = target;
  if (ended) {
    onEnded = ended;
  }
  if (!box) {
    return;
  }
  const answer = await attempt(() => call("GET", "/cairn/imports"));
  if (box !== target) {
    return;
  }
  clear(box);
  const jobs = jobsOf(answer);
  const nowRunning = new Set(jobs.filter((job) => job.state === "running").map((job) => job.id));
  if ([...running].some((id) => !nowRunning.has(id))) {
    onEnded();
  }
  running = nowRunning;
  if (!jobs.length) {
    box.append(el("p", { class: "muted" }, "No imports have run on this node since it started."));
    return;
  }
  const rows = jobs.map((job) =>
    el(
      "tr",
      { dataset: { job: job.id, state: job.state } },
      el("td", {}, String(job.id)),
      el("td", {}, job.source.url),
      el("td", {}, `${job.fs}:${job.dest}`),
      el("td", { class: `state-${job.state}` }, job.state),
      el("td", {}, `${count(job, "objects_copied")} copied, ${count(job, "objects_skipped")} skipped, ${count(job, "objects_failed")} failed of ${count(job, "objects_listed")}${job.listing_done ? "" : "+"} listed`),
      el("td", {}, `${bytes(count(job, "bytes_copied"))}${job.bytes_per_s ? ` at ${bytes(job.bytes_per_s)}/s` : ""}`),
      el("td", {}, time(job.started_ms)),
      el("td", {}, failuresText(job)),
    ),
  );
  box.append(
    el(
      "table",
      { id: "import-list" },
      el("thead", {}, el("tr", {}, ...["Job", "Source", "Destination", "State", "Objects", "Bytes", "Started", "Errors"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows),
    ),
  );
  if (nowRunning.size) {
    timer = setTimeout(() => renderImports(target), IMPORTS_REFRESH_MS);
  }
}
