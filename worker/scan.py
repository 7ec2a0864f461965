"""Distributed pricing: one full scan of a solve split into parts priced by several workers.

A solve job with ``scan_parts > 1`` passes a :class:`DistributedPricer` as ``pricer=`` to
``wedgenet.solve``. Per full scan (one call) the coordinator (the worker running the job)

1. inserts a ``pricing_rounds`` row (the dual point ``V`` as ``.npy`` bytes, ``n_top``,
   ``threshold``) and one ``pricing_parts`` row per contiguous range of the dictionary's raw
   subsets (``wedgenet.pricing.split_ranges``), and commits;
2. publishes ``price_part(part_id)`` Celery tasks (a ``group``, no chord, no result backend);
3. prices parts itself, claiming them with a conditional ``UPDATE`` (``queued`` -> ``running``,
   or a ``running`` part whose heartbeat went stale, i.e. whose worker died), from the last part
   down while helpers claim from the first part up, so a single worker never deadlocks and
   helpers that are free get the other end of the scan;
4. waits (polling the parts table; aborting when the job was cancelled or taken over) until
   every part is ``done``, merges the parts' results with ``merge_pricing`` (the same result as
   one in-process scan), deletes the round and returns.

Helpers (``price_part``) work only while the round's job is still running under the attempt
that created the round, write their result only while they still own the part, and keep the
part's heartbeat fresh while scanning. Results travel through the database only.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, or_, select, update

import wedgenet
from app.broker import PRICE_PART_TASK
from app.core.config import Settings, get_settings
from app.db import session_scope
from app.models import Dataset, Job, PricingPart, PricingRound, utcnow
from app.storage import from_npy_bytes, get_array, to_npy_bytes
from wedgenet.pricing import PricingResult, merge_pricing, split_ranges

log = logging.getLogger("wedgenet.worker")


class ScanAborted(Exception):
    """The job was cancelled or taken over while its scan was being priced."""


def worker_id() -> str:
    """This worker process (host and pid): the unit counted in ``scan_workers``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _publish_parts(part_ids: list[int]) -> bool:
    """Wake helpers: one ``price_part`` task per part (a group; failures are only logged,
    the coordinator prices every part nobody claims)."""
    if not part_ids:
        return True
    from celery import group

    from worker.celery_app import celery_app

    try:
        group(celery_app.signature(PRICE_PART_TASK, args=[pid]) for pid in part_ids).apply_async()
        return True
    except Exception as exc:
        log.warning("could not publish price_part tasks: %s", exc)
        return False


def _claim_part(round_id: int, wid: str, settings: Settings, *, descending: bool,
                prefer: int | None = None) -> tuple[int, int, int] | None:
    """Claim one part of the round (``prefer`` first): a queued one, or a running one whose
    heartbeat is older than ``stale_after``. Returns ``(part_id, start, stop)`` or None."""
    now = utcnow()
    cut = now - timedelta(seconds=settings.stale_after)
    claimable = or_(PricingPart.state == "queued",
                    and_(PricingPart.state == "running",
                         or_(PricingPart.heartbeat_at < cut, PricingPart.heartbeat_at.is_(None))))
    with session_scope(settings.database_url) as s:
        order = PricingPart.part_index.desc() if descending else PricingPart.part_index
        rows = list(s.execute(select(PricingPart.id, PricingPart.start, PricingPart.stop)
                              .where(PricingPart.round_id == round_id, claimable)
                              .order_by(order)).all())
        if prefer is not None:
            rows.sort(key=lambda r: r[0] != prefer)
        for pid, start, stop in rows:
            res = s.execute(update(PricingPart).where(PricingPart.id == pid, claimable).values(
                state="running", worker_id=wid, heartbeat_at=now, started_at=now,
                result=None, finished_at=None))
            if res.rowcount == 1:  # type: ignore[attr-defined]
                s.commit()
                return int(pid), int(start), int(stop)
    return None


class _PartHeartbeat(threading.Thread):
    """Refreshes a claimed part's ``heartbeat_at`` while it is being priced."""

    def __init__(self, part_id: int, wid: str, settings: Settings) -> None:
        super().__init__(name=f"part-heartbeat-{part_id}", daemon=True)
        self.part_id, self.wid, self.settings = part_id, wid, settings
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(self.settings.heartbeat_interval):
            try:
                with session_scope(self.settings.database_url) as s:
                    s.execute(update(PricingPart).where(
                        PricingPart.id == self.part_id, PricingPart.worker_id == self.wid,
                        PricingPart.state == "running").values(heartbeat_at=utcnow()))
            except Exception as exc:
                log.warning("heartbeat of pricing part %s failed: %s", self.part_id, exc)


@dataclass
class _Round:
    round_id: int
    job_id: str
    attempt: str
    X: np.ndarray
    params: dict[str, Any]
    V: np.ndarray
    n_top: int
    threshold: float


def _price_part(rnd: _Round, part: tuple[int, int, int], wid: str, settings: Settings) -> bool:
    """Price a claimed part and store its result while this worker still owns it."""
    pid, start, stop = part
    hb = _PartHeartbeat(pid, wid, settings)
    hb.start()
    try:
        res = wedgenet.price_range(rnd.X, rnd.V, rnd.params, start, stop, rnd.n_top,
                                   rnd.threshold)
    finally:
        hb.stop_event.set()
    with session_scope(settings.database_url) as s:
        out = s.execute(update(PricingPart).where(
            PricingPart.id == pid, PricingPart.worker_id == wid, PricingPart.state == "running",
        ).values(state="done", result=res.to_dict(), finished_at=utcnow(),
                 heartbeat_at=utcnow()))
        return bool(out.rowcount == 1)  # type: ignore[attr-defined]


def _round_live(job_id: str, attempt: str, settings: Settings) -> bool:
    with session_scope(settings.database_url) as s:
        row = s.execute(select(Job.state, Job.worker_id).where(Job.id == job_id)).one_or_none()
    return row is not None and row[0] == "running" and row[1] == attempt


#: X of recently priced datasets, by content hash (immutable), so a helper pricing many
#: parts of one job loads the data once
_X_CACHE: OrderedDict[str, np.ndarray] = OrderedDict()
_X_CACHE_LOCK = threading.Lock()


def _load_X(s: Any, x_sha256: str) -> np.ndarray:
    with _X_CACHE_LOCK:
        X = _X_CACHE.get(x_sha256)
        if X is not None:
            _X_CACHE.move_to_end(x_sha256)
            return X
    X = get_array(s, x_sha256).astype(np.float64)
    with _X_CACHE_LOCK:
        _X_CACHE[x_sha256] = X
        while len(_X_CACHE) > 2:
            _X_CACHE.popitem(last=False)
    return X


def price_parts_now(part_id: int, settings: Settings | None = None, wid: str | None = None,
                    max_parts: int | None = None) -> int:
    """Body of the ``price_part`` task: price part ``part_id`` if it is still claimable, then
    any other claimable part of the same round (lowest index first), while the round's job
    runs under the attempt that created it. Returns the number of parts priced here."""
    settings = settings or get_settings()
    wid = wid or worker_id()
    with session_scope(settings.database_url) as s:
        row = s.execute(
            select(PricingRound, Job.dataset_id, Job.params, Job.state, Job.worker_id)
            .join(PricingPart, PricingPart.round_id == PricingRound.id)
            .join(Job, Job.id == PricingRound.job_id)
            .where(PricingPart.id == part_id)).one_or_none()
        if row is None:
            return 0  # the round was merged and deleted, or the job is gone
        rnd_row, dataset_id, params, state, owner = row
        if state != "running" or owner != rnd_row.attempt or dataset_id is None:
            return 0
        ds = s.get(Dataset, dataset_id)
        if ds is None:
            return 0
        rnd = _Round(round_id=rnd_row.id, job_id=rnd_row.job_id, attempt=rnd_row.attempt,
                     X=_load_X(s, ds.x_sha256), params=dict(params),
                     V=from_npy_bytes(rnd_row.V), n_top=rnd_row.n_top,
                     threshold=rnd_row.threshold)
    done = 0
    prefer: int | None = part_id
    while max_parts is None or done < max_parts:
        part = _claim_part(rnd.round_id, wid, settings, descending=False, prefer=prefer)
        prefer = None
        if part is None:
            break
        if not _round_live(rnd.job_id, rnd.attempt, settings):
            break  # the claimed part is left to go stale with its round; nobody waits for it
        if _price_part(rnd, part, wid, settings):
            done += 1
    return done


class DistributedPricer:
    """``pricer(V, n_top, threshold)`` for ``wedgenet.solve`` that splits every full scan into
    ``n_parts`` parts priced by any free workers (see the module docstring).

    Attributes after the solve: ``workers`` (ids of the worker processes that priced parts),
    ``rounds`` (full scans done), ``n_parts`` (parts per scan).
    """

    def __init__(self, job_id: str, attempt: str, X: np.ndarray, params: dict[str, Any],
                 n_parts: int, settings: Settings, lost: threading.Event | None = None,
                 publish: Any = None, wid: str | None = None) -> None:
        self.job_id, self.attempt, self.settings = job_id, attempt, settings
        self.X = np.asarray(X, dtype=np.float64)
        keys = ("p", "bias", "source", "n_columns", "seed", "max_columns")
        self.params = {k: params[k] for k in keys if k in params}
        self.dictionary = wedgenet.dictionary_for(self.X, self.params)
        self.ranges = split_ranges(self.dictionary.n_raw_subsets, n_parts)
        self.n_parts = len(self.ranges)
        self.lost = lost
        self.publish = publish or _publish_parts
        self.wid = wid or worker_id()
        self.workers: set[str] = set()
        self.parts_by_worker: dict[str, int] = {}
        self.rounds = 0
        self.part_times: list[float] = []

    def _check_alive(self) -> None:
        if (self.lost is not None and self.lost.is_set()) or not _round_live(
                self.job_id, self.attempt, self.settings):
            raise ScanAborted("the job was cancelled or taken over")

    def __call__(self, V: np.ndarray, n_top: int, threshold: float) -> PricingResult:
        self._check_alive()
        self.rounds += 1
        V = np.ascontiguousarray(V, dtype=np.float64)
        with session_scope(self.settings.database_url) as s:
            rnd = PricingRound(job_id=self.job_id, attempt=self.attempt, round=self.rounds,
                               V=to_npy_bytes(V), n_top=int(n_top), threshold=float(threshold),
                               n_parts=self.n_parts)
            s.add(rnd)
            s.flush()
            parts = [PricingPart(round_id=rnd.id, part_index=i, start=a, stop=b,
                                 state="queued")
                     for i, (a, b) in enumerate(self.ranges)]
            s.add_all(parts)
            s.flush()
            round_id = int(rnd.id)
            part_ids = [int(p.id) for p in parts]
        # the coordinator starts with the last part; wake helpers for the others
        self.publish(part_ids[:-1])
        here = _Round(round_id=round_id, job_id=self.job_id, attempt=self.attempt, X=self.X,
                      params=self.params, V=V, n_top=int(n_top), threshold=float(threshold))
        try:
            results = self._collect(here)
        finally:
            _delete_rounds([round_id], self.settings)
        merged = merge_pricing(results, int(n_top))
        return merged

    def _collect(self, rnd: _Round) -> list[PricingResult]:
        poll = self.settings.scan_poll_interval
        while True:
            part = _claim_part(rnd.round_id, self.wid, self.settings, descending=True)
            if part is not None:
                t0 = time.perf_counter()
                _price_part(rnd, part, self.wid, self.settings)
                self.part_times.append(time.perf_counter() - t0)
                self._check_alive()
                poll = self.settings.scan_poll_interval
                continue
            with session_scope(self.settings.database_url) as s:
                rows = s.execute(select(PricingPart.state, PricingPart.result,
                                        PricingPart.worker_id)
                                 .where(PricingPart.round_id == rnd.round_id)).all()
            if len(rows) == self.n_parts and all(st == "done" for st, _, _ in rows):
                nf = self.dictionary.n_features
                k = self.dictionary.subset_size_
                for _, _, w in rows:
                    self.workers.add(str(w))
                    self.parts_by_worker[str(w)] = self.parts_by_worker.get(str(w), 0) + 1
                return [PricingResult.from_dict(r, k, nf) for _, r, _ in rows]
            if len(rows) != self.n_parts:
                raise ScanAborted("the pricing round was deleted (the job was taken over)")
            self._check_alive()
            time.sleep(poll)
            poll = min(poll * 1.5, 10 * self.settings.scan_poll_interval)

    def summary(self) -> dict[str, Any]:
        return {"scan_parts": self.n_parts, "scan_workers": len(self.workers),
                "scan_worker_ids": sorted(self.workers), "scan_rounds": self.rounds,
                "scan_parts_by_worker": dict(sorted(self.parts_by_worker.items()))}


def _delete_rounds(round_ids: list[int], settings: Settings) -> None:
    if not round_ids:
        return
    try:
        with session_scope(settings.database_url) as s:
            s.execute(delete(PricingPart).where(PricingPart.round_id.in_(round_ids)))
            s.execute(delete(PricingRound).where(PricingRound.id.in_(round_ids)))
    except Exception as exc:  # the sweeper removes leftovers
        log.warning("could not delete pricing rounds %s: %s", round_ids, exc)


def delete_job_rounds(job_id: str, attempt: str, settings: Settings) -> None:
    """Remove the pricing rounds an attempt left (after it ended, whatever the outcome); the
    rounds of a later attempt that took the job over are not touched."""
    with session_scope(settings.database_url) as s:
        ids = list(s.scalars(select(PricingRound.id).where(PricingRound.job_id == job_id,
                                                           PricingRound.attempt == attempt)))
    _delete_rounds(ids, settings)
