// The dashboard's shell: sign-in, navigation between the five pages, sign-out.
// Nothing is shown until the server accepted the token.

import { call, setToken, token, whenUnauthorized } from "./api.js";
import { clearNotice, notify } from "./ui.js";
import * as files from "./files.js";
import * as objects from "./objects.js";
import * as kv from "./kv.js";
import * as queues from "./queues.js";
import * as cluster from "./cluster.js";

const PAGES = { files, objects, kv, queues, cluster };
let current = null;
let node = null;

function byId(id) {
  return document.getElementById(id);
}

function showSignIn(message) {
  node = null;
  if (current) {
    PAGES[current].leave?.();
    current = null;
  }
  for (const name of Object.keys(PAGES)) {
    const section = byId(name);
    section.hidden = true;
    section.replaceChildren();
  }
  byId("nav").hidden = true;
  byId("sign-out").hidden = true;
  byId("whoami").textContent = "";
  byId("sign-in").hidden = false;
  byId("sign-in-error").textContent = message || "";
  byId("token").value = "";
  byId("token").focus();
}

async function signIn(value) {
  setToken(value);
  try {
    node = await call("GET", "/cairn/node");
  } catch (error) {
    setToken("");
    const reason =
      error.status === 401 ? `The token was refused: ${error.message}` : `Could not sign in: ${error.message}`;
    showSignIn(reason);
    return;
  }
  byId("sign-in").hidden = true;
  byId("nav").hidden = false;
  byId("sign-out").hidden = false;
  byId("whoami").textContent = `workspace ${node.workspace_id} · node ${node.id}`;
  route();
}

function route() {
  if (!node) {
    return;
  }
  clearNotice();
  const hash = location.hash.replace(/^#\/?/, "");
  const name = PAGES[hash.split("/")[0]] ? hash.split("/")[0] : "files";
  if (current && current !== name) {
    PAGES[current].leave?.();
    byId(current).hidden = true;
  }
  for (const link of byId("nav").querySelectorAll("a")) {
    if (link.dataset.section === name) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  const section = byId(name);
  section.hidden = false;
  if (current !== name) {
    current = name;
    PAGES[name].enter(section, node);
  }
}

window.addEventListener("DOMContentLoaded", () => {
  whenUnauthorized((error) => {
    setToken("");
    showSignIn(`Signed out: ${error.message}`);
  });
  byId("sign-in-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn(byId("token").value.trim());
  });
  byId("sign-out").addEventListener("click", () => {
    setToken("");
    showSignIn("Signed out.");
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("unhandledrejection", (event) => {
    notify(event.reason?.message || String(event.reason));
  });
  if (token()) {
    signIn(token());
  } else {
    showSignIn("");
  }
});
