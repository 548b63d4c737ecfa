"""label.* and milestone.*: repository vocabulary (epics are milestones)."""
from __future__ import annotations

from app.tasks import store as task_state
from webhooks.context import EventContext, ensure_repo
from app.github.models import LabelEvent, MilestoneEvent

RENAME_LABEL = """
UPDATE tasks SET labels = array_replace(labels, %s, %s), updated_at = now()
WHERE repo_id = %s AND %s = ANY(labels)
"""
DROP_LABEL = "UPDATE tasks SET labels = array_remove(labels, %s), updated_at = now() WHERE repo_id = %s AND %s = ANY(labels)"


def label_created(ctx: EventContext) -> None:
    ensure_repo(ctx)


def label_edited(ctx: EventContext) -> None:
    """A renamed label is renamed on every task that carries it."""
    repo = ensure_repo(ctx)
    event = ctx.parse(LabelEvent)
    old = ((event.changes or {}).get("name") or {}).get("from")
    if isinstance(old, str) and old != event.label.name:
        ctx.conn.execute(RENAME_LABEL, (old, event.label.name, repo.id, old))


def label_deleted(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    event = ctx.parse(LabelEvent)
    ctx.conn.execute(DROP_LABEL, (event.label.name, repo.id, event.label.name))


def milestone_changed(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    task_state.upsert_milestone(ctx.conn, repo.id, ctx.parse(MilestoneEvent).milestone)


def milestone_deleted(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    task_state.delete_milestone(ctx.conn, repo.id, ctx.parse(MilestoneEvent).milestone.number)
