"""Distributed pricing, warm starts and the l2 bound of solve jobs, in-process (SQLite).

Helpers are simulated by calling the ``price_part`` body with another worker id from the
publish hook; the integration tests run real Celery workers."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select, update

from tests.conftest import run_pending_jobs, small_problem


def _problem() -> tuple[np.ndarray, np.ndarray]:
    return small_problem(n=40, seed=6)


def _submit(client, upload, X, y, **params):  # type: ignore[no-untyped-def]
    ds = upload(X, y)
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": {"lam": 0.1, **params}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _network(client, job_id: str) -> dict:  # type: ignore[type-arg]
    job = client.get(f"/jobs/{job_id}").json()
    assert job["state"] == "succeeded", job
    return client.get(f"/networks/{job['network_id']}").json()  # type: ignore[no-any-return]


def _count(model) -> int:  # type: ignore[no-untyped-def]
    from app.db import session_scope

    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_distributed_scan_equals_local(client, upload, monkeypatch) -> None:
    """Parts priced by two workers (one simulated helper) give the local result."""
    import wedgenet
    from app.models import PricingPart, PricingRound
    from worker.scan import price_parts_now

    published: list[list[int]] = []

    def helper(part_ids: list[int]) -> bool:
        published.append(part_ids)
        price_parts_now(part_ids[0], wid="helper:1", max_parts=1)
        return True

    monkeypatch.setattr("worker.scan._publish_parts", helper)
    X, y = _problem()
    job_id = _submit(client, upload, X, y, scan_parts=3)
    assert run_pending_jobs() == ["succeeded"]
    net = _network(client, job_id)
    local = wedgenet.solve(X, y, lam=0.1)
    assert net["certified"] and net["summary"]["scanned"] == "all"
    assert net["primal_objective"] == pytest.approx(local.primal_objective, rel=1e-9, abs=1e-12)
    assert net["summary"]["n_columns"] == local.n_columns
    scan = net["distributed_scan"]
    assert scan["parts"] == net["summary"]["scan_parts"] == 3
    assert scan["workers"] == net["summary"]["scan_workers"] == 2
    assert "helper:1" in scan["worker_ids"] and scan["rounds"] == len(published) >= 2
    assert all(len(ids) == 2 for ids in published)  # the coordinator takes the last part
    assert _count(PricingRound) == 0 and _count(PricingPart) == 0  # cleaned up


@pytest.mark.parametrize("params", [
    {"p": 1},
    {"p": 2, "source": "sample", "n_columns": 300, "seed": 5, "l2_bound": False},
])
def test_single_worker_prices_every_part(client, upload, params) -> None:
    """Nobody helps (the messages go to an idle broker folder): no deadlock, same result,
    for exhaustive and sampled dictionaries."""
    import wedgenet

    X, y = _problem()
    job_id = _submit(client, upload, X, y, scan_parts=4, **params)
    assert run_pending_jobs() == ["succeeded"]
    net = _network(client, job_id)
    assert net["distributed_scan"]["workers"] == 1
    assert net["distributed_scan"]["parts_by_worker"] == {
        net["distributed_scan"]["worker_ids"][0]: 4 * net["distributed_scan"]["rounds"]}
    engine = {k: v for k, v in params.items() if k != "l2_bound"}
    local = wedgenet.solve(X, y, lam=0.1, **engine)
    assert net["primal_objective"] == pytest.approx(local.primal_objective, rel=1e-9)
    assert net["summary"]["n_columns"] == local.n_columns


def test_stale_part_is_reclaimed(client, upload, monkeypatch) -> None:
    """A part claimed by a worker that died (stale heartbeat) is priced by the coordinator."""
    from app.db import session_scope
    from app.models import PricingPart, utcnow

    def dead_helper(part_ids: list[int]) -> bool:
        with session_scope() as s:
            s.execute(update(PricingPart).where(PricingPart.id == part_ids[0]).values(
                state="running", worker_id="dead:1",
                heartbeat_at=utcnow() - timedelta(hours=1)))
        return True

    monkeypatch.setattr("worker.scan._publish_parts", dead_helper)
    X, y = _problem()
    job_id = _submit(client, upload, X, y, scan_parts=2)
    assert run_pending_jobs() == ["succeeded"]
    net = _network(client, job_id)
    assert net["certified"] and "dead:1" not in net["distributed_scan"]["worker_ids"]
    assert net["distributed_scan"]["workers"] == 1


def test_cancel_while_waiting_for_parts(client, upload, monkeypatch) -> None:
    """A live helper holds a part forever; cancelling the job ends the coordinator's wait."""
    from app.db import session_scope
    from app.models import PricingPart, PricingRound, utcnow

    job_ids: list[str] = []

    def stuck_helper(part_ids: list[int]) -> bool:
        with session_scope() as s:
            s.execute(update(PricingPart).where(PricingPart.id == part_ids[0]).values(
                state="running", worker_id="busy:1", heartbeat_at=utcnow()))
        client.post(f"/jobs/{job_ids[0]}/cancel")
        return True

    monkeypatch.setattr("worker.scan._publish_parts", stuck_helper)
    X, y = _problem()
    job_ids.append(_submit(client, upload, X, y, scan_parts=2))
    assert run_pending_jobs() == ["aborted"]
    assert client.get(f"/jobs/{job_ids[0]}").json()["state"] == "cancelled"
    assert _count(PricingRound) == 0 and _count(PricingPart) == 0


def test_helper_ignores_rounds_of_finished_jobs(client, upload) -> None:
    """A late ``price_part`` message is a no-op; the sweeper removes orphaned rounds."""
    from app.core.config import get_settings
    from app.db import session_scope
    from app.models import Job, PricingPart, PricingRound
    from app.storage import to_npy_bytes
    from worker.housekeeping import sweep_pricing_rounds
    from worker.scan import price_parts_now

    X, y = _problem()
    job_id = _submit(client, upload, X, y)
    assert price_parts_now(12345) == 0  # unknown part
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(state="running", worker_id="A"))
        rnd = PricingRound(job_id=job_id, attempt="A", round=1, V=to_npy_bytes(np.zeros((40, 1))),
                           n_top=5, threshold=0.0, n_parts=1)
        s.add(rnd)
        s.flush()
        part = PricingPart(round_id=rnd.id, part_index=0, start=0, stop=10, state="queued")
        s.add(part)
        s.flush()
        part_id = part.id
    assert sweep_pricing_rounds(get_settings()) == 0  # the attempt is alive
    with session_scope() as s:  # the attempt was lost; the job is re-queued
        s.execute(update(Job).where(Job.id == job_id).values(state="queued", worker_id=None))
    assert price_parts_now(part_id, wid="late:1") == 0
    assert sweep_pricing_rounds(get_settings()) == 1
    assert _count(PricingRound) == 0 and _count(PricingPart) == 0


@pytest.mark.parametrize("params, needle", [
    ({"scan_parts": 2, "solver": "cvxpy"}, "scan_parts > 1"),
    ({"scan_parts": 0}, "greater than or equal to 1"),
    ({"scan_parts": 1000}, "exceeds the limit"),
    ({"warm_start": "polish", "solver": "cvxpy"}, "warm_start"),
    ({"warm_start": "random"}, "warm_start"),
])
def test_bad_service_params(client, upload, params, needle) -> None:
    ds = upload(*small_problem())
    r = client.post("/jobs", json={"dataset_id": ds["id"], "params": params})
    assert r.status_code == 422, r.text
    assert needle in str(r.json()), r.json()
    assert client.get("/jobs").json()["total"] == 0


def test_warm_start_and_l2_bound(client, upload) -> None:
    import wedgenet

    X, y = small_problem()
    job_id = _submit(client, upload, X, y, p=2, warm_start="polish")
    assert run_pending_jobs() == ["succeeded"]
    net = _network(client, job_id)
    ref = wedgenet.solve(X, y, lam=0.1, p=2)
    assert net["primal_objective"] == pytest.approx(ref.primal_objective, rel=1e-6)
    warm = net["summary"]["warm_start"]
    assert warm["kind"] == "polish" and warm["n_index_sets"] > 0
    l2 = net["l2_bound"]
    assert l2["label"] == net["summary"]["l2_bound"]["label"] == "certified lower bound"
    assert l2["certified"] and l2["mode"] == "exact"
    assert l2["wedge_value"] == pytest.approx(net["primal_objective"])
    assert l2["lower_bound"] <= net["primal_objective"] + 1e-9
    assert l2["relative_gap"] >= -1e-9
    rep = wedgenet.l2_gap_report(X, y, 0.1, True, wedge_value=ref)
    assert l2["lower_bound"] == pytest.approx(rep.bound.lower_bound, rel=1e-6)


def test_warm_start_from_sampled_hyperplanes(client, upload) -> None:
    import wedgenet

    X, y = small_problem()
    job_id = _submit(client, upload, X, y, p=1, warm_start="sample")
    assert run_pending_jobs() == ["succeeded"]
    net = _network(client, job_id)
    ref = wedgenet.solve(X, y, lam=0.1, p=1)
    assert net["certified"]
    assert net["primal_objective"] == pytest.approx(ref.primal_objective, rel=1e-6)
    warm = net["summary"]["warm_start"]
    assert warm["kind"] == "sample" and warm["n_index_sets"] > 0


def test_l2_bound_falls_back_to_sampled_and_skips(client, upload, monkeypatch) -> None:
    from app.core.config import get_settings

    monkeypatch.setenv("WEDGENET_L2_BOUND_MAX_PATTERNS", "10")
    monkeypatch.setenv("WEDGENET_L2_BOUND_SAMPLED_PATTERNS", "200")
    get_settings.cache_clear()
    X, y = small_problem()
    sampled = _submit(client, upload, X, y, p=2)
    off = _submit(client, upload, X, y, p=2, l2_bound=False)
    p1 = _submit(client, upload, X, y, p=1)
    hinge = _submit(client, upload, X, np.sign(y), p=2, loss="hinge")
    assert run_pending_jobs() == ["succeeded"] * 4
    l2 = _network(client, sampled)["l2_bound"]
    assert l2["mode"] == "sampled" and l2["label"].startswith("estimate")
    assert not l2["certified"] and l2["lower_bound"] is None and "too large" in l2["note"]
    assert _network(client, off)["l2_bound"] is None
    assert _network(client, p1)["l2_bound"] is None
    skipped = _network(client, hinge)["l2_bound"]
    assert skipped["label"] == "skipped" and "hinge" in skipped["note"]
