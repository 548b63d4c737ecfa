"""The status issue's sections (overview, epics, agents, ready, queues, recent, velocity,
burndown) and the body budget that folds the longest ones first (pure).
"""
from __future__ import annotations

import heapq
import math
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate

from app.durations import format_duration
from app.gates.check_run import md_warning
from app.markdown import cell, code, link, login
from app.replies import marker
from app.status.velocity import Forecast, ProgressPoint, forecast
from app.status.rows import (
    BAR_WIDTH, BURNDOWN_DAYS, EpicRow, MARKER, MAX_ROWS, StatusSnapshot, TASK_STATES, TaskRow,
    QUEUE_STATE_NAMES, STATE_NAMES,
)


# --- small formatting helpers ------------------------------------------------------------------

CLOCK_OPEN, CLOCK_CLOSE = "\x02", "\x03"  # cell() strips control characters, so these are ours
CLOCK_SPAN = re.compile("\x02[^\x03]*\x03")
DIGEST = re.compile(r"<!-- fleet:digest ([0-9a-f]+) -->")


def _clock(text: str) -> str:
    """Mark text that changes with the passing of time only (see the module docstring)."""
    return f"{CLOCK_OPEN}{text}{CLOCK_CLOSE}"


def utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "—"
    delta = now - utc(when)
    if delta < timedelta(minutes=1):
        return _clock("just now") if delta > -timedelta(minutes=1) else _clock(f"in {format_duration(-delta)}")
    return _clock(f"{format_duration(delta)} ago")


def _left(until: datetime, now: datetime) -> str:
    delta = utc(until) - now
    if delta <= timedelta(0):
        return _clock(f"expired {format_duration(-delta)} ago") if delta < -timedelta(minutes=1) else _clock("expiring")
    return _clock(format_duration(delta))


def _hours(value: float) -> str:
    if not math.isfinite(value):
        return "?"
    text = f"{value:,.1f}"
    return text[:-2] if text.endswith(".0") else text


def _num(value: float) -> str:
    """A number for mermaid: no thousands separators."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def progress_bar(done: float, total: float, width: int = BAR_WIDTH) -> str:
    """``▓▓▓▓░░░░░░ 40%``; rounds down, so 100% means everything is done."""
    ratio = 0.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = math.floor(ratio * width + 1e-9)
    percent = math.floor(ratio * 100 + 1e-9)
    return "▓" * filled + "░" * (width - filled) + f" {percent}%"


def natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p.casefold() for p in re.split(r"(\d+)", text))


def _task_link(number: int, url: str) -> str:
    return link(f"#{number}", url) if url else f"#{number}"


def _table(header: Sequence[str], align: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c if c else " " for c in cells) + " |"


def size(text: str) -> int:
    return len(text.encode("utf-8"))


# --- sections and the body budget --------------------------------------------------------------


@dataclass
class _Section:
    """A block whose rows can be folded: head lines, rows, an "… and N more" line, tail lines."""

    head: list[str]
    rows: list[str]
    total: int  # items that exist; may exceed len(rows) when a config limit applies
    noun: str
    tail: list[str] = field(default_factory=list)
    empty: str | None = None
    _prefix: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._prefix = [0, *accumulate(size(r) + 1 for r in self.rows)]

    def _fixed(self, shown: int) -> int:
        text = "\n".join(self.head + self.tail)
        extra = self._more_line(shown)
        if not shown and self.empty and not self.total:
            extra += self.empty
        return size(text) + size(extra) + 4

    def _more_line(self, shown: int) -> str:
        more = self.total - shown
        return f"\n_… and {more:,} more {self.noun}_\n" if more > 0 else ""

    def size(self, shown: int) -> int:
        return self._fixed(shown) + self._prefix[shown]

    def fit(self, cap: int) -> int:
        """The most rows whose rendering is at most ``cap`` bytes (0 if even the frame is larger)."""
        n = bisect_right(self._prefix, cap - self._fixed(0)) - 1
        n = max(0, min(n, len(self.rows)))
        while n > 0 and self.size(n) > cap:
            n -= 1
        return n

    def render(self, shown: int) -> str:
        lines = list(self.head)
        if not self.rows and self.empty and not self.total:
            lines = [line for line in lines if not line.startswith("|")] + [self.empty]
        elif shown == 0 and self.rows:
            lines = [line for line in lines if not line.startswith("|")]
        else:
            lines += self.rows[:shown]
        more = self._more_line(shown)
        if more:
            lines.append(more.rstrip("\n"))  # blank line first: a plain line right after a table joins it
        lines += self.tail
        return "\n".join(lines)


def fold(fixed: int, sections: list[_Section], budget: int) -> list[int]:
    """Rows to show per section so the body fits ``budget``, trimming the longest sections first.

    Finds the largest per-section cap C with sum(min(size_i, C)) within budget (water filling):
    short sections stay whole and only those longer than C are folded.
    """
    full = [len(s.rows) for s in sections]
    if fixed + sum(s.size(n) + 2 for s, n in zip(sections, full)) <= budget:
        return full
    lo, hi = 0, max(s.size(n) for s, n in zip(sections, full))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        used = fixed + sum(s.size(s.fit(mid)) + 2 for s in sections)
        if used <= budget:
            lo = mid
        else:
            hi = mid - 1
    return [s.fit(lo) for s in sections]


# --- the sections ------------------------------------------------------------------------------


@dataclass
class Totals:
    tasks: int = 0
    done: int = 0
    hours: float = 0.0
    hours_done: float = 0.0
    unestimated: int = 0
    blockers: set[int] = field(default_factory=set)
    blocked: int = 0

    def add(self, task: TaskRow) -> None:
        self.tasks += 1
        est = task.estimate_hours
        if est is None or not math.isfinite(est) or est < 0:
            self.unestimated += 1
            est = 0.0
        self.hours += est
        if task.state == "done":
            self.done += 1
            self.hours_done += est
        else:
            if task.blocked_by:
                self.blocked += 1
                self.blockers.update(task.blocked_by)

    @property
    def remaining(self) -> float:
        return max(0.0, self.hours - self.hours_done)

    def bar(self) -> str:
        if self.hours > 0:
            return progress_bar(self.hours_done, self.hours)
        return progress_bar(self.done, self.tasks)


def overview(snap: StatusSnapshot, overall: Totals, by_state: dict[str, int]) -> str:
    lines = [
        MARKER,
        "> [!NOTE]",
        f"> Fleet rebuilds this issue from its state for {code(repo_name(snap.repo), 100)}; edits here are overwritten.",
        "> Comment `/next` here to be assigned the top ready task, or `/help` for every command.",
        "",
        *(line for warning in snap.warnings for line in (md_warning(warning), "")),
        "## Overall",
        "",
        *_table(["", "Done", "Total", "Progress"], ["---", "--:", "--:", "---"]),
        _row(["Tasks", f"{overall.done:,}", f"{overall.tasks:,}", progress_bar(overall.done, overall.tasks)]),
        _row(["Estimated hours", _hours(overall.hours_done), _hours(overall.hours),
              progress_bar(overall.hours_done, overall.hours)]),
        "",
        " · ".join(f"{STATE_NAMES.get(s, s).capitalize()}: {by_state.get(s, 0):,}" for s in TASK_STATES),
    ]
    if overall.unestimated:
        lines[-1] += f" · without estimate: {overall.unestimated:,}"
    return "\n".join(lines)


def _blockers_text(t: Totals, limit: int = 5) -> str:
    if not t.blockers:
        return "—"
    shown = sorted(t.blockers)[:limit]
    text = ", ".join(f"#{n}" for n in shown)
    if len(t.blockers) > limit:
        text += f" +{len(t.blockers) - limit}"
    return f"{text} ({t.blocked:,} blocked)"


def epics_section(epics: list[EpicRow], totals: dict[str | None, Totals]) -> _Section:
    head = ["## Epics", "", *_table(["Epic", "Tasks", "Hours", "Progress", "Open blockers"],
                                    ["---", "--:", "--:", "---", "---"])]
    items: list[EpicRow | None] = [*epics, None] if None in totals else list(epics)
    rows = []
    for epic in items[:MAX_ROWS]:
        t = totals.get(epic.id if epic else None, Totals())
        name = link(epic.title, epic.url, 60) if epic else "_No epic_"
        rows.append(_row([name, f"{t.done:,}/{t.tasks:,}", f"{_hours(t.hours_done)}/{_hours(t.hours)}",
                          t.bar(), _blockers_text(t)]))
    return _Section(head, rows, len(items), "epics", empty="_No epics yet._")


def agents_section(snap: StatusSnapshot, now: datetime, urls: dict[int, str]) -> _Section:
    head = ["## Agents", "", *_table(["Agent", "Claims", "Lease left", "Last activity", "Done", "Hours done"],
                                     ["---", "---", "---", "---", "--:", "--:"])]
    rows = []
    agents = heapq.nsmallest(MAX_ROWS, snap.agents, key=lambda a: (a.id.casefold(), a.id))
    for agent in agents:
        claims = sorted(agent.claims, key=lambda c: (c.task, c.lease_expires_at))
        shown = claims[:5]
        extra = f" +{len(claims) - 5}" if len(claims) > 5 else ""
        rows.append(_row([
            login(agent.id),
            (", ".join(_task_link(c.task, urls.get(c.task, "")) for c in shown) + extra) or "—",
            (", ".join(_left(c.lease_expires_at, now) for c in shown) + extra) or "—",
            _ago(agent.last_activity_at, now),
            f"{agent.tasks_done:,}",
            _hours(agent.hours_done),
        ]))
    return _Section(head, rows, len(snap.agents), "agents", empty="_No agents have claimed anything yet._")


READY_MARKER_LIMIT = 100  # ready task numbers in the section's hidden marker


def ready_section(tasks: Sequence[TaskRow], epic_titles: dict[str, str], limit: int) -> _Section:
    ready = [t for t in tasks if t.state == "ready"]
    top = heapq.nsmallest(limit, ready, key=lambda t: (t.priority, t.number))
    # For agents: the ready tasks' numbers in the order /next hands them out (no labels needed).
    listed = heapq.nsmallest(READY_MARKER_LIMIT, ready, key=lambda t: (t.priority, t.number))
    head = ["## Ready to claim", "", marker({"ready": [t.number for t in listed]}),
            "Comment `/next` on this issue and Fleet assigns you the first one (highest priority first).", "",
            *_table(["Task", "Title", "Priority", "Estimate", "Epic"], ["---", "---", "---", "--:", "---"])]
    rows = [
        _row([_task_link(t.number, t.url), cell(t.title), f"P{t.priority}",
              "?" if t.estimate_hours is None else f"{_hours(t.estimate_hours)} h",
              cell(epic_titles.get(t.epic, ""), 40) if t.epic else "—"])
        for t in top
    ]
    return _Section(head, rows, len(ready), "ready tasks", empty="_Nothing is ready to claim._")


def queue_sections(snap: StatusSnapshot, now: datetime) -> list[_Section]:
    if not snap.queues:
        return [_Section(["## Merge queue", ""], [], 0, "pull requests", empty="_No pull requests are queued._")]
    sections = []
    for i, queue in enumerate(sorted(snap.queues, key=lambda q: (q.base.casefold(), q.base))):
        head = (["## Merge queue", ""] if i == 0 else []) + [
            f"### Into {code(queue.base, 100)}", "",
            *([f"Mode: {cell(queue.mode, 300)}", ""] if queue.mode else []),
            *_table(["Pos", "Pull request", "Author", "State", "In queue"], ["--:", "---", "---", "---", "---"]),
        ]
        rows = [
            _row([str(e.position), f"{_task_link(e.pr, e.url)} {cell(e.title, 60)}", login(e.author),
                  QUEUE_STATE_NAMES.get(e.state) or cell(e.state, 20), _ago(e.queued_at, now).replace(" ago", "")])
            for e in heapq.nsmallest(MAX_ROWS, queue.entries, key=lambda e: (e.position, e.pr))
        ]
        sections.append(_Section(head, rows, len(queue.entries), "pull requests", empty="_Empty._"))
    return sections


def recent_section(tasks: Sequence[TaskRow], epic_titles: dict[str, str], now: datetime, limit: int) -> _Section:
    done = [t for t in tasks if t.state == "done"]
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    recent = heapq.nlargest(limit, done, key=lambda t: (utc(t.closed_at) if t.closed_at else epoch, t.number))
    head = ["## Recently completed", "",
            *_table(["Task", "Title", "Epic", "Estimate", "Done by", "Closed"], ["---", "---", "---", "--:", "---", "---"])]
    rows = [
        _row([_task_link(t.number, t.url), cell(t.title), cell(epic_titles.get(t.epic, ""), 40) if t.epic else "—",
              "?" if t.estimate_hours is None else f"{_hours(t.estimate_hours)} h",
              login(t.holder) if t.holder else "—", _ago(t.closed_at, now)])
        for t in recent
    ]
    return _Section(head, rows, len(rows), "completed tasks", empty="_Nothing completed yet._")


def _velocity_cells(label: str, fc: Forecast, now: datetime) -> str:
    vel = fc.velocity
    if vel.ok and vel.start and vel.end:
        based = (f"{'+' if vel.hours_done >= 0 else ''}{_hours(vel.hours_done)} h in {vel.days:.1f} days "
                 f"({vel.start.at:%m-%d %H:%M} → {vel.end.at:%m-%d %H:%M} UTC, {vel.snapshots} snapshots, {vel.basis})")
        speed = f"{_hours(round(vel.hours_per_day, 1))} h/day"
    else:
        based, speed = vel.basis, "—"
    if fc.reason == "done":
        eta = "done"
    elif fc.eta is not None:
        eta = f"{fc.eta:%Y-%m-%d} ({_clock('in ' + format_duration(fc.eta - now))})"
    elif vel.ok:
        eta = f"— ({fc.reason})"
    else:
        eta = "—"  # the reason is already in "Based on"
    return _row([label, f"{_hours(round(fc.remaining_hours, 1))} h", speed, based, eta])


def velocity_section(snap: StatusSnapshot, epics: list[EpicRow], totals: dict[str | None, Totals],
                      overall: Totals, now: datetime) -> _Section:
    grouped: dict[str | None, list[ProgressPoint]] = {}
    for p in snap.progress:
        grouped.setdefault(p.epic, []).append(ProgressPoint(utc(p.at), p.done_hours, p.total_hours, p.epic))
    head = ["## Velocity and ETA", "",
            "Estimated hours completed per day between two progress snapshots; "
            "ETA = remaining hours ÷ velocity.", "",
            *_table(["Scope", "Remaining", "Velocity", "Based on", "ETA"], ["---", "--:", "--:", "---", "---"])]
    rows = [_velocity_cells("**Overall**", forecast(grouped.get(None, []), overall.remaining, now,
                                                     snap.velocity_window), now)]
    for epic in epics[: MAX_ROWS - 1]:
        t = totals.get(epic.id, Totals())
        fc = forecast(grouped.get(epic.id, []), t.remaining, now, snap.velocity_window)
        rows.append(_velocity_cells(cell(epic.title, 60), fc, now))
    return _Section(head, rows, 1 + len(epics), "epics")


def burndown_series(points: Sequence[ProgressPoint], today: date, days: int = BURNDOWN_DAYS
                    ) -> list[tuple[date, float, float]]:
    """(day, done hours, total hours) at the end of each UTC day, for the last ``days`` days."""
    overall = sorted((p for p in points if p.epic is None), key=lambda p: p.at)
    if not overall:
        return []
    first = utc(overall[0].at).date()
    start = max(first, today - timedelta(days=days - 1))
    series, i, last = [], 0, None
    day = first
    while day <= today:
        while i < len(overall) and utc(overall[i].at).date() <= day:
            last = overall[i]
            i += 1
        if day >= start and last is not None:
            series.append((day, last.done_hours, last.total_hours))
        day += timedelta(days=1)
    return series


def burndown(snap: StatusSnapshot, now: datetime) -> _Section:
    series = burndown_series(snap.progress, now.date())
    head = ["## Burndown", ""]
    if len(series) >= 2:
        remaining = [max(0.0, total - done) for _, done, total in series]
        top = max(1, math.ceil(max(remaining)))
        head += [
            "```mermaid",
            "xychart-beta",
            '    title "Remaining estimated hours"',
            "    x-axis [" + ", ".join(f'"{d:%m-%d}"' for d, _, _ in series) + "]",
            f'    y-axis "Hours" 0 --> {top}',
            "    line [" + ", ".join(_num(r) for r in remaining) + "]",
            "```",
            "",
        ]
    elif series:
        head += ["_The chart appears once there are snapshots from two different days._", ""]
    head += _table(["Day (UTC)", "Done h", "Total h", "Remaining h"], ["---", "--:", "--:", "--:"])
    rows = [_row([f"{d:%Y-%m-%d}", _hours(done), _hours(total), _hours(max(0.0, total - done))])
            for d, done, total in reversed(series)]
    return _Section(head, rows, len(rows), "days", empty="_No progress snapshots yet._")



def repo_name(full_name: str) -> str:
    """GitHub repository names only hold letters, digits, ``.``, ``_``, ``-`` (and the owner ``/``)."""
    return re.sub(r"[^A-Za-z0-9._/-]", "", full_name)

