"""The command-line client against a live service: submit a space file, follow it with status, print the
leaderboard from the server; unreachable servers, refused tokens and bad spaces exit 2 with the option named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from brainsearch.cli import main
from brainsearch.client import Client
from brainsearch.errors import InputError
from brainsearch.storage import Repository
from tests.factories import fast_space, seed_leaderboard


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


@pytest.mark.slow
def test_submit_follow_and_leaderboard(live: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = live(embedded_worker=True, api_token="tok")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(fast_space().model_dump(mode="json")))
    remote = ["--server", server.url, "--token", "tok"]
    code, out, err = run(["submit", str(space), *remote, "--trials", "2", "--sampler", "random"], capsys)
    assert code == 0, err
    search_id = int(out.strip())
    code, out, err = run(["status", str(search_id), *remote, "--interval", "0.2"], capsys)
    assert code == 0, err
    final = json.loads(out)
    assert final["status"] == "completed" and final["id"] == search_id
    code, out, _ = run(["leaderboard", str(search_id), *remote], capsys)
    assert code == 0 and "glam baseline" in out and f"search {search_id}: 4 trials" in out
    code, out, _ = run(["leaderboard", str(search_id), *remote, "--json"], capsys)
    assert code == 0 and len(out.splitlines()) == 4


def test_client_errors_exit_2(live: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = live(api_token="tok")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\nblock: {slots: 0}\n")
    cases = [
        (["submit", "tiny", "--server", server.url], "--token: the server refused the token"),
        (["submit", "tiny", "--server", "http://127.0.0.1:1", "--token", "tok"], "--server: cannot reach"),
        (["submit", "tiny", "--server", "ftp://x"], "--server: expected an http(s) URL"),
        (["submit", "tiny"], "--server: give the service's URL"),
        (["submit", str(bad), "--server", server.url, "--token", "tok"], "bad.yaml"),
        (["status", "999", "--server", server.url, "--no-follow"], "404 from the server: no search 999"),
    ]
    for args, expected in cases:
        code, _, err = run(args, capsys)
        assert code == 2 and expected in err and "Traceback" not in err, (args, err)


def test_pick_trial_by_number_or_rank(live: Any, repo: Repository) -> None:
    """Pass: Client.pick_trial answers the leaderboard row of the trial with a number or at a rank; no such trial
    raises InputError at --number / --rank with the server's message (what was asked, how many completed)."""
    client = Client(live().url)
    sid = client.submit({"space": "tiny"})["id"]
    ids = seed_leaderboard(repo, sid)  # #0 the GLaM baseline, #1 and #2 completed, #3 pruned, #4 diverged
    assert client.pick_trial(sid, rank=2)["id"] == ids[2] and client.pick_trial(sid, number=0)["id"] == ids[0]
    for kwargs, problem in [
        ({"rank": 4}, f"--rank: search {sid} has 2 completed trial(s), not 4"),
        ({"number": 9}, f"--number: search {sid} has no trial #9 (it has 2 completed trial(s))"),
    ]:
        with pytest.raises(InputError) as info:
            client.pick_trial(sid, **kwargs)
        assert str(info.value) == problem


def test_a_database_and_its_service_print_the_same_documents(
    live: Any, repo: Repository, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pass: the CLI reads one search through --db and through --server (the service on that database) and prints
    the same leaderboard rows, search verdict and scale-up report, byte for byte: both are the documents module's."""
    server = live()
    sid = Client(server.url).submit({"space": "tiny"})["id"]
    seed_leaderboard(repo, sid)
    printed = []
    for where in (["--db", database_url], ["--server", server.url]):
        outputs = []
        for command in (["leaderboard", "--json"], ["scale-up", "--json"], ["leaderboard"]):
            code, out, err = run([command[0], str(sid), *command[1:], *where], capsys)
            assert code == 0, err
            outputs.append(out)
        printed.append(outputs)
    by_db, by_server = printed
    assert by_db == by_server
    rows = [json.loads(line) for line in by_db[0].splitlines()]
    assert len(rows) == 5
    assert sorted(r["rank"] for r in rows if r["rank"] is not None) == [1, 2]
    assert {"compute_ratio", "comparison", "micro_batch"} <= set(rows[0])
