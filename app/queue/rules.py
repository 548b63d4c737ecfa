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

from datetime import datetime, timedelta

from app.gates.rules import GateVerdict, PullSnapshot
from app.gates.check_run import md_code
from app.repos.config import QueueConfig
from app.queue.messages import (
    dequeue_action, failing_checks_detail, gates_detail, short_sha, timeout_detail, commit_message,
    commit_title, quote_github,
)
from app.queue.state import (
    AcceptHead, Action, AdvanceToNext, CloseLinkedTasks, MAX_MERGE_ATTEMPTS, MAX_REEVALUATIONS,
    MAX_STEP_FAILURES, MAX_UPDATE_ATTEMPTS, MarkMerged, Merge, QueueEntry, QueueSnapshot,
    RETRY_BASE, RETRY_CAP, Reevaluate, Retry, StartEntry, UPDATE_LANDING, UpdateBranch,
    WaitForChecks, WaitForUpdate, current_entry, transition,
)


# --- the step -----------------------------------------------------------------------------

def is_behind(pr: PullSnapshot, base_head_sha: str | None) -> bool:
    """True unless the head is known to contain the base tip (an unknown merge base is behind)."""
    if pr.mergeable_state == "behind":
        return True
    return base_head_sha is None or pr.merge_base_sha != base_head_sha


def ended_entry(entry: QueueEntry, pr: PullSnapshot | None, queue: QueueSnapshot) -> list[Action]:
    """The entry can no longer merge through the queue (or already merged elsewhere)."""
    if pr is None:
        return [dequeue_action(entry.pr_number, "not_found", "the pull request could not be found.")]
    if pr.merged:
        sha = pr.head_sha
        return [MarkMerged(pr.number, sha, pr.merge_commit_sha)] + (
            [CloseLinkedTasks(pr.number, tuple(pr.linked_tasks))] if pr.linked_tasks else []
        )
    if pr.state != "open":
        return [dequeue_action(pr, "closed", "the pull request was closed.")]
    if pr.draft:
        return [dequeue_action(pr, "draft", "the pull request was converted to a draft. `/queue` again when it is ready.")]
    if pr.base_ref != queue.base_ref:
        return [dequeue_action(
            pr, "base_changed",
            f"its base branch changed from {md_code(queue.base_ref, in_table=False)} to "
            f"{md_code(pr.base_ref, in_table=False)}. `/queue` again to join that queue.",
        )]
    return []


# While the in-flight head waits for CI by what webhooks recorded, the step asks GitHub again only
# after this much silence (a lost webhook must not stall the queue until ``ci_timeout``).
QUIET_WAIT_LIMIT = timedelta(minutes=5)


def waits_quietly(entry: QueueEntry, recorded: PullSnapshot | None, verdict: GateVerdict | None,
                  last_read_at: datetime | None, config: QueueConfig, now: datetime) -> bool:
    """True when the step can leave the entry as it is without reading GitHub. Either Fleet's
    update-branch has not landed yet (the recorded head is still the one it updated, within
    ``UPDATE_LANDING``), or the entry waits for checks on the head Fleet vouches for, the recorded
    state still says waiting (it never looks waiting too late, only too early: see
    ``gates.service.recorded_verdict``), GitHub was asked (or the head was accepted) within
    ``QUIET_WAIT_LIMIT`` and the CI timeout has not passed."""
    if recorded is None or recorded.state != "open" or recorded.merged or recorded.head_sha != entry.expected_head_sha:
        return False
    if entry.state == "updating":
        return entry.update_requested_at is not None and now < entry.update_requested_at + UPDATE_LANDING
    if entry.state != "waiting_checks" or verdict is None or verdict.head_sha != recorded.head_sha:
        return False
    heard = max((t for t in (last_read_at, entry.head_changed_at) if t is not None), default=None)
    if verdict.conclusion != "waiting" or heard is None or now - heard >= QUIET_WAIT_LIMIT:
        return False
    return now < (entry.head_changed_at or entry.started_at or now) + config.ci_timeout


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

    ended = ended_entry(entry, pr, queue)
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
            return [dequeue_action(
                pr, "head_changed",
                f"new commits were pushed while it was in flight ({short_sha(entry.expected_head_sha)} → "
                f"{short_sha(pr.head_sha)}). `/queue` again when it is ready.",
            ), advance]
        actions.append(accept)
        entry = transition(entry, accept, now)

    # Only a verdict on exactly this head counts; anything else is as good as "still waiting".
    gates = verdict if verdict is not None and verdict.head_sha == pr.head_sha else None

    if gates is not None and any(r.gate == "conflict" for r in gates.failing):
        return actions + [dequeue_action(
            pr, "conflict",
            f"it has a merge conflict with {md_code(pr.base_ref, in_table=False)}. "
            "Resolve it and `/queue` again.",
        ), advance]
    # Failures an update cannot fix (labels, reviews, draft, size...) end it now.
    if gates is not None and any(r.gate != "checks" for r in gates.failing):
        return actions + [dequeue_action(pr, "gates_failed", gates_detail(gates)), advance]

    if behind:
        if entry.state == "updating" and entry.update_requested_at is not None:
            landing = entry.update_requested_at + UPDATE_LANDING
            if now < landing:
                return actions + [WaitForUpdate(pr.number, pr.head_sha, landing)]
        if entry.update_attempts >= MAX_UPDATE_ATTEMPTS:
            return actions + [dequeue_action(
                pr, "update_failed",
                f"it could not be brought up to date with {md_code(pr.base_ref, in_table=False)} "
                f"after {entry.update_attempts} attempts.",
            ), advance]
        return actions + [UpdateBranch(pr.number, pr.head_sha, config.update_method)]

    if gates is None or gates.conclusion == "waiting":
        deadline = (entry.head_changed_at or entry.started_at or now) + config.ci_timeout
        if now >= deadline:
            return actions + [dequeue_action(pr, "ci_timeout", timeout_detail(gates, pr.head_sha, config.ci_timeout)), advance]
        return actions + [WaitForChecks(pr.number, pr.head_sha, deadline)]

    if gates.conclusion == "failure":  # only the checks gate is left to fail here
        return actions + [dequeue_action(pr, "checks_failed", failing_checks_detail(gates, pr.head_sha)), advance]

    if entry.attempts >= MAX_MERGE_ATTEMPTS:
        return actions + [dequeue_action(
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
        return [dequeue_action(
            merge.pr, "github_error",
            f"GitHub kept failing the merge ({status_code}: {quote_github(message)}) after {entry.attempts} attempts.",
        ), advance]
    return [dequeue_action(
        merge.pr, "merge_refused",
        f"GitHub refused the merge of {short_sha(merge.sha)} ({status_code}): {quote_github(message)}",
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
        return [dequeue_action(pr, "github_error", f"GitHub kept failing {named} ({said}) after "
                                             f"{entry.step_failures + 1} attempts: {quote_github(message)}"), advance]
    return [dequeue_action(pr, "github_error", f"GitHub answered {status_code} to {named}: {quote_github(message)}"), advance]


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
        return [dequeue_action(
            update.pr, "conflict",
            f"it has a merge conflict with {md_code(pr.base_ref, in_table=False)} "
            f"(GitHub: {quote_github(message)}). Resolve it and `/queue` again.",
        ), advance]
    stale = status_code == 422 and ("expected head sha" in lowered or "no new commits" in lowered)
    if stale and entry.reevaluations < MAX_REEVALUATIONS:
        return [Reevaluate(update.pr, f"update-branch answered 422: {message}"[:200])]
    if status_code >= 500 or _is_rate_limit(status_code, message):
        return [Retry(update.pr, entry.update_attempts, _backoff(entry.update_attempts, retry_after), f"update-branch answered {status_code}")]
    return [dequeue_action(
        update.pr, "update_failed",
        f"GitHub refused to update the branch ({status_code}): {quote_github(message)}",
    ), advance]
