"""Service benchmark: real uvicorn API + Celery worker processes.

Measures
  1. submission-to-result latency of a small solve (n=12, d=2), median/p90 over K runs;
  2. throughput of N concurrent small jobs with 1 and 2 worker processes;
  3. p50/p99 latency of GET /jobs/{id} issued by a second process while jobs run.

Usage:
  .venv/bin/python bench/bench_service.py                      # embedded: SQLite + filesystem
  .venv/bin/python bench/bench_service.py \
      --database-url postgresql+psycopg://postgres@127.0.0.1/wedgenet_bench \
      --broker-url redis://127.0.0.1:6379/14                   # production-shaped
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


class Stack:
    def __init__(self, database_url: str | None, broker_url: str, workers: int) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="wedgenet-bench-"))
        db = database_url or f"sqlite:///{self.tmp / 'bench.db'}"
        reset_database(db)
        if broker_url.startswith("redis"):
            import redis

            redis.Redis.from_url(broker_url).flushdb()
        self.env = {**os.environ, "WEDGENET_DATABASE_URL": db, "WEDGENET_BROKER_URL": broker_url,
                    "WEDGENET_BROKER_DIR": str(self.tmp / "broker"), "WEDGENET_API_KEYS": KEY,
                    "PYTHONPATH": str(ROOT)}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        log = open(self.tmp / "api.log", "wb")  # noqa: SIM115
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(self.port),
             "--log-level", "warning"], cwd=ROOT, env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True))
        self._wait_up()
        from app.cli import worker_command

        for i in range(workers):
            wlog = open(self.tmp / f"worker{i}.log", "wb")  # noqa: SIM115
            cmd = worker_command(1, "WARNING") + ["-n", f"bench{i}@%h"]
            self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=wlog,
                                               stderr=subprocess.STDOUT,
                                               start_new_session=True))
        time.sleep(3.0)  # let the workers connect

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
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(self.tmp, ignore_errors=True)


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    ap.add_argument("--broker-url", default="filesystem://")
    ap.add_argument("--latency-runs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--poll-threads", type=int, default=4)
    args = ap.parse_args()
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
