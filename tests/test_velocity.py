"""Velocity (estimated hours done per day) and ETA from periodic progress snapshots."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.status.velocity import ProgressPoint, compute_velocity, forecast, forecasts_by_epic

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def point(days_ago: float, done: float, total: float = 100.0, epic: str | None = None) -> ProgressPoint:
    return ProgressPoint(NOW - timedelta(days=days_ago), done, total, epic)


def test_window_baseline_is_the_last_snapshot_before_the_window() -> None:
    """Over a 7-day window the baseline is the latest snapshot at or before the window start."""
    points = [point(d, 100 - d * 5, 200) for d in range(15)]  # 5 h/day every day
    vel = compute_velocity(points, NOW)
    assert vel.ok and vel.basis == "last 7d"
    assert vel.start == points[7] and vel.end == points[0]
    assert vel.hours_done == 35 and vel.days == 7
    assert vel.hours_per_day == pytest.approx(5.0)
    assert vel.snapshots == 8


def test_short_history_falls_back_to_all_of_it() -> None:
    """With three days of history the whole history is used and the basis says so."""
    vel = compute_velocity([point(3, 10), point(1, 20), point(0, 40)], NOW)
    assert vel.ok and vel.basis == "all history (3d0h)"
    assert vel.hours_per_day == pytest.approx(10.0)


def test_recent_burst_counts_over_the_window_not_since_the_last_snapshot() -> None:
    """Sparse snapshots: the baseline may lie before the window, and the span is measured exactly."""
    vel = compute_velocity([point(10, 0), point(0, 20)], NOW)
    assert vel.days == 10 and vel.hours_per_day == pytest.approx(2.0)


@pytest.mark.parametrize("points, basis", [
    ([], "need two snapshots"),
    ([point(0, 5)], "need two snapshots"),
    ([point(0.01, 5), point(0, 6)], "history too short (0h14m)"),
])
def test_too_little_data_gives_no_velocity(points: list[ProgressPoint], basis: str) -> None:
    """Fewer than two snapshots, or less than an hour between them, is not a velocity."""
    vel = compute_velocity(points, NOW)
    assert not vel.ok and vel.hours_per_day == 0 and vel.basis == basis
    fc = forecast(points, 50, NOW)
    assert fc.eta is None and fc.reason == basis


def test_future_snapshots_are_ignored() -> None:
    """Snapshots stamped after `now` (clock skew) do not count."""
    vel = compute_velocity([point(2, 0), point(0, 10), point(-1, 1000)], NOW)
    assert vel.end == point(0, 10) and vel.hours_per_day == pytest.approx(5.0)


def test_reopened_work_is_no_progress_not_negative_velocity() -> None:
    """Done hours going down (a task reopened) gives velocity 0 and no ETA, with a reason."""
    points = [point(3, 50), point(0, 40)]
    assert compute_velocity(points, NOW).hours_per_day == 0
    fc = forecast(points, 60, NOW)
    assert fc.eta is None and fc.reason == "no progress in all history (3d0h)"


def test_eta_is_remaining_over_velocity() -> None:
    """ETA = now + remaining / velocity, with the days left."""
    fc = forecast([point(4, 0), point(0, 20)], 50, NOW)
    assert fc.velocity.hours_per_day == pytest.approx(5.0)
    assert fc.days_left == pytest.approx(10.0)
    assert fc.eta == NOW + timedelta(days=10)
    assert fc.reason is None


def test_nothing_remaining_is_done_now() -> None:
    """When nothing remains the ETA is now, whatever the velocity."""
    fc = forecast([], 0, NOW)
    assert fc.eta == NOW and fc.reason == "done" and fc.days_left == 0


def test_absurd_eta_does_not_overflow() -> None:
    """A crawl (tiny velocity, huge remaining work) gives no date instead of crashing."""
    fc = forecast([point(7, 0), point(0, 1e-9)], 1e12, NOW)
    assert fc.eta is None and fc.reason == "beyond the calendar at this pace"


def test_per_epic_forecasts_use_their_own_snapshots() -> None:
    """Each epic is measured from its own snapshots; None is the whole repository."""
    points = [point(2, 0), point(0, 20), point(2, 0, epic="a"), point(0, 2, epic="a")]
    result = forecasts_by_epic(points, {None: 100, "a": 10, "b": 5}, NOW)
    assert result[None].velocity.hours_per_day == pytest.approx(10.0)
    assert result["a"].velocity.hours_per_day == pytest.approx(1.0)
    assert result["a"].days_left == pytest.approx(10.0)
    assert result["b"].eta is None and result["b"].reason == "need two snapshots"
