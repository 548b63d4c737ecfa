"""issues.* and the native relations (issue_dependencies, sub_issues): task state."""
from __future__ import annotations

from app.claims import service as claim_service
from app.claims import waiting
from app.status import service as status_service
from app.tasks import store as task_state
from app.tasks.refs import TaskRef
from webhooks.context import EventContext, ensure_repo
from app.github.models import Issue, IssueDependenciesEvent, IssuesEvent, SubIssuesEvent


def issue_changed(ctx: EventContext) -> None:
    """Record the issue as a task, then let the claim rules react to what changed."""
    repo = ensure_repo(ctx)
    event = ctx.parse(IssuesEvent)
    if event.issue.is_pull_request:
        return
    if ctx.delivery.action == "transferred":
        task_state.mark_deleted(ctx.conn, repo.id, event.issue.number)
        return
    applied = task_state.upsert_task(ctx.conn, repo.id, repo.full_name, event.issue, repo.config)
    if not applied and task_state.is_tie(ctx.conn, repo.id, event.issue):
        # Two changes in the same second: only GitHub knows which is current.
        current = Issue.model_validate(ctx.github(repo.full_name).issue(event.issue.number))
        task_state.upsert_task(ctx.conn, repo.id, repo.full_name, current, repo.config, force=True)
    elif not applied:
        ctx.log.info("older issue event ignored", extra={"number": event.issue.number})
    issue = event.issue
    status_issue = status_service.is_status_issue(ctx.conn, repo.id, issue.number,
                                                  issue.user.login if issue.user else None,
                                                  (label.name for label in issue.labels), issue.body)
    claim_service.on_issue_event(ctx, repo, event, status_issue=status_issue)
    waiting.serve(ctx, repo)  # a task closed, released or opened may be ready for an agent in line


def issue_deleted(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    event = ctx.parse(IssuesEvent)
    task_state.mark_deleted(ctx.conn, repo.id, event.issue.number)


def dependency_changed(ctx: EventContext) -> None:
    """GitHub's native "blocked by" relation, recorded as a dependency edge."""
    repo = ensure_repo(ctx)
    event = ctx.parse(IssueDependenciesEvent)
    if event.blocked_issue is None or event.blocking_issue is None:
        return
    blocking_repo = event.blocking_issue_repo.full_name if event.blocking_issue_repo else repo.full_name
    present = ctx.delivery.action.endswith("_added")
    if task_state.get_task(ctx.conn, repo.id, event.blocked_issue.number) is None:
        task_state.upsert_task(ctx.conn, repo.id, repo.full_name, event.blocked_issue, repo.config)
    task_state.set_dependency(
        ctx.conn, repo.id, event.blocked_issue.number,
        TaskRef.of(blocking_repo, event.blocking_issue.number), "native", present,
    )
    claim_service.refresh_labels(ctx, repo, [event.blocked_issue.number])
    waiting.serve(ctx, repo)


def sub_issue_changed(ctx: EventContext) -> None:
    """A parent issue is an epic for its sub-issues."""
    repo = ensure_repo(ctx)
    event = ctx.parse(SubIssuesEvent)
    if event.sub_issue is None or event.parent_issue is None:
        return
    if task_state.get_task(ctx.conn, repo.id, event.sub_issue.number) is None:
        task_state.upsert_task(ctx.conn, repo.id, repo.full_name, event.sub_issue, repo.config)
    added = ctx.delivery.action.endswith("_added")
    task_state.set_parent(ctx.conn, repo.id, event.sub_issue.number, event.parent_issue.number if added else None)
