// Networks: list; one network's certificate, polish report, neurons (sortable, selectable),
// the selected neuron's index-set samples (rows, images), the 2-D figure, exports.

import { api, download, saveBlob } from "./api.js";
import { pager } from "./datasets.js";
import { loadDataset } from "./npy.js";
import { forward, imageSide, rangeOf, regionPlot, sampleImage } from "./plot.js";
import {
  announce, clear, dl, errorBox, fmt, fmtDuration, fmtTime, formatIndexSet, h, norm, shortId, table,
} from "./util.js";

const PAGE = 20;

/** "{1, 9} (+)", "{13, e2} (−)", "{x3−x5} (+)": samples, differences (three-layer blocks),
 * then coordinate directions, then the sign. */
export function compactIndexSet(ix) {
  if (!ix) return "—";
  const items = [...ix.samples.map(String), ...(ix.differences || []).map(([i, j]) => `x${i}−x${j}`),
    ...ix.directions.map((k) => `e${k + 1}`)];
  return `{${items.join(", ")}} (${ix.sign > 0 ? "+" : "−"})`;
}

/** A depth-3 network (blocks w3 relu(w2 relu(w1 · x + b1) + b2)). */
export const isThreeLayer = (net) => net.summary?.depth === 3 || net.params?.depth === 3;

/** The samples that define a neuron: its index set's samples; for a block also the ends of
 * its differences, its bias sample l and its threshold sample j0. */
export function definingSamples(n) {
  const ix = n.index_set;
  if (!ix) return [];
  const out = new Set([...ix.samples, ...(ix.differences || []).flat()]);
  for (const i of [n.bias_sample, n.threshold_sample]) if (i !== null && i !== undefined) out.add(i);
  return [...out].sort((a, b) => a - b);
}

export async function networksView(root, ctx, query) {
  const offset = Math.max(0, Number(query?.offset) || 0);
  const page = await api("/networks", { query: { limit: PAGE, offset } });
  if (!ctx.alive) return;
  root.append(h("h1", {}, "Networks"), h("section.card", { "aria-label": "Your networks" },
    page.total === 0 ? h("p.muted", {}, "No networks yet: ", h("a", { href: "#/jobs" }, "submit a solve"), ".")
      : [table(["Network", "kind", h("th.num", { scope: "col" }, "neurons"), h("th.num", { scope: "col" }, "objective"),
        h("th.num", { scope: "col" }, "gap"), "certificate", h("th.hide-narrow", { scope: "col" }, "dataset"),
        h("th.hide-narrow", { scope: "col" }, "created")],
      page.items.map((n) => h("tr", { dataset: { id: n.id } },
        h("td", {}, h("a", { href: `#/networks/${n.id}` }, shortId(n.id))),
        h("td", {}, n.kind), h("td.num", {}, n.n_layers > 2 ? `${n.n_layers} layers` : n.n_neurons),
        h("td.num", {}, fmt(n.primal_objective)), h("td.num", {}, fmt(n.relative_gap, 2)),
        h("td", {}, certBadge(n)),
        h("td.hide-narrow", {}, n.dataset_id ? h("a", { href: `#/datasets/${n.dataset_id}` }, shortId(n.dataset_id)) : "—"),
        h("td.hide-narrow", {}, fmtTime(n.created_at)))),
      { "aria-label": "Networks" }), pager("#/networks", offset, page.total, PAGE)]));
}

function certBadge(net) {
  if (net.kind === "polish") return h("span.badge.warn", {}, "polished");
  // GET /networks items carry `scanned` (no summary); GET /networks/{id} carries both
  const scanned = net.scanned ?? net.summary?.scanned;
  if (net.certified) return h("span.badge.ok", {}, "certified");
  if (scanned === "searched") return h("span.badge.warn", {}, "searched");
  if (scanned === "sampled") return h("span.badge.warn", {}, "sampled");
  return h("span.badge.bad", {}, "not certified");
}

/** One plain sentence on what the numbers prove. */
export function certificateSentence(net) {
  const s = net.summary || {};
  const p = s.params?.p;
  const gap = net.relative_gap;
  if (net.kind === "polish") {
    return "Polished network: its neurons were moved onto hyperplanes through training samples "
      + "and the output layer refit; there is no dual bound, so nothing is certified.";
  }
  if (net.certified && s.certifies_network && isThreeLayer(net)) {
    return `Certified globally optimal: every column of the three-layer dictionary was checked, and the `
      + `dual bound ${fmt(net.dual_objective, 6)} proves that no three-layer network of parallel blocks, of any `
      + `width, reaches a lower objective, so this one (${fmt(net.primal_objective, 6)}) is within a relative `
      + `gap of ${fmt(gap, 2)} of the best possible.`;
  }
  if (net.certified && s.certifies_network) {
    return `Certified globally optimal: every column of the exact dictionary was checked, and the `
      + `dual bound ${fmt(net.dual_objective, 6)} proves that no two-layer ReLU network of any width `
      + `reaches a lower objective, so this one (${fmt(net.primal_objective, 6)}) is within a relative `
      + `gap of ${fmt(gap, 2)} of the best possible.`;
  }
  if (net.certified) {
    return `Certified optimal for the convex program (p = ${p}): every column was checked and the dual `
      + `bound ${fmt(net.dual_objective, 6)} is within ${fmt(gap, 2)}; for p = 2 the program is an upper `
      + `bound on the network problem${net.l2_bound ? ` (l2 bound: ${net.l2_bound.label}, in the solve summary)` : ""}.`;
  }
  if (s.scanned === "searched") {
    return `Searched, not certified: the columns were found by local search over a dictionary too large `
      + `to check, so the dual bound ${fmt(net.dual_objective, 6)} is valid but loose (gap ${fmt(gap, 2)}`
      + `${s.gap_estimate !== null && s.gap_estimate !== undefined ? `, estimated ${fmt(s.gap_estimate, 2)}` : ""}).`;
  }
  if (s.scanned === "sampled") {
    return `Sampled, not certified: only ${s.n_columns ?? "some"} random hyperplanes were considered; the `
      + `bound ${fmt(net.dual_objective, 6)} holds for the program over that sample, not for every network.`;
  }
  return `Not certified: ${s.certificate_note || "the solve stopped before the gap closed"} `
    + `(relative gap ${fmt(gap, 2)}).`;
}

const TERMS = [
  ["certified", "every column of the dictionary was priced and the dual bound matches the objective within the tolerance: no better network exists (p = 1)."],
  ["searched", "columns were found by local search in a dictionary too large to scan: the lower bound is valid but loose, and the gap is an estimate."],
  ["sampled", "only a random sample of hyperplanes was used: the bound is for that sample only, not for all networks."],
];

function certificateCard(net) {
  const s = net.summary || {};
  const prm = s.params || {};
  const stat = (label, value, extra) => h("div", {}, h("span.label", {}, label), h("span.big", {}, value), extra);
  const items = [];
  if (net.kind === "polish" && net.polish) {
    items.push(stat("objective before", fmt(net.polish.objective_before, 6)),
      stat("objective after", fmt(net.polish.objective_after, 6)),
      stat("change", fmt(net.polish.price, 4)));
  } else {
    items.push(stat("objective", fmt(net.primal_objective, 6)), stat("dual bound", fmt(net.dual_objective, 6)),
      stat("relative gap", fmt(net.relative_gap, 2)));
  }
  items.push(h("div", {}, h("span.label", {}, "status"), h("span", { style: "padding-top:6px" }, certBadge(net))));
  const depth3 = isThreeLayer(net);
  const facts = [
    depth3 ? ["loss, λ", `${prm.loss ?? "?"}, λ = ${fmt(prm.lam)}${prm.bias === false ? ", no first-layer biases (Thm 12)" : " (Thm 13)"}`]
      : ["loss, p, λ", `${prm.loss ?? "?"}, p = ${prm.p ?? "?"}, λ = ${fmt(prm.lam)}${prm.bias === false ? ", no biases" : ""}`],
    depth3 ? ["layers", `3: ${net.n_neurons} blocks, ${s.n_directions ?? "?"} first-layer directions`] : null,
    s.scanned ? ["dictionary", `${s.scanned === "all" ? "every column checked" : s.scanned} · ${s.n_columns ?? "?"} columns priced`] : null,
    s.solver ? ["solver", s.solver] : null,
    s.solve_time !== undefined ? ["solve time", fmtDuration(s.solve_time)] : null,
    s.certificate_note ? ["why not certified", s.certificate_note] : null,
    s.gap_estimate !== null && s.gap_estimate !== undefined ? ["gap estimate", fmt(s.gap_estimate, 3)] : null,
    ["shape", `${net.n_features} inputs → ${depth3 ? `${net.n_neurons} blocks (2 hidden layers)` : net.n_layers > 2 ? `${net.n_layers - 1} hidden layers` : `${net.n_neurons} neurons`} → ${net.n_outputs} output${net.n_outputs > 1 ? "s" : ""}`],
    ["job", h("a", { href: `#/jobs/${net.job_id}` }, shortId(net.job_id))],
    ["dataset", net.dataset_id ? h("a", { href: `#/datasets/${net.dataset_id}` }, shortId(net.dataset_id)) : "— (deleted)"],
  ];
  if (net.l2_bound) {
    const b = net.l2_bound;
    facts.push(["l2 bound", `${b.label}${b.lower_bound !== null && b.lower_bound !== undefined ? `: lower bound ${fmt(b.lower_bound, 6)}` : ""}`
      + `${b.relative_gap !== null && b.relative_gap !== undefined ? `, gap ${fmt(b.relative_gap, 2)}` : ""}`
      + `${b.estimated_gap !== null && b.estimated_gap !== undefined ? `, estimated gap ${fmt(b.estimated_gap, 2)}` : ""}`
      + `${b.note ? ` (${b.note})` : ""}`]);
  }
  if (net.distributed_scan) {
    const d = net.distributed_scan;
    facts.push(["distributed scan", `${d.parts} parts per scan, ${d.rounds} scans, ${d.workers} worker${d.workers > 1 ? "s" : ""}`]);
  }
  const exportBtn = (fmtName, label = `Download .${fmtName}`, suffix = fmtName) => h("button.ghost", { type: "button",
    onclick: () => download(`/networks/${net.id}/export`, { format: fmtName }, `${net.id}.${suffix}`) },
  label);
  return h("section.card", { "aria-labelledby": "cert-title" },
    h("h2#cert-title", {}, net.kind === "polish" ? "Result" : "Certificate"),
    h("div.stats", {}, items),
    h("p.sentence#cert-sentence", {}, certificateSentence(net)),
    net.kind === "polish" ? null : h("details", {}, h("summary", {}, "What certified, searched and sampled mean"),
      dl(TERMS)),
    h("details", {}, h("summary", {}, "Solve summary"), dl(facts.filter(Boolean))),
    h("div.row", { style: "margin-top:10px" }, h("span.muted", { title: "npz: W1, b1, W2, b2 … (d_in, d_out); safetensors: PyTorch state dict; ONNX: a graph; both with the model card" }, "Export:"),
      exportBtn("npz"), exportBtn("safetensors"), exportBtn("onnx"), exportBtn("card", "Model card", "card.json"),
      h("button.ghost", { type: "button", onclick: () => saveBlob(new Blob([JSON.stringify(net, null, 1)],
        { type: "application/json" }), `${net.id}.json`) }, "Network JSON")));
}

function polishCard(net) {
  const p = net.polish;
  if (!p) return null;
  const metricRows = [];
  for (const split of Object.keys(p.metrics || {})) {
    const m = p.metrics[split] || {};
    const names = [...new Set([...Object.keys(m.before || {}), ...Object.keys(m.after || {})])];
    for (const k of names) {
      metricRows.push(h("tr", {}, h("td", {}, split), h("td", {}, k),
        h("td.num", {}, fmt(m.before?.[k])), h("td.num", {}, fmt(m.after?.[k]))));
    }
  }
  return h("section.card", { "aria-labelledby": "polish-title" },
    h("h2#polish-title", {}, "Polish report"),
    dl([["objective before (uploaded)", fmt(p.objective_before, 6)],
      ["after optimal rescaling", fmt(p.objective_rebalanced, 6)],
      ["objective after", fmt(p.objective_after, 6)], ["change", fmt(p.price, 6)],
      ["refit", `${p.refit} (selected: ${p.selected})`], ["refit gap", fmt(p.refit_gap, 2)],
      ["layers", p.n_layers]]),
    metricRows.length ? [h("h3", {}, "Metrics"), table(["split", "metric", h("th.num", { scope: "col" }, "before"),
      h("th.num", { scope: "col" }, "after")], metricRows, { "aria-label": "Polish metrics" })] : null,
    h("h3", {}, "Candidate neurons"),
    table(["layer", "kind", "from neuron", h("th.num", { scope: "col" }, "angle to original (°)"),
      h("th.num", { scope: "col" }, "weight angle (°)"), h("th.num", { scope: "col" }, "residual"),
      "kept", h("th.num", { scope: "col" }, "output norm"), "index set"],
    p.neurons.map((r) => h("tr", {}, h("td", {}, r.layer), h("td", {}, r.kind), h("td.num", {}, r.source),
      h("td.num", {}, fmt(r.angle_deg, 3)), h("td.num", {}, fmt(r.weight_angle_deg, 3)),
      h("td.num", {}, fmt(r.residual, 2)), h("td", {}, r.survived ? "yes" : "no"),
      h("td.num", {}, fmt(r.output_norm)), h("td.ixset", { title: formatIndexSet(r.index_set) }, compactIndexSet(r.index_set)))),
    { "aria-label": "Polish neuron report" }));
}

export async function networkView(root, ctx, id, query) {
  const net = await api(`/networks/${encodeURIComponent(id)}`);
  if (!ctx.alive) return;
  root.append(h("h1", {}, `Network ${shortId(net.id)} `, h("span.badge", {}, net.kind)),
    certificateCard(net));
  if (net.polish) root.append(polishCard(net));
  const isPolish = net.kind === "polish";
  const depth3 = isThreeLayer(net);
  const unit = depth3 ? "Block" : "Neuron";
  const neurons = net.neurons.map((n) => ({ ...n, absA: norm(n.output_weight) }));
  let sort = { key: "absA", dir: -1 };
  let selected = null;
  let data = null;
  let plot = null;

  const panel = h("section.card#neuron-panel", { "aria-labelledby": "neuron-title" },
    h("h2#neuron-title", {}, unit), h("p.muted", {}, `Select a ${unit.toLowerCase()} in the table to see its index-set samples.`));
  const figCard = h("section.card", { "aria-labelledby": "fig-title", hidden: net.n_features !== 2 },
    h("h2#fig-title", {}, "Prediction regions and breaklines"), h("p.muted", {}, "Loading the dataset…"));
  const tableCard = h("section.card", { "aria-labelledby": "neurons-title" });
  root.append(h("div.split", {}, tableCard, h("div", {}, figCard, panel)));

  if (!neurons.length) {
    clear(tableCard, h("h2#neurons-title", {}, "Neurons"), h("p.muted", {},
      net.n_layers > 2 ? `A deep polished network (${net.n_layers} layers): its neurons and index sets are in the polish report above.`
        : "This network has no neurons (the zero network is optimal for this λ)."));
  }

  function renderTable() {
    if (!neurons.length) return;
    const rows = neurons.slice().sort((a, b) => sort.dir * (a[sort.key] - b[sort.key]) || a.position - b.position);
    const sortHead = (key, label) => {
      const active = sort.key === key;
      return h("th.num", { scope: "col", "aria-sort": active ? (sort.dir < 0 ? "descending" : "ascending") : "none" },
        h("button.sort", { type: "button", dataset: { sort: key },
          onclick: () => {
            sort = { key, dir: active ? -sort.dir : (key === "position" ? 1 : -1) };
            renderTable();
            tableCard.querySelector(`button[data-sort=${key}]`)?.focus();
          } }, `${label} ${active ? (sort.dir < 0 ? "▼" : "▲") : "↕"}`));
    };
    const head = [sortHead("position", "#"), sortHead("absA", "|output weight|"),
      h("th.num", { scope: "col" }, "output weight"), h("th", { scope: "col" }, "formula"),
      sortHead("residual", "residual"), h("th", { scope: "col" }, "index set")];
    if (isPolish) head.push(h("th", { scope: "col" }, "kind"), sortHead("angle_deg", "angle to original (°)"));
    if (depth3) {
      head.push(h("th.num", { scope: "col", title: "bias sample: the first layer passes through x_l" }, "l"),
        h("th.num", { scope: "col", title: "threshold sample: the second layer switches at x_j0's level" }, "j0"),
        h("th", { scope: "col" }, "shape"));
    }
    const trs = rows.map((n) => {
      const tr = h("tr.clickable", {
        tabindex: 0, "aria-selected": String(selected === n.position), dataset: { position: n.position },
        "aria-label": `${unit} ${n.position}, output weight ${fmt(n.absA)}`,
      },
      h("td.num", {}, n.position), h("td.num", {}, fmt(n.absA)),
      h("td.num", {}, n.output_weight.length === 1 ? fmt(n.output_weight[0]) : `[${n.output_weight.map((v) => fmt(v, 3)).join(", ")}]`),
      h("td.formula", {}, n.formula), h("td.num", {}, fmt(n.residual, 2)),
      h("td.ixset", { title: formatIndexSet(n.index_set) }, compactIndexSet(n.index_set)),
      isPolish ? [h("td", {}, n.kind || "—"), h("td.num", {}, fmt(n.angle_deg, 3))] : null,
      depth3 ? [h("td.num.bias-sample", {}, n.bias_sample ?? "—"), h("td.num.threshold", {}, n.threshold_sample ?? "—"),
        h("td.shape", {}, n.shape || "—")] : null);
      tr.addEventListener("click", () => choose(n.position, true));
      tr.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); choose(n.position, true); }
        if (e.key === "ArrowDown" || e.key === "ArrowUp") {
          e.preventDefault();
          (e.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling)?.focus();
        }
      });
      return tr;
    });
    clear(tableCard, h("h2#neurons-title", {}, `${unit}s (${neurons.length})`),
      h("p.muted", {}, depth3
        ? "f(x) = Σ w3_j relu(w2_j relu(w1_j · x + b1_j) + b2_j) + b3. Each block's first-layer hyperplane "
          + "is fixed by its index set (through x_l with first-layer biases); its second-layer unit switches "
          + "where the first-layer value equals the threshold sample j0's (shape up: (u − u_j0)₊, down: "
          + "(u_j0 − u)₊). Output weight: w3. Click a row, or focus it and press Enter."
        : "f(x) = Σ a_j relu(w_j · x + b_j) + c. Each neuron's hyperplane passes through "
        + "the training samples of its index set. Click a row, or focus it and press Enter."),
      table(head, trs, { "aria-label": "Neurons", id: "neurons-table" }));
  }

  function choose(position, fromUser = false) {
    selected = position;
    for (const tr of tableCard.querySelectorAll("tbody tr")) {
      tr.setAttribute("aria-selected", String(Number(tr.dataset.position) === position));
    }
    const n = neurons.find((x) => x.position === position);
    history.replaceState(null, "", `#/networks/${net.id}${n ? `?neuron=${position}` : ""}`);
    renderPanel(n);
    plot?.select(position, n ? definingSamples(n) : [], n?.threshold_sample ?? null);
    if (fromUser && n) announce(`${unit} #${position} selected: ${n.index_set ? `${definingSamples(n).length} index-set samples` : "no index set"}${n.threshold_sample !== null && n.threshold_sample !== undefined ? `, threshold sample ${n.threshold_sample}` : ""}`);
    if (fromUser && window.matchMedia("(max-width: 760px)").matches) panel.scrollIntoView({ behavior: "smooth" });
  }

  function renderPanel(n) {
    if (!n) {
      clear(panel, h("h2#neuron-title", {}, unit), h("p.muted", {}, `No such ${unit.toLowerCase()}.`));
      return;
    }
    const ix = n.index_set;
    const parts = [h("h2#neuron-title", {}, `${unit} #${n.position}`),
      dl([[depth3 ? "output weight w3" : "output weight a", n.output_weight.map((v) => fmt(v, 6)).join(", ")],
        depth3 ? ["second layer w2, b2", `${fmt(n.second_layer_weight, 6)}, ${fmt(n.second_layer_bias, 6)}`] : null,
        depth3 ? ["bias sample l", n.bias_sample ?? "— (no first-layer bias)"] : null,
        depth3 ? ["threshold sample j0", h("span#threshold-sample", {}, n.threshold_sample ?? "—")] : null,
        depth3 ? ["shape", n.shape === "down" ? "down: (u_j0 − u)₊" : "up: (u − u_j0)₊"] : null,
        ["w", n.weight.length <= 8 ? `(${n.weight.map((v) => fmt(v, 4)).join(", ")})`
          : h("details", {}, h("summary", {}, `${n.weight.length} weights, ‖w‖₁ = ${fmt(n.weight.reduce((a, v) => a + Math.abs(v), 0))}`),
            `(${n.weight.map((v) => fmt(v, 4)).join(", ")})`)], ["b", fmt(n.bias, 6)],
        ["formula", h("span.mono", {}, n.formula)], ["residual", fmt(n.residual, 2)],
        ["index set", formatIndexSet(ix)],
        isPolish ? ["polish", `${n.kind || "—"} neuron from neuron ${n.source ?? "—"}${n.angle_deg !== null && n.angle_deg !== undefined ? `, ${fmt(n.angle_deg, 3)}° from the original` : ""}`] : null].filter(Boolean))];
    if (!ix) {
      parts.push(h("p.muted", {}, "An original neuron kept by the refit: it has no index set."));
    } else if (!net.dataset_id) {
      parts.push(h("p.note", {}, "The training dataset was deleted: its rows cannot be shown."));
    } else if (!data) {
      parts.push(h("p.muted", {}, "Loading the dataset rows…"));
    } else {
      parts.push(...samplesView(n, data));
    }
    clear(panel, parts);
  }

  function samplesView(n, d) {
    const ix = n.index_set;
    const samples = definingSamples(n);
    const out = [h("h3", {}, `Index-set samples (${samples.length})`)];
    if (depth3) {
      out.push(h("p.muted", {}, `The samples named by the block: its index set${ix.differences?.length ? " (both ends of each difference)" : ""}, `
        + `the bias sample l and the threshold sample j0 (dashed ring in the figure).`));
    }
    if (ix.directions.length) {
      out.push(h("p.muted", {}, `The hyperplane also runs along the coordinate direction${ix.directions.length > 1 ? "s" : ""} `
        + `${ix.directions.map((k) => `e${k + 1}`).join(", ")}.`));
    }
    const valid = samples.filter((i) => i < d.n);
    const preds = forward(net.layers, valid.map((i) => d.X[i]));
    const side = imageSide(d.d);
    if (side) {
      const [lo, hi] = d.range || (d.range = rangeOf(d.X));
      out.push(h("div.imgs", { "aria-label": "Index-set samples as images" },
        valid.map((i) => sampleImage(d.X[i], side, lo, hi, `#${i} y=${d.y[i].map((v) => fmt(v, 3)).join(",")}`, true))));
    }
    const cols = Math.min(d.d, 8);
    out.push(table(["sample", ...Array.from({ length: cols }, (_, j) => h("th.num", { scope: "col" }, `x${j + 1}`)),
      d.d > cols ? h("th", { scope: "col" }, "…") : null, h("th.num", { scope: "col" }, "y"),
      h("th.num", { scope: "col" }, "f(x)")].filter(Boolean),
    valid.map((i, k) => h(i === n.threshold_sample ? "tr.threshold" : "tr", { dataset: { sample: i },
      title: i === n.threshold_sample ? "threshold sample j0" : null },
      h("td.num", {}, h("a", { href: `#/datasets/${net.dataset_id}?sample=${i}`, title: "which neurons does this sample define?" }, i)),
      d.X[i].slice(0, cols).map((v) => h("td.num", {}, fmt(v))), d.d > cols ? h("td", {}, "…") : null,
      h("td.num", {}, d.y[i].map((v) => fmt(v)).join(", ")),
      h("td.num", {}, preds[k].map((v) => fmt(v)).join(", ")))),
    { "aria-label": "Index-set samples", id: "samples-table" }));
    return out;
  }

  renderTable();
  const want = query?.neuron !== undefined ? Number(query.neuron) : null;
  const first = neurons.slice().sort((a, b) => b.absA - a.absA)[0];
  if (want !== null || first) choose(want !== null ? want : first.position);

  if (!net.dataset_id) {
    clear(figCard, h("h2#fig-title", {}, "Prediction regions and breaklines"),
      h("p.note", {}, "The training dataset was deleted."));
    return;
  }
  try {
    data = await loadDataset(net.dataset_id);
  } catch (e) {
    if (!ctx.alive) return;
    clear(figCard, errorBox(e));
    clear(panel, h("h2#neuron-title", {}, "Neuron"), errorBox(e));
    return;
  }
  if (!ctx.alive) return;
  if (net.n_features === 2) {
    const lookup = h("div", { "aria-live": "polite", class: "legend" });
    plot = regionPlot({
      net, X: data.X, y: data.y,
      onNeuron: (pos) => choose(pos, true),
      onSample: async (i) => {
        lookup.textContent = `Sample ${i}: looking up…`;
        try {
          const hits = await api("/neurons", { query: { sample: i, network_id: net.id, limit: 1000 } });
          const list = hits.items.map((x) => `#${x.position}`);
          lookup.textContent = list.length
            ? `Sample ${i} is in the index set of neuron${list.length > 1 ? "s" : ""} ${list.join(", ")} of this network.`
            : `Sample ${i} is in no index set of this network.`;
          if (hits.items.length) choose(hits.items[0].position);
        } catch (e) {
          lookup.textContent = `Sample ${i}: ${e.message}`;
        }
      },
    });
    clear(figCard, h("h2#fig-title", {}, "Prediction regions and breaklines"), plot.el, lookup,
      h("p.hint", {}, "Computed in the browser from the network's weights. Click a point to find the neurons it defines."));
  }
  const n = neurons.find((x) => x.position === selected);
  renderPanel(n);
  plot?.select(selected, n ? definingSamples(n) : [], n?.threshold_sample ?? null);
}

