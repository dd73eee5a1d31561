"""PostgreSQL restarted in the middle of a search: the workers wait it out and carry on."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url

from brainsearch.storage import Repository, make_engine, migrate
from tests.conftest import ADMIN_URL
from tests.factories import fast_space
from tests.reliability.conftest import Proc, queue_search, wait_for

pytestmark = pytest.mark.slow  # the reliability suite starts processes and breaks them

TRIALS = 4


OUTAGE_S = 6.0  # longer than a trial: one finishes, and the next is asked for, while the database is down


def _pg_ctl(*args: str) -> None:
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    cmd = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", *args]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _restart_postgres() -> None:
    """Stop the local PostgreSQL cluster (fast shutdown: every connection is cut), keep it down ``OUTAGE_S``
    seconds, start it again."""
    url = make_url(ADMIN_URL)
    assert url.host in ("127.0.0.1", "localhost") and (url.port or 5432) == 5432, (
        f"this test restarts the local cluster; BRAINSEARCH_TEST_POSTGRES_URL points at {url.host}:{url.port}"
    )
    _pg_ctl("stop", "-m", "fast")
    try:
        time.sleep(OUTAGE_S)
    finally:
        _pg_ctl("start")


@pytest.mark.slow
@pytest.mark.serial  # it stops the server every other PostgreSQL test uses
def test_postgres_restart_mid_search_is_waited_out(postgres_url: str, spawn: Callable[..., Proc]) -> None:
    """Pass: with a trial in flight, PostgreSQL is stopped for longer than a trial takes (every connection cut) and
    started again; the worker's driver, its trial process (recording its result, reporting to Optuna's pruner) and
    the sampler's asks wait it out; the search completes with every trial completed, none crashed or failed, and
    the requested number of trials reached."""
    engine = make_engine(postgres_url)
    try:
        _check_restart_survived(engine, postgres_url, spawn)
    finally:
        engine.dispose()


def _check_restart_survived(engine: Engine, postgres_url: str, spawn: Callable[..., Proc]) -> None:
    migrate(engine)
    repo = Repository(engine)
    # The median pruner makes the trial process report to Optuna while it trains: that path meets the outage too.
    space = fast_space(48 * 512, search={"trials": TRIALS, "pruner": "median", "sampler": "random"})
    sid = queue_search(repo, space)
    worker = spawn("worker", "--lease", "30", "--db", postgres_url, name="worker")

    def mid_trial() -> bool:
        counts = repo.count_trials(sid, is_baseline=False)
        return counts.get("completed", 0) >= 1 and counts.get("running", 0) == 1

    wait_for(mid_trial, 300, "a finished trial and one in flight", worker, interval=0.05)
    _restart_postgres()
    wait_for(lambda: repo.get_search(sid).status in ("completed", "failed"), 300, "the search to end", worker)  # type: ignore[union-attr]
    search = repo.get_search(sid)
    assert search is not None and search.status == "completed", (search, worker.output()[-3000:])
    trials = repo.list_trials(sid, limit=100).items
    assert {t.state for t in trials} == {"completed"}, [(t.number, t.state, t.reason) for t in trials]
    assert len([t for t in trials if not t.is_baseline]) == TRIALS
    # Who waited the outage out: the trial process (its reports to Optuna's pruner) and the worker's own loop (its
    # driver's polls, its asks to the sampler or its lease: which one meets the outage depends on what it was doing).
    waited = {
        line.split(": the database is unavailable")[0].split()[-1]
        for line in worker.output().splitlines()
        if ": the database is unavailable" in line
    }
    assert "set_trial_intermediate_value" in waited and waited - {"set_trial_intermediate_value", "finish_trial"}, (
        waited
    )
    assert "Traceback" not in worker.output()
