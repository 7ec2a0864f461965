// Jobs: submit a solve or a polish, list with live progress, one job's progress, cancel.

import { api, listAll } from "./api.js";
import { pager } from "./datasets.js";
import {
  announce, clear, dl, elapsed, errorBox, field, fmtDuration, fmtPct, fmtTime, h, select,
  shortId, stateBadge, table,
} from "./util.js";

const ACTIVE = new Set(["queued", "running"]);
const PAGE = 20;

export async function jobsView(root, ctx, query) {
  const offset = Math.max(0, Number(query?.offset) || 0);
  const [datasets, weights] = await Promise.all([listAll("/datasets", {}, 500),
    listAll("/weights", {}, 500)]);
  if (!ctx.alive) return;
  root.append(h("h1", {}, "Jobs"), submitCard(datasets, weights, query || {}));
  const filter = h("select", { name: "state" },
    ["", "queued", "running", "succeeded", "failed", "cancelled"].map((s) =>
      h("option", { value: s, selected: s === (query?.state || "") }, s || "any state")));
  filter.addEventListener("change", () => {
    location.hash = filter.value ? `#/jobs?state=${filter.value}` : "#/jobs";
  });
  const body = h("div", {}, h("p.muted", {}, "Loading…"));
  root.append(h("section.card", { "aria-labelledby": "jobs-list-title" },
    h("div.row", {}, h("h2#jobs-list-title", {}, "Your jobs"), h("span.spacer"),
      h("div.field", { style: "min-width:160px" }, h("label", { for: "jobs-state" }, "Show"), Object.assign(filter, { id: "jobs-state" }))),
    body));
  const names = new Map(datasets.map((d) => [d.id, d.name || shortId(d.id)]));
  ctx.poll(async () => {
    const page = await api("/jobs", { query: { limit: PAGE, offset, state: query?.state } });
    if (!ctx.alive) return false;
    clear(body, page.total === 0 ? h("p.muted", {}, "No jobs.") : [
      table(["Job", "kind", "state", h("th.progress-cell", { scope: "col" }, "progress"), "elapsed",
        h("th.hide-narrow", { scope: "col" }, "dataset"), "result", ""],
      page.items.map((j) => h("tr", { dataset: { id: j.id } },
        h("td", {}, h("a", { href: `#/jobs/${j.id}` }, shortId(j.id))),
        h("td", {}, j.kind), h("td", {}, stateBadge(j.state)),
        h("td.progress-cell", {}, h("progress", { max: 1, value: j.progress.fraction,
          "aria-label": `progress of job ${shortId(j.id)}` }),
        h("div.hint", {}, `${fmtPct(j.progress.fraction)} · ${j.progress.stage}`)),
        h("td.num", {}, fmtDuration(elapsed(j.started_at, j.finished_at))),
        h("td.hide-narrow", {}, j.dataset_id ? h("a", { href: `#/datasets/${j.dataset_id}` }, names.get(j.dataset_id) || shortId(j.dataset_id)) : "—"),
        h("td", {}, j.network_id ? h("a", { href: `#/networks/${j.network_id}` }, "network")
          : j.error ? h("span", { title: j.error.message }, j.error.code) : "—"),
        h("td", {}, ACTIVE.has(j.state) ? cancelButton(j, () => {}) : null))),
      { "aria-label": "Jobs" }),
      pager(query?.state ? `#/jobs?state=${query.state}` : "#/jobs", offset, page.total, PAGE)]);
    return page.items.some((j) => ACTIVE.has(j.state));
  }, 1500);
}

function cancelButton(job, after) {
  return h("button.small.danger", {
    type: "button", "aria-label": `Cancel job ${shortId(job.id)}`,
    onclick: async (e) => {
      e.currentTarget.disabled = true;
      try {
        await api(`/jobs/${job.id}/cancel`, { method: "POST" });
        announce(`Job ${shortId(job.id)} cancelled`);
      } catch (ex) {
        announce(`Not cancelled: ${ex.message}`, 8000);
      }
      after();
    },
  }, "Cancel");
}

// ---------------------------------------------------------------- submit

function num(name, value, attrs = {}) {
  return h("input", { type: "number", name, value, step: "any", ...attrs });
}

const LOSSES = [["squared", "squared (regression)"], ["logistic", "logistic (2 classes)"],
  ["hinge", "hinge (2 classes)"], ["softmax", "softmax (integer classes)"]];

function submitCard(datasets, weights, query) {
  const kindRadio = (v, text) => h("label", {}, h("input", { type: "radio", name: "kind", value: v,
    checked: (query.kind || "solve") === v }), text);
  const dsSelect = h("select", { name: "dataset_id", required: true },
    datasets.length ? null : h("option", { value: "" }, "no datasets: upload one first"),
    datasets.map((d) => h("option", { value: d.id, selected: d.id === query.dataset },
      `${d.name || shortId(d.id)} (n=${d.n}, d=${d.d})`)));
  const common = () => [
    field("Loss", select("loss", LOSSES, "squared")),
    field("p (norm of w)", select("p", [["1", "1 (exact, certifiable)"], ["2", "2"]], "1")),
    field("λ (lam)", num("lam", "0.01", { min: "0", required: true }), { hint: "regularization, > 0" }),
    field("Fit biases", h("input", { type: "checkbox", name: "bias", checked: true }), { check: true }),
  ];
  const solve = h("div#solve-fields", {},
    h("div.fields", {}, ...common(),
      field("Dictionary source", select("source", [["auto", "auto"], ["exhaustive", "exhaustive (certifiable)"],
        ["search", "search (large d; not certified)"], ["sample", "sample (random hyperplanes)"]], "auto"),
      { hint: "auto: exhaustive when small enough, else search" }),
      field("Columns (n_columns)", num("n_columns", "", { min: 1, step: 1, placeholder: "—" }),
        { hint: "sample: how many; search: extra starts" }),
      field("Time budget (s)", num("max_time", "", { min: 0, placeholder: "server default" }),
        { hint: "stops with the best network so far, uncertified" }),
      field("Seed", num("seed", "0", { min: 0, step: 1 })),
      field("Layers (depth)", select("depth", [["2", "2"], ["3", "3 (blocks; one output, p = 1)"]], "2"),
        { hint: "3: certified three-layer network (docs/threelayer.md)" })),
    h("details", {}, h("summary", {}, "Advanced"),
      h("div.fields", {},
        field("Solver", select("solver", ["auto", "workingset", "cvxpy"], "auto")),
        field("Target gap (tol)", num("tol", "1e-6", { min: 0 })),
        field("Max columns", num("max_columns", "2000000", { min: 1, step: 1 })),
        field("Scan parts", num("scan_parts", "1", { min: 1, step: 1 }), { hint: "split pricing over workers" }),
        field("Warm start", select("warm_start", ["none", "polish", "sample"], "none")),
        field("l2 bound (p = 2)", h("input", { type: "checkbox", name: "l2_bound", checked: true }), { check: true }))));
  const wsSelect = h("select", { name: "weights_id" },
    h("option", { value: "" }, weights.length ? "— upload a file instead —" : "no weight sets yet"),
    weights.map((w) => h("option", { value: w.id },
      `${w.name || shortId(w.id)} (${w.layers.map((l) => `${l.d_in}→${l.d_out}`).join(", ")})`)));
  const wFile = h("input", { type: "file", name: "weights_file", accept: ".npz,.safetensors,.json" });
  const polish = h("div#polish-fields", {},
    h("div.fields", {},
      field("Existing weight set", wsSelect),
      field("or upload weights", wFile, { hint: ".npz/.safetensors/.json: W1, b1, W2, b2 … or a PyTorch state_dict" }),
      field("Layer names (optional)", h("input", { type: "text", name: "layer_names", placeholder: "e.g. hidden,out" }),
        { hint: "only for state dicts whose names do not tell the order" })),
    h("div.fields", {}, ...common(),
      field("Refit", select("refit", [["union", "union (never worse)"], ["polished", "polished only"],
        ["original", "original (baseline)"]], "union")),
      field("Validation fraction", num("validation_fraction", "", { min: 0, max: 1, placeholder: "none" }),
        { hint: "held out for validation metrics" }),
      field("Seed", num("seed", "0", { min: 0, step: 1 }))));
  const out = h("div", { "aria-live": "polite" });
  const form = h("form.card", { "aria-labelledby": "submit-title", novalidate: true },
    h("h2#submit-title", {}, "Submit a job"),
    h("fieldset", {}, h("legend", {}, "Job kind"), h("div.radios", {},
      kindRadio("solve", "Solve: train a network by the convex program"),
      kindRadio("polish", "Polish: snap uploaded weights to index sets"))),
    h("div.fields", {}, field("Dataset", dsSelect, { wide: true })),
    solve, polish,
    h("button", { type: "submit", disabled: !datasets.length }, "Submit"), out);
  const show = () => {
    const kind = form.querySelector("input[name=kind]:checked").value;
    solve.hidden = kind !== "solve";
    polish.hidden = kind !== "polish";
  };
  form.addEventListener("change", (e) => { if (e.target.name === "kind") show(); });
  show();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clear(out);
    const kind = form.querySelector("input[name=kind]:checked").value;
    const part = kind === "solve" ? solve : polish;
    const val = (n) => part.querySelector(`[name=${n}]`);
    const params = {
      loss: val("loss").value, p: Number(val("p").value), bias: val("bias").checked,
      lam: Number(val("lam").value), seed: Number(val("seed").value || 0),
    };
    const optional = (n, conv = Number) => { if (val(n).value.trim() !== "") params[n] = conv(val(n).value); };
    if (kind === "solve") {
      params.source = val("source").value;
      optional("n_columns");
      optional("max_time");
      params.solver = val("solver").value;
      params.tol = Number(val("tol").value);
      params.max_columns = Number(val("max_columns").value);
      params.scan_parts = Number(val("scan_parts").value);
      params.warm_start = val("warm_start").value;
      params.l2_bound = val("l2_bound").checked;
      if (val("depth").value === "3") {
        params.depth = 3;
        for (const k of ["scan_parts", "warm_start", "l2_bound", "max_columns"]) delete params[k];
      }
    } else {
      params.refit = val("refit").value;
      optional("validation_fraction");
    }
    const btn = form.querySelector("button[type=submit]");
    btn.disabled = true;
    try {
      const body = { kind, dataset_id: dsSelect.value, params };
      if (kind === "polish") {
        let wid = wsSelect.value;
        if (wFile.files[0]) {
          const fd = new FormData();
          fd.append("file", wFile.files[0]);
          fd.append("dataset_id", dsSelect.value);
          const ln = val("layer_names").value.trim();
          if (ln) fd.append("layer_names", ln);
          const ws = await api("/weights", { form: fd });
          announce(`Uploaded weight set ${shortId(ws.id)}`);
          wid = ws.id;
        }
        if (!wid) throw new Error("choose a weight set or upload a weights file");
        body.weights_id = wid;
      }
      const job = await api("/jobs", { json: body });
      announce(`Job ${shortId(job.id)} queued`);
      location.hash = `#/jobs/${job.id}`;
    } catch (ex) {
      out.append(errorBox(ex));
    } finally {
      btn.disabled = false;
    }
  });
  return form;
}

// ---------------------------------------------------------------- one job

export async function jobView(root, ctx, id) {
  let job = await api(`/jobs/${encodeURIComponent(id)}`);
  if (!ctx.alive) return;
  const title = h("h1", {}, `${job.kind === "polish" ? "Polish" : "Solve"} job ${shortId(job.id)}`);
  const badge = h("span");
  const bar = h("progress", { max: 1, value: 0, "aria-labelledby": "job-progress-label" });
  const live = h("p#job-progress-label.sentence", { "aria-live": "polite", "aria-atomic": "true" });
  const clock = h("span.big");
  const pct = h("span.big");
  const actions = h("div.row");
  const errBox = h("div");
  const details = h("div");
  root.append(title, h("section.card", { "aria-label": "Progress" },
    h("div.row", {}, badge, h("span.spacer"), actions),
    h("div.stats", {}, h("div", {}, h("span.label", {}, "progress"), pct),
      h("div", {}, h("span.label", {}, "elapsed"), clock)),
    bar, live, errBox), details);

  let lastSpoken = "";
  function render() {
    clear(badge, stateBadge(job.state));
    bar.value = job.state === "succeeded" ? 1 : job.progress.fraction;
    pct.textContent = fmtPct(bar.value);
    const spoken = job.state === "running" ? `Running: ${job.progress.stage}`
      : job.state === "queued" ? "Queued: waiting for a worker"
        : job.state === "succeeded" ? "Finished: the network is ready"
          : job.state === "failed" ? "Failed" : "Cancelled";
    if (spoken !== lastSpoken) { live.textContent = spoken; lastSpoken = spoken; }
    clear(actions,
      ACTIVE.has(job.state) ? cancelButton(job, refresh) : null,
      job.network_id ? h("a.button", { href: `#/networks/${job.network_id}` }, "Open network") : null);
    clear(errBox, job.error ? h("div.error", { role: "alert" },
      h("strong", {}, job.error.code), `: ${job.error.message}`) : null);
    clear(details, h("section.card", { "aria-label": "Job details" },
      dl([["id", h("span.mono", {}, job.id)], ["kind", job.kind],
        ["dataset", job.dataset_id ? h("a", { href: `#/datasets/${job.dataset_id}` }, shortId(job.dataset_id)) : "— (deleted)"],
        job.weights_id ? ["weight set", h("span.mono", {}, job.weights_id)] : null,
        ["attempts", job.attempts], ["created", fmtTime(job.created_at)], ["started", fmtTime(job.started_at)],
        ["finished", fmtTime(job.finished_at)], ["last heartbeat", fmtTime(job.heartbeat_at)],
        job.idempotency_key ? ["idempotency key", job.idempotency_key] : null]),
      h("h3", {}, "Parameters"),
      dl(Object.entries(job.params).map(([k, v]) => [k, h("span.mono", {}, v === null ? "—" : String(v))]))));
    tickClock();
  }
  function tickClock() {
    clock.textContent = fmtDuration(elapsed(job.started_at, job.finished_at));
  }
  async function refresh() {
    job = await api(`/jobs/${encodeURIComponent(id)}`);
    if (ctx.alive) render();
  }
  render();
  const clockTimer = setInterval(() => { if (ACTIVE.has(job.state)) tickClock(); }, 250);
  ctx.onLeave(() => clearInterval(clockTimer));
  ctx.poll(async () => {
    if (ACTIVE.has(job.state)) await refresh();
    return ACTIVE.has(job.state);
  }, 700);
}
