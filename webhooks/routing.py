"""Which handler runs for which ``event.action``.

Handlers register with ``@on("issues.assigned")``; searching for the quoted key finds the
handler. Events Fleet deliberately ignores are listed in IGNORED with the reason, so a stored
delivery always ends as processed or ignored, never as an error.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webhooks.context import EventContext

Handler = Callable[["EventContext"], None]

HANDLERS: dict[str, Handler] = {}

IGNORED: dict[str, str] = {
    "issue_comment.edited": "commands count only in new comments",
    "issue_comment.deleted": "a deleted command has already been acted on",
    "check_run.created": "state is recorded from the completed run",
    "check_suite.requested": "Fleet reacts to check runs, not suites being requested",
    "pull_request.assigned": "claims are made on issues, not pull requests",
    "pull_request.unassigned": "claims are made on issues, not pull requests",
    "pull_request.review_requested": "no gate depends on requested reviewers",
    "pull_request.review_request_removed": "no gate depends on requested reviewers",
    "pull_request.locked": "locking does not change task state",
    "pull_request.unlocked": "locking does not change task state",
    "pull_request.auto_merge_enabled": "Fleet runs its own merge queue",
    "pull_request.auto_merge_disabled": "Fleet runs its own merge queue",
    "pull_request.enqueued": "GitHub's merge queue is not Fleet's",
    "pull_request.dequeued": "GitHub's merge queue is not Fleet's",
    "issues.locked": "locking does not change task state",
    "issues.unlocked": "locking does not change task state",
    "issues.pinned": "pinning does not change task state",
    "issues.unpinned": "pinning does not change task state",
    "issues.typed": "issue types are not used",
    "issues.untyped": "issue types are not used",
    "pull_request_review_comment": "line comments do not carry commands",
    "pull_request_review_thread": "review threads do not change gates",
}


def on(*keys: str) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler for each ``event.action`` key."""

    def register(handler: Handler) -> Handler:
        for key in keys:
            if key in HANDLERS:
                raise ValueError(f"two handlers for {key}")
            HANDLERS[key] = handler
        return handler

    return register


def route(event: str, action: str | None) -> Handler | None:
    """The handler for this event, or None when Fleet ignores it.

    An exact ``event.action`` wins over a handler registered for the whole ``event``.
    """
    load_handlers()
    if action and f"{event}.{action}" in HANDLERS:
        return HANDLERS[f"{event}.{action}"]
    if action and f"{event}.{action}" in IGNORED:
        return None
    return HANDLERS.get(event)


def ignore_reason(event: str, action: str | None) -> str:
    key = f"{event}.{action}" if action else event
    return IGNORED.get(key) or IGNORED.get(event) or f"Fleet has no handler for {key}"


def load_handlers() -> None:
    """Import the handler modules so their ``@on`` registrations run (idempotent)."""
    from webhooks.handlers import (  # noqa: F401
        checks,
        comments,
        git,
        installation,
        issues,
        labels,
        pulls,
        repository,
    )
