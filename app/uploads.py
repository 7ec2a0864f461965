"""Parsing and validation of uploaded arrays. Never unpickles; bounds sizes before allocating.

Formats: ``.npy``, ``.npz``, ``.csv``, ``.json``, ``.safetensors``. Every failure raises
:class:`UploadError` with an HTTP status (400/413/415/422) and a message saying what is wrong.

Uploads are parsed from (spooled temporary) files, never copied into one ``bytes`` object:
``.npy``, ``.npz`` members and ``.safetensors`` tensors are read straight into their
preallocated arrays, CSV is parsed line by line by numpy's C reader, ``.json`` (read whole; its
size is bounded by the upload limit) only after its nesting depth was checked on the raw bytes.
The functions are synchronous and take seconds on big uploads: the routes run them in a worker
thread (:func:`run_upload`), never in the event loop.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import math
import multiprocessing
import os
import re
import select
import shutil
import struct
import tempfile
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, BinaryIO, TypeVar

import anyio
import numpy as np
from anyio.lowlevel import RunVar
from numpy.lib import format as npformat

from app.core.config import Settings
from wedgenet.layers import PICKLE_HINT, PICKLE_SUFFIXES

Layer = tuple[np.ndarray, np.ndarray]
T = TypeVar("T")

FORMATS = ("npy", "npz", "csv", "json", "safetensors")
CHUNK = 1 << 20
#: bytes looked at to sniff a format without a name
SNIFF = 4096
#: largest ``.safetensors`` JSON header accepted
MAX_SAFETENSORS_HEADER = 16 * 1024 * 1024

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

    def __reduce__(self) -> tuple[type[UploadError], tuple[int, str]]:
        return UploadError, (self.status, self.message)  # raised in the parser process too


def too_large(what: str, size: int, limit: int) -> UploadError:
    return UploadError(413, f"{what} is too large: {size} bytes exceeds the limit of {limit} bytes")


# ------------------------------------------------------------------ running uploads off-loop

_UPLOAD_LIMITER: RunVar[anyio.CapacityLimiter] = RunVar("wedgenet_upload_limiter")


async def run_upload(settings: Settings, func: Callable[..., T], *args: Any) -> T:
    """Run ``func(*args)`` (parsing and storing an upload) in a worker thread, at most
    ``settings.max_concurrent_uploads`` at a time per event loop, so the loop keeps serving
    other requests and concurrent big uploads cannot exhaust memory."""
    try:
        limiter = _UPLOAD_LIMITER.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(settings.max_concurrent_uploads)
        _UPLOAD_LIMITER.set(limiter)
    return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=limiter)


def check_text(value: str | None, what: str) -> None:
    """Form fields are stored or looked up as database text: no NUL characters."""
    if value is not None and "\x00" in value:
        raise UploadError(422, f"{what} must not contain NUL (0x00) characters")


# ------------------------------------------------------------------------ reading files


def file_size(fp: BinaryIO) -> int:
    """Size of a seekable file; leaves it at the start."""
    fp.seek(0, io.SEEK_END)
    size = fp.tell()
    fp.seek(0)
    return size


def open_upload(fp: BinaryIO, filename: str | None, fmt: str | None, settings: Settings,
                what: str) -> tuple[str, int]:
    """Check an uploaded file's size against the limits and detect its format: ``(format,
    size)``; ``fp`` is left at its start."""
    size = file_size(fp)
    if size > settings.max_upload_bytes:
        raise too_large(what, size, settings.max_upload_bytes)
    if size == 0:
        raise UploadError(422, f"{what}: the uploaded file is empty")
    head = fp.read(SNIFF)
    fp.seek(0)
    return detect_format(filename, fmt, head, what), size


def read_upload(fp: BinaryIO, filename: str | None, fmt: str | None, settings: Settings,
                what: str) -> dict[str, np.ndarray]:
    """Parse an uploaded file (an ``UploadFile.file``: seekable, spooled to disk when large)
    into named arrays; single-array formats give ``{"": a}``. Synchronous: call it in a
    worker thread."""
    fmt, size = open_upload(fp, filename, fmt, settings, what)
    return parse_file(fp, size, fmt, settings, what)


def read_layers(fp: BinaryIO, filename: str | None, fmt: str | None, settings: Settings,
                what: str, layer_names: list[str] | None) -> list[Layer]:
    """An uploaded weights file (``.npz``/``.safetensors``/``.json``) as ``[(W, b), ...]``."""
    fmt, size = open_upload(fp, filename, fmt, settings, what)
    if fmt == "json":
        return parse_json_file(fp, size, what, settings.max_json_depth, functools.partial(
            layers_from_json, what=what, layer_names=layer_names))
    if fmt in ("npz", "safetensors"):
        return layers_from_arrays(parse_file(fp, size, fmt, settings, what), what, layer_names)
    raise UploadError(415, f"{what}: a {fmt} file holds one array; use .npz, .safetensors or "
                      ".json for a list of layers, or per-layer W/b")


def detect_format(filename: str | None, explicit: str | None, data: bytes, what: str) -> str:
    """The format from ``explicit``, the file name's extension, or sniffed from the first
    bytes ``data``."""
    if explicit:
        fmt = explicit.lower().lstrip(".")
        if fmt not in FORMATS:
            raise UploadError(415, f"{what}: unknown format {explicit!r}; use one of {FORMATS}")
        return fmt
    name = (filename or "").lower()
    if name.endswith(PICKLE_SUFFIXES):
        raise UploadError(415, f"{what}: {PICKLE_HINT}")
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
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:  # a pickle's PROTO opcode
        raise UploadError(415, f"{what}: {PICKLE_HINT}")
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    detail = f"extension .{ext[:20]!r}" if ext else "no recognizable extension or content"
    raise UploadError(415, f"{what}: unknown format ({detail}); use one of {FORMATS}")


def parse_file(fp: BinaryIO, size: int, fmt: str, settings: Settings,
               what: str) -> dict[str, np.ndarray]:
    """Parse ``size`` bytes of ``fp`` (at its start) in format ``fmt``."""
    if fmt == "npy":
        return {"": _read_npy(fp, settings, what, available=size)}
    if fmt == "npz":
        return parse_npz(fp, size, settings, what)
    if fmt == "safetensors":
        return parse_safetensors(fp, size, settings, what)
    if fmt == "csv":
        return {"": parse_csv(fp, what)}
    if fmt == "json":
        return parse_json_file(fp, size, what, settings.max_json_depth,
                               functools.partial(json_arrays, what=what))
    raise UploadError(415, f"{what}: unknown format {fmt!r}")  # pragma: no cover


def _check_dtype(dtype: np.dtype, what: str) -> None:
    if dtype.hasobject:
        raise UploadError(422, f"{what}: object arrays (pickled data) are not accepted")
    if dtype.kind not in "biuf":
        raise UploadError(422, f"{what}: dtype {dtype} is not numeric (need bool, int or float)")


def _check_nbytes(shape: tuple[int, ...], itemsize: int, settings: Settings, what: str) -> None:
    if any(s < 0 for s in shape):
        raise UploadError(422, f"{what}: negative dimension in shape {shape}")
    if len(shape) > 32:
        raise UploadError(422, f"{what}: {len(shape)} dimensions; at most 32 are accepted")
    nbytes = math.prod(shape) * itemsize
    if nbytes > settings.max_array_bytes:
        raise UploadError(
            413,
            f"{what}: array of shape {shape} needs {nbytes} bytes, over the limit of "
            f"{settings.max_array_bytes} bytes",
        )


def _fill(fp: BinaryIO, arr: np.ndarray) -> int:
    """Read ``arr.nbytes`` bytes of ``fp`` into ``arr`` (C-contiguous) in chunks; the number
    of bytes read (less at the end of the file)."""
    view = arr.reshape(-1).view(np.uint8).data
    need = len(view)
    pos = 0
    readinto = getattr(fp, "readinto", None)
    while pos < need:
        if readinto is not None:
            n = readinto(view[pos : pos + CHUNK])
        else:  # pragma: no cover - every file object we get has readinto
            chunk = fp.read(min(CHUNK, need - pos))
            n = len(chunk)
            view[pos : pos + n] = chunk
        if not n:
            break
        pos += n
    return pos


def _read_npy(fp: Any, settings: Settings, what: str, available: int) -> np.ndarray:
    """One ``.npy`` of ``available`` bytes at the current position of ``fp``."""
    start = fp.tell()
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
    shape = tuple(shape)
    _check_nbytes(shape, dtype.itemsize, settings, what)
    need = math.prod(shape) * dtype.itemsize
    left = available - (fp.tell() - start)
    if need > left:
        raise UploadError(
            422, f"{what}: .npy header announces {need} bytes of data but only {left} follow"
        )
    try:
        arr = np.empty(math.prod(shape), dtype=dtype)
        got = _fill(fp, arr)
        if got != need:
            raise ValueError(f"expected {need} bytes of data, got {got}")
    except Exception as exc:
        raise UploadError(422, f"{what}: corrupt .npy data ({exc})") from exc
    return arr.reshape(shape, order="F" if fortran else "C")


def parse_npy(data: bytes, settings: Settings, what: str) -> np.ndarray:
    return _read_npy(io.BytesIO(data), settings, what, available=len(data))


def parse_npz(fp: BinaryIO, size: int, settings: Settings, what: str) -> dict[str, np.ndarray]:
    """An ``.npz`` (zip of ``.npy``): member count, every member's announced size, their total
    and the ratio total / archive size are checked from the zip directory before anything is
    decompressed (``zipfile`` never yields more than a member's announced size)."""
    try:
        zf = zipfile.ZipFile(fp)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise UploadError(422, f"{what}: not a valid .npz (zip) file ({exc})") from exc
    infos = zf.infolist()
    if any(info.filename.endswith((".pkl", "/data.pkl")) for info in infos):
        # torch.save's zip format: a pickle with tensor storages beside it
        raise UploadError(415, f"{what}: a PyTorch checkpoint, not an .npz. {PICKLE_HINT}")
    if len(infos) > settings.max_npz_members:
        raise UploadError(
            413, f"{what}: .npz has {len(infos)} members, over the limit of "
            f"{settings.max_npz_members}"
        )
    if len({info.filename for info in infos}) < len(infos) or len(
            {info.header_offset for info in infos}) < len(infos):
        raise UploadError(422, f"{what}: .npz members overlap (duplicate names or offsets)")
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > settings.max_array_bytes + 4096:
            raise UploadError(
                413, f"{what}: .npz member {info.filename!r} announces {info.file_size} bytes, "
                f"over the limit of {settings.max_array_bytes} bytes"
            )
    if total > settings.max_decompressed_bytes:
        raise UploadError(
            413, f"{what}: .npz decompresses to {total} bytes, over the limit of "
            f"{settings.max_decompressed_bytes} bytes"
        )
    if total > settings.compression_ratio_min_bytes and total > (
            settings.max_compression_ratio * max(size, 1)):
        raise UploadError(
            413, f"{what}: .npz decompresses to {total} bytes from {size} "
            f"(ratio {total / max(size, 1):.0f}), over the limit of "
            f"{settings.max_compression_ratio:g}; upload it uncompressed (np.savez, .npy)"
        )
    out: dict[str, np.ndarray] = {}
    for info in infos:
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        try:
            with zf.open(info) as member:
                out[name] = _read_npy(member, settings, f"{what} member {name!r}",
                                      available=info.file_size)
        except UploadError:
            raise
        except Exception as exc:
            raise UploadError(422, f"{what}: corrupt .npz member {name!r} ({exc})") from exc
    if not out:
        raise UploadError(422, f"{what}: .npz file contains no arrays")
    return out


def parse_safetensors(fp: BinaryIO, size: int, settings: Settings,
                      what: str) -> dict[str, np.ndarray]:
    """A ``.safetensors`` file: the JSON header is validated (dtypes, shapes against the
    limits, offsets inside the file and not overlapping), then each tensor is read into its
    array."""
    if size < 8:
        raise UploadError(422, f"{what}: not a valid .safetensors file (too short)")
    (hlen,) = struct.unpack("<Q", fp.read(8))
    if hlen > min(size - 8, MAX_SAFETENSORS_HEADER):
        raise UploadError(422, f"{what}: .safetensors header length {hlen} exceeds the file")
    raw = fp.read(hlen)
    try:
        check_json_depth(raw, settings.max_json_depth, what)
        header = json.loads(raw)
    except UploadError:
        raise
    except Exception as exc:
        raise UploadError(422, f"{what}: .safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise UploadError(422, f"{what}: .safetensors header is not a JSON object")
    header.pop("__metadata__", None)
    if len(header) > settings.max_npz_members:
        raise UploadError(413, f"{what}: .safetensors holds {len(header)} tensors, over the "
                          f"limit of {settings.max_npz_members}")
    body_start = 8 + hlen
    body_len = size - body_start
    entries = []
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
        if not (0 <= start <= end <= body_len) or end - start != need:
            raise UploadError(422, f"{what}: tensor {name!r} offsets do not match its shape")
        entries.append((start, end, name, dtype, shape))
    entries.sort(key=lambda e: (e[0], e[1]))
    for (_, prev_end, prev, *_), (start, _, name, *_) in itertools.pairwise(entries):
        if start < prev_end:
            raise UploadError(422, f"{what}: tensors {prev!r} and {name!r} overlap")
    out: dict[str, np.ndarray] = {}
    for start, _, name, dtype, shape in entries:
        arr = np.empty(math.prod(shape), dtype=dtype.newbyteorder("<"))
        fp.seek(body_start + start)
        if _fill(fp, arr) != arr.nbytes:  # pragma: no cover - offsets checked above
            raise UploadError(422, f"{what}: tensor {name!r} is truncated")
        out[name] = arr.reshape(shape).astype(dtype, copy=False)
    if not out:
        raise UploadError(422, f"{what}: .safetensors file contains no tensors")
    return out


# --------------------------------------------------------------------------------- JSON


def _reject_constant(name: str) -> Any:
    raise UploadError(422, f"NaN/Infinity ({name}) is not allowed")


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def check_json_depth(data: bytes, limit: int, what: str) -> None:
    """Refuse JSON nested deeper than ``limit`` (arrays and objects), counted on the raw bytes
    (strings blanked out) before parsing: deep nesting would exhaust the parser's and the
    validators' recursion."""
    opens = data.count(b"[") + data.count(b"{")
    if opens <= limit:
        return
    if b'"' in data:
        data = _JSON_STRING.sub(b'""', data)
    depth = 0
    deepest = 0
    for off in range(0, len(data), CHUNK):
        a = np.frombuffer(data, dtype=np.uint8, count=min(CHUNK, len(data) - off), offset=off)
        step = ((a == 0x5B) | (a == 0x7B)).astype(np.int64)
        step -= (a == 0x5D) | (a == 0x7D)
        level = np.cumsum(step)
        level += depth
        deepest = max(deepest, int(level.max()))
        depth = int(level[-1])
        if deepest > limit:
            raise UploadError(
                422, f"{what}: JSON nested deeper than the limit of {limit} levels")


def parse_json(data: bytes, what: str, max_depth: int = 32) -> Any:
    check_json_depth(data, max_depth, what)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except UploadError as exc:
        raise UploadError(422, f"{what}: {exc.message}") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UploadError(422, f"{what}: not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise UploadError(422, f"{what}: JSON nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer literal of more than 4300 digits
        raise UploadError(422, f"{what}: not valid JSON ({exc})") from exc


def json_arrays(obj: Any, what: str) -> dict[str, np.ndarray]:
    """The arrays of a parsed JSON document: ``{name: array}`` for an object of arrays, else
    ``{"": array}``."""
    if isinstance(obj, dict):
        return {str(k): json_to_array(v, f"{what}[{k!r}]") for k, v in obj.items()}
    return {"": json_to_array(obj, what)}


#: JSON documents larger than this are parsed in a separate process. Python's JSON parser
#: holds the GIL for a whole document, so in a worker thread a big one stopped every other
#: thread of the API, the event loop included (measured: 160 ms for a 56 MiB document, then
#: 60 ms more converting it to an array)
JSON_IN_PROCESS_BYTES = 4 * 1024 * 1024

_parser_pool: ProcessPoolExecutor | None = None
_parser_pool_lock = threading.Lock()


def _end_with_api(api_pid: int) -> None:
    """Initializer of a parser process: it ends when the API process ``api_pid`` ends.

    A parser process waits for work on a pipe whose writing end it holds itself (a
    ``multiprocessing`` queue travels to the child whole), so it never sees the API go: an
    API that was killed, or stopped without shutting its pool down, left its parser
    processes, their fork server and the resource tracker running forever. A thread here
    waits for the API's exit (a pidfd; polled once a second where the kernel has none)."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(api_pid)
        except ProcessLookupError:  # already gone
            os._exit(0)
        except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll
            while True:
                time.sleep(1.0)
                try:
                    os.kill(api_pid, 0)
                except ProcessLookupError:
                    os._exit(0)
                except PermissionError:  # a process of another user took the pid
                    os._exit(0)
        select.select([fd], [], [])  # readable when the process exits
        os._exit(0)

    threading.Thread(target=watch, name="wedgenet-api-watch", daemon=True).start()


def _parser_processes() -> ProcessPoolExecutor:
    """The pool of JSON parser processes, started on first use. Forked from a server process
    that has imported this module, one process per document (its memory, several times the
    document's size in Python objects, goes back to the system when it exits)."""
    global _parser_pool
    with _parser_pool_lock:
        if _parser_pool is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload([__name__])
            _parser_pool = ProcessPoolExecutor(max_workers=2, mp_context=ctx,
                                               max_tasks_per_child=1,
                                               initializer=_end_with_api,
                                               initargs=(os.getpid(),))
        return _parser_pool


def shutdown_parser_processes() -> None:
    """Stop the JSON parser processes (the API's shutdown); they start again when needed.
    Does not wait for a parse in progress: each parser process also ends by itself when the
    API process ends (:func:`_end_with_api`)."""
    global _parser_pool
    with _parser_pool_lock:
        pool, _parser_pool = _parser_pool, None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)


def _parse_json_path(path: str, what: str, max_depth: int, convert: Callable[[Any], T]) -> T:
    """In a parser process: ``convert`` the JSON document in the file at ``path``."""
    with open(path, "rb") as f:
        return convert(parse_json(f.read(), what, max_depth))


def parse_json_file(fp: BinaryIO, size: int, what: str, max_depth: int,
                    convert: Callable[[Any], T]) -> T:
    """``convert(parse_json(...))`` of the ``size``-byte JSON document in ``fp`` (at its
    start): in this thread when it is small, in a parser process (:data:`JSON_IN_PROCESS_BYTES`)
    when it is big. ``convert`` must be picklable (a module function or a partial of one)."""
    if size <= JSON_IN_PROCESS_BYTES:
        return convert(parse_json(fp.read(), what, max_depth))
    with tempfile.NamedTemporaryFile(prefix="wedgenet-upload-", suffix=".json") as tmp:
        shutil.copyfileobj(fp, tmp, CHUNK)  # the process reads it from disk: no big pickle
        tmp.flush()
        try:
            return _parser_processes().submit(_parse_json_path, tmp.name, what, max_depth,
                                              convert).result()
        except BrokenProcessPool as exc:  # the parser process died (out of memory, killed)
            shutdown_parser_processes()
            raise UploadError(413, f"{what}: the JSON document could not be parsed within "
                              "the server's memory (its parser process died); upload it as "
                              ".npy, .npz or CSV") from exc


def _describe(v: Any) -> str:
    try:
        return json.dumps(v)[:40]
    except (TypeError, ValueError):  # pragma: no cover - parsed JSON always dumps
        return type(v).__name__


def json_to_array(value: Any, what: str) -> np.ndarray:
    """Nested JSON lists of numbers -> ndarray; rejects ragged, non-numeric and non-finite.
    Integers only -> int64 (when they fit), otherwise float64. Iterative (no recursion)."""
    shape: list[int] = []
    v = value
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    ndim = len(shape)
    if ndim == 0:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UploadError(422, f"{what}: {_describe(value)}, not a number")
    all_int = True
    stack: list[tuple[list[Any], tuple[int, ...]]] = [(value, ())] if ndim else []
    while stack:
        lst, idx = stack.pop()
        depth = len(idx)
        path = "".join(f"[{i}]" for i in idx)
        if len(lst) != shape[depth]:
            raise UploadError(422, f"{what}: ragged array: {path or 'the array'} has "
                              f"{len(lst)} elements, expected {shape[depth]}")
        if depth == ndim - 1:
            types = set(map(type, lst))
            if not types <= {int, float}:
                for i, e in enumerate(lst):
                    if type(e) not in (int, float):
                        if isinstance(e, list):
                            raise UploadError(422, f"{what}: ragged array: {path}[{i}] is a "
                                              "list where a number was expected")
                        raise UploadError(422, f"{what}: {path}[{i}] is {_describe(e)}, "
                                          "not a number")
            if float in types:
                all_int = False
        else:
            for i, e in enumerate(lst):
                if not isinstance(e, list):
                    raise UploadError(422, f"{what}: ragged array: {path}[{i}] is "
                                      f"{_describe(e)} where a list was expected")
                stack.append((e, (*idx, i)))
    try:
        arr = np.array(value, dtype=float)
    except (ValueError, OverflowError) as exc:
        raise UploadError(422, f"{what}: cannot convert to a numeric array ({exc})") from exc
    if arr.shape != tuple(shape):  # pragma: no cover - guarded above
        raise UploadError(422, f"{what}: ragged array")
    if all_int and arr.size:
        return np.array(value, dtype=np.int64) if np.all(np.abs(arr) < 2**62) else arr
    return arr


# ---------------------------------------------------------------------------------- CSV

#: a CSV number: what C's strtod reads, ASCII only, no underscores (Python's float() takes
#: "1_000" and non-ASCII digits; CSV numbers must not)
_CSV_NUMBER = re.compile(
    r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|nan|inf(?:inity)?)", re.ASCII | re.IGNORECASE)


def _is_number(cell: str) -> bool:
    return _CSV_NUMBER.fullmatch(cell.strip(" \t")) is not None


def _nonblank(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.strip():
            yield line


def parse_csv(fp: BinaryIO, what: str) -> np.ndarray:
    """A CSV table of numbers (an optional header row of names); see :func:`parse_csv_table`."""
    return parse_csv_table(fp, what)[0]


def parse_csv_table(fp: BinaryIO, what: str) -> tuple[np.ndarray, list[str]]:
    """A CSV table of numbers and its header's column names (``[]`` without a header row),
    parsed by numpy's C reader from the file line by line: memory is the float64 result (plus
    its growth), not Python objects per cell. On failure the file is scanned again for a
    precise message."""
    text = io.TextIOWrapper(fp, encoding="utf-8-sig", newline=None)  # type: ignore[arg-type]
    names: list[str] = []
    try:
        lines = _nonblank(text)
        first = next(lines, None)
        if first is None:
            raise UploadError(422, f"{what}: CSV file has no rows")
        cells = next(csv.reader([first]), [])
        header = not any(_is_number(c) for c in cells)
        if header:
            names = [c.strip() for c in cells]
        rows = lines if header else itertools.chain([first], lines)
        arr = _load_csv_rows(rows, max(1, len(cells)))
        failure: Exception | None = None
    except UnicodeDecodeError as exc:
        raise UploadError(422, f"{what}: CSV is not UTF-8 text ({exc})") from exc
    except (ValueError, csv.Error) as exc:
        failure = exc
    finally:
        text.detach()  # never let the wrapper close the upload's file
    if failure is not None:
        fp.seek(0)
        raise _csv_error(fp, what, failure) from failure
    if arr.shape[0] == 0:
        raise UploadError(422, f"{what}: CSV file has a header but no data rows")
    return arr, names


#: cells numpy's CSV reader parses per call (a few milliseconds): it holds the GIL for a
#: whole call, so one call over a big file kept every other thread, the event loop
#: included, waiting (measured: 100-180 ms for a 20 MiB CSV)
CSV_CHUNK_CELLS = 65_536


def _load_csv_rows(rows: Iterator[str], n_columns: int) -> np.ndarray:
    """The float64 table of CSV ``rows``, parsed in chunks of about :data:`CSV_CHUNK_CELLS`
    cells, the GIL released between chunks. ``ValueError`` on ragged rows or bad cells."""
    per_chunk = max(16, CSV_CHUNK_CELLS // n_columns)
    chunks: list[np.ndarray] = []
    while batch := list(itertools.islice(rows, per_chunk)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data"
            chunk = np.loadtxt(batch, delimiter=",", dtype=np.float64, comments=None,
                               quotechar='"', ndmin=2)
        if chunks and chunk.shape[1] != chunks[0].shape[1]:
            raise ValueError(f"rows with {chunks[0].shape[1]} and {chunk.shape[1]} columns")
        chunks.append(chunk)
        time.sleep(0)  # hand the GIL to a waiting thread (the event loop) between chunks
    if not chunks:
        return np.empty((0, n_columns))
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def read_table(fp: BinaryIO, filename: str | None, fmt: str | None, settings: Settings,
               what: str) -> tuple[np.ndarray, list[str]]:
    """One uploaded table (CSV with an optional header, or a 2-D ``.npy``/``.json`` array)
    and its column names (``[]`` when it has none)."""
    fmt, size = open_upload(fp, filename, fmt, settings, what)
    if fmt == "csv":
        return parse_csv_table(fp, what)
    arrays = parse_file(fp, size, fmt, settings, what)
    if set(arrays) != {""}:
        raise UploadError(422, f"{what}: expected one table, found arrays {sorted(arrays)[:8]}")
    return arrays[""], []


def split_target(table: np.ndarray, names: list[str], target: str | None,
                 what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` from one table: ``y`` is the column named ``target`` (a header name, or an
    integer index counted from 0, negative from the end; default: the last column), ``X`` the
    others. The command line reads its tables the same way."""
    if table.ndim != 2 or table.shape[1] < 2:
        raise UploadError(422, f"{what}: a table needs 2 dimensions and at least 2 columns, "
                          f"got shape {table.shape}")
    if target is None:
        col = table.shape[1] - 1
    elif target in names:
        if names.count(target) > 1:
            raise UploadError(422, f"target: the column name {target!r} occurs more than once")
        col = names.index(target)
    elif re.fullmatch(r"-?\d{1,9}", target) and -table.shape[1] <= int(target) < table.shape[1]:
        col = int(target) % table.shape[1]
    else:
        shown = names[:20] if names else f"indices 0..{table.shape[1] - 1} (no header row)"
        raise UploadError(422, f"target: column {target!r} not found; columns: {shown}")
    return np.delete(table, col, axis=1), table[:, col]


def _csv_error(fp: BinaryIO, what: str, cause: Exception) -> UploadError:
    """The first ragged or non-numeric cell of a CSV numpy refused, with its line number."""
    text = io.TextIOWrapper(fp, encoding="utf-8-sig", newline="")  # type: ignore[arg-type]
    try:
        reader = csv.reader(text)
        width: int | None = None
        for row in reader:
            if not row or not any(c.strip() for c in row):
                continue
            line = reader.line_num
            if width is None:
                width = len(row)
                if not any(_is_number(c) for c in row):  # the header
                    continue
            if len(row) != width:
                return UploadError(
                    422, f"{what}: ragged CSV: line {line} has {len(row)} values, expected "
                    f"{width}")
            for j, cell in enumerate(row):
                if not _is_number(cell):
                    return UploadError(
                        422, f"{what}: non-numeric CSV value {cell[:40]!r} at line {line}, "
                        f"column {j + 1}")
    except UnicodeDecodeError as exc:
        return UploadError(422, f"{what}: CSV is not UTF-8 text ({exc})")
    except csv.Error as exc:
        return UploadError(422, f"{what}: malformed CSV ({exc})")
    finally:
        text.detach()
    return UploadError(422, f"{what}: not a numeric CSV table ({str(cause)[:200]})")


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
        if 0 in W.shape:
            raise UploadError(422, f"layer {i + 1}: W has shape {W.shape}: an empty layer; "
                              "every layer needs at least one input and one output")
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
