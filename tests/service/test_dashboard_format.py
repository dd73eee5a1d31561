"""The dashboard's number formats (``service._ui_format``): units, rounding and missing values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from service._ui_format import (
    FILTERS,
    MISSING,
    fmt_delta,
    fmt_duration,
    fmt_loss,
    fmt_metric,
    fmt_ms,
    fmt_rate,
    fmt_when,
    metric_label,
)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.04, "0.0 s"),
        (4.25, "4.2 s"),
        (10, "10 s"),
        (60, "1 min"),
        (112, "1 min 52 s"),
        (3600, "1 h"),
        (7384, "2 h 3 min"),
        (90061, "1 d 1 h"),
        (None, MISSING),
        (float("nan"), MISSING),
    ],
)
def test_durations_read_like_a_person_writes_them(seconds: float | None, shown: str) -> None:
    assert fmt_duration(seconds) == shown


def test_losses_times_and_rates() -> None:
    """Pass: losses to 4 decimals, step times in ms (s from a second), throughput with K/M, None as a dash."""
    assert fmt_loss(2.5119068920612335) == "2.5119" and fmt_loss(None) == MISSING and fmt_loss(float("nan")) == "NaN"
    assert fmt_ms(0.0123456) == "12.3 ms" and fmt_ms(1.2345) == "1.23 s" and fmt_ms(None) == MISSING
    assert fmt_rate(12345.6) == "12.3K tok/s" and fmt_rate(None) == MISSING


def test_deltas_absolute_and_relative() -> None:
    assert fmt_delta(3.1, 3.2) == "-0.1000" and fmt_delta(3.3, 3.2) == "+0.1000"
    assert fmt_delta(150, 100, "rel") == "+50.0%" and fmt_delta(1, 0, "rel") == ""
    assert fmt_delta(None, 1.0) == "" and fmt_delta(1.0, None) == ""


def test_metrics_by_name() -> None:
    """Pass: a metric's name picks its unit: bytes as MiB, counts as K/M, FLOPs with SI prefixes, fractions as %."""
    assert fmt_metric("memory_bytes", 35749632) == "34.09 MiB"
    assert fmt_metric("params_total", 1_883_000_000) == "1.88B"
    assert fmt_metric("flops_per_token", 6.04e10) == "60.4 GFLOP"
    assert fmt_metric("mfu", 0.0123) == "1.2%" and fmt_metric("max_load_ratio", 1.3212) == "1.32×"
    assert fmt_metric("steps", 12000) == "12,000" and fmt_metric("device", "cpu") == "cpu"
    assert fmt_metric("something_new", 0.123456789) == "0.1235" and fmt_metric("val_loss", None) == MISSING
    assert metric_label("step_time_s") == "step time (median)" and metric_label("new_thing") == "new thing"
    assert fmt_metric("activation_checkpointing", True) == "on" and fmt_metric("micro_batch", 16) == "16"


def test_the_memory_plan_cell() -> None:
    """Pass: the leaderboard's micro-batch cell: the sequences per forward, "ckpt" when blocks were recomputed,
    empty for a run that recorded no plan."""
    plan = FILTERS["memory_plan"]
    assert plan({"micro_batch": 16, "activation_checkpointing": False}) == "16"
    assert plan({"micro_batch": 4, "activation_checkpointing": True}) == "4 ckpt"
    assert plan({}) == ""


def test_times_are_shown_in_utc() -> None:
    t = datetime(2025, 12, 1, 4, 32, 59, tzinfo=timezone(timedelta(hours=2)))
    assert fmt_when(t) == "2025-12-01 02:32" and fmt_when(datetime(2025, 1, 2, tzinfo=UTC)) == "2025-01-02 00:00"
    assert fmt_when(None) == MISSING


def test_run_formats_devices_checkpoints_and_labels() -> None:
    """Pass: a run's devices read "2 x fsdp2" (one device "1", a missing count one), a checkpoint on disk reads its
    step, UTC time and size, and the run fields of the trial page have labels."""
    from types import SimpleNamespace

    from brainsearch._format import fmt_checkpoint, fmt_devices, fmt_unix_time

    assert fmt_devices(2, "fsdp2") == "2 x fsdp2" and fmt_devices(1, None) == "1" and fmt_devices(None, None) == "1"
    assert FILTERS["devices"](SimpleNamespace(devices=4, sharding="fsdp2")) == "4 x fsdp2"
    assert fmt_unix_time(1_800_000_000) == "2027-01-15 08:00:00" and fmt_unix_time(0) == ""
    assert FILTERS["unix_time"](None) == MISSING
    assert fmt_checkpoint(200, 1_800_000_000, 3 * 2**30) == "step 200 (2027-01-15 08:00:00, 3.00 GiB)"
    assert fmt_checkpoint(8, 0, 512) == "step 8 (512 B)"  # a marker without its time
    assert FILTERS["percent"](0.412) == "41.2%" and FILTERS["percent"](None) == MISSING
    assert metric_label("checkpoint_count") == "checkpoints saved" and metric_label("recipe") == "training recipe"
    assert fmt_metric("sharding", None) == "none" and fmt_metric("devices", 2) == "2"
