"""Ahead-of-time compilation: after ``python -m wedgenet.warmup`` a fresh process compiles nothing.

The main test runs two fresh interpreters on one empty, temporary ``NUMBA_CACHE_DIR``: the
first runs the warm-up (and compiles every kernel), the second runs a first solve and must
load every kernel it uses from the on-disk cache (numba's dispatcher counters: cache misses
are compilations).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import wedgenet

# the package under test, whatever the current directory
PACKAGE_ROOT = str(Path(wedgenet.__file__).resolve().parent.parent)

FIRST_SOLVE = """
import json, time
t0 = time.perf_counter()
import numpy as np
import wedgenet
from wedgenet.warmup import kernel_stats
rng = np.random.default_rng(0)
X = rng.normal(size=(12, 2))
y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]
t1 = time.perf_counter()
res = wedgenet.solve(X, y, lam=0.05)
wedgenet.solve(X, np.digitize(y, [-0.5, 0.5]), loss="softmax", lam=0.05)
t2 = time.perf_counter()
s = kernel_stats()
print(json.dumps({"certified": res.certified, "solve_s": t2 - t1, "total_s": t2 - t0,
                  "compiled": s.compiled, "loaded": s.loaded, "cache_dirs": s.cache_dirs}))
"""


def _run(args: list[str], cache_dir: Path, timeout: float) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, *args], env=env, cwd=PACKAGE_ROOT, timeout=timeout,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_first_solve_after_warm_up_compiles_nothing(tmp_path: Path) -> None:
    cache = tmp_path / "numba-cache"
    # 1. the warm-up, in its own process, on an empty cache: compiles every kernel (which
    # also shows that the counters see a compilation, i.e. that step 2 can fail)
    warm = _run(["-m", "wedgenet.warmup", "--json"], cache, timeout=300)
    assert warm["kernels"] > 0 and warm["seconds"] > 0
    assert warm["compiled"] > 0 and warm["loaded"] == 0, warm
    assert warm["unreached"] == [], (
        "kernels not reached by wedgenet.warmup.warm_up (add a tiny call of the public entry "
        f"point that uses them): {warm['unreached']}")
    assert all(d.startswith(str(cache)) for d in warm["cache_dirs"]), warm["cache_dirs"]
    assert list(cache.rglob("*.nbi")), "nothing was written to NUMBA_CACHE_DIR"

    # 2. a fresh process: its first solves load every kernel from the cache
    first = _run(["-c", FIRST_SOLVE], cache, timeout=120)
    assert first["certified"]
    assert first["compiled"] == 0, f"the first solve compiled {first['compiled']} signatures"
    assert first["loaded"] >= 2, first  # at least pricing and the restricted solver
    assert all(d.startswith(str(cache)) for d in first["cache_dirs"]), first["cache_dirs"]
    # compiling takes tens of seconds; loading well under one (bound generous for slow CI)
    assert first["solve_s"] < 10.0, first


def test_kernels_lists_the_package_kernels() -> None:
    from wedgenet.warmup import kernels

    found = kernels(import_all=True)
    assert found, "no numba kernels found in the package"
    assert all(name.startswith("wedgenet.") for name in found)


def test_celery_worker_warms_up_at_start(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wedgenet.warmup
    from worker import celery_app

    calls: list[int] = []

    def fake() -> float:
        calls.append(1)
        return 0.25

    monkeypatch.setattr(wedgenet.warmup, "warm_up", fake)
    with caplog.at_level(logging.INFO, logger="wedgenet.worker"):
        celery_app._warm_up_kernels()
    assert calls == [1]
    assert "compiling numerical kernels (first start only)..." in caplog.text
    assert "numerical kernels" in caplog.text and "0.2 s" in caplog.text

    monkeypatch.setenv("WEDGENET_WARMUP", "false")
    celery_app._warm_up_kernels()
    assert calls == [1]


def test_celery_worker_starts_when_the_warm_up_fails(
    service_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import wedgenet.warmup
    from worker import celery_app

    def broken() -> float:
        raise RuntimeError("no compiler")

    monkeypatch.setattr(wedgenet.warmup, "warm_up", broken)
    with caplog.at_level(logging.INFO, logger="wedgenet.worker"):
        celery_app._warm_up_kernels()  # logs, does not raise
    assert "warm-up of the numerical kernels failed" in caplog.text
