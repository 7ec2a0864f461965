"""Over real HTTP with real Celery workers on Redis + Postgres: polish jobs (PyTorch and
wedgenet weight naming, two-layer and deep, bad input) and a solve whose full scans are
priced by two worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from app.client import WedgenetClient, WedgenetError
from tests.conftest import KEY_A, small_problem

pytestmark = pytest.mark.integration


def _torch_names(layers: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    out = {}
    for i, (W, b) in enumerate(layers):
        out[f"{2 * i}.weight"] = np.ascontiguousarray(W.T)  # PyTorch (out, in)
        out[f"{2 * i}.bias"] = b
    return out


def _status(call) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(WedgenetError) as exc:
        call()
    return exc.value.status, str(exc.value.detail)


def test_polish_over_http(pg_url, redis_url, stack_factory) -> None:
    from wedgenet.nonconvex import train_nonconvex

    st = stack_factory(pg_url, redis_url)
    st.start_api()
    st.start_worker()
    X, y = small_problem(n=40, seed=4)
    net0 = train_nonconvex(X, y, lam=0.05, width=8, restarts=1, max_iter=300).network
    two = [(net0.W, net0.b), (net0.A, np.atleast_1d(net0.output_bias))]
    rng = np.random.default_rng(5)
    deep = [(rng.normal(size=(2, 6)), 0.1 * rng.normal(size=6)),
            (rng.normal(size=(6, 4)) / 2, 0.1 * rng.normal(size=4)),
            (rng.normal(size=(4, 1)), np.zeros(1))]
    with WedgenetClient(st.base_url, KEY_A) as c:
        ds = c.upload_dataset(X, y)
        ws_torch = c.upload_state_dict(_torch_names(two), dataset_id=ds["id"])
        ws_own = c.upload_weights(two, dataset_id=ds["id"])  # W1/b1 naming, (in, out)
        assert ws_torch["content_hash"] == ws_own["content_hash"]
        ws_deep = c.upload_state_dict(_torch_names(deep), dataset_id=ds["id"])
        assert ws_deep["n_layers"] == 3
        jobs = [c.polish(ds["id"], ws_torch["id"], lam=0.05, validation_fraction=0.25),
                c.polish(ds["id"], ws_own["id"], lam=0.05, refit="polished"),
                c.polish(ds["id"], ws_deep["id"], lam=0.05)]
        assert all(j["state"] == "queued" and j["kind"] == "polish" for j in jobs)

        # bad input: 4xx with a message, nothing stored
        n_weights, n_jobs = c.http.get("/weights").json()["total"], c.jobs()["total"]
        status, msg = _status(lambda: c.upload_state_dict(
            _torch_names([(np.ones((2, 4)), np.zeros(4)), (np.ones((3, 1)), np.zeros(1))])))
        assert status == 422 and "do not chain" in msg, msg
        nan = [(np.full((2, 4), np.nan), np.zeros(4)), (np.ones((4, 1)), np.zeros(1))]
        status, msg = _status(lambda: c.upload_state_dict(_torch_names(nan)))
        assert status == 422 and "nan" in msg.lower(), msg
        wide = c.upload_weights([(np.ones((3, 4)), np.zeros(4)), (np.ones((4, 1)), np.zeros(1))])
        status, msg = _status(lambda: c.polish(ds["id"], wide["id"], lam=0.05))
        assert status == 422 and "d=2" in msg, msg
        status, msg = _status(lambda: c.polish(ds["id"], ws_own["id"], validation_fraction=1.0))
        assert status == 422 and "validation_fraction" in msg, msg
        assert c.http.get("/weights").json()["total"] == n_weights + 1  # only `wide`
        assert c.jobs()["total"] == n_jobs

        done = [c.wait(j["id"], timeout=120) for j in jobs]
        nets = [c.network(j["network_id"]) for j in done]
        union, polished, deep_net = nets
        assert all(net["kind"] == "polish" for net in nets)
        for net in (union, deep_net):  # refit="union" is never worse
            rep = net["polish"]
            assert rep["objective_after"] <= rep["objective_before"] + 1e-12, rep
        rep = polished["polish"]  # refit="polished" may cost objective; the price is reported
        assert rep["price"] == pytest.approx(rep["objective_after"] - rep["objective_before"])
        assert set(union["polish"]["metrics"]) == {"train", "validation"}
        for net in (union, polished):
            pol = [n for n in net["neurons"] if n["kind"] == "polished"]
            assert pol and all(n["index_set"]["samples"] for n in pol)
            assert all(n["index_set"] is None for n in net["neurons"] if n["kind"] == "original")
            sample = pol[0]["index_set"]["samples"][0]
            hits = c.neurons(sample, network_id=net["id"])["items"]
            assert pol[0]["id"] in {h["neuron_id"] for h in hits}
        assert all(n["kind"] == "polished" for n in polished["neurons"])
        assert deep_net["n_layers"] == 3 and deep_net["neurons"] == []
        assert any(r["index_set"] for r in deep_net["polish"]["neurons"])
        assert c.predict(deep_net["id"], X).shape == (40,)


def test_distributed_pricing_two_workers(pg_url, redis_url, stack_factory) -> None:
    """A solve with scan_parts=4 priced by two worker processes: same result as a local
    solve, and the network says two workers took part."""
    import wedgenet

    st = stack_factory(pg_url, redis_url)
    st.start_api()
    st.start_worker()
    st.start_worker()
    st.wait_workers_ready()
    rng = np.random.default_rng(11)
    X = rng.normal(size=(100, 3))
    y = np.sin(2 * X[:, 0]) + 0.5 * X[:, 2]
    with WedgenetClient(st.base_url, KEY_A) as c:
        ds = c.upload_dataset(X, y)
        job = c.submit(ds["id"], lam=0.5, scan_parts=4)
        done = c.wait(job["id"], timeout=180)
        net = c.network(done["network_id"])
    scan = net["distributed_scan"]
    print(f"distributed scan: {scan}; solve_time {net['summary']['solve_time']:.2f} s")
    local = wedgenet.solve(X, y, lam=0.5)
    assert net["certified"] and net["summary"]["scanned"] == "all"
    assert net["primal_objective"] == pytest.approx(local.primal_objective, rel=1e-9)
    assert net["summary"]["n_columns"] == local.n_columns
    assert scan["parts"] == 4 and scan["rounds"] >= 2
    assert scan["workers"] == net["summary"]["scan_workers"] == 2, scan
    from sqlalchemy import create_engine, text

    eng = create_engine(pg_url)
    with eng.connect() as conn:
        left = conn.scalar(text("SELECT count(*) FROM pricing_parts"))
    eng.dispose()
    assert left == 0
