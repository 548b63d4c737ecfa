"""What the merge queue does on GitHub besides merging, shared by the serial queue and merge
groups: the dequeue comment and labels, closing a merged PR's tasks, and reading GitHub's answer
to a write (status, message, retry-after)."""
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import psycopg
from githubkit.exception import RequestError, RequestFailed

from app.claims.apply import defer_label_sync
from app.gates.rules import PullSnapshot
from app.github import held_writes
from app.github.gateway import GitHubRefused, RepoGateway, github_message
from app.queue.state import CloseLinkedTasks, Dequeue, QueueEntry
from app.replies import marker
from app.repos.registry import Repo
from app.tasks.refs import closed_by_github


def close_linked_tasks(gh: RepoGateway, repo: Repo, action: CloseLinkedTasks, pr: PullSnapshot | None) -> None:
    """GitHub closes issues named by closing keywords when merging into the default branch:
    those cost nothing. Close the rest (branch-name links, other bases) if still open."""
    by_github = set()
    if pr is not None and action.github_closes:
        by_github = closed_by_github(pr.body, repo.full_name, pr.base_ref, repo.default_branch)
    for number in action.tasks:
        if number in by_github:
            continue
        try:
            issue = gh.issue(number)
        except RequestFailed as exc:
            if exc.response.status_code in (404, 410):
                continue
            raise
        if issue.get("pull_request") is not None:
            continue
        if issue.get("state") == "open":
            gh.update_issue(number, state="closed", state_reason="completed")
        else:
            gh.evidence.record("close_linked_task", f"#{number}", "already-closed", None, pr=action.pr)

def relabel_linked_tasks(repo: Repo) -> None:
    """With ``tasks.manage_labels`` on, a PR entering or leaving the queue moves the tasks it links
    between ``fleet:review`` and ``fleet:queued``. The label catch-up job writes that a second
    later, from Postgres and only where a label is wrong: a LABELS-class write that takes neither
    the queue's share of the budget nor its step's time. Call it once the entry's row is committed.
    A merge needs none: the task closing takes its label off."""
    if repo.config.tasks.manage_labels:
        defer_label_sync(repo.id, None)


def announce_dequeue(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, action: Dequeue, entry: QueueEntry,
                     pr: PullSnapshot | None) -> None:
    """One comment per dequeued entry (a retried job finds it and does not post again), the
    failure label, and the queue label taken off so adding it again re-queues; the tasks' state
    labels follow."""
    relabel_linked_tasks(repo)
    if action.reason_code == "user_request":
        return
    key = marker({"queue": "dequeued", "pr": action.pr, "reason": action.reason_code,
                  "entry": int(entry.queued_at.timestamp() * 1000)})
    held_writes.comment(conn, gh, repo.id, action.pr, f"{action.message}\n\n{key}", marker=key,
                        look_first=True)
    if pr is None or pr.state != "open":
        return
    if action.label:
        held_writes.add_label(conn, gh, repo.id, action.pr, action.label)
    label = repo.config.queue.label
    if label and label.lower() in (name.lower() for name in pr.labels):
        held_writes.remove_label(conn, gh, repo.id, action.pr, label)


def call_answer(call: Callable[[], object]) -> tuple[int, str, timedelta | None, dict]:
    """(status, GitHub's message, retry-after, body) of a merge or update-branch call."""
    try:
        result = call()
    except GitHubRefused as exc:
        response = getattr(exc.__cause__, "response", None)
        return exc.status, exc.message, _retry_after(response), {}
    except RequestFailed as exc:
        return exc.response.status_code, github_message(exc), _retry_after(exc.response), {}
    if isinstance(result, dict):
        return 200, "", None, result
    return int(result), "", None, {}  # type: ignore[call-overload]


def call_failure(exc: RequestError | GitHubRefused) -> tuple[str, int | None, str, timedelta | None]:
    """(the call as ``METHOD /path``, status or None for a timeout, GitHub's message, retry-after)."""
    if isinstance(exc, GitHubRefused):
        response = getattr(exc.__cause__, "response", None)
        return exc.action, exc.status, exc.message, _retry_after(response)
    if isinstance(exc, RequestFailed):
        request = exc.response.raw_request
        return (f"{request.method} {request.url.path}", exc.response.status_code, github_message(exc),
                _retry_after(exc.response))
    try:  # httpx raises when a transport error carries no request
        request = exc.exc.request
        call = f"{request.method} {request.url.path}"
    except (AttributeError, RuntimeError):
        call = "a GitHub request"
    return call, None, type(exc).__name__, None


def _retry_after(response) -> timedelta | None:
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return timedelta(seconds=float(value)) if value else None
    except ValueError:
        return None
