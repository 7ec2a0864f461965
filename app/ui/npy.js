// Reading .npy files (what GET /datasets/{id}/download?array=X|y answers) in the browser.

import { apiBytes } from "./api.js";

const KINDS = {
  f8: [Float64Array, 8, "getFloat64"], f4: [Float32Array, 4, "getFloat32"],
  i8: [BigInt64Array, 8, "getBigInt64"], u8: [BigUint64Array, 8, "getBigUint64"],
  i4: [Int32Array, 4, "getInt32"], u4: [Uint32Array, 4, "getUint32"],
  i2: [Int16Array, 2, "getInt16"], u2: [Uint16Array, 2, "getUint16"],
  i1: [Int8Array, 1, "getInt8"], u1: [Uint8Array, 1, "getUint8"], b1: [Uint8Array, 1, "getUint8"],
};

/** Parse a .npy (versions 1-3) into {shape, values: Float64Array (C order), dtype}. */
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];
  if (!magic.every((b, i) => bytes[i] === b)) throw new Error("not a .npy file");
  const major = bytes[6];
  const dv = new DataView(buffer);
  const headerLen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1")
    .decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*True/.test(header);
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1] ?? "";
  const shape = shapeText.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (!descr) throw new Error("unreadable .npy header");
  const order = descr[0];
  const kind = KINDS[descr.slice(1)];
  if (!kind) throw new Error(`unsupported dtype ${descr}`);
  const [, size, getter] = kind;
  const count = shape.reduce((a, b) => a * b, 1);
  const offset = start + headerLen;
  const little = order !== ">";
  const raw = new Float64Array(count);
  for (let i = 0; i < count; i++) {
    const v = dv[getter](offset + i * size, little);
    raw[i] = typeof v === "bigint" ? Number(v) : v;
  }
  let values = raw;
  if (fortran && shape.length === 2) {
    const [r, c] = shape;
    values = new Float64Array(count);
    for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) values[i * c + j] = raw[j * r + i];
  }
  return { shape, values, dtype: descr };
}

/** Rows of a parsed 1-D or 2-D array as plain arrays. */
export function rowsOf(arr) {
  const [n, c = 1] = arr.shape.length ? arr.shape : [1];
  const rows = [];
  for (let i = 0; i < n; i++) rows.push(Array.from(arr.values.subarray(i * c, (i + 1) * c)));
  return rows;
}

const cache = new Map();

/** {X: rows, y: rows, n, d} of a dataset, fetched once per page load and key. */
export function loadDataset(id) {
  if (!cache.has(id)) {
    const p = Promise.all([
      apiBytes(`/datasets/${encodeURIComponent(id)}/download`, { array: "X" }),
      apiBytes(`/datasets/${encodeURIComponent(id)}/download`, { array: "y" }),
    ]).then(([xb, yb]) => {
      const X = parseNpy(xb);
      const y = parseNpy(yb);
      return { X: rowsOf(X), y: rowsOf(y), n: X.shape[0], d: X.shape[1] ?? 1,
        yInt: /[iub]/.test(y.dtype[1]) };
    });
    p.catch(() => cache.delete(id));
    cache.set(id, p);
  }
  return cache.get(id);
}

export function clearDatasetCache() { cache.clear(); }
