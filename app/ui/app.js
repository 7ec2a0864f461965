// Entry point: sign-in, hash routing, per-view cleanup (polling stops when a view is left).

import { api, clearKey, getKey, setKey } from "./api.js";
import { datasetsView, datasetView } from "./datasets.js";
import { jobsView, jobView } from "./jobs.js";
import { networksView, networkView } from "./networks.js";
import { clearDatasetCache } from "./npy.js";
import { clear, errorBox, field, h } from "./util.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

const ROUTES = [
  [/^\/?$/, () => datasetsView, "datasets"],
  [/^\/datasets\/?$/, () => datasetsView, "datasets"],
  [/^\/datasets\/([^/]+)$/, () => datasetView, "datasets"],
  [/^\/jobs\/?$/, () => jobsView, "jobs"],
  [/^\/jobs\/([^/]+)$/, () => jobView, "jobs"],
  [/^\/networks\/?$/, () => networksView, "networks"],
  [/^\/networks\/([^/]+)$/, () => networkView, "networks"],
];

let current = null; // {alive, cleanups}
let signInMessage = "";

function parseHash() {
  const raw = decodeURIComponent(location.hash.replace(/^#/, "")) || "/";
  const [path, qs] = raw.split("?");
  return { path, query: Object.fromEntries(new URLSearchParams(qs || "")) };
}

/** A context per rendered view: `alive` turns false when the user navigates away. */
function newContext() {
  const ctx = {
    alive: true,
    cleanups: [],
    onLeave(fn) { ctx.cleanups.push(fn); },
    /** run fn now and then every `ms` while the view is shown and fn returns true */
    poll(fn, ms) {
      let timer = null;
      const tick = async () => {
        if (!ctx.alive) return;
        let again = false;
        try { again = await fn(); } catch (e) { again = true; console.warn(e); }
        if (ctx.alive && again) timer = setTimeout(tick, ms);
      };
      ctx.onLeave(() => clearTimeout(timer));
      tick();
    },
  };
  return ctx;
}

async function route() {
  if (current) {
    current.alive = false;
    for (const fn of current.cleanups) fn();
  }
  const ctx = newContext();
  current = ctx;
  if (!getKey()) {
    showSignIn();
    return;
  }
  const { path, query } = parseHash();
  const found = ROUTES.find(([re]) => re.test(path));
  nav.hidden = false;
  who.hidden = false;
  const section = found ? found[2] : "";
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  clear(view);
  if (!found) {
    view.append(h("h1", {}, "Not found"), h("p", {}, "This page does not exist. ",
      h("a", { href: "#/datasets" }, "Go to your datasets")));
    return;
  }
  const args = found[0].exec(path).slice(1);
  try {
    await found[1]()(view, ctx, ...args, query);
  } catch (e) {
    if (!ctx.alive) return;
    view.append(errorBox(e));
  }
  if (ctx.alive && document.activeElement === document.body) view.focus({ preventScroll: true });
}

function showSignIn() {
  nav.hidden = true;
  who.hidden = true;
  const input = h("input", { type: "password", name: "key", autocomplete: "off", required: true,
    spellcheck: "false" });
  const err = h("div", { "aria-live": "assertive" });
  const form = h("form.card.signin", { "aria-labelledby": "signin-title" },
    h("h1#signin-title", {}, "Sign in"),
    h("p.muted", {}, "Enter your API key. You will see only the datasets, jobs and networks of "
      + "this key. The key is kept in this browser tab only (sessionStorage) and sent as the "
      + "X-API-Key header."),
    signInMessage ? h("div.note", {}, signInMessage) : null,
    h("div.fields", {}, field("API key", input, { wide: true,
      hint: "wedgenet serve prints the development key (dev-key) when no keys are configured" })),
    err,
    h("button", { type: "submit" }, "Sign in"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const key = input.value.trim();
    clear(err);
    if (!key) return;
    const btn = form.querySelector("button");
    btn.disabled = true;
    try {
      await api("/datasets", { query: { limit: 1 }, key });
      setKey(key);
      signInMessage = "";
      updateWho();
      if (!location.hash || location.hash === "#/" || location.hash === "#") location.hash = "#/datasets";
      else route();
    } catch (ex) {
      err.append(errorBox(ex.status === 401
        ? { message: `This key was refused: ${ex.message}. Nothing is shown without a valid key.` }
        : ex));
      input.focus();
      input.select();
    } finally {
      btn.disabled = false;
    }
  });
  clear(view, form);
  input.focus();
}

function updateWho() {
  const key = getKey() || "";
  document.getElementById("who-key").textContent = key
    ? `key …${key.slice(-Math.min(4, Math.max(1, key.length - 4)))}` : "";
}

document.getElementById("sign-out").addEventListener("click", () => {
  clearKey();
  clearDatasetCache();
  signInMessage = "Signed out.";
  route();
});

window.addEventListener("wedgenet:unauthorized", () => {
  if (!getKey()) return;
  clearKey();
  clearDatasetCache();
  signInMessage = "The server refused the key (401); sign in again.";
  route();
});
window.addEventListener("hashchange", route);
updateWho();
route();
