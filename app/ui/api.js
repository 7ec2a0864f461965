// The public API, called with the key kept in sessionStorage (this tab only).
// Paths are resolved against the folder above /ui/, so the page also works behind a prefix.

const KEY = "wedgenet.apiKey";
const BASE = new URL("../", document.baseURI);

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (key) => sessionStorage.setItem(KEY, key);
export const clearKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, detail) {
    super(detailText(detail));
    this.status = status;
    this.detail = detail;
  }
}

/** FastAPI details: a string, or pydantic's list of {loc, msg}. */
export function detailText(detail) {
  if (detail === null || detail === undefined) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => {
      const loc = (e.loc || []).filter((p) => p !== "body").join(".");
      return loc ? `${loc}: ${e.msg}` : e.msg;
    }).join("\n");
  }
  return JSON.stringify(detail);
}

export function url(path, query) {
  const u = new URL(path.replace(/^\//, ""), BASE);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, v);
  }
  return u;
}

/**
 * api("/datasets", {query, json, form, method, key, raw})
 * JSON in and out; throws ApiError with the server's message. 401 fires "wedgenet:unauthorized".
 */
export async function api(path, opts = {}) {
  const key = opts.key ?? getKey();
  const headers = { Accept: "application/json" };
  if (key) headers["X-API-Key"] = key;
  let body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  } else if (opts.form) {
    body = opts.form;
  }
  const method = opts.method || (body ? "POST" : "GET");
  let r;
  try {
    r = await fetch(url(path, opts.query), { method, headers, body, signal: opts.signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, `the server did not answer (${e.message})`);
  }
  if (r.status === 401 && !opts.key) {
    window.dispatchEvent(new CustomEvent("wedgenet:unauthorized"));
  }
  if (!r.ok) {
    let detail = r.statusText;
    try {
      const j = await r.json();
      detail = j.detail ?? j;
    } catch { /* not JSON */ }
    throw new ApiError(r.status, detail);
  }
  if (opts.raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

export async function apiBytes(path, query) {
  const r = await api(path, { query, raw: true });
  return r.arrayBuffer();
}

/** Download with the key header: fetch, then save the blob under the server's file name. */
export async function download(path, query, fallbackName) {
  const r = await api(path, { query, raw: true });
  const blob = await r.blob();
  const cd = r.headers.get("Content-Disposition") || "";
  const m = /filename="?([^";]+)"?/.exec(cd);
  saveBlob(blob, m ? m[1] : fallbackName || "download.bin");
}

export function saveBlob(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 30000);
}

/** Every item of a paginated list (limit/offset), up to `max` items. */
export async function listAll(path, query = {}, max = 1000, pageSize = 100) {
  const out = [];
  let offset = 0;
  for (;;) {
    const page = await api(path, { query: { ...query, limit: pageSize, offset } });
    out.push(...page.items);
    offset += page.items.length;
    if (!page.items.length || offset >= page.total || out.length >= max) return out;
  }
}
