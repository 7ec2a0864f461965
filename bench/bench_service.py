"""Service benchmark: real uvicorn API + Celery worker processes.

``--mode jobs`` (default) measures
  1. submission-to-result latency of a small solve (n=12, d=2), median/p90 over K runs;
  2. throughput of N concurrent small jobs with 1 and 2 worker processes;
  3. p50/p99 latency of GET /jobs/{id} issued by a second process while jobs run.

``--mode api`` measures request handling alone (no worker): GET /jobs/{id} and POST /jobs
throughput and p50/p99 latency at 1, 16 and 64 concurrent clients, side by side with a bare
FastAPI + SQLAlchemy endpoint reading one job row from the same database, in the same run
(and, for the writes, a bare endpoint inserting one job row and committing); each app is one
uvicorn process, the load generator one asyncio process with a keep-alive connection per
client. The ratios are against the bare read.

Usage:
  .venv/bin/python bench/bench_service.py                      # embedded: SQLite + filesystem
  .venv/bin/python bench/bench_service.py \
      --database-url postgresql+psycopg://postgres@127.0.0.1/wedgenet_bench \
      --broker-url redis://127.0.0.1:6379/14                   # production-shaped
  .venv/bin/python bench/bench_service.py --mode api [--database-url ... --broker-url ...]
  .venv/bin/python bench/bench_service.py --mode kill [--database-url ... --broker-url ...]
  .venv/bin/python bench/bench_service.py --mode upload [--database-url ...]

``--mode upload``: ``/health`` latency (p50, p99, worst, polled every 10 ms by one client)
while one client uploads a ~60 MiB CSV (n = 700000, d = 7) and then a ~40 MiB JSON file
(n = 400000, d = 7) to ``POST /datasets``; also the upload's duration and the API process's
peak memory above its idle size. ``/health`` alone for 3 s first, as the reference.

``--mode kill``: 30 jobs of 1-2 s on two workers with the default recovery settings; every 8 s
the worker running the oldest running job (not killed before) is SIGKILLed (a replacement
starts); reports lost jobs, duplicated results, re-runs and each killed job's time until it
is re-queued and until it runs again.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.client import WedgenetClient  # noqa: E402

KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reset_database(url: str) -> None:
    if not url.startswith("postgresql"):
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    u = make_url(url)
    admin = create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)'))
        c.execute(text(f'CREATE DATABASE "{u.database}"'))
    admin.dispose()


def stop_processes(procs: list[subprocess.Popen[bytes]], tmp: Path) -> None:
    """SIGTERM each process group (SIGKILL after 20 s), then remove the stack's folder."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    shutil.rmtree(tmp, ignore_errors=True)


class Stack:
    def __init__(self, database_url: str | None, broker_url: str, workers: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="wedgenet-bench-"))
        db = database_url or f"sqlite:///{self.tmp / 'bench.db'}"
        reset_database(db)
        if broker_url.startswith("redis"):
            import redis

            redis.Redis.from_url(broker_url).flushdb()
        self.db = db
        # the load generators here are one key: no request rate limit
        self.env = {**os.environ, "WEDGENET_DATABASE_URL": db, "WEDGENET_BROKER_URL": broker_url,
                    "WEDGENET_BROKER_DIR": str(self.tmp / "broker"), "WEDGENET_API_KEYS": KEY,
                    "WEDGENET_RATE_LIMIT": "0", "PYTHONPATH": str(ROOT)}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        log = open(self.tmp / "api.log", "wb")  # noqa: SIM115
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port),
             "--log-level", "warning"], cwd=ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True))
        self._wait_up()
        self.workers: list[subprocess.Popen[bytes]] = []
        for _ in range(workers):
            self.add_worker()
        time.sleep(3.0)  # let the workers connect

    def add_worker(self) -> subprocess.Popen[bytes]:
        from app.cli import worker_command

        i = len(self.workers)
        wlog = open(self.tmp / f"worker{i}.log", "wb")  # noqa: SIM115
        cmd = worker_command(1, "WARNING") + ["-n", f"bench{i}@%h"]
        w = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=wlog, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(w)
        self.workers.append(w)
        return w

    def _wait_up(self) -> None:
        for _ in range(300):
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError((self.tmp / "api.log").read_text())

    def close(self) -> None:
        stop_processes(self.procs, self.tmp)


def small(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(12, 2))
    return X, np.sin(2 * X[:, 0]) + 0.5 * X[:, 1]


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def poll_load(url: str, job_ids: list[str], stop: mp.Event, out: mp.Queue, threads: int) -> None:
    """Second process: hammer GET /jobs/{id} from several threads, report latencies (ms)."""
    lat: list[float] = []
    lock = threading.Lock()

    def loop(k: int) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
            i = k
            while not stop.is_set():
                t0 = time.perf_counter()
                r = c.get(f"/jobs/{job_ids[i % len(job_ids)]}")
                dt = (time.perf_counter() - t0) * 1000
                if r.status_code == 200:
                    with lock:
                        lat.append(dt)
                i += 1

    ts = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(lat)


def run_config(args: argparse.Namespace, workers: int) -> dict[str, float]:
    st = Stack(args.database_url, args.broker_url, workers)
    try:
        c = WedgenetClient(st.url, KEY, timeout=60)
        # warm-up: every worker process has taken a job (connections, first-call costs)
        warm = [c.submit(c.upload_dataset(*small(10_000 + k))["id"], lam=0.1)["id"]
                for k in range(2 * workers)]
        for jid in warm:
            c.wait(jid, timeout=300, poll=0.05)
        # 1. latency, one job at a time
        lats = []
        for k in range(args.latency_runs):
            ds = c.upload_dataset(*small(k))
            t0 = time.perf_counter()
            job = c.submit(ds["id"], lam=0.1)
            c.wait(job["id"], timeout=300, poll=0.02)
            lats.append(time.perf_counter() - t0)
        # 2. throughput of N concurrent jobs, 3. GET latency from a second process meanwhile
        dsets = [c.upload_dataset(*small(1000 + k))["id"] for k in range(args.jobs)]
        t0 = time.perf_counter()
        ids = [c.submit(d, lam=0.1)["id"] for d in dsets]
        stop, q = mp.Event(), mp.Queue()
        loader = mp.Process(target=poll_load, args=(st.url, ids, stop, q, args.poll_threads))
        loader.start()
        for jid in ids:
            c.wait(jid, timeout=600, poll=0.05)
        wall = time.perf_counter() - t0
        stop.set()
        get_lat = q.get(timeout=60)
        loader.join(timeout=30)
        c.close()
        return {
            "workers": workers, "lat_p50": statistics.median(lats), "lat_p90": pct(lats, 90),
            "jobs": args.jobs, "wall": wall, "throughput": args.jobs / wall,
            "get_n": len(get_lat), "get_p50": pct(get_lat, 50), "get_p99": pct(get_lat, 99),
        }
    finally:
        st.close()


# ----------------------------------------------------------------- --mode kill


def run_kill(args: argparse.Namespace) -> None:
    """Jobs under fire: N jobs of ~1-2 s on 2 workers (defaults for heartbeats and sweeps);
    every ``--kill-every`` seconds the worker running the oldest running job not killed
    before is SIGKILLed with its pool process (a replacement starts at once). Reports lost
    jobs (never succeeded), duplicated results, re-runs beyond the kills, and per kill the
    time until its job is re-queued and until it runs again on another worker."""
    from sqlalchemy import create_engine, func, select

    from app.models import Job, Network

    st = Stack(args.database_url, args.broker_url, 2)
    eng = create_engine(st.db)
    rng = np.random.default_rng(7)
    kills: list[dict[str, float | str | int]] = []
    try:
        c = WedgenetClient(st.url, KEY, timeout=60)
        for jid in [c.submit(c.upload_dataset(*small(9000 + k))["id"], lam=0.1)["id"]
                    for k in range(2)]:
            c.wait(jid, timeout=300, poll=0.05)  # both workers warm
        ids = []
        for k in range(args.kill_jobs):
            X = rng.normal(size=(120, 2))
            ds = c.upload_dataset(X, np.sin(3 * X[:, 0]) + np.cos(2 * X[:, 1]))["id"]
            ids.append(c.submit(ds, lam=0.05 + 0.001 * k, solver="cvxpy")["id"])
        t0 = time.monotonic()
        next_kill = t0 + args.kill_every
        while time.monotonic() - t0 < args.kill_timeout:
            with eng.connect() as conn:
                rows = {r.id: r for r in conn.execute(
                    select(Job.id, Job.state, Job.attempts, Job.worker_id, Job.started_at)
                    .where(Job.id.in_(ids)))}
            now = time.monotonic()
            for k in kills:
                r = rows[str(k["job"])]
                moved = r.attempts > int(k["attempts"]) or r.state != "running"
                if "requeued" not in k and moved:
                    k["requeued"] = now - float(k["at"])
                if "recovered" not in k and r.attempts > int(k["attempts"]):
                    k["recovered"] = now - float(k["at"])
            if all(r.state in ("succeeded", "failed", "cancelled") for r in rows.values()):
                break
            # a job is killed at most once (repeated kills of one job would end in
            # too_many_attempts after WEDGENET_MAX_ATTEMPTS, by design)
            running = sorted((r for r in rows.values() if r.state == "running" and r.worker_id
                              and r.attempts == 1), key=lambda r: r.started_at)
            if now >= next_kill and running:
                victim_row = running[0]
                pid = int(victim_row.worker_id.split(":")[1])
                victim = next((w for w in st.workers if w.poll() is None
                               and pid in _children(w.pid)), None)
                if victim is not None:
                    os.killpg(victim.pid, signal.SIGKILL)
                    victim.wait()
                    kills.append({"job": victim_row.id, "at": time.monotonic(),
                                  "attempts": victim_row.attempts})
                    st.add_worker()
                    next_kill = time.monotonic() + args.kill_every
            time.sleep(0.1)
        wall = time.monotonic() - t0
        with eng.connect() as conn:
            states = dict(conn.execute(select(Job.state, func.count()).where(Job.id.in_(ids))
                                       .group_by(Job.state)).all())
            attempts = int(conn.scalar(select(func.sum(Job.attempts))
                                       .where(Job.id.in_(ids))) or 0)
            per_job = conn.execute(select(Network.job_id, func.count()).where(
                Network.job_id.in_(ids)).group_by(Network.job_id)).all()
            unfinished = conn.execute(select(Job.id, Job.state, Job.attempts, Job.error_code,
                                             Job.error_message, Job.stage)
                                      .where(Job.id.in_(ids), Job.state != "succeeded")).all()
        c.close()
    finally:
        eng.dispose()
        st.close()
    rec = sorted(float(k["recovered"]) for k in kills if "recovered" in k)
    backend = (f"db={'sqlite' if not args.database_url else args.database_url.split(':')[0]}, "
               f"broker={args.broker_url.split(':')[0]}")
    print(f"\nwedgenet kill test ({backend}; default heartbeat/stale/sweep settings; "
          f"{os.cpu_count()} CPUs)")
    print(f"jobs {len(ids)} | succeeded {states.get('succeeded', 0)} | lost "
          f"{len(ids) - states.get('succeeded', 0)} | kills {len(kills)} | duplicated results "
          f"{sum(1 for _, n in per_job if n > 1)} | claims {attempts} (jobs + kills = "
          f"{len(ids) + len(kills)}) | wall {wall:.1f} s")
    req = sorted(float(k["requeued"]) for k in kills if "requeued" in k)
    for name, vals in (("re-queued (or taken over)", req), ("running again", rec)):
        if vals:
            print(f"killed job {name} after: min {vals[0]:.1f} s, median "
                  f"{statistics.median(vals):.1f} s, max {vals[-1]:.1f} s "
                  f"({len(vals)} of {len(kills)} kills; 'running again' includes waiting "
                  f"behind the backlog for a free worker)")
    for row in unfinished:
        print(f"not succeeded: {tuple(row)}")


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


# ------------------------------------------------------------------ --mode api


def bare_app() -> object:
    """The reference: a bare FastAPI + SQLAlchemy app reading one job row by id (what a
    minimal service endpoint costs on this database). ``uvicorn --factory``; the database
    from ``BENCH_DATABASE_URL``."""
    from fastapi import FastAPI, HTTPException
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.models import Job

    engine = create_engine(os.environ["BENCH_DATABASE_URL"])
    app = FastAPI()

    @app.get("/bare/{job_id}")
    def read(job_id: str) -> dict[str, object]:
        with Session(engine) as s:
            job = s.get(Job, job_id)
            if job is None:
                raise HTTPException(404)
            return {"id": job.id, "state": job.state, "progress": job.progress,
                    "stage": job.stage, "created_at": job.created_at}

    @app.post("/bare")
    def write() -> dict[str, object]:
        """The reference for a write: insert one job row and commit (no checks, no
        message)."""
        with Session(engine) as s:
            job = Job(owner="bench", kind="solve", state="queued", params={"lam": 0.1},
                      progress=0.0, stage="queued", attempts=0)
            s.add(job)
            s.commit()
            return {"id": job.id, "state": job.state}

    return app


class ApiStack:
    """The service API and the bare app, each one uvicorn process, on the same database."""

    def __init__(self, database_url: str | None, broker_url: str) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="wedgenet-bench-api-"))
        self.db = database_url or f"sqlite:///{self.tmp / 'bench.db'}"
        reset_database(self.db)
        if broker_url.startswith("redis"):
            import redis

            redis.Redis.from_url(broker_url).flushdb()
        self.env = {**os.environ, "WEDGENET_DATABASE_URL": self.db,
                    "WEDGENET_BROKER_URL": broker_url,
                    "WEDGENET_BROKER_DIR": str(self.tmp / "broker"), "WEDGENET_API_KEYS": KEY,
                    "WEDGENET_API_SWEEPER": "false",
                    # no job quota (the POST runs queue thousands); the rate limiter runs but
                    # never refuses (its cost is measured)
                    "WEDGENET_QUOTA_ACTIVE_JOBS": "0", "WEDGENET_RATE_LIMIT": "1e9",
                    "BENCH_DATABASE_URL": self.db,
                    "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")])}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.pids: dict[str, int] = {}
        self.service = self._start(["app.main:app"], "api")
        self.bare = self._start(["--factory", "bench_service:bare_app"], "bare")

    def _start(self, target: list[str], name: str) -> str:
        port = free_port()
        log = open(self.tmp / f"{name}.log", "wb")  # noqa: SIM115
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *target, "--port", str(port),
             "--log-level", "warning"], cwd=ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True))
        url = f"http://127.0.0.1:{port}"
        self.pids[url] = self.procs[-1].pid
        for _ in range(600):
            try:
                if httpx.get(url + "/docs", timeout=1).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError((self.tmp / f"{name}.log").read_text())

    def close(self) -> None:
        stop_processes(self.procs, self.tmp)


def load(url: str, method: str, path: str, body: dict[str, object] | None, clients: int,
         seconds: float, warmup: float = 1.0) -> dict[str, float]:
    """``clients`` concurrent keep-alive clients issuing requests back to back for
    ``seconds`` (after ``warmup``); throughput and latency percentiles of the successes."""
    import asyncio

    total = 0

    async def run() -> tuple[list[float], int, float]:
        lat: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=60,
                                     limits=limits) as c:
            t_start = time.perf_counter()
            t_measure = t_start + warmup
            t_end = t_measure + seconds

            async def client() -> None:
                nonlocal errors, total
                while (now := time.perf_counter()) < t_end:
                    try:
                        r = await c.request(method, path, json=body)
                        ok = r.status_code < 300
                    except httpx.HTTPError:
                        ok = False
                    done = time.perf_counter()
                    total += 1
                    if now >= t_measure:
                        if ok:
                            lat.append(done - now)
                        else:
                            errors += 1

            await asyncio.gather(*(client() for _ in range(clients)))
            return lat, errors, time.perf_counter() - t_measure

    lat, errors, wall = asyncio.run(run())
    ms = [x * 1000 for x in lat]
    return {"n": len(lat), "errors": errors, "rps": len(lat) / wall,
            "p50": pct(ms, 50), "p99": pct(ms, 99), "total": total}


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().split(")")[-1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_api(args: argparse.Namespace) -> None:
    st = ApiStack(args.database_url, args.broker_url)
    try:
        with WedgenetClient(st.service, KEY, timeout=60) as c:
            ds = c.upload_dataset(*small(0))["id"]
            job = c.submit(ds, lam=0.1)["id"]
        targets = [
            ("bare GET (1 row)", st.bare, "GET", f"/bare/{job}", None),
            ("GET /jobs/{id}", st.service, "GET", f"/jobs/{job}", None),
            ("POST /jobs", st.service, "POST", "/jobs",
             {"dataset_id": ds, "params": {"lam": 0.1}}),
            ("bare POST (insert)", st.bare, "POST", "/bare", None),
        ]
        rows = []
        for clients in args.clients:
            for name, url, method, path, body in targets:
                cpu0 = cpu_seconds(st.pids[url])
                r = load(url, method, path, body, clients, args.seconds)
                # server CPU per request (warm-up included in both): what bounds throughput
                # once the machine is saturated, and less noisy than wall-clock figures
                r["cpu_ms"] = (cpu_seconds(st.pids[url]) - cpu0) * 1000 / max(1, r["total"])
                rows.append((name, clients, r))
                print(f"  {name:<18} {clients:>3} clients: {r['rps']:8.1f} req/s  "
                      f"p50 {r['p50']:7.2f} ms  p99 {r['p99']:7.2f} ms  "
                      f"server CPU {r['cpu_ms']:.2f} ms/req "
                      f"({r['n']} ok, {r['errors']} errors)", flush=True)
    finally:
        st.close()
    backend = (f"db={'sqlite' if not args.database_url else args.database_url.split(':')[0]}, "
               f"broker={args.broker_url.split(':')[0]}")
    print(f"\nwedgenet API benchmark ({backend}; {args.seconds:g} s per row after 1 s warm-up; "
          f"{os.cpu_count()} CPUs; load generator on the same machine)")
    print("(ratios: against the bare read of the same row count; POST /jobs also against the "
          "bare insert)")
    hdr = (f"{'endpoint':<18} | {'clients':>7} | {'req/s':>8} | {'p50 (ms)':>8} | "
           f"{'p99 (ms)':>8} | {'CPU ms/req':>10} | {'req/s / read':>12} | {'p99 / read':>10} | "
           f"{'req/s / insert':>14} | {'p99 / insert':>12}")
    print(hdr)
    print("-" * len(hdr))
    read = {clients: r for name, clients, r in rows if name.startswith("bare GET")}
    write = {clients: r for name, clients, r in rows if name.startswith("bare POST")}
    for name, clients, r in rows:
        b, w = read[clients], write[clients]
        vs_write = (f"{r['rps'] / w['rps']:>14.2f} | {r['p99'] / w['p99']:>12.2f}"
                    if name.startswith("POST") else f"{'':>14} | {'':>12}")
        print(f"{name:<18} | {clients:>7} | {r['rps']:>8.1f} | {r['p50']:>8.2f} | "
              f"{r['p99']:>8.2f} | {r['cpu_ms']:>10.2f} | {r['rps'] / b['rps']:>12.2f} | "
              f"{r['p99'] / b['p99']:>10.2f} | {vs_write}")


# ------------------------------------------------------------------ --mode upload


def rss_kib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of a process, KiB (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def health_during(url: str, action: object) -> tuple[list[float], float]:
    """``/health`` latencies (seconds) of requests overlapping ``action()`` (polled every
    10 ms from a thread) and the action's duration."""
    lat: list[tuple[float, float]] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=url, timeout=60) as hc:
            while not stop.is_set():
                t0 = time.monotonic()
                hc.get("/health").raise_for_status()
                lat.append((t0, time.monotonic() - t0))
                time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    time.sleep(0.2)
    t_start = time.monotonic()
    action()  # type: ignore[operator]
    t_end = time.monotonic()
    time.sleep(0.2)
    stop.set()
    poller.join(timeout=60)
    return [x for t0, x in lat if t0 + x >= t_start and t0 <= t_end], t_end - t_start


def run_upload(args: argparse.Namespace) -> None:
    import json

    st = ApiStack(args.database_url, args.broker_url)
    rng = np.random.default_rng(0)
    rows = []
    try:
        pid = st.pids[st.service]
        idle, _ = health_during(st.service, lambda: time.sleep(3.0))
        rows.append(("/health alone (3 s)", None, 3.0, idle, 0))
        for fmt, n in (("csv", 700_000), ("json", 400_000)):
            X = rng.standard_normal((n, 7))
            y = np.arange(n) % 3
            xf, yf = st.tmp / f"X.{fmt}", st.tmp / f"y.{fmt}"
            if fmt == "csv":
                np.savetxt(xf, X, delimiter=",", fmt="%.9g")
                np.savetxt(yf, y, fmt="%d")
            else:
                xf.write_text(json.dumps(np.round(X, 9).tolist()))
                yf.write_text(json.dumps(y.tolist()))
            size = xf.stat().st_size + yf.stat().st_size
            rss0 = rss_kib(pid, "VmRSS")

            def upload(xf: Path = xf, yf: Path = yf) -> None:
                with xf.open("rb") as fx, yf.open("rb") as fy, \
                        httpx.Client(base_url=st.service, timeout=600) as hc:
                    r = hc.post("/datasets", files={"X": (xf.name, fx), "y": (yf.name, fy)},
                                headers={"X-API-Key": KEY})
                    assert r.status_code == 201, r.text

            during, duration = health_during(st.service, upload)
            grew = rss_kib(pid, "VmHWM") - rss0
            rows.append((f"{size / 2**20:.0f} MiB {fmt} upload", size, duration, during, grew))
            print(f"  {rows[-1][0]}: {duration:.2f} s", flush=True)
    finally:
        st.close()
    backend = f"db={'sqlite' if not args.database_url else args.database_url.split(':')[0]}"
    print(f"\nwedgenet upload benchmark ({backend}; /health polled every 10 ms during each "
          f"upload; {os.cpu_count()} CPUs)")
    hdr = (f"{'while':<20} | {'duration (s)':>12} | {'/health n':>9} | {'p50 (ms)':>8} | "
           f"{'p99 (ms)':>8} | {'worst (ms)':>10} | {'API peak RSS +MiB':>17}")
    print(hdr)
    print("-" * len(hdr))
    for name, _size, duration, during, grew in rows:
        ms = [x * 1000 for x in during]
        print(f"{name:<20} | {duration:>12.2f} | {len(ms):>9} | {pct(ms, 50):>8.1f} | "
              f"{pct(ms, 99):>8.1f} | {max(ms):>10.1f} | {grew / 1024:>17.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--mode", choices=["jobs", "api", "kill", "upload"], default="jobs")
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--broker-url", default="filesystem://")
    ap.add_argument("--latency-runs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--poll-threads", type=int, default=4)
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64],
                    help="--mode api: concurrent clients per row")
    ap.add_argument("--seconds", type=float, default=5.0, help="--mode api: seconds per row")
    ap.add_argument("--kill-jobs", type=int, default=30, help="--mode kill: jobs")
    ap.add_argument("--kill-every", type=float, default=8.0,
                    help="--mode kill: seconds between kills")
    ap.add_argument("--kill-timeout", type=float, default=600.0,
                    help="--mode kill: give up after this long")
    args = ap.parse_args()
    if args.mode == "api":
        run_api(args)
        return
    if args.mode == "kill":
        run_kill(args)
        return
    if args.mode == "upload":
        run_upload(args)
        return
    rows = [run_config(args, w) for w in args.workers]
    backend = f"db={'sqlite' if not args.database_url else args.database_url.split(':')[0]}, " \
              f"broker={args.broker_url.split(':')[0]}"
    print(f"\nwedgenet service benchmark ({backend}; small solve n=12, d=2, lam=0.1; "
          f"{os.cpu_count()} CPUs)")
    hdr = (f"{'workers':>7} | {'submit->result p50 (s)':>22} | {'p90 (s)':>7} | "
           f"{'N jobs':>6} | {'wall (s)':>8} | {'jobs/s':>6} | {'GET n':>6} | "
           f"{'GET p50 (ms)':>12} | {'GET p99 (ms)':>12}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['workers']:>7} | {r['lat_p50']:>22.3f} | {r['lat_p90']:>7.3f} | "
              f"{r['jobs']:>6} | {r['wall']:>8.2f} | {r['throughput']:>6.2f} | "
              f"{r['get_n']:>6} | {r['get_p50']:>12.2f} | {r['get_p99']:>12.2f}")


if __name__ == "__main__":
    main()
