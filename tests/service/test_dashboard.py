"""The dashboard in a real browser (Debian's Chromium driven by Playwright) against a live server with its
embedded worker: submit a search from the form, watch the leaderboard fill in place, sort it, open a trial,
download its export. Screenshots go to ``test-artifacts/`` (or $BRAINSEARCH_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from brainsearch.settings import Settings
from tests.factories import screenshot, seed_scaled_search, sqlite_repository
from tests.service.conftest import LiveServer, add_sharded_runs


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ui.db'}", data_dir=tmp_path / "data")
    live = LiveServer(settings, embedded_worker=True)
    yield live
    live.stop()


@pytest.mark.slow
def test_submit_watch_open_and_export(browser: Browser, server: LiveServer, tmp_path: Path) -> None:
    page = browser.new_page(accept_downloads=True)
    scripts: list[str] = []
    page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
    page.goto(server.url + "/")
    assert "No searches yet" in page.inner_text("#searches")
    page.select_option("select[name=space]", "tiny")
    page.fill("input[name=trials]", "2")
    page.select_option("select[name=sampler]", "random")
    screenshot(page, "01-index")
    page.click("#submit button")
    page.wait_for_url("**/searches/*")
    assert page.locator("#live").count() == 1 and page.locator("#cancel").count() == 1
    deadline = time.monotonic() + 480  # four 64K-token runs; a loaded 2-core machine takes minutes
    seen_rows = []
    # No reload: the page takes the new trials and the final status from its live updates.
    while page.evaluate("window.brainsearch.polling"):
        assert time.monotonic() < deadline, page.inner_text("body")[:2000]
        seen_rows.append(page.locator("#leaderboard tr[data-trial]").count())
        page.wait_for_timeout(1000)
    assert page.inner_text("#status") == "completed"
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    screenshot(page, "02-search-completed")
    rows = page.locator("#leaderboard tr[data-trial]")
    assert rows.count() == 4  # 2 baselines + 2 trials
    assert page.locator("#leaderboard tr.baseline").count() == 2
    assert "glam baseline" in page.inner_text("#leaderboard") and "dense baseline" in page.inner_text("#leaderboard")
    assert min(seen_rows, default=0) < 4  # the leaderboard filled while we watched
    assert page.locator(".chart .main-svg").count() >= 3  # Plotly rendered the charts
    assert scripts and all(url.startswith(server.url) for url in scripts)  # nothing from the internet
    page.click("#leaderboard th a:has-text('val loss')")
    page.wait_for_url("**sort=val_loss**")
    losses = [float(x) for x in page.locator("#leaderboard td.val-loss").all_inner_texts() if x]
    completed = page.locator("#leaderboard tr.completed").count()  # a trial may be pruned at a quarter of its budget
    assert len(losses) == completed >= 2 and losses == sorted(losses, reverse="order=desc" in page.url)
    page.locator("#leaderboard tr:not(.baseline) td.num a").first.click()
    page.wait_for_url("**/trials/*")
    assert page.locator("#block .layer").count() == 8
    assert page.locator(".chart .main-svg").count() >= 1
    screenshot(page, "03-trial")
    with page.expect_download() as info:
        page.click("#export-json")
    exported = json.loads(Path(info.value.path()).read_text())
    assert {"architecture", "cost", "search_id", "trial_id", "metrics"} <= set(exported)
    assert len(exported["architecture"]["block"]) == 8
    page.close()


@pytest.mark.slow
def test_scale_up_view_and_weight_downloads(browser: Browser, tmp_path: Path) -> None:
    """Pass: a search whose scale-up stage ran shows its candidates per rung with speed-ups, the fidelity line, how
    each run went (devices, recipe, memory per device, throughput, MFU and its peak, checkpoints / resumes, init;
    old rows with their defaults) with the checkpoints on disk, the predictions table and the scaling-law chart; the
    best trial's page offers the standalone file and its kept weights, and both download."""
    from safetensors.torch import load_file

    repo, url = sqlite_repository(tmp_path, "scaled.db")
    sid, ids = seed_scaled_search(repo, tmp_path / "data")
    add_sharded_runs(repo, sid, ids[1], tmp_path / "data")
    live = LiveServer(Settings(database_url=url, data_dir=tmp_path / "data"))
    try:
        page = browser.new_page(accept_downloads=True)
        page.goto(f"{live.url}/searches/{sid}")
        assert page.locator("#candidates tr").count() - 1 == 7  # 3 candidates x 2 rungs, and #1's upcycled run
        table = page.inner_text("#candidates")
        assert "trial #1" in table and "glam baseline" in table and "1.00x" in table
        assert "cpu-tiny +1.00 (3), cpu-small +1.00 (3)" in page.inner_text("#fidelity")
        runs = page.locator("#runs tr.run")
        assert runs.count() == 7
        sharded = page.locator("#runs tr.run", has_text="2 x fsdp2")
        assert sharded.count() == 2  # #1's scratch and upcycled runs at cpu-small
        cells = sharded.first.locator("td").all_inner_texts()
        assert [" ".join(c.split()) for c in cells[1:]] == [
            "cpu-small",
            "scratch",
            "2 x fsdp2",
            "FSDP2 x 2, fp32 AdamW",
            "3.00 GiB / 2.00 GiB",
            "12.5K tok/s",
            "41.2% of NVIDIA H200 bf16 dense",
            "3 / 1",
            "2",
        ]
        details = page.locator("#runs tr.checkpoints").all_inner_texts()
        assert len(details) == 2 and all(d.strip().startswith("resumed from step 4") for d in details)
        assert "step 8 (2027-01-15 08:00:00, " in details[0] and "step 16 (2027-01-15 08:10:00, " in details[0]
        assert "on disk" not in details[1]  # the upcycled run's checkpoints were not kept
        assert "upcycle @16" in sharded.nth(1).inner_text()
        old = page.locator("#runs tr.run", has_text="glam baseline").locator("td").all_inner_texts()
        assert old[1:] == ["cpu-tiny", "scratch", "1", "–", "– / –", "–", "–", "0 / 0", "none"]
        page.locator("#runs").scroll_into_view_if_needed()
        predictions = page.locator("#predictions tr")
        assert predictions.count() - 1 == 3 and "trial #1" in predictions.nth(1).inner_text()
        assert page.locator("#chart-scaling .main-svg").count() >= 1  # the scaling laws, drawn
        assert "Scaling laws" in page.inner_text("#card-scaling")
        assert "No learning curve yet" in page.inner_text("#card-curves")  # seeded rows have no curve
        screenshot(page, "04-scale-up")
        page.click("#candidates a:has-text('trial #1')")
        page.wait_for_url(f"**/trials/{ids[1]}")
        with page.expect_download() as info:
            page.click("#export-pytorch")
        assert "def build(" in Path(info.value.path()).read_text()
        with page.expect_download() as info:
            page.click("#export-safetensors")
        assert load_file(info.value.path()).keys() >= {"embed.weight"}
        page.goto(f"{live.url}/trials/{ids[2]}")  # no weights were kept for #2: no link
        assert page.locator("#export-safetensors").count() == 0 and page.locator("#export-pytorch").count() == 1
        page.close()
    finally:
        live.stop()


def test_scale_up_runs_in_the_page_and_its_live_part(tmp_path: Path) -> None:
    """Pass (no browser): the search page and its live update carry the runs table, sharded runs and rows stored
    before runs reported devices alike, and the checkpoints on disk; a search with old rows only renders too."""
    import httpx

    repo, url = sqlite_repository(tmp_path, "scaled.db")
    old_only, _ = seed_scaled_search(repo, tmp_path / "data")
    sid, ids = seed_scaled_search(repo, tmp_path / "data")
    add_sharded_runs(repo, sid, ids[1], tmp_path / "data")
    live = LiveServer(Settings(database_url=url, data_dir=tmp_path / "data"))
    try:
        page = httpx.get(f"{live.url}/searches/{sid}", timeout=30)
        part = httpx.get(f"{live.url}/ui/searches/{sid}/live", timeout=30).json()["parts"]["scaleup"]
        for html in (page.text, part):
            assert 'id="runs"' in html and html.count('class="run ') == 7
            for text in ("2 x fsdp2", "FSDP2 x 2, fp32 AdamW", "3.00 GiB / 2.00 GiB", "12.5K tok/s", "41.2%"):
                assert text in html, text
            assert "NVIDIA H200 bf16 dense" in html and "3 / 1" in html and "0 / 0" in html
            assert "step 16 (2027-01-15 08:10:00, " in html and "cpu-small+upcycle" in html
        old = httpx.get(f"{live.url}/searches/{old_only}", timeout=30)
        assert old.status_code == 200 and old.text.count('class="run ') == 6 and "2 x fsdp2" not in old.text
        assert 'class="checkpoints"' not in old.text
    finally:
        live.stop()
