// Small DOM and formatting helpers (no framework).

/** h("tag.class#id", {attr: value, onclick: fn, text: "..."}, ...children) -> Element */
export function h(spec, attrs = {}, ...children) {
  const m = /^([a-z0-9-]+)((?:[.#][\w-]+)*)$/i.exec(spec);
  const tag = m ? m[1] : spec;
  const el = tag === "svg" || SVG_TAGS.has(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = String(v);
    else if (k === "class") for (const c of String(v).split(/\s+/).filter(Boolean)) el.classList.add(c);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value" && "value" in el) el.value = v;
    else if (k === "checked" || k === "selected" || k === "disabled" || k === "hidden"
      || k === "required" || k === "multiple") {
      el[k] = Boolean(v);
      if (v) el.setAttribute(k, "");
    } else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

const SVG_TAGS = new Set(["g", "line", "circle", "rect", "path", "text", "image", "title",
  "polyline", "polygon", "defs", "clipPath", "tspan"]);

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Numbers: compact, exponent for very small or large values, "—" for missing. */
export function fmt(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  if (typeof x !== "number") return String(x);
  if (x === 0) return "0";
  const a = Math.abs(x);
  if (a < 1e-3 || a >= 1e6) return x.toExponential(Math.max(1, digits - 2));
  return Number(x.toPrecision(digits)).toString();
}

export function fmtPct(x) {
  if (x === null || x === undefined) return "—";
  return `${(100 * x).toFixed(x < 0.995 ? 0 : 1)} %`;
}

export function fmtDuration(sec) {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return "—";
  sec = Math.max(0, sec);
  if (sec < 10) return `${sec.toFixed(1)} s`;
  if (sec < 120) return `${Math.round(sec)} s`;
  const m = Math.floor(sec / 60);
  if (m < 120) return `${m} min ${Math.round(sec - 60 * m)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export const shortId = (id) => (id ? String(id).slice(0, 8) : "—");

export function norm(v) {
  let s = 0;
  for (const x of v) s += x * x;
  return Math.sqrt(s);
}

export function formatIndexSet(ix) {
  if (!ix) return "— (not a closed form)";
  const parts = [];
  if (ix.samples.length) parts.push(`samples ${ix.samples.join(", ")}`);
  if (ix.differences?.length) parts.push(`differences ${ix.differences.map(([i, j]) => `x${i}−x${j}`).join(", ")}`);
  if (ix.directions.length) parts.push(`directions ${ix.directions.map((k) => `e${k + 1}`).join(", ")}`);
  parts.push(`sign ${ix.sign > 0 ? "+" : "−"}`);
  return parts.join(" · ");
}

/** Announce a short message in the page's live region. */
let statusTimer = null;
export function announce(msg, ms = 4000) {
  const el = document.getElementById("status");
  if (!el) return;
  el.textContent = msg;
  clearTimeout(statusTimer);
  statusTimer = setTimeout(() => { el.textContent = ""; }, ms);
}

export function errorBox(err) {
  return h("div.error", { role: "alert" }, errorText(err));
}

export function errorText(err) {
  if (!err) return "";
  if (err.status) return `${err.status}: ${err.message}`;
  return err.message || String(err);
}

/** A table inside a horizontally scrolling wrapper. */
export function table(head, rows, attrs = {}) {
  return h("div.table-wrap", {},
    h("table", attrs,
      h("thead", {}, h("tr", {}, head.map((c) => (c instanceof Node ? c : h("th", { scope: "col" }, c))))),
      h("tbody", {}, rows)));
}

export function field(labelText, input, { hint, wide, check } = {}) {
  if (!input.id) input.id = `f-${Math.random().toString(36).slice(2, 9)}`;
  const label = h("label", { for: input.id }, labelText);
  const cls = `field${wide ? " wide" : ""}${check ? " check" : ""}`;
  const hintEl = hint ? h("span.hint", { id: `${input.id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute("aria-describedby", hintEl.id);
  return check ? h("div", { class: cls }, input, label, hintEl) : h("div", { class: cls }, label, input, hintEl);
}

export function select(name, options, value) {
  return h("select", { name },
    options.map((o) => {
      const [v, t] = Array.isArray(o) ? o : [o, o];
      return h("option", { value: v, selected: String(v) === String(value) }, t);
    }));
}

export function dl(pairs) {
  return h("dl.kv", {}, pairs.filter(Boolean).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function stateBadge(state) {
  return h("span", { class: `badge ${state}` }, state);
}

/** seconds between two ISO timestamps (or until now) */
export function elapsed(startIso, endIso) {
  if (!startIso) return null;
  const t0 = new Date(startIso).getTime();
  const t1 = endIso ? new Date(endIso).getTime() : Date.now();
  return Math.max(0, (t1 - t0) / 1000);
}
