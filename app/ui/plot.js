// Figures drawn in the browser: prediction regions and breaklines of 2-D networks (SVG with a
// canvas-rendered background), and small images of samples whose features form a square.

import { h, fmt } from "./util.js";

/** f(x) for every row of X through layers [{W: (d_in, d_out), b}], ReLU between layers. */
export function forward(layers, rows) {
  return rows.map((x) => {
    let a = x;
    layers.forEach((L, li) => {
      const out = L.b.slice();
      for (let i = 0; i < a.length; i++) {
        const ai = a[i];
        if (ai === 0) continue;
        const Wi = L.W[i];
        for (let j = 0; j < out.length; j++) out[j] += ai * Wi[j];
      }
      a = li < layers.length - 1 ? out.map((v) => (v > 0 ? v : 0)) : out;
    });
    return a;
  });
}

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
const CATS = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]];

function ramp(t) {
  t = Math.min(1, Math.max(0, t));
  const s = t * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(s));
  const f = s - i;
  return VIRIDIS[i].map((c, k) => Math.round(c + f * (VIRIDIS[i + 1][k] - c)));
}
const rgb = (c) => `rgb(${c[0]},${c[1]},${c[2]})`;
const mix = (c, w, t) => c.map((v, k) => Math.round(v * t + w[k] * (1 - t)));

/** How to colour a network's outputs: regression ramp, sign of a binary score, or argmax. */
export function colouring(net, yRows) {
  const params = net.summary?.params || {};
  const loss = params.loss || "squared";
  const classesFromY = () => [...new Set(yRows.map((r) => r[0]))].sort((a, b) => a - b);
  if (net.n_outputs === 1 && (loss === "logistic" || loss === "hinge")) {
    const classes = net.summary?.classes || classesFromY();
    return {
      kind: "binary", classes,
      region: (f) => mix(f[0] > 0 ? CATS[1] : CATS[0], [255, 255, 255],
        0.25 + 0.35 * Math.min(1, Math.abs(f[0]))),
      point: (y) => rgb(CATS[classes.indexOf(y[0]) === 1 ? 1 : 0]),
      value: (f) => `score ${fmt(f[0])} → class ${classes[f[0] > 0 ? 1 : 0] ?? (f[0] > 0 ? "+" : "−")}`,
    };
  }
  if (net.n_outputs > 1) {
    const classes = net.summary?.classes || [...Array(net.n_outputs).keys()];
    const argmax = (f) => f.reduce((bi, v, i) => (v > f[bi] ? i : bi), 0);
    return {
      kind: "argmax", classes,
      region: (f) => mix(CATS[argmax(f) % 10], [255, 255, 255], 0.45),
      point: (y) => {
        const k = y.length > 1 ? argmax(y) : classes.indexOf(y[0]);
        return rgb(CATS[(k < 0 ? 0 : k) % 10]);
      },
      value: (f) => `outputs [${f.map((v) => fmt(v, 3)).join(", ")}] → ${classes[argmax(f)]}`,
    };
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of yRows) { lo = Math.min(lo, r[0]); hi = Math.max(hi, r[0]); }
  if (!(hi > lo)) { lo -= 1; hi += 1; }
  const t = (v) => (v - lo) / (hi - lo);
  return {
    kind: "regression", lo, hi,
    region: (f) => mix(ramp(t(f[0])), [255, 255, 255], 0.75),
    point: (y) => rgb(ramp(t(y[0]))),
    value: (f) => `f(x) = ${fmt(f[0])}`,
  };
}

function niceTicks(lo, hi, count = 5) {
  const span = hi - lo;
  const step0 = span / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => span / s <= count) || 10 * mag;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

/**
 * The 2-D figure. opts: {net, X, y, onNeuron(position), onSample(i)}.
 * Returns {el, select(position | null), mark(samples[])}.
 */
export function regionPlot({ net, X, y, onNeuron, onSample }) {
  const W = 480;
  const H = 480;
  const m = { l: 44, r: 12, t: 12, b: 36 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  let x0 = Infinity; let x1 = -Infinity; let y0 = Infinity; let y1 = -Infinity;
  for (const [a, b] of X) {
    x0 = Math.min(x0, a); x1 = Math.max(x1, a); y0 = Math.min(y0, b); y1 = Math.max(y1, b);
  }
  const padX = (x1 - x0 || 1) * 0.12;
  const padY = (y1 - y0 || 1) * 0.12;
  x0 -= padX; x1 += padX; y0 -= padY; y1 += padY;
  const sx = (v) => m.l + ((v - x0) / (x1 - x0)) * pw;
  const sy = (v) => m.t + ph - ((v - y0) / (y1 - y0)) * ph;
  const ix = (px) => x0 + ((px - m.l) / pw) * (x1 - x0);
  const iy = (py) => y0 + ((m.t + ph - py) / ph) * (y1 - y0);
  const layers = net.layers.map((L) => ({ W: L.W, b: L.b }));
  const col = colouring(net, y);

  // background: predictions on a grid, rendered into a canvas, embedded as an image
  const G = 140;
  const canvas = document.createElement("canvas");
  canvas.width = G;
  canvas.height = G;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(G, G);
  const grid = [];
  for (let r = 0; r < G; r++) {
    for (let c = 0; c < G; c++) grid.push([x0 + ((c + 0.5) / G) * (x1 - x0), y1 - ((r + 0.5) / G) * (y1 - y0)]);
  }
  const preds = forward(layers, grid);
  preds.forEach((f, k) => {
    const c = col.region(f);
    img.data.set([c[0], c[1], c[2], 255], 4 * k);
  });
  ctx.putImageData(img, 0, 0);

  const svg = h("svg", {
    viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": `Prediction regions of the network over the two input features, with the `
      + `breaklines of its ${net.neurons.length || net.layers[0].b.length} first-layer neurons `
      + `and the ${X.length} training samples`,
  });
  svg.append(h("defs", {}, h("clipPath", { id: "plot-clip" },
    h("rect", { x: m.l, y: m.t, width: pw, height: ph }))));
  svg.append(h("image", { href: canvas.toDataURL(), x: m.l, y: m.t, width: pw, height: ph,
    preserveAspectRatio: "none" }));
  svg.append(h("rect", { x: m.l, y: m.t, width: pw, height: ph, fill: "none", stroke: "#888" }));

  // axes
  const axes = h("g", { "font-size": 11, fill: "currentColor" });
  for (const t of niceTicks(x0, x1)) {
    axes.append(h("line", { x1: sx(t), x2: sx(t), y1: m.t + ph, y2: m.t + ph + 4, stroke: "#888" }),
      h("text", { x: sx(t), y: m.t + ph + 16, "text-anchor": "middle" }, String(t)));
  }
  for (const t of niceTicks(y0, y1)) {
    axes.append(h("line", { x1: m.l - 4, x2: m.l, y1: sy(t), y2: sy(t), stroke: "#888" }),
      h("text", { x: m.l - 7, y: sy(t) + 4, "text-anchor": "end" }, String(t)));
  }
  axes.append(h("text", { x: m.l + pw / 2, y: H - 4, "text-anchor": "middle" }, "x1 (feature 1)"),
    h("text", { x: 12, y: m.t + ph / 2, "text-anchor": "middle",
      transform: `rotate(-90 12 ${m.t + ph / 2})` }, "x2 (feature 2)"));
  svg.append(axes);

  // breaklines: w . x + b = 0 of each first-layer neuron, clipped to the box
  const lines = h("g", { "clip-path": "url(#plot-clip)" });
  const hyper = net.neurons.length
    ? net.neurons.map((n) => ({ w: n.weight, b: n.bias, pos: n.position }))
    : net.layers[0].b.map((b, j) => ({ w: net.layers[0].W.map((row) => row[j]), b, pos: null }));
  const lineEls = new Map();
  for (const { w, b, pos } of hyper) {
    const seg = clip(w, b, [x0, x1, y0, y1]);
    if (!seg) continue;
    const attrs = { x1: sx(seg[0][0]), y1: sy(seg[0][1]), x2: sx(seg[1][0]), y2: sy(seg[1][1]) };
    const g = h("g", { class: "neuron-line", dataset: { neuron: pos ?? "" } },
      h("line", { ...attrs, stroke: "transparent", "stroke-width": 12,
        style: pos === null ? "" : "cursor:pointer" }),
      h("line", { ...attrs, class: "breakline" }),
      h("title", {}, pos === null ? "first-layer hyperplane" : `neuron #${pos}: w·x + b = 0`));
    if (pos !== null) {
      g.addEventListener("click", (e) => { e.stopPropagation(); onNeuron?.(pos); });
      lineEls.set(pos, g);
    }
    lines.append(g);
  }
  svg.append(lines);

  // samples
  const pts = h("g", {});
  const ptEls = X.map(([a, b], i) => {
    const c = h("circle", { cx: sx(a), cy: sy(b), r: 5.5, class: "pt", fill: col.point(y[i]),
      dataset: { sample: i } },
    h("title", {}, `sample ${i}: x = (${fmt(a)}, ${fmt(b)}), y = ${y[i].map((v) => fmt(v)).join(", ")}`));
    c.addEventListener("click", (e) => { e.stopPropagation(); onSample?.(i); });
    pts.append(c);
    return c;
  });
  svg.append(pts);
  const rings = h("g", {});
  svg.append(rings);

  const readout = h("div.legend", { "aria-hidden": "true" }, "Move over the figure to read the prediction.");
  svg.addEventListener("pointermove", (e) => {
    const r = svg.getBoundingClientRect();
    const px = ((e.clientX - r.left) / r.width) * W;
    const py = ((e.clientY - r.top) / r.height) * H;
    if (px < m.l || px > m.l + pw || py < m.t || py > m.t + ph) return;
    const x = [ix(px), iy(py)];
    readout.textContent = `x = (${fmt(x[0], 3)}, ${fmt(x[1], 3)}): ${col.value(forward(layers, [x])[0])}`;
  });

  const legend = h("div.legend", {},
    col.kind === "regression"
      ? [h("span", {}, fmt(col.lo, 3)),
        h("span.swatch", { style: `background: linear-gradient(90deg, ${VIRIDIS.map(rgb).join(",")})` }),
        h("span", {}, `${fmt(col.hi, 3)} (targets y; background: prediction f(x))`)]
      : col.classes.map((c, k) => h("span", {},
        h("span.swatch", { style: `width:12px;background:${rgb(CATS[k % 10])}` }), ` class ${c}`)),
    h("span", {}, "— breaklines (click to select a neuron); magenta: the selected neuron and its index set"));

  // threshold: a depth-3 block's threshold sample j0, ringed twice (dashed, outside)
  function select(pos, samples = [], threshold = null) {
    for (const [p, g] of lineEls) g.querySelector(".breakline").classList.toggle("selected", p === pos);
    const sel = lineEls.get(pos);
    if (sel) lines.append(sel); // draw on top
    mark(samples, threshold);
  }
  function mark(samples, threshold = null) {
    const set = new Set(samples);
    if (threshold !== null && threshold !== undefined) set.add(threshold);
    ptEls.forEach((c, i) => c.classList.toggle("highlight", set.has(i)));
    const t = threshold !== null && threshold !== undefined && threshold < X.length ? threshold : null;
    rings.replaceChildren(...[...set].filter((i) => i < X.length).map((i) =>
      h("circle", { class: "ring", cx: sx(X[i][0]), cy: sy(X[i][1]), r: 11 })),
    ...(t === null ? [] : [h("circle", { class: "ring threshold", cx: sx(X[t][0]), cy: sy(X[t][1]), r: 16,
      "stroke-dasharray": "4 3", dataset: { sample: t } },
    h("title", {}, `threshold sample j0 = ${t}`))]));
  }
  const el = h("div.figure-wrap", {}, svg, legend, readout);
  return { el, select, mark };
}

/** The segment of {x : w.x + b = 0} inside the box [x0, x1] x [y0, y1], or null. */
function clip(w, b, [x0, x1, y0, y1]) {
  const [a, c] = w;
  const out = [];
  const eps = 1e-12;
  if (Math.abs(c) > eps) {
    for (const x of [x0, x1]) {
      const y = -(a * x + b) / c;
      if (y >= y0 - 1e-9 && y <= y1 + 1e-9) out.push([x, y]);
    }
  }
  if (Math.abs(a) > eps) {
    for (const y of [y0, y1]) {
      const x = -(c * y + b) / a;
      if (x >= x0 - 1e-9 && x <= x1 + 1e-9) out.push([x, y]);
    }
  }
  if (out.length < 2) return null;
  out.sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  const p = out[0];
  const q = out[out.length - 1];
  if (Math.hypot(p[0] - q[0], p[1] - q[1]) < 1e-12) return null;
  return [p, q];
}

/** d a perfect square >= 16: the side of the image, else 0. */
export function imageSide(d) {
  const s = Math.round(Math.sqrt(d));
  return d >= 16 && s * s === d ? s : 0;
}

/** A small grayscale canvas of one sample (high values dark, like ink). */
export function sampleImage(row, side, lo, hi, caption, highlight = false) {
  const c = document.createElement("canvas");
  c.width = side;
  c.height = side;
  const ctx = c.getContext("2d");
  const img = ctx.createImageData(side, side);
  const span = hi > lo ? hi - lo : 1;
  for (let k = 0; k < side * side; k++) {
    const v = 255 - Math.round(255 * Math.min(1, Math.max(0, (row[k] - lo) / span)));
    img.data.set([v, v, v, 255], 4 * k);
  }
  ctx.putImageData(img, 0, 0);
  c.setAttribute("role", "img");
  c.setAttribute("aria-label", `${caption} as a ${side}×${side} image`);
  return h("figure", { class: highlight ? "highlight" : "" }, c, h("figcaption", {}, caption));
}

export function rangeOf(rows) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of rows) for (const v of r) { if (v < lo) lo = v; if (v > hi) hi = v; }
  return [lo, hi];
}
