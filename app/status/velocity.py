"""Velocity and ETA from periodic progress snapshots (pure arithmetic, no I/O).

A snapshot records, at one moment, the estimated hours done so far (cumulative) and the total
estimated hours, for the whole repository (``epic=None``) or for one epic. Velocity is the
estimated hours completed per day between a baseline snapshot and the latest one; the ETA divides
the remaining hours by it. Every result carries the numbers it was computed from, so the status
issue can show them and a reader can check the arithmetic.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

DEFAULT_WINDOW = timedelta(days=7)
# Below this span between baseline and latest snapshot a rate is noise, not a velocity.
MIN_SPAN = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True)
class ProgressPoint:
    """One periodic snapshot: cumulative estimated hours done and total estimated hours."""

    at: datetime
    done_hours: float
    total_hours: float
    epic: str | None = None  # None: the whole repository

    @property
    def remaining_hours(self) -> float:
        return max(0.0, self.total_hours - self.done_hours)


@dataclass(frozen=True)
class Velocity:
    """Hours completed per day, and the two snapshots it was measured between."""

    hours_per_day: float
    start: ProgressPoint | None
    end: ProgressPoint | None
    snapshots: int  # snapshots inside [start, end]
    basis: str  # "last 7d", "all history (2d4h)", or why there is no velocity
    ok: bool  # False when there was too little data to measure anything

    @property
    def hours_done(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return self.end.done_hours - self.start.done_hours

    @property
    def days(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        return (self.end.at - self.start.at) / DAY


@dataclass(frozen=True)
class Forecast:
    """Remaining hours, the velocity used, and the ETA (None with a reason when there is none)."""

    remaining_hours: float
    velocity: Velocity
    eta: datetime | None
    days_left: float | None
    reason: str | None  # set whenever eta is None, or "done" when nothing remains


def _window_label(window: timedelta) -> str:
    if window % DAY == timedelta(0):
        return f"last {window // DAY}d"
    return f"last {window.total_seconds() / 3600:g}h"


def _span_label(span: timedelta) -> str:
    days, rest = divmod(int(span.total_seconds()), 86400)
    hours = rest // 3600
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{(rest % 3600) // 60:02d}m"


def compute_velocity(
    points: Iterable[ProgressPoint], now: datetime, window: timedelta = DEFAULT_WINDOW
) -> Velocity:
    """Velocity over ``window`` ending at the latest snapshot taken at or before ``now``.

    The baseline is the latest snapshot at or before ``now - window``, so the window is fully
    covered; when history is shorter than the window, the earliest snapshot is the baseline
    ("all history"). Fewer than two snapshots, or less than an hour between baseline and latest,
    gives 0 with ``ok=False``. Done hours going down (a task reopened, an estimate cut) counts as
    no progress rather than negative velocity.
    """
    pts = sorted((p for p in points if p.at <= now), key=lambda p: p.at)
    if len(pts) < 2:
        return Velocity(0.0, pts[-1] if pts else None, pts[-1] if pts else None, len(pts),
                        "need two snapshots", ok=False)
    end = pts[-1]
    cutoff = end.at - window
    before = [p for p in pts if p.at <= cutoff]
    if before:
        start, basis = before[-1], _window_label(window)
    else:
        start = pts[0]
        basis = f"all history ({_span_label(end.at - start.at)})"
    span = end.at - start.at
    used = sum(1 for p in pts if start.at <= p.at <= end.at)
    if span < MIN_SPAN:
        return Velocity(0.0, start, end, used, f"history too short ({_span_label(span)})", ok=False)
    rate = max(0.0, end.done_hours - start.done_hours) / (span / DAY)
    return Velocity(rate, start, end, used, basis, ok=True)


def forecast(
    points: Sequence[ProgressPoint],
    remaining_hours: float,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> Forecast:
    """ETA for ``remaining_hours`` at the velocity measured from ``points``.

    ``remaining_hours`` comes from the current tasks (fresher than the last snapshot). The ETA is
    ``now + remaining / velocity``; it is None, with a reason, when velocity is 0 or unknown.
    """
    vel = compute_velocity(points, now, window)
    remaining = max(0.0, remaining_hours)
    if remaining == 0:
        return Forecast(0.0, vel, now, 0.0, "done")
    if not vel.ok:
        return Forecast(remaining, vel, None, None, vel.basis)
    if vel.hours_per_day <= 0:
        return Forecast(remaining, vel, None, None, f"no progress in {vel.basis}")
    days_left = remaining / vel.hours_per_day
    try:
        eta = now + timedelta(days=days_left)
    except OverflowError:
        return Forecast(remaining, vel, None, days_left, "beyond the calendar at this pace")
    return Forecast(remaining, vel, eta, days_left, None)


def forecasts_by_epic(
    points: Iterable[ProgressPoint],
    remaining_by_epic: dict[str | None, float],
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> dict[str | None, Forecast]:
    """One forecast per key of ``remaining_by_epic`` (``None`` is the whole repository)."""
    grouped: dict[str | None, list[ProgressPoint]] = {}
    for p in points:
        grouped.setdefault(p.epic, []).append(p)
    return {
        epic: forecast(grouped.get(epic, []), remaining, now, window)
        for epic, remaining in remaining_by_epic.items()
    }
