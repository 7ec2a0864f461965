"""Parsing uploads without holding up other threads: CSV in chunks, big JSON in a parser
process (``app/uploads.py``)."""

from __future__ import annotations

import functools
import io
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from app import uploads
from app.uploads import UploadError, json_arrays, layers_from_json, parse_csv_table


def _csv(rows: np.ndarray, header: list[str] | None = None) -> bytes:
    lines = [",".join(header)] if header else []
    lines += [",".join(repr(float(v)) for v in row) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def _worst_stall(work: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run ``work`` in a thread while this thread sleeps 1 ms at a time: the longest this
    thread waited for the GIL (a sleep's overshoot), the work's duration, its result."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = work()
        except BaseException as exc:  # pragma: no cover - re-raised below
            out["error"] = exc

    t = threading.Thread(target=run)
    t0 = time.perf_counter()
    t.start()
    worst = 0.0
    while t.is_alive():
        a = time.perf_counter()
        time.sleep(0.001)
        worst = max(worst, time.perf_counter() - a - 0.001)
    t.join()
    if "error" in out:
        raise out["error"]
    return worst, time.perf_counter() - t0, out.get("value")


@pytest.mark.parametrize("header", [None, ["a", "b", "c"]])
def test_csv_in_chunks_equals_one_parse(monkeypatch: pytest.MonkeyPatch,
                                        header: list[str] | None) -> None:
    X = np.random.default_rng(0).standard_normal((1000, 3))
    data = _csv(X, header)
    monkeypatch.setattr(uploads, "CSV_CHUNK_CELLS", 30)  # 16 rows per chunk
    arr, names = parse_csv_table(io.BytesIO(data), "X")
    np.testing.assert_array_equal(arr, X)
    assert names == (header or [])


def test_csv_ragged_row_in_a_later_chunk_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.random.default_rng(0).standard_normal((100, 3))
    lines = _csv(X).decode().splitlines()
    lines[70] = "1.0,2.0"  # line 71: one chunk after the first (16 rows per chunk)
    monkeypatch.setattr(uploads, "CSV_CHUNK_CELLS", 30)
    with pytest.raises(UploadError) as e:
        parse_csv_table(io.BytesIO("\n".join(lines).encode()), "X")
    assert e.value.status == 422 and "line 71" in e.value.message, e.value.message


def test_csv_header_without_rows() -> None:
    with pytest.raises(UploadError, match="header but no data rows"):
        parse_csv_table(io.BytesIO(b"a,b\n"), "X")


def test_big_csv_does_not_hold_the_gil() -> None:
    """numpy's CSV reader holds the GIL for a whole call: over a whole 11 MiB file, one call
    kept other threads (the event loop) waiting for 50-100 ms, about 85% of the parse. In
    chunks, other threads wait a few milliseconds at a time."""
    X = np.random.default_rng(1).standard_normal((150_000, 7))
    data = _csv(X)
    worst, duration, (arr, _) = _worst_stall(lambda: parse_csv_table(io.BytesIO(data), "X"))
    np.testing.assert_array_equal(arr, X)
    print(f"\n{len(data) / 2**20:.1f} MiB CSV parsed in {duration * 1000:.0f} ms; longest wait "
          f"of another thread {worst * 1000:.1f} ms")
    assert worst < max(0.03, duration / 4), (worst, duration)


def _json_file(obj: object) -> tuple[io.BytesIO, int]:
    data = json.dumps(obj).encode()
    return io.BytesIO(data), len(data)


@pytest.fixture
def json_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every JSON document bigger than 64 bytes goes to the parser process."""
    monkeypatch.setattr(uploads, "JSON_IN_PROCESS_BYTES", 64)
    yield
    uploads.shutdown_parser_processes()


def test_json_in_a_parser_process_gives_the_same_arrays(json_in_process: None) -> None:
    X = np.random.default_rng(2).standard_normal((50, 3))
    fp, size = _json_file({"X": X.tolist(), "y": list(range(50))})
    arrays = uploads.parse_json_file(fp, size, "file", 32,
                                     functools.partial(json_arrays, what="file"))
    assert uploads._parser_pool is not None  # it went to the parser process
    np.testing.assert_array_equal(arrays["X"], X)
    assert arrays["y"].dtype == np.int64 and arrays["y"].tolist() == list(range(50))


def test_json_errors_cross_the_process_boundary(json_in_process: None) -> None:
    """The parser process's refusal reaches the client as the same 422."""
    convert = functools.partial(json_arrays, what="X")
    for bad, expected in [(b"[[1.0, 2.0], [3.0]]" + b" " * 100, "ragged"),
                          (b"[[1.0, NaN]]" + b" " * 100, "NaN"),
                          (b"[" * 100 + b"]" * 100, "nested deeper")]:
        with pytest.raises(UploadError) as e:
            uploads.parse_json_file(io.BytesIO(bad), len(bad), "X", 32, convert)
        assert e.value.status == 422 and expected in e.value.message, e.value.message


def test_json_layers_in_a_parser_process(json_in_process: None) -> None:
    W, b = np.arange(6.0).reshape(2, 3), np.array([0.5, -0.5])
    fp, size = _json_file({"layers": [{"W": W.tolist(), "b": b.tolist()}]})
    layers = uploads.parse_json_file(fp, size, "weights", 32, functools.partial(
        layers_from_json, what="weights", layer_names=None))
    np.testing.assert_array_equal(layers[0][0], W)
    np.testing.assert_array_equal(layers[0][1], b)


def test_big_json_does_not_hold_the_gil() -> None:
    """``json.loads`` holds the GIL for a whole document: in a worker thread a 14 MiB one kept
    other threads waiting for most of the parse. In a parser process, they do not wait."""
    X = np.random.default_rng(3).standard_normal((100_000, 7))
    data = json.dumps(X.tolist()).encode()
    assert len(data) > uploads.JSON_IN_PROCESS_BYTES
    convert = functools.partial(json_arrays, what="X")
    assert uploads._parser_processes().submit(int, 7).result() == 7  # started, not timed
    worst, duration, arrays = _worst_stall(
        lambda: uploads.parse_json_file(io.BytesIO(data), len(data), "X", 32, convert))
    uploads.shutdown_parser_processes()
    np.testing.assert_array_equal(arrays[""], X)
    print(f"\n{len(data) / 2**20:.1f} MiB JSON parsed in {duration * 1000:.0f} ms; longest "
          f"wait of another thread {worst * 1000:.1f} ms")
    assert worst < max(0.03, duration / 4), (worst, duration)
