"""The dashboard's scale-up section shows what separates a result from noise: loss intervals, speed-ups from timing
probes with their range or "uncertain", slowed runs re-timed, and predictions at one named target with their
extrapolation."""

from __future__ import annotations

import re
from typing import Any

import httpx

from brainsearch.arch.presets import preset
from brainsearch.search.submission import create_search
from brainsearch.storage import Repository
from tests.factories import candidate_run, completed_trials, fast_space, glam_tiny, timing_probe


def _cells(html: str, table: str, cls: str) -> list[str]:
    body = re.search(rf'<table id="{table}".*?</table>', html, re.S)
    assert body, table
    cells = re.findall(rf'<td class="{cls}">(.*?)</td>', body.group(0), re.S)
    return [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", c)).strip() for c in cells]


def test_scale_up_section_shows_intervals_uncertain_speed_slowed_runs_and_the_target(
    live: Any, repo: Repository
) -> None:
    """Pass: at cpu-small the baseline's MFU (12%) is far below the median: it is marked slowed and re-timed, and the
    candidates' separate-runs ratios against it read "uncertain"; the probed candidate shows its probe's ratio and
    range; every loss carries its ± interval; predictions name the one target in activated parameters and compute,
    with the extrapolation factor and the far flag."""
    space = fast_space(4096, search={"top_k": 3, "scale_up": {"ladder": ["cpu-tiny", "cpu-small"], "target": "1b-64e"}})
    search, _ = create_search(repo, space)
    repo.set_search_status(search.id, "completed")
    tiny = glam_tiny()
    ids = completed_trials(
        repo, search.id, [(preset("glam"), 3.1, "glam")] + [(tiny, 3.0 - i / 10, None) for i in range(3)]
    )
    for trial_id, mfu in zip(ids, [0.12, 0.56, 0.58, 0.60], strict=True):
        probe = {"timing_probe": timing_probe(0.8, 0.75, 0.9)} if trial_id == ids[1] else {}
        candidate_run(
            repo,
            search.id,
            trial_id,
            "cpu-small",
            2.5,
            step_time_s=0.1 if mfu > 0.5 else 0.45,
            mfu=mfu,
            params_activated=1e6,
            **probe,
        )
    for trial_id in ids:
        candidate_run(repo, search.id, trial_id, "cpu-tiny", 2.8, step_time_s=0.1, mfu=0.5, params_activated=1e5)

    html = httpx.get(f"{live().url}/searches/{search.id}").text
    speeds = _cells(html, "candidates", "speed")
    assert "1.25x (1.11–1.33)" in speeds  # the probe's 1 / 0.8 and its range [1 / 0.9, 1 / 0.75]
    assert speeds.count("uncertain") == 2  # the two unprobed candidates against the slowed baseline
    losses = _cells(html, "candidates", "rung-loss")
    assert losses and all("± 0.0196" in cell for cell in losses)  # 1.96 x the evaluation stderr 0.01
    mfus = _cells(html, "runs", "l mfu")
    slowed = [cell for cell in mfus if "slowed" in cell]
    assert len(slowed) == 1 and "re-timed 100 ms/step" in slowed[0]  # the baseline, timed at 0.1 s by the probe
    target = re.search(r'<p id="target-scale">(.*?)</p>', html, re.S)
    assert target and "glam baseline's block at 1b-64e" in target.group(1) and "activated parameters" in target.group(1)
    extrapolations = _cells(html, "predictions", "extrapolation")
    assert len(extrapolations) == 4 and all(cell.endswith("x far") for cell in extrapolations)
