// Small DOM helpers the pages share. Everything user-supplied (file names,
// keys, messages) goes in as text, never as markup.

/// `el("button", {type: "button", onclick: f}, "Delete")`: an element with
/// attributes (`on…` become listeners, `dataset` and boolean `true` handled)
/// and children (strings become text nodes; null and false are skipped).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) {
      continue;
    }
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) {
      continue;
    }
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  while (node.firstChild) {
    node.firstChild.remove();
  }
  return node;
}

/// Shows a message for the whole page (errors as the server worded them).
export function notify(message, kind = "error") {
  const box = document.getElementById("notice");
  box.textContent = message;
  box.className = `notice ${kind}`;
  box.hidden = false;
  clearTimeout(notify.timer);
  if (kind !== "error") {
    notify.timer = setTimeout(() => {
      box.hidden = true;
    }, 4000);
  }
}

export function clearNotice() {
  document.getElementById("notice").hidden = true;
}

/// Runs `action`, showing its error (if any) as the page's notice.
export async function attempt(action) {
  try {
    return await action();
  } catch (error) {
    notify(error.message || String(error));
    return undefined;
  }
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function bytes(n) {
  if (n === undefined || n === null) {
    return "";
  }
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function time(ms) {
  if (!ms) {
    return "";
  }
  return new Date(Number(ms)).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

/// A modal dialog asking for one line of text; resolves to it, or null.
export function prompt(title, label, initial = "") {
  return new Promise((resolve) => {
    const input = el("input", { id: "prompt-input", type: "text", value: initial, required: true });
    const form = el(
      "form",
      { method: "dialog" },
      el("h2", {}, title),
      el("label", { for: "prompt-input" }, label),
      input,
      el(
        "div",
        { class: "actions" },
        el("button", { type: "submit", value: "ok" }, "OK"),
        el("button", { type: "button", onclick: () => dialog.close("cancel") }, "Cancel"),
      ),
    );
    const dialog = el("dialog", { class: "card" }, form);
    dialog.addEventListener("close", () => {
      const answer = dialog.returnValue === "ok" ? input.value : null;
      dialog.remove();
      resolve(answer);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.select();
  });
}

/// A modal yes/no question.
export function confirmAction(question) {
  return new Promise((resolve) => {
    const dialog = el(
      "dialog",
      { class: "card", role: "alertdialog", "aria-label": question },
      el(
        "form",
        { method: "dialog" },
        el("p", {}, question),
        el(
          "div",
          { class: "actions" },
          el("button", { type: "submit", value: "yes", class: "danger" }, "Delete"),
          el("button", { type: "submit", value: "no" }, "Cancel"),
        ),
      ),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "yes");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/// Copies text to the clipboard; where the browser refuses, the caller still
/// shows the text in a field.
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    return false;
  }
}

/// A row of `<progress>` for one transfer, in `list`.
export function progressRow(list, name) {
  const bar = el("progress", { max: 1, value: 0, "aria-label": `progress of ${name}` });
  const state = el("span", { class: "state" }, "waiting");
  const row = el("li", { class: "transfer" }, el("span", { class: "name" }, name), bar, state);
  list.append(row);
  return {
    update(sent, total) {
      bar.max = total || 1;
      bar.value = sent;
      state.textContent = `${bytes(sent)} of ${bytes(total)}`;
    },
    done() {
      bar.value = bar.max;
      state.textContent = "done";
      row.classList.add("done");
    },
    failed(message) {
      state.textContent = `failed: ${message}`;
      row.classList.add("failed");
    },
  };
}
