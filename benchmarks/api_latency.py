"""Leaderboard latency over HTTP with 10,000 trials in one search, on SQLite and PostgreSQL side by side.

    python benchmarks/api_latency.py                 # 10,000 trials, 300 requests per backend (~1 minute)
    python benchmarks/api_latency.py --trials 100000

A live server (uvicorn on loopback, the real app) answers ``GET /api/v1/searches/{id}/trials`` with a mix of sort
keys, orders, state filters and offsets (deep pages included); p50 and p95 of the client-side latency are reported
next to the same queries made straight on the repository (no HTTP, no JSON), the floor. Target: p95 under
50 ms. PostgreSQL is the server on 127.0.0.1:5432 (a scratch database is created and dropped).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn
from sqlalchemy import create_engine, insert, make_url, text

from brainsearch.settings import Settings
from brainsearch.storage import Repository, make_engine, migrate
from brainsearch.storage.models import TrialRow
from service.app import create_app

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SORTS = ["val_loss", "step_time_s", "params_activated", "number", "created_at"]
STATES = [None, None, "completed", "pruned"]


def _seed(url: str, trials: int) -> int:
    engine = make_engine(url)
    migrate(engine)
    repo = Repository(engine)
    search, _ = repo.create_search(name="bench", space_name="tiny", space={}, settings={}, trials_requested=trials)
    rng = random.Random(0)
    now = datetime.now(UTC)
    arch = {"d_model": 48, "vocab_size": 256, "seq_len": 64, "num_blocks": 1, "block": [{"type": "attention"}]}
    rows = []
    for n in range(trials):
        state = rng.choices(["completed", "pruned", "diverged"], [0.7, 0.25, 0.05])[0]
        rows.append(
            {
                "search_id": search.id,
                "number": n,
                "state": state,
                "reason": None if state == "completed" else "x",
                "is_baseline": n < 2,
                "baseline_name": None,
                "arch": arch,
                "arch_digest": f"{n:016x}",
                "pattern": "afgggfff",
                "params": {"d_model": 48},
                "cost": {"params_total": 1000},
                "metrics": {"steps": 125, "val_loss": 2.5},
                "val_loss": rng.uniform(2, 4) if state == "completed" else None,
                "step_time_s": rng.uniform(0.01, 0.05),
                "params_activated": rng.randint(10**5, 10**6),
                "worker": "bench",
                "created_at": now,
                "started_at": now,
                "finished_at": now,
            }
        )
    with engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            conn.execute(insert(TrialRow), rows[i : i + 2000])
    engine.dispose()
    return search.id


def _queries(n: int) -> list[dict[str, object]]:
    rng = random.Random(1)
    out = []
    for _ in range(n):
        q: dict[str, object] = {"sort": rng.choice(SORTS), "order": rng.choice(["asc", "desc"]), "limit": 50}
        state = rng.choice(STATES)
        if state:
            q["state"] = state
        q["offset"] = rng.choice([0, 0, 50, 500, 5000])
        out.append(q)
    return out


def _measure(url: str, search_id: int, requests: int) -> tuple[list[float], list[float]]:
    settings = Settings(database_url=url, data_dir=Path(tempfile.mkdtemp()))
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    queries = _queries(requests)
    http_ms, repo_ms = [], []
    with httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1") as client:
        for q in queries[:20]:  # warm-up: connections, query plans, caches
            client.get(f"/searches/{search_id}/trials", params=q).raise_for_status()
        for q in queries:
            t0 = time.perf_counter()
            r = client.get(f"/searches/{search_id}/trials", params=q)
            http_ms.append((time.perf_counter() - t0) * 1e3)
            r.raise_for_status()
    repo = Repository(make_engine(url))
    for q in queries:
        t0 = time.perf_counter()
        repo.list_trials(search_id, **q)  # type: ignore[arg-type]
        repo_ms.append((time.perf_counter() - t0) * 1e3)
    repo.engine.dispose()
    server.should_exit = True
    thread.join(30)
    return http_ms, repo_ms


def _p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    backends = {"sqlite": f"sqlite:///{tempfile.mkdtemp()}/bench.db"}
    name = f"brainsearch_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        backends["postgresql"] = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    except Exception as exc:
        print(f"postgresql skipped: {exc}", file=sys.stderr)
    rows = []
    try:
        for backend, url in backends.items():
            search_id = _seed(url, args.trials)
            http_ms, repo_ms = _measure(url, search_id, args.requests)
            rows.append((backend, _p(http_ms, 50), _p(http_ms, 95), _p(repo_ms, 50), _p(repo_ms, 95)))
            print(f"{backend}: http p50 {rows[-1][1]:.1f} ms p95 {rows[-1][2]:.1f} ms", flush=True)
    finally:
        if "postgresql" in backends:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print()
    print(
        f"| backend ({args.trials:,} trials) | HTTP p50 ms | HTTP p95 ms | repository p50 ms | repository p95 ms "
        "| HTTP / repository (p50) |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for backend, hp50, hp95, rp50, rp95 in rows:
        print(f"| {backend} | {hp50:.1f} | {hp95:.1f} | {rp50:.1f} | {rp95:.1f} | {hp50 / rp50:.2f} |")


if __name__ == "__main__":
    main()
