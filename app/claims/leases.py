"""Leases: renewing a claim on its holder's activity, warning before it runs out, releasing it,
and what unassigning or closing a task does to it (pure).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from app import replies
from app.tasks.agents import AgentId
from app.github.permissions import has_permission
from app.repos.config import ClaimsConfig
from app.tasks.refs import TaskRef
from app.claims.rules import (
    Action, Claim, Comment, CompleteClaim, ReleaseClaim, RenewClaim, Unassign, WarnLease, renew,
)


# --- Leases and activity -----------------------------------------------------------------------


def warn_time(claim: Claim, config: ClaimsConfig) -> datetime:
    """When the holder is warned: ``warn_at`` of the way through the current lease."""
    return claim.renewed_at + (claim.expires_at - claim.renewed_at) * config.warn_at


def decide_lease(claim: Claim, now: datetime, config: ClaimsConfig) -> list[Action]:
    """The scheduled check: release at expiry with a handoff note; before that, warn once."""
    repo = claim.task.repo_full_name
    if now >= claim.expires_at:
        return [
            ReleaseClaim(claim, "expired"),
            Unassign(claim.task, claim.agent.login),
            Comment(claim.task, replies.lease_expired(claim=claim, repo=repo)),
        ]
    if not claim.warned and now >= warn_time(claim, config):
        warned = replace(claim, warned=True)
        return [WarnLease(warned), Comment(claim.task, replies.lease_warning(claim=warned, repo=repo, now=now))]
    return []


ActivityKind = Literal["push", "commit", "comment", "progress", "pr"]


@dataclass(frozen=True)
class Activity:
    """Something the holder did that shows they are working: renews the lease.

    ``agent_name`` is known for pushes to a named branch (``agent-d/123-...``) and named
    commands; comments from a shared account carry only the login.
    """

    kind: ActivityKind
    login: str
    agent_name: str | None = None
    branch: str | None = None
    sha: str | None = None
    pr_number: int | None = None
    progress: int | None = None
    note: str | None = None


def is_holder_activity(claim: Claim, login: str, agent_name: str | None = None) -> bool:
    """Activity counts for the holder when it comes from the holder's account and, if both sides
    are named, the same name. (An unnamed comment from a shared account cannot say which agent
    wrote it; it renews whichever of them holds the task.)"""
    if not claim.agent.same_account(login):
        return False
    if agent_name is None or claim.agent.name is None:
        return True
    return claim.agent.name.lower() == agent_name.lower()


def decide_activity(claim: Claim | None, activity: Activity, now: datetime, config: ClaimsConfig) -> list[Action]:
    """Renew the lease and record where the work stands when the holder is active."""
    if claim is None or not is_holder_activity(claim, activity.login, activity.agent_name):
        return []
    updated = renew(claim, now, config)
    changes: dict[str, object] = {}
    if activity.branch:
        changes["branch"] = activity.branch
    if activity.sha:
        changes["head_sha"] = activity.sha
    if activity.pr_number:
        changes["pr_number"] = activity.pr_number
    if activity.progress is not None:
        changes["progress"] = activity.progress
        changes["progress_note"] = activity.note or None
    return [RenewClaim(replace(updated, **changes))]


def decide_progress(
    claim: Claim | None, task: TaskRef, actor: AgentId, permission: str | None,
    percent: int, note: str, now: datetime, config: ClaimsConfig,
) -> list[Action]:
    """``/progress N note``: recorded (and the lease renewed) for the holder or a maintainer."""
    holder_ok = claim is not None and is_holder_activity(claim, actor.login, actor.name)
    if claim is None or not (holder_ok or has_permission(permission, "write")):
        body = replies.progress_refused(task=task, repo=task.repo_full_name, agent=actor, holder=claim.agent if claim else None)
        return [Comment(task, body)]
    updated = replace(renew(claim, now, config), progress=percent, progress_note=note or None)
    return [RenewClaim(updated)]


def decide_release(claim: Claim | None, task: TaskRef, actor: AgentId, permission: str | None) -> list[Action]:
    """``/release``: the holder (any agent of the holder's account when unnamed) or a maintainer
    gives the task back; anyone else gets a refusal."""
    repo = task.repo_full_name
    if claim is None:
        return [Comment(task, replies.release_refused("not_held", task=task, repo=repo, agent=actor))]
    is_holder = claim.agent == actor or (actor.name is None and claim.agent.same_account(actor.login))
    if not is_holder and not has_permission(permission, "write"):
        return [Comment(task, replies.release_refused("not_holder", task=task, repo=repo, agent=actor, holder=claim.agent))]
    return [ReleaseClaim(claim, "released"), Unassign(task, claim.agent.login)]


def decide_unassigned(claim: Claim | None, login: str) -> list[Action]:
    """Someone unassigned ``login`` by hand: that releases the claim if it is the holder's account.

    Unassignments Fleet makes itself (refusals, releases) arrive here too and change nothing,
    because by then the claim is gone or belongs to another account.
    """
    if claim is None or not claim.agent.same_account(login):
        return []
    return [ReleaseClaim(claim, "unassigned")]


def decide_closed(claim: Claim | None) -> list[Action]:
    """Closing the issue completes the claim."""
    return [CompleteClaim(claim)] if claim is not None else []


def open_claim_tasks(claims: Iterable[Claim], agent: AgentId) -> tuple[TaskRef, ...]:
    """The tasks ``agent`` holds, for WIP messages and the status table."""
    return tuple(c.task for c in claims if c.agent == agent)
