"""The merge queue's state: entries, the queue snapshot, the actions a decision returns, and
``transition``, the matching change of an entry's row for each action (pure).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, Union


Priority = Literal["high", "normal", "low"]
EntryState = Literal["queued", "updating", "waiting_checks", "merging", "merged", "failed", "dequeued"]
ReasonCode = Literal[
    "not_found", "closed", "draft", "base_changed", "head_changed", "conflict", "gates_failed",
    "checks_failed", "ci_timeout", "update_failed", "merge_refused", "merge_failed",
    "github_error", "user_request",
]

PRIORITY_RANK: dict[str, int] = {"high": 0, "normal": 1, "low": 2}
IN_FLIGHT_STATES = frozenset({"updating", "waiting_checks", "merging"})
ACTIVE_STATES = IN_FLIGHT_STATES | {"queued"}
FAILED_LABEL = "fleet:queue-failed"

MAX_MERGE_ATTEMPTS = 3  # merge calls per head (5xx, crash while merging)
MAX_UPDATE_ATTEMPTS = 3  # update-branch calls per head
# Transient GitHub failures (5xx, timeouts) of a step's other calls (reading the PR, compare,
# checks, publishing fleet/gates) per head, retried with backoff; then the entry fails.
MAX_STEP_FAILURES = 5
MAX_REEVALUATIONS = 1  # per head: a 409 / head-mismatch is re-evaluated once, then fails
UPDATE_LANDING = timedelta(minutes=2)  # update-branch is asynchronous; re-issue after this
RETRY_BASE = timedelta(seconds=10)
RETRY_CAP = timedelta(minutes=5)
# `/queue` is answered by the merge or the dequeue reply; a PR still queued this long after the
# command gets a 👍 (one write saved on every PR that merges sooner).
QUEUE_ACK_DELAY = timedelta(seconds=60)
GITHUB_MESSAGE_LIMIT = 300


# --- state --------------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueEntry:
    """One PR's row in a queue.

    ``expected_head_sha`` is the head Fleet vouches for: the head at start, then the head its
    own update-branch produced (or, with ``requeue_on_push``, a pushed head it accepted).
    ``head_changed_at`` starts the CI-timeout clock. ``attempts`` counts merge calls,
    ``update_attempts`` update-branch calls, ``reevaluations`` 409/422 re-evaluations and
    ``step_failures`` transient failures of the step's other GitHub calls, all for the current
    expected head.
    """

    pr_number: int
    queued_at: datetime
    queued_by: str
    priority: Priority = "normal"
    state: EntryState = "queued"
    head_sha_at_start: str | None = None
    started_at: datetime | None = None
    attempts: int = 0
    expected_head_sha: str | None = None
    head_changed_at: datetime | None = None
    update_requested_at: datetime | None = None
    update_attempts: int = 0
    reevaluations: int = 0
    step_failures: int = 0

    @property
    def in_flight(self) -> bool:
        return self.state in IN_FLIGHT_STATES

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class QueueSnapshot:
    """The active entries of one queue, read under the queue's lock."""

    repo: str
    base_ref: str
    entries: tuple[QueueEntry, ...] = ()

    def ordered(self) -> list[QueueEntry]:
        return order_queue(self.entries)

    def in_flight(self) -> QueueEntry | None:
        return next((e for e in self.ordered() if e.in_flight), None)

    def entry(self, pr_number: int) -> QueueEntry | None:
        return next((e for e in self.entries if e.pr_number == pr_number and e.active), None)


def _queued_key(entry: QueueEntry) -> tuple:
    return (PRIORITY_RANK[entry.priority], entry.queued_at.timestamp(), entry.pr_number)


def order_queue(entries) -> list[QueueEntry]:
    """Active entries in merge order: the in-flight entry first (priority never preempts it),
    then queued entries by priority, then time queued, then PR number."""
    active = [e for e in entries if e.active]
    flying = sorted(
        (e for e in active if e.in_flight),
        key=lambda e: ((e.started_at or e.queued_at).timestamp(), e.pr_number),
    )
    waiting = sorted((e for e in active if not e.in_flight), key=_queued_key)
    return flying + waiting


def current_entry(queue: QueueSnapshot) -> QueueEntry | None:
    """The entry ``decide_step`` acts on: the in-flight one, else the next to start.
    Load its PullSnapshot (None if GitHub says 404) and verdict before calling decide_step."""
    ordered = queue.ordered()
    return ordered[0] if ordered else None


def positions(queue: QueueSnapshot) -> dict[int, int]:
    """PR number → 1-based position (the in-flight entry is 1)."""
    return {e.pr_number: i for i, e in enumerate(queue.ordered(), start=1)}


# --- actions ------------------------------------------------------------------------------

@dataclass(frozen=True)
class StartEntry:
    """Mark ``pr`` in flight, starting with ``head_sha``."""
    pr: int
    head_sha: str


@dataclass(frozen=True)
class AcceptHead:
    """Fleet now vouches for ``head_sha`` (its own update landed, or a push it may re-test);
    the CI clock restarts."""
    pr: int
    head_sha: str
    previous_sha: str | None
    reason: Literal["update", "push"]


@dataclass(frozen=True)
class UpdateBranch:
    """``PUT .../pulls/{pr}/update-branch`` with ``expected_head_sha`` (or rebase per method)."""
    pr: int
    expected_head_sha: str
    method: Literal["merge", "rebase"]


@dataclass(frozen=True)
class WaitForUpdate:
    """The requested update has not landed yet; step again on the push or at ``deadline``."""
    pr: int
    head_sha: str
    deadline: datetime


@dataclass(frozen=True)
class WaitForChecks:
    """Gates still waiting on ``sha``; step again on the next relevant webhook or at ``deadline``."""
    pr: int
    sha: str
    deadline: datetime


@dataclass(frozen=True)
class Merge:
    """``PUT .../pulls/{pr}/merge`` with ``sha`` (the exact head whose gates were green)."""
    pr: int
    sha: str
    method: Literal["merge", "squash", "rebase"]
    title: str
    message: str


@dataclass(frozen=True)
class MarkMerged:
    """Record the merge (evidence: the head ``sha`` and GitHub's merge commit)."""
    pr: int
    sha: str
    merge_commit_sha: str | None = None


@dataclass(frozen=True)
class CloseLinkedTasks:
    """Close the tasks the merged PR was linked to (idempotent). ``github_closes``: GitHub
    itself closes those its closing keywords name (it merged the PR into the default branch);
    False when Fleet landed the PR's changes as a commit of its own (a squashed merge group)."""
    pr: int
    tasks: tuple[int, ...]
    github_closes: bool = True


@dataclass(frozen=True)
class Dequeue:
    """Remove ``pr`` from the queue, post ``message`` (one line, Markdown-safe) and add ``label``."""
    pr: int
    reason_code: ReasonCode
    message: str
    label: str | None = FAILED_LABEL


@dataclass(frozen=True)
class AdvanceToNext:
    """Run the next step of this queue now (the in-flight entry finished)."""
    repo: str
    base_ref: str


@dataclass(frozen=True)
class Retry:
    """A transient GitHub error: step ``pr`` again after ``delay``. ``step_failure``: the failed
    call was one of the step's reads (counted in ``step_failures``), not a merge or update."""
    pr: int
    attempt: int
    delay: timedelta
    reason: str
    step_failure: bool = False


@dataclass(frozen=True)
class Reevaluate:
    """Reload the snapshot and step again now (GitHub said the head or base moved)."""
    pr: int
    reason: str


@dataclass(frozen=True)
class EnqueueEntry:
    """Insert a new queued entry for ``pr``."""
    pr: int
    priority: Priority
    queued_by: str


@dataclass(frozen=True)
class SetPriority:
    pr: int
    priority: Priority


Action = Union[
    StartEntry, AcceptHead, UpdateBranch, WaitForUpdate, WaitForChecks, Merge, MarkMerged,
    CloseLinkedTasks, Dequeue, AdvanceToNext, Retry, Reevaluate, EnqueueEntry, SetPriority,
]


def new_entry(action: EnqueueEntry, now: datetime) -> QueueEntry:
    """The row to insert for an EnqueueEntry action."""
    return QueueEntry(action.pr, now, action.queued_by, action.priority)


def transition(entry: QueueEntry, action: Action, now: datetime) -> QueueEntry:
    """The entry's row after applying ``action`` (actions about other rows leave it unchanged)."""
    if getattr(action, "pr", entry.pr_number) != entry.pr_number:
        return entry
    if isinstance(action, StartEntry):
        return replace(
            entry, state="waiting_checks", started_at=now, head_sha_at_start=action.head_sha,
            expected_head_sha=action.head_sha, head_changed_at=now, update_requested_at=None,
            attempts=0, update_attempts=0, reevaluations=0, step_failures=0,
        )
    if isinstance(action, AcceptHead):
        return replace(
            entry, state="waiting_checks", expected_head_sha=action.head_sha, head_changed_at=now,
            update_requested_at=None, attempts=0, update_attempts=0, reevaluations=0, step_failures=0,
        )
    if isinstance(action, UpdateBranch):
        return replace(entry, state="updating", update_requested_at=now, update_attempts=entry.update_attempts + 1)
    if isinstance(action, WaitForChecks):
        return replace(entry, state="waiting_checks")
    if isinstance(action, Merge):
        return replace(entry, state="merging", attempts=entry.attempts + 1)
    if isinstance(action, MarkMerged):
        return replace(entry, state="merged")
    if isinstance(action, Dequeue):
        return replace(entry, state="dequeued" if action.reason_code == "user_request" else "failed")
    if isinstance(action, Retry) and action.step_failure:
        return replace(entry, step_failures=entry.step_failures + 1)
    if isinstance(action, Retry) and entry.state == "updating":
        # The update call itself failed: the next step re-issues it instead of waiting for it.
        return replace(entry, update_requested_at=None)
    if isinstance(action, Reevaluate):
        return replace(entry, reevaluations=entry.reevaluations + 1)
    if isinstance(action, SetPriority):
        return replace(entry, priority=action.priority)
    return entry


def observe_push(entry: QueueEntry, *, before: str, after: str, by_fleet: bool, now: datetime) -> QueueEntry:
    """Record a ``pull_request.synchronize`` on the in-flight PR before stepping.

    A push by Fleet itself (``sender`` is the App's bot, or the head commit's author is) from the
    head it expected while updating is its own update landing: accept it. Anything else is left
    for ``decide_step`` to treat as someone else's push.
    """
    if by_fleet and entry.state == "updating" and before == entry.expected_head_sha:
        return transition(entry, AcceptHead(entry.pr_number, after, before, "update"), now)
    return entry
