"""What the status issue shows: the snapshot's rows and the body's limits (pure data).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from app.tasks.refs import PRIORITY_NORMAL
from app.status.velocity import DEFAULT_WINDOW, ProgressPoint


MARKER = "<!-- fleet:status v1 -->"
BODY_LIMIT = 65_536
# Room for the digest marker and rounding; sections are budgeted against the rest.
BUDGET = BODY_LIMIT - 256
BURNDOWN_DAYS = 30
CLOCK_INTERVAL = timedelta(minutes=10)
BAR_WIDTH = 10
# No section lists more rows than this, whatever the budget: nobody reads further, and rendering
# only what can be shown keeps hostile snapshots (thousands of agents or epics) fast.
MAX_ROWS = 200

TaskState = Literal["ready", "blocked", "claimed", "review", "queued", "done"]
QueueState = Literal["updating", "waiting_checks", "merging", "failed", "in_group"]
TASK_STATES: tuple[TaskState, ...] = ("ready", "blocked", "claimed", "review", "queued", "done")
STATE_NAMES = {"review": "in review"}
QUEUE_STATE_NAMES = {
    "updating": "updating",
    "waiting_checks": "waiting for checks",
    "merging": "merging",
    "failed": "failed",
    "in_group": "testing in a merge group",
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
    mode: str = ""  # said only when the repository asks for merge groups (QueueConfig.mode_text)


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
