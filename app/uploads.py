"""Parsing and validation of uploaded arrays. Never unpickles; bounds sizes before allocating.

Formats: ``.npy``, ``.npz``, ``.csv``, ``.json``, ``.safetensors``. Every failure raises
:class:`UploadError` with an HTTP status (400/413/415/422) and a message saying what is wrong.
"""

from __future__ import annotations

import csv
import io
import json
import math
import struct
import zipfile
from typing import Any, BinaryIO

import numpy as np
from numpy.lib import format as npformat

from app.core.config import Settings

Layer = tuple[np.ndarray, np.ndarray]

FORMATS = ("npy", "npz", "csv", "json", "safetensors")
CHUNK = 1 << 20

_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8,
    "BOOL": np.bool_,
}


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def too_large(what: str, size: int, limit: int) -> UploadError:
    return UploadError(413, f"{what} is too large: {size} bytes exceeds the limit of {limit} bytes")


async def read_limited(upload: Any, limit: int, what: str) -> bytes:
    """Read an ``UploadFile`` in chunks, aborting with 413 as soon as ``limit`` is exceeded."""
    buf = bytearray()
    while True:
        chunk = await upload.read(CHUNK)
        if not chunk:
            break
        buf.extend(chunk)
        if len(buf) > limit:
            raise too_large(what, len(buf), limit)
    return bytes(buf)


def detect_format(filename: str | None, explicit: str | None, data: bytes, what: str) -> str:
    if explicit:
        fmt = explicit.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UploadError(415, f"{what}: unknown format {explicit!r}; use one of {FORMATS}")
        return fmt
    name = (filename or "").lower()
    for fmt in FORMATS:
        if name.endswith("." + fmt):
            return fmt
    # sniff
    if data.startswith(b"\x93NUMPY"):
        return "npy"
    if data.startswith(b"PK\x03\x04") or data.startswith(b"PK\x05\x06"):
        return "npz"
    stripped = data.lstrip()[:1]
    if stripped in (b"[", b"{"):
        return "json"
    if len(data) >= 9 and data[8:9] == b"{":
        return "safetensors"
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    detail = f"extension .{ext}" if ext else "no recognizable extension or content"
    raise UploadError(415, f"{what}: unknown format ({detail}); use one of {FORMATS}")


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.hasobject:
        raise UploadError(422, f"{what}: object arrays (pickled data) are not accepted")
    if dtype.kind not in "biuf":
        raise UploadError(422, f"{what}: dtype {dtype} is not numeric (need bool, int or float)")


def _check_nbytes(shape: tuple[int, ...], itemsize: int, settings: Settings, what: str) -> None:
    if any(s < 0 for s in shape):
        raise UploadError(422, f"{what}: negative dimension in shape {shape}")
    nbytes = math.prod(shape) * itemsize
    if nbytes > settings.max_array_bytes:
        raise UploadError(
            413,
            f"{what}: array of shape {shape} needs {nbytes} bytes, over the limit of "
            f"{settings.max_array_bytes} bytes",
        )


def _read_npy(fp: BinaryIO, settings: Settings, what: str, available: int | None) -> np.ndarray:
    try:
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fp, max_header_size=10000)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = npformat.read_array_header_2_0(fp, max_header_size=10000)
        else:  # pragma: no cover - numpy raises first
            raise UploadError(422, f"{what}: unsupported .npy version {version}")
    except UploadError:
        raise
    except Exception as exc:  # malformed header
        raise UploadError(422, f"{what}: not a valid .npy file ({exc})") from exc
    _check_dtype(dtype, what)
    _check_nbytes(tuple(shape), dtype.itemsize, settings, what)
    need = math.prod(shape) * dtype.itemsize
    if available is not None and need > available:
        raise UploadError(
            422, f"{what}: .npy header announces {need} bytes of data but only {available} follow"
        )
    try:
        raw = fp.read(need)
        if len(raw) != need:
            raise ValueError(f"expected {need} bytes of data, got {len(raw)}")
        arr = np.frombuffer(raw, dtype=dtype)
        arr = arr.reshape(shape, order="F" if fortran else "C")
    except Exception as exc:
        raise UploadError(422, f"{what}: corrupt .npy data ({exc})") from exc
    return np.array(arr)  # own, writable copy


def parse_npy(data: bytes, settings: Settings, what: str) -> np.ndarray:
    fp = io.BytesIO(data)
    # available bytes after the header are checked once the header is read
    arr = _read_npy(fp, settings, what, available=None)
    return arr


def parse_npz(data: bytes, settings: Settings, what: str) -> dict[str, np.ndarray]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UploadError(422, f"{what}: not a valid .npz (zip) file ({exc})") from exc
    infos = zf.infolist()
    if len(infos) > settings.max_npz_members:
        raise UploadError(
            413, f"{what}: .npz has {len(infos)} members, over the limit of "
            f"{settings.max_npz_members}"
        )
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > settings.max_array_bytes + 4096 or total > settings.max_array_bytes * 2:
            raise UploadError(
                413, f"{what}: .npz member {info.filename!r} announces {info.file_size} bytes, "
                f"over the limit of {settings.max_array_bytes} bytes"
            )
    out: dict[str, np.ndarray] = {}
    for info in infos:
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        try:
            with zf.open(info) as fp:
                out[name] = _read_npy(fp, settings, f"{what} member {name!r}",  # type: ignore[arg-type]
                                      available=info.file_size)
        except UploadError:
            raise
        except Exception as exc:
            raise UploadError(422, f"{what}: corrupt .npz member {name!r} ({exc})") from exc
    if not out:
        raise UploadError(422, f"{what}: .npz file contains no arrays")
    return out


def parse_safetensors(data: bytes, settings: Settings, what: str) -> dict[str, np.ndarray]:
    if len(data) < 8:
        raise UploadError(422, f"{what}: not a valid .safetensors file (too short)")
    (hlen,) = struct.unpack("<Q", data[:8])
    if hlen > min(len(data) - 8, 100_000_000):
        raise UploadError(422, f"{what}: .safetensors header length {hlen} exceeds the file")
    try:
        header = json.loads(data[8 : 8 + hlen])
    except Exception as exc:
        raise UploadError(422, f"{what}: .safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise UploadError(422, f"{what}: .safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    if len(header) > settings.max_npz_members:
        raise UploadError(413, f"{what}: .safetensors holds {len(header)} tensors, over the "
                          f"limit of {settings.max_npz_members}")
    body = data[8 + hlen :]
    out: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        try:
            dtype = np.dtype(_SAFETENSORS_DTYPES[meta["dtype"]])
            shape = tuple(int(s) for s in meta["shape"])
            start, end = (int(v) for v in meta["data_offsets"])
        except KeyError as exc:
            raise UploadError(
                422, f"{what}: tensor {name!r} has an unsupported dtype or malformed entry"
            ) from exc
        except Exception as exc:
            raise UploadError(422, f"{what}: malformed .safetensors entry {name!r}") from exc
        _check_nbytes(shape, dtype.itemsize, settings, f"{what} tensor {name!r}")
        need = math.prod(shape) * dtype.itemsize
        if not (0 <= start <= end <= len(body)) or end - start != need:
            raise UploadError(422, f"{what}: tensor {name!r} offsets do not match its shape")
        out[name] = np.frombuffer(body[start:end], dtype=dtype.newbyteorder("<")).reshape(
            shape).astype(dtype)
    if not out:
        raise UploadError(422, f"{what}: .safetensors file contains no tensors")
    return out


def _reject_constant(name: str) -> Any:
    raise UploadError(422, f"NaN/Infinity ({name}) is not allowed")


def json_to_array(value: Any, what: str) -> np.ndarray:
    """Nested JSON lists of numbers -> ndarray; rejects ragged, non-numeric and non-finite."""

    def shape_of(v: Any, path: str) -> tuple[int, ...]:
        if isinstance(v, list):
            if not v:
                return (0,)
            shapes = [shape_of(e, f"{path}[{i}]") for i, e in enumerate(v)]
            first = shapes[0]
            for i, s in enumerate(shapes):
                if s != first:
                    raise UploadError(
                        422, f"{what}: ragged array: {path}[{i}] has shape {s}, expected {first}"
                    )
            return (len(v), *first)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise UploadError(422, f"{what}: {path} is {json.dumps(v)[:40]}, not a number")
        return ()

    shape = shape_of(value, "")
    try:
        arr = np.array(value, dtype=float)
    except (ValueError, OverflowError) as exc:
        raise UploadError(422, f"{what}: cannot convert to a numeric array ({exc})") from exc
    if arr.shape != shape:  # pragma: no cover - guarded by shape_of
        raise UploadError(422, f"{what}: ragged array")
    if all(isinstance(x, int) for x in _flatten(value)) and arr.size:
        return np.array(value, dtype=np.int64) if np.all(np.abs(arr) < 2**62) else arr
    return arr


def _flatten(v: Any) -> list[Any]:
    if isinstance(v, list):
        out: list[Any] = []
        for e in v:
            out.extend(_flatten(e))
        return out
    return [v]


def parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UploadError as exc:
        raise UploadError(422, f"{what}: {exc.message}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UploadError(422, f"{what}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise UploadError(422, f"{what}: JSON nested too deeply") from exc


def parse_csv(data: bytes, what: str) -> np.ndarray:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UploadError(422, f"{what}: CSV is not UTF-8 text ({exc})") from exc
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
    if not rows:
        raise UploadError(422, f"{what}: CSV file has no rows")

    def num(cell: str) -> float | None:
        try:
            return float(cell)
        except ValueError:
            return None

    start = 0
    if all(num(c) is None for c in rows[0]):  # a header row of names
        start = 1
    width = len(rows[start]) if start < len(rows) else 0
    values: list[list[float]] = []
    for i in range(start, len(rows)):
        row = rows[i]
        if len(row) != width:
            raise UploadError(
                422, f"{what}: ragged CSV: line {i + 1} has {len(row)} values, expected {width}"
            )
        vals = []
        for j, cell in enumerate(row):
            v = num(cell.strip())
            if v is None:
                raise UploadError(
                    422, f"{what}: non-numeric CSV value {cell[:40]!r} at line {i + 1}, "
                    f"column {j + 1}"
                )
            vals.append(v)
        values.append(vals)
    if not values:
        raise UploadError(422, f"{what}: CSV file has a header but no data rows")
    return np.array(values, dtype=float)


def parse_arrays(data: bytes, fmt: str, settings: Settings, what: str) -> dict[str, np.ndarray]:
    """Parse a file that may hold several named arrays; single-array formats give ``{"": a}``."""
    if fmt == "npy":
        return {"": parse_npy(data, settings, what)}
    if fmt == "npz":
        return parse_npz(data, settings, what)
    if fmt == "safetensors":
        return parse_safetensors(data, settings, what)
    if fmt == "csv":
        return {"": parse_csv(data, what)}
    if fmt == "json":
        obj = parse_json(data, what)
        if isinstance(obj, dict):
            return {str(k): json_to_array(v, f"{what}[{k!r}]") for k, v in obj.items()}
        return {"": json_to_array(obj, what)}
    raise UploadError(415, f"{what}: unknown format {fmt!r}")  # pragma: no cover


def pick_single(arrays: dict[str, np.ndarray], what: str) -> np.ndarray:
    """The one array of a file, or the one named ``what`` in a file holding several."""
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    for key in (what, what.lower(), what.upper()):
        if key in arrays:
            return arrays[key]
    raise UploadError(
        422, f"{what}: file holds {len(arrays)} arrays ({sorted(arrays)[:8]}); "
        f"expected one array or one named {what!r}"
    )


def check_finite(arr: np.ndarray, what: str) -> None:
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise UploadError(422, f"{what}: contains NaN or infinite values (first at index {bad})")


def validate_dataset(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical forms: X float64 (n, d); y int64 (labels) or float64, shape (n,) or (n, c)."""
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise UploadError(422, f"X must be a 2-D array (n, d); got shape {X.shape}")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise UploadError(422, f"X must have at least one row and one column; got {X.shape}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim not in (1, 2):
        raise UploadError(422, f"y must be a 1-D (n,) or 2-D (n, c) array; got shape {y.shape}")
    if y.ndim == 2 and y.shape[1] < 1:
        raise UploadError(422, f"y must have at least one output column; got {y.shape}")
    if X.shape[0] != y.shape[0]:
        raise UploadError(
            422, f"X has {X.shape[0]} rows but y has {y.shape[0]}: n must match"
        )
    check_finite(X, "X")
    check_finite(y, "y")
    Xc = np.ascontiguousarray(X, dtype=np.float64)
    if y.dtype.kind in "biu":
        yc = np.ascontiguousarray(y, dtype=np.int64)
    else:
        yc = np.ascontiguousarray(y, dtype=np.float64)
    if not np.all(np.isfinite(Xc)) or not np.all(np.isfinite(yc.astype(float))):
        raise UploadError(422, "values overflow to infinity when converted to float64")
    return Xc, yc


def layers_from_arrays(
    arrays: dict[str, np.ndarray], what: str, layer_names: list[str] | None = None
) -> list[Layer]:
    """Named arrays -> [(W, b), ...] in (d_in, d_out) layout. Two namings:

    * wedgenet's ``W1, b1, W2, b2, ...`` (or 0-based ``W0, b0``), ``W_i`` of shape (d_in, d_out);
    * a PyTorch ``state_dict`` of ``Linear`` layers: ``<prefix>.weight`` of shape (out, in) and
      ``<prefix>.bias`` (``0.weight, 0.bias, 2.weight, ...`` of an ``nn.Sequential``, or
      ``fc1.weight, ...``), converted by :func:`wedgenet.layers.layers_from_state_dict`;
      layers are ordered by their names (``layer_names`` gives the order when the names do
      not tell it), a missing ``.bias`` means a bias-free layer (zero biases).
    """
    names = set(arrays)
    if names and all("." in n for n in names):
        return _layers_from_state_dict(arrays, what, layer_names)
    if layer_names:
        raise UploadError(422, f"{what}: layer_names only applies to PyTorch state_dict names "
                          "('<prefix>.weight', '<prefix>.bias')")
    for base in (1, 0):
        layers = []
        i = base
        while f"W{i}" in names:
            if f"b{i}" not in names:
                raise UploadError(422, f"{what}: W{i} has no matching bias b{i}")
            layers.append((arrays[f"W{i}"], arrays[f"b{i}"]))
            i += 1
        if layers:
            extra = names - {f"W{j}" for j in range(base, i)} - {f"b{j}" for j in range(base, i)}
            if extra:
                raise UploadError(422, f"{what}: unexpected arrays {sorted(extra)[:8]}; "
                                  "expected W1, b1, W2, b2, ...")
            return layers
    raise UploadError(422, f"{what}: no layers found; name arrays W1, b1, W2, b2, ... "
                      "((d_in, d_out) layout) or use PyTorch state_dict names '0.weight', "
                      "'0.bias', '2.weight', ... ((out, in) layout)")


def _layers_from_state_dict(
    arrays: dict[str, np.ndarray], what: str, layer_names: list[str] | None
) -> list[Layer]:
    from wedgenet.exceptions import WedgeNetError
    from wedgenet.layers import layers_from_state_dict

    for name, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise UploadError(422, f"{what}: {name} is not numeric")
    try:
        return layers_from_state_dict(arrays, layer_names=layer_names, require_bias=False)
    except WedgeNetError as exc:
        raise UploadError(422, f"{what}: {exc}") from exc


def layers_from_json(obj: Any, what: str, layer_names: list[str] | None = None) -> list[Layer]:
    if isinstance(obj, dict) and "layers" in obj:
        items = obj["layers"]
        if not isinstance(items, list) or not items:
            raise UploadError(422, f"{what}: 'layers' must be a non-empty list of {{W, b}}")
        out = []
        for i, layer in enumerate(items):
            if not isinstance(layer, dict) or "W" not in layer or "b" not in layer:
                raise UploadError(422, f"{what}: layer {i} must be an object with 'W' and 'b'")
            out.append((json_to_array(layer["W"], f"{what} layer {i} W"),
                        json_to_array(layer["b"], f"{what} layer {i} b")))
        return out
    if isinstance(obj, dict):
        return layers_from_arrays(
            {str(k): json_to_array(v, f"{what}[{k!r}]") for k, v in obj.items()}, what,
            layer_names,
        )
    raise UploadError(422, f"{what}: expected {{\"layers\": [{{\"W\": ..., \"b\": ...}}, ...]}}")


def validate_layers(
    layers: list[Layer], settings: Settings, d: int | None
) -> list[Layer]:
    """Check the chain of layer shapes: W_i (d_in, d_out), b_i (d_out,), d_in = previous d_out,
    and the first d_in equals the dataset's d when one is given."""
    if not layers:
        raise UploadError(422, "no layers given")
    if len(layers) > settings.max_layers:
        raise UploadError(422, f"{len(layers)} layers exceed the limit of {settings.max_layers}")
    out = []
    prev: int | None = None
    for i, (W, b) in enumerate(layers):
        if W.ndim != 2:
            raise UploadError(422, f"layer {i + 1}: W must be 2-D (d_in, d_out); got {W.shape}")
        if b.ndim == 2 and 1 in b.shape:
            b = b.reshape(-1)
        if b.ndim != 1 or b.shape[0] != W.shape[1]:
            raise UploadError(
                422, f"layer {i + 1}: b has shape {b.shape}, expected ({W.shape[1]},) to match "
                f"W of shape {W.shape}"
            )
        if prev is not None and W.shape[0] != prev:
            raise UploadError(
                422, f"layer {i + 1}: W has {W.shape[0]} input rows but layer {i} has "
                f"{prev} outputs"
            )
        if i == 0 and d is not None and W.shape[0] != d:
            raise UploadError(
                422, f"layer 1: W has {W.shape[0]} input rows but the dataset has d={d} features"
            )
        for arr, nm in ((W, "W"), (b, "b")):
            if arr.dtype.kind not in "biuf":
                raise UploadError(422, f"layer {i + 1}: {nm} is not numeric")
            check_finite(arr, f"layer {i + 1} {nm}")
        out.append((np.ascontiguousarray(W, dtype=np.float64),
                    np.ascontiguousarray(b, dtype=np.float64)))
        prev = W.shape[1]
    return out
