"""pull_request.* and pull_request_review.*: PR state, task links, gate evaluation."""
from __future__ import annotations

from app.queue import scheduling
from app.claims import service as claim_service
from app.queue import service as queue_service
from app.tasks import pulls as pull_state
from webhooks.context import EventContext, ensure_repo
from app.github.models import PullRequestEvent, PullRequestReviewEvent


def pull_changed(ctx: EventContext) -> None:
    """Record the PR, then let claims, gates and the merge queue react."""
    repo = ensure_repo(ctx)
    event = ctx.parse(PullRequestEvent)
    pull_state.upsert_pull(ctx.conn, repo.id, repo.full_name, event.pull_request, repo.config)
    claim_service.on_pull_event(ctx, repo, event)
    queue_service.on_pull_event(ctx, repo, event)
    scheduling.on_pull_event(ctx, repo, event)


def review_changed(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    event = ctx.parse(PullRequestReviewEvent)
    pull_state.upsert_pull(ctx.conn, repo.id, repo.full_name, event.pull_request, repo.config)
    pull_state.upsert_review(ctx.conn, repo.id, event.pull_request.number, event.review)
    scheduling.schedule_gates(ctx, repo, [event.pull_request.number])
