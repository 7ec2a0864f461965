// Datasets: upload (CSV with a target column, X and y files, or one file), list, metadata,
// rows (images for square feature counts), delete, and "which neurons does sample i define?".

import { api, download, listAll } from "./api.js";
import { loadDataset } from "./npy.js";
import { imageSide, rangeOf, sampleImage } from "./plot.js";
import {
  announce, clear, dl, errorBox, field, fmt, fmtTime, formatIndexSet, h, shortId, table,
} from "./util.js";

const PAGE = 20;
const ARRAY_FILES = ".npy,.npz,.csv,.json,.safetensors";

export async function datasetsView(root, ctx, query) {
  const offset = Math.max(0, Number(query?.offset) || 0);
  const listCard = h("section.card", { "aria-labelledby": "ds-list-title" },
    h("h2#ds-list-title", {}, "Your datasets"), h("p.muted", {}, "Loading…"));
  root.append(h("h1", {}, "Datasets"), uploadCard(() => refresh()), listCard);

  async function refresh() {
    const page = await api("/datasets", { query: { limit: PAGE, offset } });
    if (!ctx.alive) return;
    const rows = page.items.map((ds) => h("tr", { dataset: { id: ds.id } },
      h("td", {}, h("a", { href: `#/datasets/${ds.id}` }, ds.name || shortId(ds.id))),
      h("td.num", {}, ds.n), h("td.num", {}, ds.d), h("td.num", {}, ds.outputs),
      h("td.hide-narrow", {}, `${ds.x_dtype} / ${ds.y_dtype}`),
      h("td.mono.hide-narrow", { title: `content ${ds.content_hash}\nX ${ds.x_sha256}\ny ${ds.y_sha256}` },
        ds.content_hash.slice(0, 12)),
      h("td.hide-narrow", {}, fmtTime(ds.created_at)),
      h("td", {}, h("div.row", {},
        h("a.button.small", { href: `#/jobs?dataset=${ds.id}` }, "Solve"),
        h("button.small.ghost", { type: "button", onclick: () => download(`/datasets/${ds.id}/download`) },
          "Download"),
        deleteButton(ds, refresh)))));
    clear(listCard, h("h2#ds-list-title", {}, "Your datasets"),
      page.total === 0
        ? h("p.muted", {}, "No datasets yet: upload one above.")
        : [table(["Name", h("th.num", { scope: "col" }, "n"), h("th.num", { scope: "col" }, "d"),
          h("th.num", { scope: "col" }, "outputs"), h("th.hide-narrow", { scope: "col" }, "dtypes X / y"),
          h("th.hide-narrow", { scope: "col" }, "sha256"), h("th.hide-narrow", { scope: "col" }, "uploaded"),
          "Actions"], rows, { "aria-label": "Datasets" }),
        pager("#/datasets", offset, page.total)]);
  }
  await refresh();
}

export function pager(base, offset, total, size = PAGE) {
  if (total <= size) return null;
  const sep = base.includes("?") ? "&" : "?";
  return h("nav.pager", { "aria-label": "Pages" },
    offset > 0 ? h("a.button.small.ghost", { href: `${base}${sep}offset=${Math.max(0, offset - size)}` }, "Previous") : null,
    h("span.muted", {}, `${offset + 1}–${Math.min(total, offset + size)} of ${total}`),
    offset + size < total ? h("a.button.small.ghost", { href: `${base}${sep}offset=${offset + size}` }, "Next") : null);
}

function deleteButton(ds, after) {
  return h("button.small.danger", {
    type: "button",
    "aria-label": `Delete dataset ${ds.name || ds.id}`,
    onclick: async () => {
      if (!window.confirm(`Delete dataset ${ds.name || ds.id}? Its networks stay; jobs on it lose their dataset.`)) return;
      try {
        await api(`/datasets/${ds.id}`, { method: "DELETE" });
        announce(`Deleted dataset ${ds.name || shortId(ds.id)}`);
        after();
      } catch (e) {
        announce(`Not deleted: ${e.message}`, 8000);
      }
    },
  }, "Delete");
}

// ---------------------------------------------------------------- upload

/** Parse CSV text (quotes allowed) into rows of cells. */
export function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") { row.push(cell); cell = ""; } else if (ch === "\n" || ch === "\r") {
      if (ch === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); rows.push(row); row = []; cell = "";
    } else cell += ch;
  }
  if (cell !== "" || row.length) { row.push(cell); rows.push(row); }
  return rows.filter((r) => r.some((c) => c.trim() !== ""));
}

const isNum = (c) => c.trim() !== "" && Number.isFinite(Number(c.trim()));
const csvLine = (cells) => cells.map((c) => (/[",\n]/.test(c) ? `"${c.replace(/"/g, '""')}"` : c)).join(",");

/** Split a CSV into X.csv (every other column) and y (the target): y goes as JSON integers
 * when every target cell is an integer (class labels, e.g. for softmax), else as CSV. */
export function splitCsv(text, target) {
  const rows = parseCsv(text.replace(/^\uFEFF/, ""));
  if (!rows.length) throw new Error("the CSV file has no rows");
  const header = rows[0].every((c) => !isNum(c)) ? rows[0] : null;
  const width = rows[0].length;
  if (width < 2) throw new Error("the CSV needs at least two columns: features and a target");
  if (target < 0 || target >= width) throw new Error(`no column ${target + 1}`);
  const xLines = rows.map((r) => csvLine(r.filter((_, j) => j !== target)));
  const ys = rows.slice(header ? 1 : 0).map((r) => (r[target] ?? "").trim());
  const ints = ys.length && ys.every((c) => /^[+-]?\d+$/.test(c) && Math.abs(Number(c)) < 2 ** 52);
  const yFile = ints
    ? new File([JSON.stringify(ys.map(Number))], "y.json", { type: "application/json" })
    : new File([rows.map((r) => csvLine([r[target] ?? ""])).join("\n")], "y.csv", { type: "text/csv" });
  return { X: new File([xLines.join("\n")], "X.csv", { type: "text/csv" }), y: yFile, header, ints };
}

function uploadCard(onDone) {
  const mode = (v, text, checked) => h("label", {},
    h("input", { type: "radio", name: "mode", value: v, checked }), text);
  const csvFile = h("input", { type: "file", name: "csv", accept: ".csv,text/csv" });
  const target = h("select", { name: "target" }, h("option", { value: "-1" }, "last column"));
  const xFile = h("input", { type: "file", name: "X", accept: ARRAY_FILES });
  const yFile = h("input", { type: "file", name: "y", accept: ARRAY_FILES });
  const oneFile = h("input", { type: "file", name: "file", accept: ".npz,.safetensors,.json" });
  const name = h("input", { type: "text", name: "name", maxlength: 200, placeholder: "optional" });
  const out = h("div", { "aria-live": "polite" });
  const groups = {
    csv: h("div.fields", {},
      field("CSV file", csvFile, { hint: "first row may be column names" }),
      field("Target column (y)", target, { hint: "the other columns are the features X; integer targets are sent as class labels" })),
    xy: h("div.fields", {},
      field("X file (n × d)", xFile, { hint: ".npy, .npz, .csv, .json or .safetensors" }),
      field("y file (n or n × c)", yFile, { hint: "same formats" })),
    one: h("div.fields", {}, field("File holding arrays X and y", oneFile, { hint: ".npz, .safetensors or .json {\"X\": …, \"y\": …}" })),
  };
  const form = h("form.card", { "aria-labelledby": "upload-title" },
    h("h2#upload-title", {}, "Upload a dataset"),
    h("fieldset", {}, h("legend", {}, "What are you uploading?"),
      h("div.radios", {}, mode("csv", "CSV with a target column", true),
        mode("xy", "Separate X and y files", false), mode("one", "One file with X and y", false))),
    groups.csv, groups.xy, groups.one,
    h("div.fields", {}, field("Name", name)),
    h("button", { type: "submit" }, "Upload"), out);
  const show = () => {
    const m = form.querySelector("input[name=mode]:checked").value;
    for (const [k, g] of Object.entries(groups)) g.hidden = k !== m;
  };
  form.addEventListener("change", (e) => { if (e.target.name === "mode") show(); });
  show();
  csvFile.addEventListener("change", async () => {
    const f = csvFile.files[0];
    clear(target, h("option", { value: "-1" }, "last column"));
    if (!f) return;
    const first = parseCsv((await f.slice(0, 65536).text()).replace(/^\uFEFF/, ""))[0] || [];
    const named = first.length && first.every((c) => !isNum(c));
    clear(target, first.map((c, j) => h("option", { value: j, selected: j === first.length - 1 },
      named ? `${c.trim() || `column ${j + 1}`}` : `column ${j + 1}`)));
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(out);
    const m = form.querySelector("input[name=mode]:checked").value;
    const fd = new FormData();
    try {
      if (m === "csv") {
        const f = csvFile.files[0];
        if (!f) throw new Error("choose a CSV file");
        const text = await f.text();
        const width = parseCsv(text.slice(0, 65536))[0]?.length || 0;
        let t = Number(target.value);
        if (t < 0) t = width - 1;
        const parts = splitCsv(text, t);
        fd.append("X", parts.X);
        fd.append("y", parts.y);
        if (!name.value.trim()) fd.append("name", f.name.replace(/\.csv$/i, ""));
      } else if (m === "xy") {
        if (!xFile.files[0] || !yFile.files[0]) throw new Error("choose both an X and a y file");
        fd.append("X", xFile.files[0]);
        fd.append("y", yFile.files[0]);
      } else {
        if (!oneFile.files[0]) throw new Error("choose a file");
        fd.append("file", oneFile.files[0]);
      }
      if (name.value.trim()) fd.append("name", name.value.trim());
    } catch (ex) {
      out.append(errorBox(ex));
      return;
    }
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true;
    try {
      const r = await api("/datasets", { form: fd, raw: true });
      const ds = await r.json();
      const again = r.status === 200;
      out.append(h("div.note", {},
        again ? "This content was already uploaded with this key: " : "Uploaded ",
        h("a", { href: `#/datasets/${ds.id}` }, ds.name || shortId(ds.id)),
        ` (n = ${ds.n}, d = ${ds.d}, ${ds.outputs} output${ds.outputs > 1 ? "s" : ""}). `,
        h("a", { href: `#/jobs?dataset=${ds.id}` }, "Solve it")));
      announce(again ? "Dataset already uploaded" : "Dataset uploaded");
      form.reset();
      show();
      onDone();
    } catch (ex) {
      out.append(errorBox(ex));
    } finally {
      btn.disabled = false;
    }
  });
  return form;
}

// ---------------------------------------------------------------- one dataset

export async function datasetView(root, ctx, id, query) {
  const ds = await api(`/datasets/${encodeURIComponent(id)}`);
  if (!ctx.alive) return;
  const base = `/datasets/${ds.id}/download`;
  root.append(
    h("h1", {}, `Dataset ${ds.name || shortId(ds.id)}`),
    h("section.card", { "aria-label": "Dataset metadata" },
      dl([["id", h("span.mono", {}, ds.id)], ["name", ds.name || "—"],
        ["size", `n = ${ds.n} samples, d = ${ds.d} features, ${ds.outputs} output${ds.outputs > 1 ? "s" : ""}`],
        ["dtypes", `X ${ds.x_dtype}, y ${ds.y_dtype}`],
        ["content sha256", h("span.mono", {}, ds.content_hash)],
        ["X sha256", h("span.mono", {}, ds.x_sha256)], ["y sha256", h("span.mono", {}, ds.y_sha256)],
        ["uploaded", fmtTime(ds.created_at)]]),
      h("div.row", { style: "margin-top:12px" },
        h("a.button", { href: `#/jobs?dataset=${ds.id}` }, "Solve"),
        h("a.button.ghost", { href: `#/jobs?dataset=${ds.id}&kind=polish` }, "Polish weights"),
        h("button.ghost", { type: "button", onclick: () => download(base) }, "Download .npz"),
        h("button.ghost", { type: "button", onclick: () => download(base, { array: "X" }) }, "X .npy"),
        h("button.ghost", { type: "button", onclick: () => download(base, { array: "y" }) }, "y .npy"),
        deleteButton(ds, () => { location.hash = "#/datasets"; }))));

  const lookup = sampleLookup(ds, ctx);
  root.append(lookup.el);
  const related = h("section.card", { "aria-labelledby": "ds-jobs-title" },
    h("h2#ds-jobs-title", {}, "Jobs on this dataset"), h("p.muted", {}, "Loading…"));
  const rowsCard = h("section.card", { "aria-labelledby": "ds-rows-title" },
    h("h2#ds-rows-title", {}, "Rows"), h("p.muted", {}, "Loading…"));
  root.append(related, rowsCard);
  if (query?.sample !== undefined) lookup.run(Number(query.sample));

  listAll("/jobs", {}, 500).then((jobs) => {
    if (!ctx.alive) return;
    const mine = jobs.filter((j) => j.dataset_id === ds.id);
    clear(related, h("h2#ds-jobs-title", {}, "Jobs on this dataset"),
      mine.length ? table(["Job", "kind", "state", "network"], mine.map((j) => h("tr", {},
        h("td", {}, h("a", { href: `#/jobs/${j.id}` }, shortId(j.id))), h("td", {}, j.kind),
        h("td", {}, h("span", { class: `badge ${j.state}` }, j.state)),
        h("td", {}, j.network_id ? h("a", { href: `#/networks/${j.network_id}` }, shortId(j.network_id)) : "—"))))
        : h("p.muted", {}, "No jobs yet. ", h("a", { href: `#/jobs?dataset=${ds.id}` }, "Submit a solve")));
  }).catch((e) => clear(related, errorBox(e)));

  try {
    const data = await loadDataset(ds.id);
    if (!ctx.alive) return;
    clear(rowsCard, h("h2#ds-rows-title", {}, "Rows"), rowsView(data, (i) => lookup.run(i)));
  } catch (e) {
    clear(rowsCard, h("h2#ds-rows-title", {}, "Rows"), errorBox(e));
  }
}

const MAX_ROWS = 200;
const MAX_COLS = 12;

/** The first rows of X and y as a table (and as images when d is a square >= 16). */
export function rowsView(data, onLookup) {
  const side = imageSide(data.d);
  const cols = Math.min(data.d, MAX_COLS);
  const n = Math.min(data.n, MAX_ROWS);
  const out = [];
  if (data.n > n) out.push(h("p.muted", {}, `The first ${n} of ${data.n} rows.`));
  if (side) {
    const [lo, hi] = rangeOf(data.X);
    out.push(h("h3", {}, `As ${side}×${side} images`),
      h("div.imgs", {}, data.X.slice(0, Math.min(n, 60)).map((r, i) =>
        sampleImage(r, side, lo, hi, `#${i} y=${data.y[i].map((v) => fmt(v, 3)).join(",")}`))));
  }
  out.push(table(["sample", ...Array.from({ length: cols }, (_, j) => h("th.num", { scope: "col" }, `x${j + 1}`)),
    ...(data.d > cols ? [h("th", { scope: "col" }, "…")] : []),
    ...data.y[0].map((_, k) => h("th.num", { scope: "col" }, data.y[0].length > 1 ? `y${k + 1}` : "y")), ""],
  data.X.slice(0, n).map((r, i) => h("tr", {},
    h("td.num", {}, i), r.slice(0, cols).map((v) => h("td.num", {}, fmt(v))),
    data.d > cols ? h("td", {}, "…") : null,
    data.y[i].map((v) => h("td.num", {}, fmt(v))),
    h("td", {}, h("button.small.ghost", { type: "button", "aria-label": `Which neurons does sample ${i} define?`,
      onclick: () => onLookup(i) }, "neurons")))),
  { "aria-label": "Dataset rows" }));
  return out;
}

/** "Which neurons does training sample i define?" through GET /neurons?sample=i; hits in
 * networks of other datasets (the endpoint searches all of the key's networks) are left out. */
function sampleLookup(ds, ctx) {
  const input = h("input", { type: "number", name: "sample", min: 0, max: ds.n - 1, step: 1, required: true });
  const out = h("div", { "aria-live": "polite" });
  const form = h("form", {},
    h("div.fields", {}, field(`Training sample index (0 to ${ds.n - 1})`, input)),
    h("button", { type: "submit" }, "Look up"), out);
  const el = h("section.card", { "aria-labelledby": "lookup-title" },
    h("h2#lookup-title", {}, "Which neurons does a training sample define?"),
    h("p.muted", {}, "A neuron's index set is the few training samples its hyperplane passes "
      + "through. This finds every neuron of your networks on this dataset whose index set contains the sample."),
    form);
  async function run(i) {
    if (!Number.isInteger(i) || i < 0 || i >= ds.n) {
      clear(out, errorBox({ message: `choose a sample between 0 and ${ds.n - 1}` }));
      return;
    }
    input.value = i;
    clear(out, h("p.muted", {}, "Looking up…"));
    try {
      const [hits, jobs] = await Promise.all([
        listAll("/neurons", { sample: i }, 2000, 1000),
        listAll("/jobs", {}, 2000, 500),
      ]);
      if (!ctx.alive) return;
      const onThis = new Set(jobs.filter((j) => j.dataset_id === ds.id).map((j) => j.id));
      const mine = hits.filter((x) => onThis.has(x.job_id));
      const nets = new Set(mine.map((x) => x.network_id));
      clear(out,
        h("p", { class: "lookup-summary" }, mine.length
          ? `Sample ${i} is in the index set of ${mine.length} neuron${mine.length > 1 ? "s" : ""} in ${nets.size} network${nets.size > 1 ? "s" : ""}.`
          : `No neuron's index set contains sample ${i}.`),
        mine.length ? table(["network", "neuron", "index set", "formula"], mine.map((x) => h("tr", {},
          h("td", {}, h("a", { href: `#/networks/${x.network_id}` }, shortId(x.network_id))),
          h("td", {}, h("a", { href: `#/networks/${x.network_id}?neuron=${x.position}` }, `#${x.position}`)),
          h("td", {}, formatIndexSet(x.index_set)), h("td.formula", {}, x.formula))),
        { "aria-label": `Neurons defined by sample ${i}` }) : null);
      out.scrollIntoView({ block: "nearest" });
    } catch (e) {
      clear(out, errorBox(e));
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); run(Number(input.value)); });
  return { el, run };
}
