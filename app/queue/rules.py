"""The serialized merge queue: pure decisions, no I/O.

One queue per (repository, base branch); at most one entry in flight. The job layer holds the
queue's row lock, builds a ``QueueSnapshot`` plus the ``PullSnapshot`` and ``GateVerdict`` of the
entry that ``current_entry`` names, calls ``decide_step`` and applies the returned actions in
order. ``transition`` is the matching state change of the entry's row for each action, so the
executor only persists what it returns.

Lifecycle of an entry::

    queued --StartEntry--> waiting_checks --UpdateBranch--> updating --(own push)--> waiting_checks
                               |  ^------------AcceptHead----------'                    |
                               '--Merge--> merging --200--> merged                      |
    any active state --Dequeue--> failed (or dequeued when a person asked)  <-----------'

Safety: ``Merge`` is only emitted when the verdict is green for exactly the PR's head, that
head is the one Fleet started with or accepted, and the head contains the base branch's tip;
the merge call carries that ``sha`` so a later push makes GitHub refuse it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, Union

from app.durations import format_duration
from app.commands.parse import COMMANDS, command_allowed
from app.github.permissions import PERMISSION_RANK
from app.gates.rules import GateVerdict, PullSnapshot
from app.gates.check_run import md_code, md_gate_reason, md_link, md_names, md_text
from app.repos.config import QueueConfig

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
    """Close the tasks the merged PR was linked to (idempotent)."""
    pr: int
    tasks: tuple[int, ...]


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


# --- commit templates ---------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(title|number|author|body)\}")
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
# Words in a commit message that GitHub Actions (and other CIs) obey: on the base branch they
# would skip the checks of the merged code. GitHub's list plus the common spellings of others.
_SKIP_CI = re.compile(
    r"\[\s*(?:skip[\s_-]*ci|ci[\s_-]*skip|no[\s_-]*ci|skip[\s_-]*actions|actions[\s_-]*skip)\s*\]"
    r"|skip-checks\s*:\s*true|\*\*\*NO_CI\*\*\*",
    re.IGNORECASE,
)
# Git trailers that credit or vouch for someone (Co-authored-by, Signed-off-by, Reviewed-by...):
# GitHub attributes the commit to whoever they name, so the PR body must not supply them.
_TRAILER = re.compile(r"^\s*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*-by\s*:", re.IGNORECASE)


def commit_safe_body(body: str | None) -> str:
    """The PR body for a merge commit: HTML comments (PR templates' hints) dropped, and every
    line that GitHub or CI would act on (``[skip ci]``-family tokens, ``*-by:`` trailers)."""
    text = _HTML_COMMENT.sub("", body or "")
    kept = [line for line in text.splitlines() if not _SKIP_CI.search(line) and not _TRAILER.match(line)]
    return "\n".join(kept).strip()


def commit_safe_title(title: str) -> str:
    """The PR title on one line, without ``[skip ci]``-family tokens."""
    return " ".join(_SKIP_CI.sub(" ", title).split())


def render_commit_template(template: str, pr: PullSnapshot) -> str:
    """Replace ``{title}``, ``{number}``, ``{author}``, ``{body}`` in one pass.

    Never ``str.format``: other braces (in the template or in substituted PR text) stay as they
    are and are not expanded again. The PR's text is made commit-safe first (``commit_safe_body``).
    """
    values = {
        "title": commit_safe_title(pr.title),
        "number": str(pr.number),
        "author": pr.author,
        "body": commit_safe_body(pr.body),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def commit_title(config: QueueConfig, pr: PullSnapshot) -> str:
    """The merge commit title: one line, falling back to GitHub's style when it renders empty."""
    title = " ".join(render_commit_template(config.commit_title, pr).split())
    return title or f"{commit_safe_title(pr.title) or 'Merge pull request'} (#{pr.number})"


def commit_message(config: QueueConfig, pr: PullSnapshot) -> str:
    """The merge commit message, never empty: without one GitHub fills in its own default,
    which may be the PR body (the repository's squash-message setting)."""
    message = render_commit_template(config.commit_message, pr).strip()
    return message or render_commit_template(QueueConfig.model_fields["commit_message"].default, pr)


# --- dequeue messages (one line, Markdown-safe) -------------------------------------------

_PREFIX = "Removed from the merge queue"


def _sha(sha: str | None) -> str:
    return md_code((sha or "?")[:12], in_table=False)


def quote_github(message: str | None) -> str:
    """GitHub's error message, quoted inertly."""
    return md_code(message or "no message", GITHUB_MESSAGE_LIMIT, in_table=False)


def _dequeue(pr: PullSnapshot | int, code: ReasonCode, detail: str) -> Dequeue:
    number = pr if isinstance(pr, int) else pr.number
    label = None if code == "user_request" else FAILED_LABEL
    return Dequeue(number, code, f"{_PREFIX}: {detail}", label)


def _failing_checks_detail(verdict: GateVerdict, sha: str) -> str:
    result = verdict.result("checks")
    shown = []
    for name in result.names[:5]:
        url = next((c.url for c in result.checks if c.name == name and c.url), None)
        link = md_link("details", url)
        shown.append(f"{md_code(name, in_table=False)}" + (f" ({link})" if link else ""))
    if len(result.names) > 5:
        shown.append(f"and {len(result.names) - 5} more")
    noun = "check" if len(result.names) == 1 else "checks"
    return f"{noun} {', '.join(shown)} failed on {_sha(sha)}. Fix it and `/queue` again."


def _gates_detail(verdict: GateVerdict) -> str:
    parts = [f"{md_text(r.gate)}: {md_gate_reason(r, in_table=False)}" for r in verdict.failing]
    return "gates failing — " + "; ".join(parts) + ". Fix it and `/queue` again."


def _timeout_detail(verdict: GateVerdict | None, sha: str, timeout: timedelta) -> str:
    pending = ""
    if verdict is not None and verdict.head_sha == sha:
        names = tuple(n for r in verdict.waiting for n in (r.names or (r.gate,)))
        if names:
            pending = f" (still waiting for {md_names(names, in_table=False, limit=5)})"
    return (
        f"gates did not turn green within {format_duration(timeout)} on {_sha(sha)}{pending}. "
        "`/queue` again to retry."
    )


# --- the step -----------------------------------------------------------------------------

def is_behind(pr: PullSnapshot, base_head_sha: str | None) -> bool:
    """True unless the head is known to contain the base tip (an unknown merge base is behind)."""
    if pr.mergeable_state == "behind":
        return True
    return base_head_sha is None or pr.merge_base_sha != base_head_sha


def _ended(entry: QueueEntry, pr: PullSnapshot | None, queue: QueueSnapshot) -> list[Action]:
    """The entry can no longer merge through the queue (or already merged elsewhere)."""
    if pr is None:
        return [_dequeue(entry.pr_number, "not_found", "the pull request could not be found.")]
    if pr.merged:
        sha = pr.head_sha
        return [MarkMerged(pr.number, sha, pr.merge_commit_sha)] + (
            [CloseLinkedTasks(pr.number, tuple(pr.linked_tasks))] if pr.linked_tasks else []
        )
    if pr.state != "open":
        return [_dequeue(pr, "closed", "the pull request was closed.")]
    if pr.draft:
        return [_dequeue(pr, "draft", "the pull request was converted to a draft. `/queue` again when it is ready.")]
    if pr.base_ref != queue.base_ref:
        return [_dequeue(
            pr, "base_changed",
            f"its base branch changed from {md_code(queue.base_ref, in_table=False)} to "
            f"{md_code(pr.base_ref, in_table=False)}. `/queue` again to join that queue.",
        )]
    return []


def decide_step(
    queue: QueueSnapshot,
    pr: PullSnapshot | None,
    verdict: GateVerdict | None,
    base_head_sha: str | None,
    config: QueueConfig,
    now: datetime,
) -> list[Action]:
    """Decide the next actions for the queue's current entry (see ``current_entry``).

    ``pr`` is that entry's snapshot (None when GitHub no longer has it), ``verdict`` the gates
    evaluated on it (a verdict for another SHA is ignored), ``base_head_sha`` the base branch's
    tip. Nothing in flight: start the next entry and take its first step in the same call.
    Returns [] when the queue is empty.
    """
    entry = current_entry(queue)
    if entry is None:
        return []
    if pr is not None and pr.number != entry.pr_number:
        raise ValueError(f"snapshot is for #{pr.number}, the queue's current entry is #{entry.pr_number}")
    advance = AdvanceToNext(queue.repo, queue.base_ref)

    ended = _ended(entry, pr, queue)
    if ended:
        return ended + [advance]
    assert pr is not None

    actions: list[Action] = []
    if not entry.in_flight:
        start = StartEntry(pr.number, pr.head_sha)
        actions.append(start)
        entry = transition(entry, start, now)
    return actions + _step_in_flight(entry, pr, verdict, base_head_sha, config, now, advance)


def _step_in_flight(
    entry: QueueEntry,
    pr: PullSnapshot,
    verdict: GateVerdict | None,
    base_head_sha: str | None,
    config: QueueConfig,
    now: datetime,
    advance: AdvanceToNext,
) -> list[Action]:
    actions: list[Action] = []
    behind = is_behind(pr, base_head_sha)

    if pr.head_sha != entry.expected_head_sha:
        if entry.state == "updating" and not behind:
            # Our update-branch landed and its push was not recorded yet (late webhook).
            accept = AcceptHead(pr.number, pr.head_sha, entry.expected_head_sha, "update")
        elif config.requeue_on_push:
            accept = AcceptHead(pr.number, pr.head_sha, entry.expected_head_sha, "push")
        else:
            return [_dequeue(
                pr, "head_changed",
                f"new commits were pushed while it was in flight ({_sha(entry.expected_head_sha)} → "
                f"{_sha(pr.head_sha)}). `/queue` again when it is ready.",
            ), advance]
        actions.append(accept)
        entry = transition(entry, accept, now)

    # Only a verdict on exactly this head counts; anything else is as good as "still waiting".
    gates = verdict if verdict is not None and verdict.head_sha == pr.head_sha else None

    if gates is not None and any(r.gate == "conflict" for r in gates.failing):
        return actions + [_dequeue(
            pr, "conflict",
            f"it has a merge conflict with {md_code(pr.base_ref, in_table=False)}. "
            "Resolve it and `/queue` again.",
        ), advance]
    # Failures an update cannot fix (labels, reviews, draft, size...) end it now.
    if gates is not None and any(r.gate != "checks" for r in gates.failing):
        return actions + [_dequeue(pr, "gates_failed", _gates_detail(gates)), advance]

    if behind:
        if entry.state == "updating" and entry.update_requested_at is not None:
            landing = entry.update_requested_at + UPDATE_LANDING
            if now < landing:
                return actions + [WaitForUpdate(pr.number, pr.head_sha, landing)]
        if entry.update_attempts >= MAX_UPDATE_ATTEMPTS:
            return actions + [_dequeue(
                pr, "update_failed",
                f"it could not be brought up to date with {md_code(pr.base_ref, in_table=False)} "
                f"after {entry.update_attempts} attempts.",
            ), advance]
        return actions + [UpdateBranch(pr.number, pr.head_sha, config.update_method)]

    if gates is None or gates.conclusion == "waiting":
        deadline = (entry.head_changed_at or entry.started_at or now) + config.ci_timeout
        if now >= deadline:
            return actions + [_dequeue(pr, "ci_timeout", _timeout_detail(gates, pr.head_sha, config.ci_timeout)), advance]
        return actions + [WaitForChecks(pr.number, pr.head_sha, deadline)]

    if gates.conclusion == "failure":  # only the checks gate is left to fail here
        return actions + [_dequeue(pr, "checks_failed", _failing_checks_detail(gates, pr.head_sha)), advance]

    if entry.attempts >= MAX_MERGE_ATTEMPTS:
        return actions + [_dequeue(
            pr, "merge_failed", f"GitHub did not complete the merge after {entry.attempts} attempts."
        ), advance]
    assert gates.is_green_for(pr.head_sha) and pr.head_sha == entry.expected_head_sha and not behind
    return actions + [Merge(
        pr.number, pr.head_sha, config.merge_method, commit_title(config, pr), commit_message(config, pr)
    )]


# --- GitHub's answers ---------------------------------------------------------------------

def _backoff(attempt: int, retry_after: timedelta | None) -> timedelta:
    delay = min(RETRY_CAP, RETRY_BASE * (2 ** max(0, attempt - 1)))
    return max(delay, retry_after) if retry_after is not None else delay


def _is_rate_limit(status_code: int, message: str) -> bool:
    return status_code == 429 or (status_code == 403 and "rate limit" in message.lower())


def decide_merge_result(
    merge: Merge,
    status_code: int,
    github_message: str | None,
    *,
    entry: QueueEntry,
    pr: PullSnapshot,
    merge_commit_sha: str | None = None,
    retry_after: timedelta | None = None,
) -> list[Action]:
    """What to do with GitHub's answer to ``merge`` (``entry`` as it was when merging).

    200 → merged, close tasks, next. 409 (head modified) or 405 "Base branch was modified" →
    re-evaluate once. Other 4xx → dequeue quoting GitHub. 5xx / rate limit → retry with backoff,
    at most ``MAX_MERGE_ATTEMPTS`` merge calls in all.
    """
    message = github_message or ""
    advance = AdvanceToNext(pr.repo, pr.base_ref)
    if status_code == 200:
        tasks = tuple(pr.linked_tasks)
        return [MarkMerged(merge.pr, merge.sha, merge_commit_sha)] + (
            [CloseLinkedTasks(merge.pr, tasks)] if tasks else []
        ) + [advance]
    moved = status_code == 409 or (status_code == 405 and "base branch was modified" in message.lower())
    if moved and entry.reevaluations < MAX_REEVALUATIONS:
        return [Reevaluate(merge.pr, f"merge answered {status_code}: {message}"[:200])]
    if status_code >= 500 or _is_rate_limit(status_code, message):
        if entry.attempts < MAX_MERGE_ATTEMPTS:
            return [Retry(merge.pr, entry.attempts, _backoff(entry.attempts, retry_after), f"merge answered {status_code}")]
        return [_dequeue(
            merge.pr, "github_error",
            f"GitHub kept failing the merge ({status_code}: {quote_github(message)}) after {entry.attempts} attempts.",
        ), advance]
    return [_dequeue(
        merge.pr, "merge_refused",
        f"GitHub refused the merge of {_sha(merge.sha)} ({status_code}): {quote_github(message)}",
    ), advance]


def decide_step_failure(
    entry: QueueEntry,
    queue: QueueSnapshot,
    call: str,
    status_code: int | None,
    github_message: str | None,
    *,
    retry_after: timedelta | None = None,
) -> list[Action]:
    """What to do when one of the step's GitHub calls (``call``, e.g. ``GET compare``) failed:
    ``status_code`` None is a timeout or a connection error.

    Rate limit → retry when it lifts (not counted). 5xx / timeout → retry with backoff, at most
    ``MAX_STEP_FAILURES`` times per head, then fail the entry. Any other 4xx (a 404 from compare,
    a 422) cannot get better by waiting → fail the entry at once, naming the call and status.
    """
    message = github_message or ""
    advance = AdvanceToNext(queue.repo, queue.base_ref)
    pr = entry.pr_number
    named = md_code(call, in_table=False)
    if status_code is not None and _is_rate_limit(status_code, message):
        return [Retry(pr, entry.step_failures, _backoff(1, retry_after), f"{call} rate limited")]
    transient = status_code is None or status_code >= 500
    if transient and entry.step_failures < MAX_STEP_FAILURES:
        failures = entry.step_failures + 1
        return [Retry(pr, failures, _backoff(failures, retry_after), f"{call} answered {status_code or 'timeout'}",
                      step_failure=True)]
    if transient:
        said = "timed out" if status_code is None else f"answered {status_code}"
        return [_dequeue(pr, "github_error", f"GitHub kept failing {named} ({said}) after "
                                             f"{entry.step_failures + 1} attempts: {quote_github(message)}"), advance]
    return [_dequeue(pr, "github_error", f"GitHub answered {status_code} to {named}: {quote_github(message)}"), advance]


def decide_update_result(
    update: UpdateBranch,
    status_code: int,
    github_message: str | None,
    *,
    entry: QueueEntry,
    pr: PullSnapshot,
    retry_after: timedelta | None = None,
) -> list[Action]:
    """What to do with GitHub's answer to ``update`` (``entry`` as it was after requesting it).

    202 → nothing (the push arrives as a webhook). 422 head mismatch / nothing to update →
    re-evaluate once. 422 conflict → dequeue. 5xx / rate limit → retry (bounded by
    ``MAX_UPDATE_ATTEMPTS`` in ``decide_step``). Anything else → dequeue quoting GitHub.
    """
    message = github_message or ""
    lowered = message.lower()
    advance = AdvanceToNext(pr.repo, pr.base_ref)
    if status_code in (200, 202):
        return []
    if status_code == 422 and "conflict" in lowered:
        return [_dequeue(
            update.pr, "conflict",
            f"it has a merge conflict with {md_code(pr.base_ref, in_table=False)} "
            f"(GitHub: {quote_github(message)}). Resolve it and `/queue` again.",
        ), advance]
    stale = status_code == 422 and ("expected head sha" in lowered or "no new commits" in lowered)
    if stale and entry.reevaluations < MAX_REEVALUATIONS:
        return [Reevaluate(update.pr, f"update-branch answered 422: {message}"[:200])]
    if status_code >= 500 or _is_rate_limit(status_code, message):
        return [Retry(update.pr, entry.update_attempts, _backoff(entry.update_attempts, retry_after), f"update-branch answered {status_code}")]
    return [_dequeue(
        update.pr, "update_failed",
        f"GitHub refused to update the branch ({status_code}): {quote_github(message)}",
    ), advance]


# --- commands -----------------------------------------------------------------------------

CommandName = Literal["queue", "merge", "dequeue", "priority"]
_COMMAND = re.compile(r"^/(queue|merge|dequeue|priority)(?:\s+(\S+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class QueueCommand:
    name: CommandName
    arg: str | None = None


@dataclass(frozen=True)
class CommandDecision:
    """Accept or refuse a command; ``reply`` is one Markdown-safe line to acknowledge it."""

    accepted: bool
    reply: str
    position: int | None = None
    length: int | None = None
    actions: tuple[Action, ...] = ()


def parse_queue_command(line: str) -> QueueCommand | None:
    """``/queue``, ``/merge``, ``/dequeue``, ``/priority high`` on a line of their own."""
    match = _COMMAND.match(line.strip())
    if match is None:
        return None
    return QueueCommand(match.group(1).lower(), match.group(2))  # type: ignore[arg-type]


def _allowed(name: str, permission: str | None, *, is_author: bool = False) -> bool:
    """The command table (``commands.COMMANDS``) decides who may run a queue command: one
    permission rule for the command, the label and ``queue.auto``."""
    return command_allowed(COMMANDS[name], permission, is_author=is_author)


def _needs(name: str) -> str:
    """``write permission`` and the like: holder/author commands are also open to write."""
    who = COMMANDS[name].who
    return f"{who if who in PERMISSION_RANK else 'write'} permission"


def _is_author(actor: str, pr: PullSnapshot) -> bool:
    return actor.lower() == pr.author.lower()


def queue_refusal(actor: str, actor_permission: str | None, pr: PullSnapshot, config: QueueConfig) -> str | None:
    """Why ``actor`` may not queue ``pr`` (one Markdown-safe line), or None when they may.
    The one rule for every way of queueing: command, label and ``queue.auto``."""
    who = md_code(actor, in_table=False)
    if not _allowed("queue", actor_permission):
        return f"Refused: {who} needs {_needs('queue')} to queue this pull request."
    if _is_author(actor, pr) and not config.allow_authors:
        return (f"Refused: {who} wrote this pull request and `queue.allow_authors` is false: "
                "someone else with write permission must queue it.")
    return None


def _position_text(position: int, length: int) -> str:
    return "in flight (merging next)" if position == 1 else f"position {position} of {length}"


def decide_queue_command(
    cmd: QueueCommand,
    actor: str,
    actor_permission: str | None,
    pr: PullSnapshot,
    queue: QueueSnapshot,
    config: QueueConfig,
) -> CommandDecision:
    """Accept or refuse ``/queue`` (alias ``/merge``), ``/dequeue`` and ``/priority``.

    Permissions (GitHub's ``permission`` or ``role_name``): queueing always needs write; with
    ``allow_authors`` false the author may not queue their own PR even with write (someone else
    must: four eyes). Who may run each command is ``commands.COMMANDS``' table: dequeue needs
    write or being the PR's author, priority write. ``queue`` must be the PR's base-branch queue.
    """
    who = md_code(actor, in_table=False)
    existing = queue.entry(pr.number)
    where = md_code(queue.base_ref, in_table=False)

    if cmd.name in ("queue", "merge"):
        refusal = queue_refusal(actor, actor_permission, pr, config)
        if refusal is not None:
            return CommandDecision(False, refusal)
        if pr.merged or pr.state != "open":
            return CommandDecision(False, "Refused: the pull request is not open.")
        if pr.draft:
            return CommandDecision(False, "Refused: the pull request is a draft; mark it ready for review first.")
        if existing is not None:
            pos = positions(queue)[pr.number]
            length = len(queue.ordered())
            return CommandDecision(True, f"Already queued for {where}: {_position_text(pos, length)}.", pos, length)
        enqueue = EnqueueEntry(pr.number, "normal", actor)
        ahead = [e for e in queue.ordered() if e.in_flight or PRIORITY_RANK[e.priority] <= PRIORITY_RANK["normal"]]
        pos, length = len(ahead) + 1, len(queue.ordered()) + 1
        kick = () if queue.in_flight() is not None else (AdvanceToNext(queue.repo, queue.base_ref),)
        return CommandDecision(True, f"Queued for {where}: {_position_text(pos, length)}.", pos, length, (enqueue, *kick))

    if cmd.name == "dequeue":
        if not _allowed("dequeue", actor_permission, is_author=_is_author(actor, pr)):
            return CommandDecision(False, f"Refused: {who} needs {_needs('dequeue')} to dequeue this pull request.")
        if existing is None:
            return CommandDecision(False, "Refused: the pull request is not in the merge queue.")
        dequeue = Dequeue(pr.number, "user_request", f"{_PREFIX} by {who}.", None)
        tail = (AdvanceToNext(queue.repo, queue.base_ref),) if existing.in_flight else ()
        return CommandDecision(True, f"{_PREFIX} by {who}.", None, None, (dequeue, *tail))

    # priority
    if not _allowed("priority", actor_permission):
        return CommandDecision(False, f"Refused: {who} needs {_needs('priority')} to change priority.")
    wanted = (cmd.arg or "").lower()
    if wanted not in PRIORITY_RANK:
        return CommandDecision(False, "Refused: usage is `/priority high`, `/priority normal` or `/priority low`.")
    if existing is None:
        return CommandDecision(False, "Refused: the pull request is not in the merge queue.")
    changed = replace(existing, priority=wanted)  # type: ignore[arg-type]
    after = replace(queue, entries=tuple(changed if e is existing else e for e in queue.entries))
    pos, length = positions(after)[pr.number], len(after.ordered())
    actions = () if existing.priority == wanted else (SetPriority(pr.number, wanted),)  # type: ignore[arg-type]
    return CommandDecision(True, f"Priority {wanted}: {_position_text(pos, length)}.", pos, length, actions)
