"""repository.*: a served repository renamed, transferred, deleted, archived or changing visibility.

The row follows GitHub: a rename or transfer updates ``full_name`` (see
``repositories.upsert_repository``), visibility updates ``private`` (which decides whether other
repositories' dependencies may resolve into it), and a repository Fleet can no longer act on --
deleted, archived, or transferred to another account -- has its open claims ended at once, with
the reason recorded and nothing written to GitHub (which would refuse it, or it is no longer this
tenant's repository).
"""
from __future__ import annotations

from datetime import datetime, timezone

from app.repos import registry as repositories
from jobs.leases import end_repository_claims
from webhooks.context import EventContext
from app.github.models import RepositoryEvent


def _record(ctx: EventContext, event: RepositoryEvent) -> repositories.Repo:
    repo = event.repository
    repositories.upsert_repository(
        ctx.conn, repo.id, repo.full_name,
        installation_id=event.installation.id if event.installation else None,
        default_branch=repo.default_branch, private=repo.private, archived=repo.archived,
    )
    found = repositories.get(ctx.conn, repo.id)
    assert found is not None
    return found


def _end_claims(ctx: EventContext, repo: repositories.Repo, reason: str) -> None:
    ended = end_repository_claims(ctx.conn, repo, reason, datetime.now(timezone.utc))
    if ended:
        ctx.log.info("claims ended", extra={"repo": repo.full_name, "reason": reason, "claims": ended})


def repository_changed(ctx: EventContext) -> None:
    repo = _record(ctx, ctx.parse(RepositoryEvent))
    if repo.archived:
        _end_claims(ctx, repo, "repository-archived")


def repository_transferred(ctx: EventContext) -> None:
    """Now another account's: claims made under the old owner end; references from the old
    installation stop resolving (the installation differs)."""
    repo = _record(ctx, ctx.parse(RepositoryEvent))
    _end_claims(ctx, repo, "repository-transferred")


def repository_deleted(ctx: EventContext) -> None:
    event = ctx.parse(RepositoryEvent)
    repo = repositories.get(ctx.conn, event.repository.id)
    if repo is None:
        return
    repositories.remove_repository(ctx.conn, repo.id)
    _end_claims(ctx, repo, "repository-deleted")
