"""The web page (app/ui) in a real headless browser against a real embedded server.

Playwright for Python drives Debian's Chromium (``/usr/bin/chromium``; ``.ci/run`` installs it).
The server is a real uvicorn process on a free port and a real Celery worker on SQLite and the
filesystem broker (the embedded default), started once for the module. These tests FAIL (never
skip) when Chromium or Playwright is missing.

Screenshots of the main views are written to docs/screenshots/ (linked from the README).
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pytest

from tests.conftest import KEY_A, KEY_B, ROOT, npy, small_problem
from tests.integration.conftest import Stack, stack_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "docs" / "screenshots"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory,
           request: pytest.FixtureRequest) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("ui-stack")
    st = Stack(tmp, stack_env(f"sqlite:///{tmp / 'wedgenet.db'}", "filesystem://", tmp))
    failed_before = request.session.testsfailed
    try:
        st.start_api()
        st.start_worker()
        st.wait_workers_ready()
        yield st
    finally:
        st.stop()
        if request.session.testsfailed > failed_before:
            print(st.logs())


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        pytest.fail(f"playwright is not installed ({exc}): pip install -e '.[dev]'")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, server: Stack) -> Iterator[Page]:
    """A fresh browser context (its own sessionStorage) at laptop size; page errors fail."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server.base_url + "/")
    yield pg
    ctx.close()
    assert errors == [], errors


def sign_in(pg: Page, key: str) -> None:
    pg.get_by_label("API key").fill(key)
    pg.get_by_role("button", name="Sign in").click()


def api(server: Stack, key: str = KEY_A) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers={"X-API-Key": key}, timeout=30)


def shot(pg: Page, name: str, full_page: bool = True) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.evaluate("document.getElementById('status').textContent = ''")  # no toast in the picture
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full_page)


def wait_job_done(pg: Page) -> str:
    """On a job page: wait for the end, return the job id from the URL."""
    pg.wait_for_url(re.compile(r".*#/jobs/[0-9a-f]+$"))
    pg.locator("#view .badge.succeeded, #view .badge.failed, #view .badge.cancelled").first \
        .wait_for()
    return pg.url.rsplit("/", 1)[-1]


def net_json(server: Stack, net_id: str, key: str = KEY_A) -> dict[str, Any]:
    with api(server, key) as c:
        r = c.get(f"/networks/{net_id}")
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]


def test_sign_in_upload_solve_and_inspect_2d(page: Page, server: Stack, tmp_path: Path) -> None:
    pg = page
    assert pg.url.endswith("/ui/"), pg.url  # / redirects to the page
    sign_in(pg, KEY_A)
    pg.get_by_role("heading", name="Datasets", exact=True).wait_for()

    # upload a CSV with a target column (the page splits it into X and y files)
    X, y = small_problem(n=16, d=2, seed=3)
    csv = tmp_path / "moons.csv"
    csv.write_text("x1,x2,target\n" + "\n".join(f"{a:.6f},{b:.6f},{t:.6f}"
                                                for (a, b), t in zip(X, y, strict=True)))
    pg.get_by_label("CSV file").set_input_files(str(csv))
    pg.get_by_label("Target column (y)").select_option(label="target")
    pg.get_by_role("button", name="Upload").click()
    pg.locator(".note", has_text="Uploaded").wait_for()
    row = pg.locator("table[aria-label=Datasets] tbody tr", has_text="moons")
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() == "16"
    assert row.locator("td").nth(2).inner_text() == "2"
    shot(pg, "datasets")

    # a job the API refuses shows its message; then a solve, followed to the end
    row.get_by_role("link", name="Solve").click()
    pg.get_by_role("heading", name="Submit a job").wait_for()
    solve = pg.locator("#solve-fields")
    solve.get_by_label("Loss").select_option("logistic")
    pg.get_by_role("button", name="Submit").click()
    err = pg.locator("form .error")
    err.wait_for()
    assert "422" in err.inner_text() and "logistic" in err.inner_text()
    solve.get_by_label("Loss").select_option("squared")
    solve.get_by_label("λ (lam)").fill("0.1")
    solve.get_by_label("Dictionary source").select_option("exhaustive")
    solve.get_by_label("Time budget (s)").fill("60")
    pg.get_by_role("button", name="Submit").click()
    job_id = wait_job_done(pg)
    assert pg.locator("#view .badge.succeeded").count() == 1, pg.inner_text("#view")
    assert pg.locator("#job-progress-label").inner_text() == "Finished: the network is ready"
    assert pg.locator("progress").first.evaluate("p => p.value") == 1
    shot(pg, "job", full_page=False)

    # the network: certificate, neurons sorted by |output weight|, neuron selection
    pg.get_by_role("link", name="Open network").click()
    pg.wait_for_url(re.compile(r".*#/networks/[0-9a-f]+"))
    net_id = pg.url.split("#/networks/")[1].split("?")[0]
    net = net_json(server, net_id)
    assert net["job_id"] == job_id and net["certified"]
    assert "Certified globally optimal" in pg.locator("#cert-sentence").inner_text()
    table = pg.locator("#neurons-table tbody tr")
    table.first.wait_for()
    assert table.count() == net["n_neurons"] > 0
    absa = [float(t) for t in table.locator("td:nth-child(2)").all_inner_texts()]
    assert absa == sorted(absa, reverse=True)
    pg.locator("svg .pt").first.wait_for()  # the 2-D figure, once the dataset rows are loaded

    by_pos = {n["position"]: n for n in net["neurons"]}
    target = table.nth(min(1, table.count() - 1))
    pos = int(target.get_attribute("data-position") or -1)
    target.click()
    expect_selected(pg, by_pos[pos])
    shot(pg, "network")

    # keyboard: focus the first row, press Enter
    first = table.first
    first.focus()
    pg.keyboard.press("Enter")
    pos0 = int(first.get_attribute("data-position") or -1)
    expect_selected(pg, by_pos[pos0])

    # sort ascending by |output weight|
    pg.locator("button[data-sort=absA]").click()
    cells = pg.locator("#neurons-table tbody td:nth-child(2)")
    absa_up = [float(t) for t in cells.all_inner_texts()]
    assert absa_up == sorted(absa_up)

    # a breakline selects its neuron
    pg.locator(f"svg g.neuron-line[data-neuron='{pos}'] line").first.dispatch_event("click")
    expect_selected(pg, by_pos[pos])

    # exports
    with pg.expect_download() as dl:
        pg.get_by_role("button", name="Download .npz").click()
    path = dl.value.path()
    assert dl.value.suggested_filename == f"{net_id}.npz"
    with np.load(io.BytesIO(Path(path).read_bytes())) as z:
        assert z["W1"].shape == (2, net["n_neurons"])
    with pg.expect_download() as dl2:
        pg.get_by_role("button", name="Download .safetensors").click()
    assert dl2.value.suggested_filename == f"{net_id}.safetensors"

    # sample lookup from the dataset view: which neurons does sample i define?
    sample = by_pos[pos]["index_set"]["samples"][0]
    pg.goto(f"{server.base_url}/ui/#/datasets/{net['dataset_id']}")
    pg.get_by_role("heading", name="Which neurons does a training sample define?").wait_for()
    pg.get_by_label(re.compile("Training sample index")).fill(str(sample))
    pg.get_by_role("button", name="Look up").click()
    hits = pg.locator(f"table[aria-label='Neurons defined by sample {sample}'] tbody tr")
    hits.first.wait_for()
    expected = [n for n in net["neurons"] if sample in (n["index_set"] or {}).get("samples", [])]
    assert hits.count() == len(expected)
    assert hits.get_by_role("link", name=f"#{pos}").count() == 1
    shot(pg, "dataset")

    # a phone-sized view of the network page
    pg.set_viewport_size({"width": 390, "height": 844})
    pg.goto(f"{server.base_url}/ui/#/networks/{net_id}?neuron={pos}")
    expect_selected(pg, by_pos[pos])
    assert pg.evaluate("document.documentElement.scrollWidth") <= 390
    shot(pg, "network-phone", full_page=False)


def expect_selected(pg: Page, neuron: dict[str, Any]) -> None:
    """The panel shows the neuron, its index-set samples as rows, highlighted in the figure."""
    pos = neuron["position"]
    pg.get_by_role("heading", name=f"Neuron #{pos}").wait_for()
    row = pg.locator(f"#neurons-table tbody tr[data-position='{pos}']")
    assert row.get_attribute("aria-selected") == "true"
    assert pg.locator("#neurons-table tbody tr[aria-selected=true]").count() == 1
    samples = neuron["index_set"]["samples"]
    pg.locator("#samples-table").wait_for()
    shown = [int(t) for t in pg.locator("#samples-table tbody td:first-child").all_inner_texts()]
    assert shown == samples
    if pg.locator("svg .pt").count():
        marked = sorted(int(x) for x in pg.locator("svg .pt.highlight").evaluate_all(
            "els => els.map(e => e.dataset.sample)"))
        assert marked == sorted(samples)
        assert pg.locator("svg .breakline.selected").count() == 1


def test_wrong_key_sees_nothing(page: Page, server: Stack) -> None:
    pg = page
    with api(server) as c:
        X, y = small_problem(n=12, d=2, seed=5)
        ds = c.post("/datasets", files={"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))},
                    data={"name": "secret-of-a"}).json()
        job = c.post("/jobs", json={"dataset_id": ds["id"],
                                    "params": {"lam": 0.1, "source": "exhaustive"}}).json()
        deadline = time.monotonic() + 60
        while (j := c.get(f"/jobs/{job['id']}").json())["state"] in ("queued", "running"):
            assert time.monotonic() < deadline, j
            time.sleep(0.2)
        assert j["state"] == "succeeded", j
    # a key the server does not know: refused, nothing shown, nothing kept
    sign_in(pg, "not-a-key")
    alert = pg.get_by_role("alert")
    alert.wait_for()
    assert "refused" in alert.inner_text() and "invalid API key" in alert.inner_text()
    assert pg.locator("#nav").is_hidden()
    assert pg.evaluate("sessionStorage.length") == 0
    pg.goto(f"{server.base_url}/ui/#/networks/{j['network_id']}")
    pg.get_by_role("heading", name="Sign in").wait_for()
    assert "secret-of-a" not in pg.content()

    # another valid key sees none of key A's data
    sign_in(pg, KEY_B)
    pg.locator("#view .error").wait_for()
    assert "404" in pg.locator("#view .error").inner_text()
    pg.goto(f"{server.base_url}/ui/#/datasets")
    pg.get_by_text("No datasets yet").wait_for()
    assert "secret-of-a" not in pg.content()
    pg.goto(f"{server.base_url}/ui/#/networks")
    pg.get_by_text("No networks yet").wait_for()
    pg.goto(f"{server.base_url}/ui/#/jobs")
    pg.get_by_text("No jobs.").wait_for()
    pg.goto(f"{server.base_url}/ui/#/datasets/{ds['id']}")
    pg.locator("#view .error", has_text="404").wait_for()
    # signing out forgets the key
    pg.get_by_role("button", name="Sign out").click()
    pg.get_by_role("heading", name="Sign in").wait_for()
    assert pg.evaluate("sessionStorage.length") == 0


def test_digits_show_as_images(page: Page, server: Stack, tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    pg = page
    Xd, yd = load_digits(return_X_y=True)
    idx = np.concatenate([np.flatnonzero(yd == 0)[:6], np.flatnonzero(yd == 1)[:6]])
    (tmp_path / "X.npy").write_bytes(npy(Xd[idx].astype(float)))
    (tmp_path / "y.npy").write_bytes(npy(yd[idx].astype(float)))
    sign_in(pg, KEY_A)
    pg.get_by_role("heading", name="Datasets", exact=True).wait_for()
    pg.get_by_label("Separate X and y files").check()
    pg.get_by_label("X file (n × d)").set_input_files(str(tmp_path / "X.npy"))
    pg.get_by_label("y file (n or n × c)").set_input_files(str(tmp_path / "y.npy"))
    pg.get_by_label("Name", exact=True).fill("digits-0-1")
    pg.get_by_role("button", name="Upload").click()
    pg.locator(".note", has_text="Uploaded").get_by_role("link", name="Solve it").click()
    pg.get_by_role("heading", name="Submit a job").wait_for()
    solve = pg.locator("#solve-fields")
    solve.get_by_label("p (norm of w)").select_option("2")
    solve.get_by_label("λ (lam)").fill("0.1")
    solve.get_by_label("Dictionary source").select_option("exhaustive")
    pg.locator("details summary", has_text="Advanced").click()
    pg.get_by_label("l2 bound (p = 2)").uncheck()
    pg.get_by_role("button", name="Submit").click()
    wait_job_done(pg)
    pg.get_by_role("link", name="Open network").click()
    pg.locator("#neurons-table tbody tr").first.wait_for()
    net = net_json(server, pg.url.split("#/networks/")[1].split("?")[0])
    assert net["n_features"] == 64
    top = max(net["neurons"], key=lambda n: np.linalg.norm(n["output_weight"]))
    expect_selected(pg, top)
    imgs = pg.locator("#neuron-panel .imgs canvas")
    assert imgs.count() == len(top["index_set"]["samples"]) > 0
    assert imgs.first.evaluate("c => [c.width, c.height]") == [8, 8]
    assert pg.locator("#fig-title").is_hidden()  # no 2-D figure for 64 features
    shot(pg, "digits")
    # the dataset view shows its rows as images too
    pg.goto(f"{server.base_url}/ui/#/datasets/{net['dataset_id']}")
    pg.locator("#view .imgs canvas").first.wait_for()
    assert pg.locator("#view .imgs canvas").count() == 12


def test_polish_upload_shows_before_and_after(page: Page, server: Stack, tmp_path: Path) -> None:
    pg = page
    X, y = small_problem(n=14, d=2, seed=7)
    with api(server) as c:
        ds = c.post("/datasets", files={"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))},
                    data={"name": "for-polish"}).json()
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    np.savez(buf, W1=rng.normal(size=(2, 4)), b1=rng.normal(size=4),
             W2=rng.normal(size=(4, 1)), b2=np.zeros(1))
    (tmp_path / "trained.npz").write_bytes(buf.getvalue())
    sign_in(pg, KEY_A)
    pg.get_by_role("heading", name="Datasets", exact=True).wait_for()
    pg.goto(f"{server.base_url}/ui/#/jobs?dataset={ds['id']}&kind=polish")
    pg.get_by_role("heading", name="Submit a job").wait_for()
    assert pg.get_by_label(re.compile("^Polish")).is_checked()
    pg.get_by_label("or upload weights").set_input_files(str(tmp_path / "trained.npz"))
    polish = pg.locator("#polish-fields")
    polish.get_by_label("λ (lam)").fill("0.1")
    polish.get_by_label("Validation fraction").fill("0.25")
    pg.get_by_role("button", name="Submit").click()
    wait_job_done(pg)
    pg.get_by_role("link", name="Open network").click()
    pg.get_by_role("heading", name="Polish report").wait_for()
    net = net_json(server, pg.url.split("#/networks/")[1].split("?")[0])
    report = pg.locator("section[aria-labelledby=polish-title]")
    for label, key in (("objective before (uploaded)", "objective_before"),
                       ("objective after", "objective_after")):
        shown = float(report.locator(f"dt:text-is('{label}') + dd").inner_text())
        assert shown == pytest.approx(net["polish"][key], rel=1e-4)
    metrics = pg.locator("table[aria-label='Polish metrics'] tbody tr")
    assert metrics.count() >= 2
    assert "validation" in metrics.all_inner_texts()[-1]
    # each neuron's angle to the original, in the neurons table
    heads = pg.locator("#neurons-table thead th").all_inner_texts()
    assert any("angle to original" in t for t in heads)
    shot(pg, "polish")


def test_live_progress_and_cancel(page: Page, server: Stack) -> None:
    """A long solve (n = 400, small lam: minutes of column generation) shows its stage and a
    running clock without reloading, and is cancelled from the page. Runs last: the worker
    gives the job up at its next progress call."""
    pg = page
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1]
    with api(server) as c:
        ds = c.post("/datasets", files={"X": ("X.npy", npy(X)), "y": ("y.npy", npy(y))},
                    data={"name": "slow"}).json()
    sign_in(pg, KEY_A)
    pg.get_by_role("heading", name="Datasets", exact=True).wait_for()
    pg.goto(f"{server.base_url}/ui/#/jobs?dataset={ds['id']}")
    solve = pg.locator("#solve-fields")
    solve.get_by_label("λ (lam)").fill("0.0001")
    solve.get_by_label("Dictionary source").select_option("exhaustive")
    pg.get_by_role("button", name="Submit").click()
    pg.wait_for_url(re.compile(r".*#/jobs/[0-9a-f]+$"))
    job_id = pg.url.rsplit("/", 1)[-1]
    live = pg.locator("#job-progress-label")
    assert live.get_attribute("aria-live") == "polite"
    pg.wait_for_function(
        "() => document.querySelector('#job-progress-label').textContent"
        ".startsWith('Running: column generation')", timeout=TIMEOUT_MS)
    clock = pg.locator(".stats .big").nth(1)
    t0 = clock.inner_text()
    pg.wait_for_timeout(1200)
    assert clock.inner_text() != t0  # the elapsed time runs without a reload
    shot(pg, "job-running", full_page=False)
    pg.get_by_role("button", name=re.compile("^Cancel job")).click()
    pg.locator("#view .badge.cancelled").wait_for()
    assert live.inner_text() == "Cancelled"
    assert pg.get_by_role("link", name="Open network").count() == 0
    with api(server) as c:
        job = c.get(f"/jobs/{job_id}").json()
    assert job["state"] == "cancelled" and job["network_id"] is None
    pg.goto(f"{server.base_url}/ui/#/jobs")
    row = pg.locator(f"table[aria-label=Jobs] tbody tr[data-id='{job_id}']")
    row.locator(".badge.cancelled").wait_for()
    shot(pg, "jobs", full_page=False)
