"""Every code example in README.md and docs/*.md runs.

Fenced ``python`` blocks run in a fresh namespace each (examples that talk to the service get
a real uvicorn on a free port, with a thread running queued jobs as a worker would: the
``http://127.0.0.1:8000`` of the example becomes that server's address). In ``bash`` blocks,
``wedgenet ...`` lines run in-process through ``wedgenet.cli.main`` (in a folder holding the
``data.csv``, ``classes.csv`` and ``weights.safetensors`` they name) and must exit 0; blocks of
``curl`` calls run under ``bash -e`` against the test server. Every other block is listed in
:data:`NOT_RUN` with the reason, and a block that is neither run nor listed fails the test, so
new examples are run or explicitly excused. Fences without a language are output, not code.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SERVICE_URL = "http://127.0.0.1:8000"
SERVICE_KEY = "dev-key"

#: blocks not run: (file, first line of the block) -> why
NOT_RUN: dict[tuple[str, str], str] = {
    ("README.md", "make serve   # installs into .venv, runs API + worker on SQLite at "
     "http://127.0.0.1:8000 (key: dev-key)"):
        "installs into .venv and starts a server that runs until stopped; `make test` runs "
        "the whole test suite (this file included)",
    ("README.md", ".venv/bin/python -m pytest -q"):
        "the whole test suite, this file included",
    ("docs/service.md", "python -m app serve --port 8000          # or: wedgenet serve "
     "--port 8000"):
        "a server that runs until stopped; tests/integration runs `python -m app serve` itself",
    ("docs/service.md", "WEDGENET_API_KEYS=key1,key2 docker compose up --build --scale "
     "worker=2"):
        "needs a Docker daemon and builds the image (minutes)",
    ("docs/service.md", ".venv/bin/python -m pytest -q          # everything; service tests: "
     "tests/app tests/worker tests/integration"):
        "the whole test suite and CI, this file included",
    ("docs/ui.md", "apt-get install -y chromium           # once"):
        "installs a system package; tests/ui are the UI tests themselves",
    ("docs/l2_bound.md", "import warnings"):
        "the table of measured gaps below it: a benchmark of about 20 s (minutes on a loaded "
        "2-core machine) whose output is the table; the API example above it runs",
    ("docs/polishing.md", ".venv/bin/python bench/bench_polish.py tabular --json "
     "/tmp/tabular.json"):
        "the tabular benchmark: about 8 minutes",
}

#: single lines of run bash blocks that are not run: line prefix -> why
NOT_RUN_LINES = {
    "wedgenet serve": "starts a server that runs until stopped (tests/integration start one)",
}


@dataclass
class Block:
    file: str
    line: int
    lang: str
    code: str

    @property
    def first(self) -> str:
        return next((ln.strip() for ln in self.code.splitlines() if ln.strip()), "")

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"


def blocks() -> list[Block]:
    out = []
    for path in DOCS:
        rel = str(path.relative_to(ROOT))
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"^```(\w*)\s*$", lines[i])
            if m:
                j = i + 1
                while j < len(lines) and not lines[j].startswith("```"):
                    j += 1
                out.append(Block(rel, i + 1, m.group(1), "\n".join(lines[i + 1:j]) + "\n"))
                i = j
            i += 1
    return out


CODE = [b for b in blocks() if b.lang in ("python", "bash")]


def _kind(b: Block) -> str:
    if (b.file, b.first) in NOT_RUN:
        return "not run"
    if b.lang == "python":
        return "python"
    cmds = [ln for ln in b.code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if all(c.lstrip().startswith("wedgenet") for c in cmds):
        return "wedgenet"
    if any("curl " in c for c in cmds):
        return "curl"
    return "unclassified"


def test_every_example_is_run_or_excused() -> None:
    """Each python/bash block runs (below) or is listed in NOT_RUN with a reason; every
    listed block still exists (a stale entry would hide nothing)."""
    unclassified = [b.id for b in CODE if _kind(b) == "unclassified"]
    assert not unclassified, f"add these blocks to NOT_RUN with a reason, or make them run: " \
                             f"{unclassified}"
    present = {(b.file, b.first) for b in CODE}
    stale = [k for k in NOT_RUN if k not in present]
    assert not stale, f"NOT_RUN entries without a block: {stale}"
    assert sum(_kind(b) != "not run" for b in CODE) >= 6


# ------------------------------------------------------------------------ the test server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    """uvicorn with the API on SQLite in a thread, and a thread running queued jobs."""
    import uvicorn

    from app.core.config import get_settings

    tmp = tempfile.mkdtemp(prefix="wedgenet-docs-")
    env = {
        "WEDGENET_DATABASE_URL": f"sqlite:///{tmp}/docs.db",
        "WEDGENET_BROKER_URL": "filesystem://",
        "WEDGENET_BROKER_DIR": f"{tmp}/broker",
        "WEDGENET_API_KEYS": SERVICE_KEY,
        "WEDGENET_API_SWEEPER": "false",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    from app.main import create_app
    from tests.conftest import run_pending_jobs

    port = _free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port,
                                        log_level="warning", lifespan="on"))
    threading.Thread(target=srv.run, daemon=True).start()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):  # e.g. the database is not migrated yet
                run_pending_jobs()
            stop.wait(0.05)

    worker = threading.Thread(target=work, daemon=True)
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    worker.start()
    try:
        yield Server(f"http://127.0.0.1:{port}", env)
    finally:
        stop.set()
        srv.should_exit = True
        worker.join(10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


# ------------------------------------------------------------------------------- python
@pytest.mark.parametrize("block", [b for b in CODE if _kind(b) == "python"],
                         ids=lambda b: b.id)
def test_python_example(block: Block, request: pytest.FixtureRequest,
                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = block.code
    if SERVICE_URL in code:
        srv: Server = request.getfixturevalue("server")
        code = code.replace(SERVICE_URL, srv.url)
    monkeypatch.chdir(tmp_path)
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, block.id, "exec"), {"__name__": "__docs__"})


# ------------------------------------------------------------------------------ wedgenet
def _cli_files(folder: Path) -> None:
    """The files the README's command lines name."""
    from safetensors.numpy import save

    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 2))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]
    np.savetxt(folder / "data.csv", np.column_stack([X, y]), delimiter=",",
               header="x1,x2,y", comments="")
    label = (X[:, 0] * X[:, 1] > 0).astype(int)
    np.savetxt(folder / "classes.csv", np.column_stack([X, label]), delimiter=",",
               header="x1,x2,label", comments="", fmt=["%.17g", "%.17g", "%d"])
    (folder / "weights.safetensors").write_bytes(save({
        "0.weight": rng.normal(size=(6, 2)), "0.bias": 0.1 * rng.normal(size=6),
        "2.weight": rng.normal(size=(1, 6)), "2.bias": np.zeros(1)}))


@pytest.mark.parametrize("block", [b for b in CODE if _kind(b) == "wedgenet"],
                         ids=lambda b: b.id)
def test_wedgenet_command_lines(block: Block, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from wedgenet.cli import main

    _cli_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    ran = 0
    for line in block.code.splitlines():
        for command in line.split(";"):
            argv = shlex.split(command, comments=True)
            if not argv:
                continue
            assert argv[0] == "wedgenet", command
            if any(command.strip().startswith(p) for p in NOT_RUN_LINES):
                continue
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv[1:])
            assert status == 0, (command, err.getvalue()[-2000:])
            ran += 1
            for arg in argv:  # outputs were written
                if arg.startswith(("net.", "polished.", "regions.")):
                    assert (tmp_path / arg).stat().st_size > 0, arg
    assert ran >= 1


# ---------------------------------------------------------------------------------- curl
def _network_and_job(srv: Server) -> tuple[str, str]:
    """A finished logistic job on 2-D data and its network, through the API."""
    from app.client import WedgenetClient

    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 2))
    with WedgenetClient(srv.url, SERVICE_KEY) as c:
        ds = c.upload_dataset(X, (X[:, 0] * X[:, 1] > 0).astype(int))
        job = c.wait(c.submit(ds["id"], loss="logistic", lam=0.1)["id"], timeout=120)
    return job["network_id"], job["id"]


@pytest.mark.parametrize("block", [b for b in CODE if _kind(b) == "curl"],
                         ids=lambda b: b.id)
def test_curl_examples(block: Block, server: Server, tmp_path: Path) -> None:
    import httpx

    net, job = _network_and_job(server)
    env = {**os.environ, "BASE": server.url, "KEY": SERVICE_KEY, "NET": net, "JOB": job}
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    for name in re.findall(r"-o (\S+)", block.code):  # every download arrived
        assert (tmp_path / name).stat().st_size > 0, name
    if "DELETE" in block.code:
        h = {"X-API-Key": SERVICE_KEY}
        assert httpx.get(f"{server.url}/networks/{net}", headers=h).status_code == 404
        assert httpx.get(f"{server.url}/jobs/{job}", headers=h).status_code == 404

