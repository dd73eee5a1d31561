"""The REST API, served in process by FastAPI's test client (the server itself: tests/service/test_serve.py and the
reliability suite): submit with validation and idempotency, the leaderboard, trials and exports, cancel, auth, Host
and body-size checks, and no input that produces a 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from brainsearch.arch import preset, scale
from brainsearch.storage import Repository
from tests.factories import SHARDED_RUN, candidate_run, fast_space, save_checkpoint, seed_leaderboard
from tests.service.conftest import InProcessServer


def test_submit_list_read_and_cancel(in_process: Any) -> None:
    with in_process().client() as api:
        assert api.get("/healthz").json()["status"] == "ok"
        r = api.post("/searches", json={"space": "tiny", "trials": 3, "sampler": "random", "name": "mine"})
        assert r.status_code == 201, r.text
        search = r.json()
        assert search["status"] == "queued" and search["name"] == "mine" and search["trials_requested"] == 3
        assert search["settings"]["search"]["sampler"] == "random"
        listed = api.get("/searches").json()
        assert listed["total"] == 1 and listed["items"][0]["id"] == search["id"]
        assert api.get(f"/searches/{search['id']}").json()["id"] == search["id"]
        cancelled = api.post(f"/searches/{search['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert api.get("/searches", params={"status": "cancelled"}).json()["total"] == 1
        assert api.get("/searches/999").status_code == 404
        assert api.post("/searches/999/cancel").status_code == 404


def test_inline_spaces_are_validated_with_field_paths(in_process: Any) -> None:
    doc = yaml.safe_load(Path("search_spaces/tiny.yaml").read_text())
    with in_process().client() as api:
        r = api.post("/searches", json={"space": doc, "trials": 2})
        assert r.status_code == 201 and r.json()["space_name"] == "tiny"
        bad = json.loads(json.dumps(doc))
        bad["block"]["moe"]["experts"] = 5000
        bad["proxy"]["colour"] = "red"
        r = api.post("/searches", json={"space": bad})
        assert r.status_code == 422
        locs = {d["loc"] for d in r.json()["detail"]}
        assert "space.proxy.colour" in locs
        for body, loc in (
            ({"space": "no-such-space"}, "space"),
            ({"space": "../../etc/passwd"}, "space"),
            ({"space": "tiny", "trials": 0}, "trials"),
            ({"space": "tiny", "sampler": "anneal"}, "sampler"),
            ({"space": "tiny", "trials": True}, "trials"),  # JSON's true is not 1
            ({"space": "tiny", "seed": 1.5}, "seed"),
            ({"space": "tiny", "scale_up": {"ladder": ["nope"]}}, "scale_up.ladder[0].preset"),
        ):
            r = api.post("/searches", json=body)
            assert r.status_code == 422 and loc in {d["loc"] for d in r.json()["detail"]}, r.text
        assert api.post("/searches", json={"space": "tiny", "colour": 1}).status_code == 422
        good = api.post("/spaces/validate", json={"space": doc}).json()
        assert good["valid"] and good["size"] > 1000
        assert api.post("/spaces/validate", json={"space": bad}).status_code == 422
        names = [s["id"] for s in api.get("/spaces").json()["items"]]
        assert "tiny" in names and "brainformer" in names


def test_idempotency_key(in_process: Any) -> None:
    with in_process().client() as api:
        key = {"Idempotency-Key": "abc-123"}
        first = api.post("/searches", json={"space": "tiny", "trials": 2}, headers=key)
        again = api.post("/searches", json={"space": "tiny", "trials": 2}, headers=key)
        assert first.status_code == again.status_code == 201 and first.json()["id"] == again.json()["id"]
        assert again.headers.get("Idempotent-Replay") == "true"
        other = api.post("/searches", json={"space": "tiny", "trials": 3}, headers=key)
        assert other.status_code == 422
        assert other.json()["detail"][0]["in"] == "header" and "different request" in other.json()["detail"][0]["msg"]
        assert api.get("/searches").json()["total"] == 1


def test_leaderboard_trials_pareto_and_exports(in_process: Any, repo: Repository) -> None:
    server: InProcessServer = in_process()
    with server.client() as api:
        sid = api.post("/searches", json={"space": "tiny"}).json()["id"]
        ids = seed_leaderboard(repo, sid)
        board = api.get(f"/searches/{sid}/trials").json()
        assert [t["id"] for t in board["items"]] == [ids[1], ids[2], ids[0], ids[3], ids[4]]
        assert board["total"] == 5 and board["items"][2]["is_baseline"]
        # each row says how its run fitted in memory (nothing for a run that did not train)
        plans = [(t["micro_batch"], t["activation_checkpointing"]) for t in board["items"]]
        assert plans == [(4, False), (4, True), (4, False), (None, None), (None, None)]
        page = api.get(f"/searches/{sid}/trials", params={"sort": "step_time_s", "order": "desc", "limit": 2}).json()
        assert [t["id"] for t in page["items"]] == [ids[1], ids[0]] and page["limit"] == 2
        assert api.get(f"/searches/{sid}/trials", params={"state": "pruned"}).json()["total"] == 1
        by_bpb = api.get(f"/searches/{sid}/trials", params={"sort": "val_bits_per_byte", "order": "desc"}).json()
        assert [t["id"] for t in by_bpb["items"]][:3] == [ids[0], ids[2], ids[1]]  # a trainer metric from the JSON
        assert api.get(f"/searches/{sid}/trials", params={"sort": "colour"}).status_code == 422
        assert api.get(f"/searches/{sid}/trials", params={"limit": 0}).status_code == 422
        assert api.get("/searches/999/trials").status_code == 404
        front = api.get(f"/searches/{sid}/pareto").json()
        # Training compute over GLaM's: #2 (1.0x, 2.9) beats GLaM itself (1.0x, 3.0); #1 is better but at 2.0x.
        assert [t["id"] for t in front["compute_ratio"]] == [ids[2], ids[1]]
        assert [t["compute_ratio"] for t in front["compute_ratio"]] == [1.0, 2.0]
        assert [t["id"] for t in front["params_activated"]] == [ids[0], ids[1]]
        # Step times only from timing probes (GLaM at 1.0 by definition), never from the runs' wall clocks: #2's
        # probe says 0.8x, #1's 1.5x; the wall-clock 0.02 s of GLaM against 0.04 s of #1 plays no part.
        assert [t["id"] for t in front["step_time_ratio"]] == [ids[2], ids[1]]
        assert "step_time_s" not in front
        assert api.get(f"/searches/{sid}/candidates").json() == {"items": [], "total": 0, "limit": 0, "offset": 0}
        detail = api.get(f"/trials/{ids[1]}").json()
        assert detail["arch"]["d_model"] == 48 and [p["step"] for p in detail["curve"]] == [1, 2]
        assert (detail["micro_batch"], detail["activation_checkpointing"]) == (4, False)
        exported = api.get(f"/trials/{ids[1]}/export")
        assert exported.headers["content-type"].startswith("application/json")
        doc = exported.json()
        assert {"architecture", "cost", "search_id", "trial_id", "metrics"} <= set(doc) and doc["trial_id"] == ids[1]
        # The export says how the block compares with GLaM, and at what compute: #1 trained with twice its FLOPs.
        comparison = doc["comparison"]
        assert comparison["baseline"] == "glam" and comparison["vs_baseline"]["difference"] == pytest.approx(-0.2)
        assert comparison["compute_ratio"] == 2.0 and comparison["flops_per_token_ratio"] == 2.0
        assert yaml.safe_load(api.get(f"/trials/{ids[1]}/export", params={"format": "yaml"}).text) == doc
        assert api.get(f"/trials/{ids[1]}/export", params={"format": "pickle"}).status_code == 422
        assert api.get("/trials/999").status_code == 404


def test_pick_a_trial_by_number_or_rank(in_process: Any, repo: Repository) -> None:
    """Pass: GET /searches/{id}/trial answers the leaderboard row of the trial with that number (a baseline too) or
    at that rank (completed trials by validation loss, baselines unranked); no match is a 404 saying what was asked
    and how many completed trials there are; neither or both selectors, or a rank of 0, is the one 422 shape; the
    route is in the OpenAPI schema with both selectors and its 404."""
    server: InProcessServer = in_process()
    with server.client() as api:
        sid = api.post("/searches", json={"space": "tiny"}).json()["id"]
        ids = seed_leaderboard(repo, sid)  # #0 the GLaM baseline (3.0), #1 2.8, #2 2.9, #3 pruned, #4 diverged
        for params, expected in [
            ({"rank": 1}, ids[1]),
            ({"rank": 2}, ids[2]),
            ({"number": 0}, ids[0]),
            ({"number": 3}, ids[3]),
        ]:
            r = api.get(f"/searches/{sid}/trial", params=params)
            assert r.status_code == 200 and r.json()["id"] == expected, (params, r.text)
        assert (
            api.get(f"/searches/{sid}/trial", params={"rank": 1}).json()
            == api.get(f"/searches/{sid}/trials", params={"limit": 1}).json()["items"][0]
        )
        for params, message in [
            ({"rank": 3}, f"search {sid} has 2 completed trial(s), not 3"),
            ({"number": 9}, f"search {sid} has no trial #9 (it has 2 completed trial(s))"),
        ]:
            r = api.get(f"/searches/{sid}/trial", params=params)
            assert r.status_code == 404 and r.json() == {"detail": message}, r.text
        assert api.get("/searches/999/trial", params={"rank": 1}).json() == {"detail": "no search 999"}
        for params, loc in [
            ({}, ""),
            ({"number": 1, "rank": 1}, ""),
            ({"rank": 0}, "rank"),
            ({"number": -1}, "number"),
        ]:
            detail = _is_one_shape(api.get(f"/searches/{sid}/trial", params=params))
            assert [(p["in"], p["loc"]) for p in detail] == [("query", loc)], (params, detail)
    route = server.http().get("/openapi.json").json()["paths"]["/api/v1/searches/{search_id}/trial"]["get"]
    assert {p["name"] for p in route["parameters"]} == {"search_id", "number", "rank"}
    assert route["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")
    assert route["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/TrialOut")


def test_pytorch_and_safetensors_exports_and_the_scale_up_report(
    in_process: Any, repo: Repository, tmp_path: Path
) -> None:
    """Pass: the pytorch export is a Python file defining build(); safetensors serves the kept weights byte for byte
    and 404s (with the reason) where none were kept; the scale-up report lists stored candidates and rejects an
    unknown target with 422."""
    import torch
    from safetensors.torch import load

    from brainsearch import build_model
    from brainsearch.store import RunStore, candidate_run_key, save_weights, weights_metadata

    server: InProcessServer = in_process()
    with server.client() as api:
        body = {"space": "tiny", "scale_up": {"ladder": ["cpu-tiny", "cpu-small"], "target": "1b-64e"}, "top_k": 1}
        created = api.post("/searches", json=body)
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        assert created.json()["settings"]["search"]["scale_up"]["ladder"][1]["preset"] == "cpu-small"
        bad = api.post("/searches", json={"space": "tiny", "scale_up": {"ladder": ["cpu-huge"]}})
        assert bad.status_code == 422 and "unknown scale preset 'cpu-huge'" in bad.text
        ids = seed_leaderboard(repo, sid)
        arch = scale(preset("glam"), "cpu-tiny")
        torch.manual_seed(0)
        state = build_model(arch).state_dict()
        store = RunStore(tmp_path / "data", repo.database_id())
        meta = weights_metadata(repo.database_id(), sid, ids[1])
        path = save_weights(state, arch, store.trial_weights(sid, ids[1]), meta)

        source = api.get(f"/trials/{ids[1]}/export", params={"format": "pytorch"})
        assert source.status_code == 200 and source.headers["content-type"].startswith("text/x-python")
        assert 'filename="brainsearch-search' in source.headers["content-disposition"]
        compile(source.text, "exported.py", "exec")
        assert "def build(" in source.text and "import brainsearch" not in source.text

        weights = api.get(f"/trials/{ids[1]}/export", params={"format": "safetensors"})
        assert weights.status_code == 200 and weights.content == path.read_bytes()
        assert all(torch.equal(t, state[k]) for k, t in load(weights.content).items())
        # A file at another trial's place (copied there, or left by another database) is never served as its own.
        store.trial_weights(sid, ids[2]).write_bytes(path.read_bytes())
        assert api.get(f"/trials/{ids[2]}/export", params={"format": "safetensors"}).status_code == 404
        store.trial_weights(sid, ids[2]).unlink()
        missing = api.get(f"/trials/{ids[2]}/export", params={"format": "safetensors"})
        assert missing.status_code == 404 and "weights were not kept" in missing.json()["detail"]
        pruned = api.get(f"/trials/{ids[3]}/export", params={"format": "safetensors"})
        assert pruned.status_code == 404 and "ended pruned" in pruned.json()["detail"]

        empty = api.get(f"/searches/{sid}/scale-up").json()
        assert empty["configured"] and empty["candidates"] == [] and empty["ladder"] == ["cpu-tiny", "cpu-small"]
        # cpu-tiny: a row stored before runs reported devices and checkpoints; cpu-small: a sharded, resumed run.
        sharded = {**SHARDED_RUN, "init": "scratch"}
        for trial_id, rung, loss, n, run in [
            (ids[1], "cpu-tiny", 2.7, 1e5, {}),
            (ids[1], "cpu-small", 2.5, 1e6, sharded),
        ]:
            candidate_run(
                repo, sid, trial_id, rung, loss, val_loss_stderr=None, **run, params_activated=n, step_time_s=0.1
            )
        folder = store.checkpoints_dir(sid, candidate_run_key(ids[1], "cpu-small"))
        size = save_checkpoint(folder, 16, 1.8e9)
        save_checkpoint(folder, 24, 1.8e9 + 60, complete=False)  # an interrupted save is not listed
        report = api.get(f"/searches/{sid}/scale-up", params={"law": "chinchilla"}).json()
        (cand,) = report["candidates"]
        assert cand["trial_id"] == ids[1] and [r["rung"] for r in cand["rungs"]] == ["cpu-tiny", "cpu-small"]
        assert cand["prediction"]["law"] == "chinchilla" and cand["prediction"]["predicted_loss"] < 2.5
        old, small = cand["rungs"]
        assert {k: old[k] for k in ("devices", "sharding", "checkpoint_count", "resume_count", "init")} == {
            "devices": 1,
            "sharding": None,
            "checkpoint_count": 0,
            "resume_count": 0,
            "init": "scratch",
        }
        assert old["checkpoints_on_disk"] == [] and old["memory_peak_bytes"] is None
        shown = ("devices", "sharding", "recipe", "memory_estimate_bytes", "memory_peak_bytes", "tokens_per_s", "mfu")
        assert {k: small[k] for k in shown} == {k: SHARDED_RUN[k] for k in shown}
        assert small["peak_flops_label"] == "NVIDIA H200 bf16 dense" and small["resumed_from"] == [4]
        assert (small["checkpoint_count"], small["resume_count"]) == (3, 1)
        assert small["init"] == "scratch" and small["preset"] == "cpu-small"
        assert small["checkpoints_on_disk"] == [{"step": 16, "saved_at": 1.8e9, "bytes": size}]
        listed = api.get(f"/searches/{sid}/candidates").json()
        assert listed["total"] == 2 and listed["items"][0]["val_curve"]
        by_rung = {item["rung"]: item for item in listed["items"]}
        assert by_rung["cpu-tiny"]["checkpoints"] == [] and by_rung["cpu-tiny"]["checkpoint_count"] == 0
        assert by_rung["cpu-small"]["checkpoints"] == [{"step": 16, "saved_at": 1.8e9, "bytes": size}]
        assert (by_rung["cpu-small"]["checkpoint_count"], by_rung["cpu-small"]["resume_count"]) == (3, 1)
        assert by_rung["cpu-small"]["metrics"]["recipe"] == "FSDP2 x 2, fp32 AdamW"
        assert api.get(f"/searches/{sid}/scale-up", params={"target": "9t"}).status_code == 422
        assert api.get(f"/searches/{sid}/scale-up", params={"law": "hyperbolic"}).status_code == 422
        assert api.get("/searches/999/scale-up").status_code == 404


def test_token_host_and_body_limits(in_process: Any) -> None:
    server: InProcessServer = in_process(api_token="s3cret", max_body_bytes=4096)
    with server.client() as anonymous, server.client("s3cret") as user, server.client("wrong") as wrong:
        assert anonymous.post("/searches", json={"space": "tiny"}).status_code == 401
        assert wrong.post("/searches", json={"space": "tiny"}).status_code == 401
        sid = user.post("/searches", json={"space": "tiny"}).json()["id"]
        assert anonymous.get(f"/searches/{sid}").status_code == 200  # reads are open by default
        assert anonymous.post(f"/searches/{sid}/cancel").status_code == 401
        big = user.post("/searches", content=b"{" + b" " * 10_000 + b"}", headers={"Content-Type": "application/json"})
        assert big.status_code == 413
        evil = server.http().get("/api/v1/healthz", headers={"Host": "evil.example"})
        assert evil.status_code == 400 and "'evil.example' is not one this service answers" in evil.json()["detail"]
        assert server.http().get("/api/v1/healthz", headers={"Host": "[::1]:8000"}).status_code == 200
    closed: InProcessServer = in_process(api_token="s3cret", api_read_auth=True)
    with closed.client() as anonymous, closed.client("s3cret") as user:
        assert anonymous.get("/searches").status_code == 401
        assert user.get("/searches").status_code == 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


def test_no_input_gives_a_500(in_process: Any) -> None:
    server: InProcessServer = in_process()
    with server.client() as api:

        @settings(max_examples=80)
        @given(body=json_values, field=st.sampled_from(["space", "trials", "sampler", "seed", "name", "executor"]))
        def check(body: Any, field: str) -> None:
            for payload in (body, {"space": "tiny", field: body}, {"space": body}):
                r = api.post("/searches", json=payload)
                assert r.status_code < 500, (payload, r.text)
            r = api.post(
                "/searches", content=json.dumps(body)[:50].encode(), headers={"Content-Type": "application/json"}
            )
            assert r.status_code < 500

        check()


def test_dashboard_form_reports_bad_settings_on_the_page(in_process: Any) -> None:
    server: InProcessServer = in_process()
    form = {"space": "tiny", "trials": "2", "sampler": "anneal & co"}
    r = server.http().post("/ui/searches", data=form, follow_redirects=True)
    assert r.status_code == 200 and "search.sampler" in r.text and "No searches yet" in r.text
    bad_space = server.http().post("/ui/searches", data={**form, "space": "../etc"})
    assert bad_space.status_code == 422


def _is_one_shape(r: httpx.Response) -> list[dict[str, Any]]:
    """The one 422 body: {"detail": [{"loc": str, "msg": str, "in": part, "line"?: int}, ...]}."""
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail, r.text
    for p in detail:
        assert set(p) <= {"loc", "msg", "in", "line"} and {"loc", "msg", "in"} <= set(p), p
        assert (
            isinstance(p["loc"], str) and isinstance(p["msg"], str) and p["in"] in ("body", "query", "path", "header")
        )
    return list(detail)


def test_every_422_has_one_shape_documented_in_openapi(in_process: Any) -> None:
    """Pass: bad input found by the space loader, the overrides, FastAPI's own checks (body, query, path), the body
    scan and the scale-up report all answer the same shape, naming where; the schema documents exactly it."""
    server: InProcessServer = in_process()
    with server.client() as api:
        sid = api.post("/searches", json={"space": "tiny"}).json()["id"]
        json_body = {"Content-Type": "application/json"}
        cases = [
            (api.post("/searches", json={"space": {"name": "x", "block": {"slots": 40}}}), "body", "space.block"),
            (api.post("/searches", json={"space": "tiny", "trials": 0}), "body", "trials"),
            (api.post("/searches", json={"space": "tiny", "trials": True}), "body", "trials"),
            (api.post("/searches", json={"space": "tiny", "colour": 1}), "body", "colour"),
            (api.post("/searches", json={}), "body", "space"),
            (api.post("/searches", content=b"[" * 100 + b"]" * 100, headers=json_body), "body", ""),
            (api.post("/searches", content=b'{"space": "' + bytes([0xFF]) + b'"}', headers=json_body), "body", ""),
            (api.post("/searches", content=b'{"trials": ' + b"9" * 5000 + b"}", headers=json_body), "body", ""),
            (api.get(f"/searches/{sid}/trials", params={"sort": "colour"}), "query", "sort"),
            (api.get(f"/searches/{sid}/trials", params={"limit": 0}), "query", "limit"),
            (api.get("/searches/abc"), "path", "search_id"),
            # Integers in digits only: pydantic's lax int would take "0.0" or "1.0" (the fuzz test found it).
            (api.get("/searches", params={"offset": "0.0"}), "query", "offset"),
            (api.get(f"/searches/{sid}/trial", params={"rank": "1.0"}), "query", "rank"),
            (api.get("/trials/1.0"), "path", "trial_id"),
            (api.get(f"/searches/{sid}/scale-up", params={"target": "9t"}), "query", "target"),
            (api.post("/spaces/validate", json={"space": {"name": "x"}}), "body", "space.block"),
            (api.get("/trials/1/export", params={"format": "pickle"}), "query", "format"),
        ]
        for r, where, loc in cases:
            detail = _is_one_shape(r)
            assert any(p["in"] == where and p["loc"].startswith(loc) for p in detail), (where, loc, detail)
    schema = server.http().get("/openapi.json").json()
    problem = schema["components"]["schemas"]["ProblemOut"]
    assert set(problem["properties"]) == {"loc", "msg", "in", "line"}
    submit = schema["paths"]["/api/v1/searches"]["post"]["responses"]["422"]
    assert submit["content"]["application/json"]["schema"]["$ref"].endswith("/ProblemsOut")
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_validate_follows_the_auth_rule_and_takes_bundled_names(in_process: Any) -> None:
    """Pass: /spaces/validate is a write route (401 without the token when one is set), and it takes a bundled
    space's name as POST /searches does."""
    server: InProcessServer = in_process(api_token="s3cret")
    with server.client() as anonymous, server.client("s3cret") as user:
        assert anonymous.post("/spaces/validate", json={"space": "tiny"}).status_code == 401
        ok = user.post("/spaces/validate", json={"space": "tiny"})
        assert ok.status_code == 200 and ok.json()["name"] == "tiny"
        unknown = _is_one_shape(user.post("/spaces/validate", json={"space": "no-such"}))
        assert unknown[0]["loc"] == "space" and "bundled" in unknown[0]["msg"]


def test_location_progress_delete_and_scale_up_of_a_finished_search(
    in_process: Any, repo: Repository, tmp_path: Path
) -> None:
    """Pass: 201 has a Location; progress has every count and the stage from the start; DELETE is 409 while a
    search is queued, 204 after, and takes its trials and files with it; POST /scale-up queues a finished search
    again with the stage (409 while queued, 422 for a bad ladder or a search with nothing completed)."""
    from brainsearch.store import RunStore

    server: InProcessServer = in_process()
    with server.client() as api:
        created = api.post("/searches", json={"space": "tiny", "trials": 3})
        sid = created.json()["id"]
        assert created.headers["Location"] == f"/api/v1/searches/{sid}"
        progress = created.json()["progress"]
        assert progress["stage"] == "queued" and progress["done"] == 0 and progress["requested"] == 3
        assert {"completed", "pruned", "failed", "crashed", "running", "baselines"} <= set(progress)
        assert created.json()["reference_baseline"] == "glam"

        ladder = {"scale_up": {"ladder": ["cpu-tiny", "cpu-small"]}}
        assert api.post(f"/searches/{sid}/scale-up", json=ladder).status_code == 409  # still queued
        assert api.delete(f"/searches/{sid}").status_code == 409
        ids = seed_leaderboard(repo, sid)
        repo.set_search_status(sid, "completed")
        board = api.get(f"/searches/{sid}").json()
        assert board["progress"]["done"] == 4 and board["progress"]["pruned"] == 1  # the baseline apart
        assert board["progress"]["baselines"] == {"glam": 3.0}

        bad = _is_one_shape(api.post(f"/searches/{sid}/scale-up", json={"scale_up": {"ladder": ["nope"]}}))
        assert bad[0]["loc"] == "scale_up.ladder[0].preset"
        queued = api.post(f"/searches/{sid}/scale-up", json={**ladder, "top_k": 1})
        assert queued.status_code == 202, queued.text
        again = queued.json()
        assert again["status"] == "queued" and again["settings"]["search"]["top_k"] == 1
        assert [r["preset"] for r in again["settings"]["search"]["scale_up"]["ladder"]] == ["cpu-tiny", "cpu-small"]
        assert repo.get_trial(ids[1]) is not None  # trials kept

        empty = api.post("/searches", json={"space": "tiny"}).json()["id"]
        repo.set_search_status(empty, "completed")
        nothing = _is_one_shape(api.post(f"/searches/{empty}/scale-up", json=ladder))
        assert "no completed trial" in nothing[0]["msg"]

        api.post(f"/searches/{sid}/cancel")
        store = RunStore(tmp_path / "data", repo.database_id())
        store.trial_weights(sid, ids[1]).parent.mkdir(parents=True)
        store.trial_weights(sid, ids[1]).write_bytes(b"x")
        assert api.delete(f"/searches/{sid}").status_code == 204
        assert api.get(f"/searches/{sid}").status_code == 404 and repo.get_trial(ids[1]) is None
        assert not store.search_dir(sid).exists()
        assert api.delete(f"/searches/{sid}").status_code == 404


def test_a_space_file_as_the_body_and_bodies_that_are_not_json(in_process: Any) -> None:
    """Pass: a YAML body (Content-Type: application/yaml) is a space file: queued like a document, validated like a
    file (a problem with its line), after the token; a JSON ``space`` string holding a file's text is read the same
    way; a text/plain body is 422 saying what is expected (no Python bytes repr); an empty Idempotency-Key is 422."""
    server: InProcessServer = in_process(api_token="tok")
    text = yaml.safe_dump(fast_space().model_dump(mode="json"))
    bad = "version: 1\nname: x\nblock:\n  slots: 0\n"
    as_yaml = {"Content-Type": "application/yaml"}
    with server.client() as anonymous, server.client("tok") as api:
        assert anonymous.post("/searches", content=bad, headers=as_yaml).status_code == 401  # the token first
        created = api.post("/searches", content=text, headers=as_yaml)
        assert created.status_code == 201, created.text
        assert created.json()["name"] == fast_space().name
        assert api.post("/spaces/validate", json={"space": text}).json()["valid"]  # a file's text as `space`
        again = api.post("/searches", content=text, headers={"Content-Type": "text/yaml; charset=utf-8"})
        assert again.status_code == 201, again.text
        for answer in (
            api.post("/searches", content=bad, headers=as_yaml),
            api.post("/searches", json={"space": bad}),
        ):
            assert _is_one_shape(answer) == [
                {"loc": "space.block.d_model", "msg": "Field required", "in": "body", "line": 4}
            ]
        plain = api.post("/searches", content=b"space: tiny", headers={"Content-Type": "text/plain"})
        assert _is_one_shape(plain) == [
            {"loc": "", "msg": "expected a JSON object (Content-Type: application/json)", "in": "body"}
        ]
        latin = api.post("/searches", content="name: caf\xe9".encode("latin-1"), headers=as_yaml)
        assert "a YAML body must be UTF-8 text" in _is_one_shape(latin)[0]["msg"]
        empty_key = api.post("/searches", json={"space": "tiny"}, headers={"Idempotency-Key": ""})
        assert _is_one_shape(empty_key)[0]["loc"] == "idempotency-key"
        assert (
            api.post("/searches", json={"space": "tinny"})
            .json()["detail"][0]["msg"]
            .startswith("no bundled space 'tinny'")
        )
