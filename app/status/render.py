"""Render the status issue body from a snapshot of Fleet's state (pure: no I/O, no clock).

The caller loads a ``StatusSnapshot`` from Postgres, calls ``render_status`` and writes the body
to GitHub when ``should_edit`` says so. Rendering is deterministic: rows are sorted, and every
relative time is measured from ``snapshot.generated_at``, so the same snapshot always gives the
same body and golden tests are stable.

Relative times ("12m ago", "1h05m left") change on every render even when nothing else does. They
are rendered through ``_clock`` so the body can carry a digest of everything *except* them (the
``fleet:digest`` marker at the end): ``should_edit`` edits at most once per ``min_interval`` for
real changes, and only every ``clock_interval`` when just the clocks moved. This keeps a busy
repository well under GitHub's content-creation limits (500 writes per hour).

The body stays under GitHub's 65,536-character limit (measured in UTF-8 bytes, the strictest
reading): sections are budgeted, and the longest are folded first with an "… and N more" line.
"""
from __future__ import annotations

import hashlib
import heapq
import math
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from typing import Literal

from app.durations import format_duration
from app.gates.check_run import md_warning
from app.markdown import cell, code, link, login
from app.repos.config import StatusConfig
from app.tasks.refs import PRIORITY_NORMAL
from app.status.velocity import DEFAULT_WINDOW, Forecast, ProgressPoint, forecast

MARKER = "<!-- fleet:status v1 -->"
BODY_LIMIT = 65_536
# Room for the digest marker and rounding; sections are budgeted against the rest.
_BUDGET = BODY_LIMIT - 256
BURNDOWN_DAYS = 30
CLOCK_INTERVAL = timedelta(minutes=10)
BAR_WIDTH = 10
# No section lists more rows than this, whatever the budget: nobody reads further, and rendering
# only what can be shown keeps hostile snapshots (thousands of agents or epics) fast.
MAX_ROWS = 200

TaskState = Literal["ready", "blocked", "claimed", "review", "queued", "done"]
QueueState = Literal["updating", "waiting_checks", "merging", "failed"]
TASK_STATES: tuple[TaskState, ...] = ("ready", "blocked", "claimed", "review", "queued", "done")
_STATE_NAMES = {"review": "in review"}
_QUEUE_STATE_NAMES = {
    "updating": "updating",
    "waiting_checks": "waiting for checks",
    "merging": "merging",
    "failed": "failed",
}


@dataclass(frozen=True)
class TaskRow:
    """One task (an open or closed issue Fleet tracks)."""

    number: int
    title: str
    state: TaskState
    url: str = ""
    epic: str | None = None  # EpicRow.id
    estimate_hours: float | None = None
    priority: int = PRIORITY_NORMAL  # 0 is the most urgent (P0), as task_refs.parse_priority
    holder: str | None = None  # agent id holding it, or who completed it when done
    closed_at: datetime | None = None
    blocked_by: tuple[int, ...] = ()  # open dependencies (issue numbers)


@dataclass(frozen=True)
class EpicRow:
    """An epic: a milestone or a parent issue."""

    id: str
    title: str
    url: str = ""


@dataclass(frozen=True)
class ClaimRow:
    task: int
    lease_expires_at: datetime


@dataclass(frozen=True)
class AgentRow:
    """An agent identity: ``login`` or ``login:name`` when several agents share one account."""

    id: str
    claims: tuple[ClaimRow, ...] = ()
    last_activity_at: datetime | None = None
    tasks_done: int = 0
    hours_done: float = 0.0


@dataclass(frozen=True)
class QueueEntry:
    position: int
    pr: int
    title: str
    author: str
    state: QueueState
    queued_at: datetime
    url: str = ""


@dataclass(frozen=True)
class MergeQueue:
    base: str
    entries: tuple[QueueEntry, ...] = ()


@dataclass(frozen=True)
class StatusSnapshot:
    """Everything the status body shows, loaded by the caller in one go."""

    repo: str
    generated_at: datetime
    tasks: Sequence[TaskRow] = ()
    epics: Sequence[EpicRow] = ()
    agents: Sequence[AgentRow] = ()
    queues: Sequence[MergeQueue] = ()
    progress: Sequence[ProgressPoint] = ()  # periodic snapshots, overall (epic=None) and per epic
    velocity_window: timedelta = DEFAULT_WINDOW
    warnings: Sequence[str] = ()  # Fleet's own text about the repository's configuration


# --- small formatting helpers ------------------------------------------------------------------

_CLOCK_OPEN, _CLOCK_CLOSE = "\x02", "\x03"  # cell() strips control characters, so these are ours
_CLOCK_SPAN = re.compile("\x02[^\x03]*\x03")
_DIGEST = re.compile(r"<!-- fleet:digest ([0-9a-f]+) -->")


def _clock(text: str) -> str:
    """Mark text that changes with the passing of time only (see the module docstring)."""
    return f"{_CLOCK_OPEN}{text}{_CLOCK_CLOSE}"


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "—"
    delta = now - _utc(when)
    if delta < timedelta(minutes=1):
        return _clock("just now") if delta > -timedelta(minutes=1) else _clock(f"in {format_duration(-delta)}")
    return _clock(f"{format_duration(delta)} ago")


def _left(until: datetime, now: datetime) -> str:
    delta = _utc(until) - now
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


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p.casefold() for p in re.split(r"(\d+)", text))


def _task_link(number: int, url: str) -> str:
    return link(f"#{number}", url) if url else f"#{number}"


def _table(header: Sequence[str], align: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c if c else " " for c in cells) + " |"


def _size(text: str) -> int:
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
        self._prefix = [0, *accumulate(_size(r) + 1 for r in self.rows)]

    def _fixed(self, shown: int) -> int:
        text = "\n".join(self.head + self.tail)
        extra = self._more_line(shown)
        if not shown and self.empty and not self.total:
            extra += self.empty
        return _size(text) + _size(extra) + 4

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


def _fold(fixed: int, sections: list[_Section], budget: int) -> list[int]:
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
class _Totals:
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


def _overview(snap: StatusSnapshot, overall: _Totals, by_state: dict[str, int]) -> str:
    lines = [
        MARKER,
        "> [!NOTE]",
        f"> Fleet rebuilds this issue from its state for {code(_repo_name(snap.repo), 100)}; edits here are overwritten.",
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
        " · ".join(f"{_STATE_NAMES.get(s, s).capitalize()}: {by_state.get(s, 0):,}" for s in TASK_STATES),
    ]
    if overall.unestimated:
        lines[-1] += f" · without estimate: {overall.unestimated:,}"
    return "\n".join(lines)


def _blockers_text(t: _Totals, limit: int = 5) -> str:
    if not t.blockers:
        return "—"
    shown = sorted(t.blockers)[:limit]
    text = ", ".join(f"#{n}" for n in shown)
    if len(t.blockers) > limit:
        text += f" +{len(t.blockers) - limit}"
    return f"{text} ({t.blocked:,} blocked)"


def _epics_section(epics: list[EpicRow], totals: dict[str | None, _Totals]) -> _Section:
    head = ["## Epics", "", *_table(["Epic", "Tasks", "Hours", "Progress", "Open blockers"],
                                    ["---", "--:", "--:", "---", "---"])]
    items: list[EpicRow | None] = [*epics, None] if None in totals else list(epics)
    rows = []
    for epic in items[:MAX_ROWS]:
        t = totals.get(epic.id if epic else None, _Totals())
        name = link(epic.title, epic.url, 60) if epic else "_No epic_"
        rows.append(_row([name, f"{t.done:,}/{t.tasks:,}", f"{_hours(t.hours_done)}/{_hours(t.hours)}",
                          t.bar(), _blockers_text(t)]))
    return _Section(head, rows, len(items), "epics", empty="_No epics yet._")


def _agents_section(snap: StatusSnapshot, now: datetime, urls: dict[int, str]) -> _Section:
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


def _ready_section(tasks: Sequence[TaskRow], epic_titles: dict[str, str], limit: int) -> _Section:
    ready = [t for t in tasks if t.state == "ready"]
    top = heapq.nsmallest(limit, ready, key=lambda t: (t.priority, t.number))
    head = ["## Ready to claim", "",
            "Comment `/next` on this issue and Fleet assigns you the first one (highest priority first).", "",
            *_table(["Task", "Title", "Priority", "Estimate", "Epic"], ["---", "---", "---", "--:", "---"])]
    rows = [
        _row([_task_link(t.number, t.url), cell(t.title), f"P{t.priority}",
              "?" if t.estimate_hours is None else f"{_hours(t.estimate_hours)} h",
              cell(epic_titles.get(t.epic, ""), 40) if t.epic else "—"])
        for t in top
    ]
    return _Section(head, rows, len(ready), "ready tasks", empty="_Nothing is ready to claim._")


def _queue_sections(snap: StatusSnapshot, now: datetime) -> list[_Section]:
    if not snap.queues:
        return [_Section(["## Merge queue", ""], [], 0, "pull requests", empty="_No pull requests are queued._")]
    sections = []
    for i, queue in enumerate(sorted(snap.queues, key=lambda q: (q.base.casefold(), q.base))):
        head = (["## Merge queue", ""] if i == 0 else []) + [
            f"### Into {code(queue.base, 100)}", "",
            *_table(["Pos", "Pull request", "Author", "State", "In queue"], ["--:", "---", "---", "---", "---"]),
        ]
        rows = [
            _row([str(e.position), f"{_task_link(e.pr, e.url)} {cell(e.title, 60)}", login(e.author),
                  _QUEUE_STATE_NAMES.get(e.state) or cell(e.state, 20), _ago(e.queued_at, now).replace(" ago", "")])
            for e in heapq.nsmallest(MAX_ROWS, queue.entries, key=lambda e: (e.position, e.pr))
        ]
        sections.append(_Section(head, rows, len(queue.entries), "pull requests", empty="_Empty._"))
    return sections


def _recent_section(tasks: Sequence[TaskRow], epic_titles: dict[str, str], now: datetime, limit: int) -> _Section:
    done = [t for t in tasks if t.state == "done"]
    epoch = datetime.min.replace(tzinfo=timezone.utc)
    recent = heapq.nlargest(limit, done, key=lambda t: (_utc(t.closed_at) if t.closed_at else epoch, t.number))
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


def _velocity_section(snap: StatusSnapshot, epics: list[EpicRow], totals: dict[str | None, _Totals],
                      overall: _Totals, now: datetime) -> _Section:
    grouped: dict[str | None, list[ProgressPoint]] = {}
    for p in snap.progress:
        grouped.setdefault(p.epic, []).append(ProgressPoint(_utc(p.at), p.done_hours, p.total_hours, p.epic))
    head = ["## Velocity and ETA", "",
            "Estimated hours completed per day between two progress snapshots; "
            "ETA = remaining hours ÷ velocity.", "",
            *_table(["Scope", "Remaining", "Velocity", "Based on", "ETA"], ["---", "--:", "--:", "---", "---"])]
    rows = [_velocity_cells("**Overall**", forecast(grouped.get(None, []), overall.remaining, now,
                                                     snap.velocity_window), now)]
    for epic in epics[: MAX_ROWS - 1]:
        t = totals.get(epic.id, _Totals())
        fc = forecast(grouped.get(epic.id, []), t.remaining, now, snap.velocity_window)
        rows.append(_velocity_cells(cell(epic.title, 60), fc, now))
    return _Section(head, rows, 1 + len(epics), "epics")


def burndown_series(points: Sequence[ProgressPoint], today: date, days: int = BURNDOWN_DAYS
                    ) -> list[tuple[date, float, float]]:
    """(day, done hours, total hours) at the end of each UTC day, for the last ``days`` days."""
    overall = sorted((p for p in points if p.epic is None), key=lambda p: p.at)
    if not overall:
        return []
    first = _utc(overall[0].at).date()
    start = max(first, today - timedelta(days=days - 1))
    series, i, last = [], 0, None
    day = first
    while day <= today:
        while i < len(overall) and _utc(overall[i].at).date() <= day:
            last = overall[i]
            i += 1
        if day >= start and last is not None:
            series.append((day, last.done_hours, last.total_hours))
        day += timedelta(days=1)
    return series


def _burndown(snap: StatusSnapshot, now: datetime) -> _Section:
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


# --- public API --------------------------------------------------------------------------------


def render_status(snapshot: StatusSnapshot, config: StatusConfig) -> str:
    """The full status issue body for ``snapshot``: deterministic, under ``BODY_LIMIT``."""
    now = _utc(snapshot.generated_at)
    epics = sorted(snapshot.epics, key=lambda e: (_natural(e.id), e.id))
    epic_ids = {e.id for e in epics}
    epic_titles = {e.id: e.title for e in epics}
    overall = _Totals()
    totals: dict[str | None, _Totals] = {}
    by_state: dict[str, int] = {}
    urls: dict[int, str] = {}
    for task in snapshot.tasks:
        overall.add(task)
        key = task.epic if task.epic in epic_ids else None
        (totals.get(key) or totals.setdefault(key, _Totals())).add(task)
        by_state[task.state] = by_state.get(task.state, 0) + 1
        if task.url:
            urls[task.number] = task.url

    fixed = _overview(snapshot, overall, by_state)
    sections = [
        _epics_section(epics, totals),
        _agents_section(snapshot, now, urls),
        _ready_section(snapshot.tasks, epic_titles, config.ready_limit),
        *_queue_sections(snapshot, now),
        _recent_section(snapshot.tasks, epic_titles, now, config.recent_limit),
        _velocity_section(snapshot, epics, totals, overall, now),
        _burndown(snapshot, now),
    ]
    shown = _fold(_size(fixed) + 2, sections, _BUDGET)
    body = "\n\n".join([fixed, *(s.render(n) for s, n in zip(sections, shown))]) + "\n"
    stable = _CLOCK_SPAN.sub("~", body)
    body = body.replace(_CLOCK_OPEN, "").replace(_CLOCK_CLOSE, "")
    digest = hashlib.sha256(stable.encode("utf-8")).hexdigest()[:16]
    body += f"\n<!-- fleet:digest {digest} -->\n"
    if _size(body) > BODY_LIMIT:  # cannot happen with the budget above; never send a body GitHub rejects
        raise AssertionError(f"status body is {_size(body)} bytes, over {BODY_LIMIT}")
    return body


def _normalise(body: str | None) -> str:
    return (body or "").replace("\r\n", "\n").rstrip()


def body_changed(old: str | None, new: str) -> bool:
    """True when ``new`` differs from the body on GitHub (line endings and trailing space ignored)."""
    return _normalise(old) != _normalise(new)


def content_digest(body: str | None) -> str | None:
    """The digest of the body without its relative times, or None for a body Fleet did not render."""
    match = _DIGEST.search(body or "")
    return match.group(1) if match else None


def should_edit(
    last_edit_at: datetime | None,
    now: datetime,
    min_interval: timedelta,
    old_body: str | None,
    new_body: str,
    clock_interval: timedelta = CLOCK_INTERVAL,
) -> bool | timedelta:
    """Decide whether to write ``new_body`` now.

    Returns False when there is nothing to write, True to edit now, or a (positive) timedelta: the
    body changed but the last edit was too recent, so try again after that delay (coalescing a
    burst of events into one edit). Real changes wait at most ``min_interval`` since the last
    edit; changes to relative times alone wait ``max(min_interval, clock_interval)``.
    Callers must test ``isinstance(result, timedelta)`` before truthiness.
    """
    if not body_changed(old_body, new_body):
        return False
    if last_edit_at is None or old_body is None:
        return True
    interval = min_interval
    old_digest = content_digest(old_body)
    if old_digest is not None and old_digest == content_digest(new_body):
        interval = max(min_interval, clock_interval)
    wait = _utc(last_edit_at) + interval - _utc(now)
    return True if wait <= timedelta(0) else wait


def _repo_name(full_name: str) -> str:
    """GitHub repository names only hold letters, digits, ``.``, ``_``, ``-`` (and the owner ``/``)."""
    return re.sub(r"[^A-Za-z0-9._/-]", "", full_name)
