"""issue_comment.created: slash commands and lease renewal."""
from __future__ import annotations

from app.claims import waiting
from app.commands import handlers as command_service
from webhooks.context import EventContext, ensure_repo
from app.github.models import IssueCommentEvent


def comment_created(ctx: EventContext) -> None:
    """Comments renew the commenter's lease on the task and may carry commands."""
    repo = ensure_repo(ctx)
    event = ctx.parse(IssueCommentEvent)
    command_service.on_comment(ctx, repo, event)
    waiting.serve(ctx, repo)  # /release, /unblock may have made a task ready for an agent in line
