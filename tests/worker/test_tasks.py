"""Worker logic in-process: claiming, idempotent results, sweeper, cancellation."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from tests.conftest import run_pending_jobs, small_problem


def _count_networks(job_id: str) -> int:
    from app.db import session_scope
    from app.models import Network

    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(Network)
                            .where(Network.job_id == job_id)) or 0)


def _submit(client, upload, **params):  # type: ignore[no-untyped-def]
    ds = upload(*small_problem())
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1, **params}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def test_sweeper_requeues_stale_running_job(client, upload, monkeypatch) -> None:
    from app.db import session_scope
    from app.models import Job, utcnow
    from worker.housekeeping import sweep
    from worker.tasks import run_job_now

    job_id = _submit(client, upload)
    published: list[str] = []
    monkeypatch.setattr("app.jobs.publish", lambda jid: published.append(jid) or True)
    # simulate a worker that claimed the job and then died (no heartbeat since)
    old = utcnow() - timedelta(seconds=3600)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            state="running", worker_id="dead:1:x", attempts=1, heartbeat_at=old, started_at=old))
    # a live duplicate delivery must not steal a job with a fresh heartbeat
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
    assert run_job_now(job_id) == "skipped"
    assert sweep() == []
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=old))
    assert sweep() == [job_id] and published == [job_id]
    assert client.get(f"/jobs/{job_id}").json()["state"] == "queued"
    assert run_job_now(job_id) == "succeeded"
    job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "succeeded" and job["attempts"] == 2
    assert _count_networks(job_id) == 1
    # redelivery of the message after success: no-op
    assert run_job_now(job_id) == "skipped" and _count_networks(job_id) == 1


def test_stale_running_job_taken_over_directly(client, upload) -> None:
    from app.db import session_scope
    from app.models import Job, utcnow
    from worker.tasks import run_job_now

    job_id = _submit(client, upload)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            state="running", worker_id="dead", attempts=1,
            heartbeat_at=utcnow() - timedelta(hours=1)))
    assert run_job_now(job_id) == "succeeded" and _count_networks(job_id) == 1


def test_sweeper_republishes_lost_queued_job_and_gives_up(client, upload, monkeypatch) -> None:
    from app.db import session_scope
    from app.models import Job, utcnow
    from worker.housekeeping import sweep

    job_id = _submit(client, upload)
    monkeypatch.setattr("app.jobs.publish", lambda jid: True)
    assert sweep() == []  # just enqueued
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(enqueued_at=None))
    assert sweep() == [job_id]
    assert sweep() == []  # not re-published again right away
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(
            state="running", attempts=99, heartbeat_at=utcnow() - timedelta(hours=1)))
    assert sweep() == []
    job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "failed" and job["error"]["code"] == "too_many_attempts"


def test_cancel_while_running_aborts(client, upload, monkeypatch) -> None:
    """The progress callback notices the cancellation and aborts; no result is stored."""
    import wedgenet

    job_id = _submit(client, upload)
    real = wedgenet.solve

    def solve_and_cancel(X, y, progress=None, **kw):  # type: ignore[no-untyped-def]
        def wrapped(frac: float, stage: str) -> None:
            if frac > 0:
                client.post(f"/jobs/{job_id}/cancel")
            assert progress is not None
            progress(frac, stage)

        return real(X, y, progress=wrapped, **kw)

    monkeypatch.setattr(wedgenet, "solve", solve_and_cancel)
    assert run_pending_jobs() == ["aborted"]
    assert client.get(f"/jobs/{job_id}").json()["state"] == "cancelled"
    assert _count_networks(job_id) == 0


def test_engine_error_marks_failed(client, upload) -> None:
    job_id = _submit(client, upload, loss="squared", solver="cvxpy", tol=0.5)
    from app.db import session_scope
    from app.models import Job

    # parameters the API accepts but the engine refuses become a failed job with a message
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(params={"lam": 0.1, "p": 7}))
    assert run_pending_jobs() == ["failed"]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "failed" and job["error"]["code"] in ("invalid_input",
                                                                 "internal_error")
    assert job["error"]["message"]


def test_result_written_once_under_race(client, upload) -> None:
    """Two attempts finishing: only the owner of the job row writes; one network."""
    import numpy as np

    import wedgenet
    from app.db import session_scope
    from app.models import Job
    from worker.tasks import _store_result

    job_id = _submit(client, upload)
    X, y = small_problem()
    result = wedgenet.solve(X, np.asarray(y), lam=0.1)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(state="running", worker_id="A"))
    assert _store_result(job_id, "B", result, _settings()) is False
    assert _store_result(job_id, "A", result, _settings()) is True
    assert _store_result(job_id, "A", result, _settings()) is False
    assert _count_networks(job_id) == 1


def _settings():  # type: ignore[no-untyped-def]
    from app.core.config import get_settings

    return get_settings()


def test_searched_job_on_a_real_table(client, upload) -> None:
    """A d = 30 table (standardized breast_cancer): the default source='auto' searches, the
    job stops within its max_time and stores an honest, uncertified network with index sets."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    X = (data.data - data.data.mean(0)) / data.data.std(0)
    ds = upload(X[:200], data.target[:200].astype(np.int64))
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {
        "loss": "logistic", "p": 2, "lam": 1.0, "max_time": 6, "l2_bound": False}})
    assert r.status_code == 202, r.text
    assert run_pending_jobs() == ["succeeded"]
    job = client.get(f"/jobs/{r.json()['id']}").json()
    net = client.get(f"/networks/{job['network_id']}").json()
    assert net["certified"] is False
    summary = net["summary"]
    assert summary["scanned"] == "searched" and summary["params"]["source"] == "search"
    assert "searched" in net["summary"]["certificate_note"]
    assert net["dual_objective"] <= net["primal_objective"]
    assert net["summary"]["gap_estimate"] is not None
    assert net["neurons"] and all(len(nr["index_set"]["samples"]) == 30 for nr in net["neurons"])


def test_heartbeat_hard_stops_a_job_that_ignores_its_cancellation(client, upload) -> None:
    """A cancelled job that never reaches a checkpoint: after ``cancel_grace`` the
    heartbeat runs the hard stop (in a pool process: exit); a job that stops in time is not
    hard-stopped."""
    import threading

    from app.core.config import get_settings
    from worker.tasks import Heartbeat

    job_id = _submit(client, upload)  # queued, owned by no worker: the first beat is lost
    settings = get_settings().model_copy(update={"heartbeat_interval": 0.05,
                                                 "cancel_grace": 0.3})
    fired = threading.Event()
    hb = Heartbeat(job_id, "nobody", settings, hard_stop=fired.set)
    hb.start()
    assert fired.wait(5.0) and hb.lost.is_set()
    polite = threading.Event()
    hb2 = Heartbeat(job_id, "nobody", settings, hard_stop=polite.set)
    hb2.start()
    assert hb2.lost.wait(5.0)
    hb2.stop_event.set()  # the job returned within the grace period
    hb2.join(5.0)
    assert not polite.is_set()
