"""installation and installation_repositories: which repositories Fleet serves."""
from __future__ import annotations

from collections.abc import Callable

import psycopg
from pydantic import ValidationError

from app.repos import registry as repositories
from jobs.sync import enqueue_sync
from webhooks.context import EventContext
from app.github.models import InstallationEvent, InstallationRepositoriesEvent, RepoRef


def _each_repo(ctx: EventContext, repos: list[dict], action: Callable[[RepoRef], None]) -> None:
    """Apply ``action`` to each listed repository in its own savepoint: one bad entry is logged
    and skipped, never failing the others (the event is not redelivered for them)."""
    for raw in repos:
        try:
            with ctx.conn.transaction():
                action(RepoRef.model_validate(raw))
        except (ValidationError, psycopg.Error) as exc:
            name = raw.get("full_name") if isinstance(raw, dict) else None
            ctx.log.warning("repository skipped", extra={"repo": name, "error": str(exc)[:300]})


def _add_repos(ctx: EventContext, installation_id: int, repos: list[dict]) -> None:
    def add(ref: RepoRef) -> None:
        repositories.upsert_repository(ctx.conn, ref.id, ref.full_name, installation_id=installation_id, private=ref.private)
        # Backfill after this transaction commits; the sync reads GitHub, not the payload.
        ctx.defer(lambda name=ref.full_name: enqueue_sync(name))

    _each_repo(ctx, repos, add)


def installation_added(ctx: EventContext) -> None:
    event = ctx.parse(InstallationEvent)
    inst = event.installation
    account = inst.account
    repositories.upsert_installation(ctx.conn, inst.id, account.login if account else "unknown", account.type if account else "User")
    repositories.set_installation_state(ctx.conn, inst.id)
    _add_repos(ctx, inst.id, event.repositories or [])


def installation_deleted(ctx: EventContext) -> None:
    from datetime import datetime, timezone

    inst = ctx.parse(InstallationEvent).installation
    repositories.set_installation_state(ctx.conn, inst.id, deleted_at=datetime.now(timezone.utc))


def installation_suspended(ctx: EventContext) -> None:
    from datetime import datetime, timezone

    inst = ctx.parse(InstallationEvent).installation
    repositories.set_installation_state(ctx.conn, inst.id, suspended_at=inst.suspended_at or datetime.now(timezone.utc))


def installation_repositories(ctx: EventContext) -> None:
    event = ctx.parse(InstallationRepositoriesEvent)
    inst = event.installation
    account = inst.account
    repositories.upsert_installation(ctx.conn, inst.id, account.login if account else "unknown", account.type if account else "User")
    _add_repos(ctx, inst.id, event.repositories_added)
    # Their claims are ended by the lease clock (jobs/leases.py), under each repository's lock.
    _each_repo(ctx, event.repositories_removed, lambda ref: repositories.remove_repository(ctx.conn, ref.id))


def ping(ctx: EventContext) -> None:
    ctx.log.info("ping received")
