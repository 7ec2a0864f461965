"""The web page with a depth-3 network: submitted from the form, its blocks (index set, bias
sample l, threshold sample j0, shape, formula) in the neurons table, the first-layer breaklines
and the selected block's threshold sample ringed in the 2-D figure. Same browser and embedded
stack as tests/ui/test_ui.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from tests.conftest import KEY_A, npy, small_problem
from tests.ui.test_ui import browser, net_json, page, server, sign_in, wait_job_done

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.integration.conftest import Stack

__all__ = ["browser", "page", "server"]  # the fixtures, imported for this module


def test_three_layer_network_shows_its_blocks(page: Page, server: Stack, tmp_path: Path) -> None:
    pg = page
    X, y = small_problem(n=10, d=2, seed=0)
    (tmp_path / "X.npy").write_bytes(npy(X))
    (tmp_path / "y.npy").write_bytes(npy(y))
    sign_in(pg, KEY_A)
    pg.get_by_role("heading", name="Datasets", exact=True).wait_for()
    pg.get_by_label("Separate X and y files").check()
    pg.get_by_label("X file (n × d)").set_input_files(str(tmp_path / "X.npy"))
    pg.get_by_label("y file (n or n × c)").set_input_files(str(tmp_path / "y.npy"))
    pg.get_by_label("Name", exact=True).fill("three-layer")
    pg.get_by_role("button", name="Upload").click()
    pg.locator(".note", has_text="Uploaded").get_by_role("link", name="Solve it").click()
    pg.get_by_role("heading", name="Submit a job").wait_for()
    solve = pg.locator("#solve-fields")
    solve.get_by_label("λ (lam)").fill("0.05")
    solve.get_by_label("Layers (depth)").select_option("3")
    pg.get_by_role("button", name="Submit").click()
    wait_job_done(pg)
    assert pg.locator("#view .badge.succeeded").count() == 1, pg.inner_text("#view")
    pg.get_by_role("link", name="Open network").click()
    pg.wait_for_url(re.compile(r".*#/networks/[0-9a-f]+"))
    net = net_json(server, pg.url.split("#/networks/")[1].split("?")[0])
    assert net["n_layers"] == 3 and net["certified"]
    assert "three-layer" in pg.locator("#cert-sentence").inner_text()
    rows = pg.locator("#neurons-table tbody tr")
    rows.first.wait_for()
    assert rows.count() == len(net["neurons"])
    heads = pg.locator("#neurons-table thead th").all_inner_texts()
    assert {"l", "j0", "shape"} <= {t.strip() for t in heads}
    pg.locator("svg .breakline").first.wait_for(state="attached")
    assert pg.locator("svg .breakline").count() >= 1
    for blk in net["neurons"][:2]:
        pos = blk["position"]
        pg.locator(f"#neurons-table tbody tr[data-position='{pos}']").click()
        pg.get_by_role("heading", name=f"Block #{pos}").wait_for()
        row = pg.locator(f"#neurons-table tbody tr[data-position='{pos}']")
        assert row.locator("td.threshold").inner_text() == str(blk["threshold_sample"])
        assert row.locator("td.shape").inner_text() == blk["shape"]
        assert pg.locator("#threshold-sample").inner_text() == str(blk["threshold_sample"])
        ring = pg.locator("svg .ring.threshold")
        assert ring.count() == 1
        assert ring.get_attribute("data-sample") == str(blk["threshold_sample"])
        pg.locator("#samples-table tr.threshold").wait_for()
