"""Who handles which ``event.action``: one table, read top to bottom.

A key is ``event.action``, or a bare ``event`` for events without actions (``push``, ``status``).
Events Fleet deliberately ignores are listed in IGNORED with the reason, so a stored delivery
always ends as processed or ignored, never as an error. Handlers are thin: they parse the
payload and call ``app``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from webhooks.handlers import checks, comments, git, installation, issues, labels, pulls, repository

if TYPE_CHECKING:
    from webhooks.context import EventContext

Handler = Callable[["EventContext"], None]

ROUTES: dict[str, Handler] = {
    "check_run.completed": checks.check_run_completed,
    "check_run.created": checks.check_run_created,
    "check_run.requested_action": checks.check_run_rerequested,
    "check_run.rerequested": checks.check_run_rerequested,
    "check_suite.completed": checks.check_suite_changed,
    "check_suite.rerequested": checks.check_suite_changed,
    "create": git.ref_created,
    "delete": git.ref_deleted,
    "installation.created": installation.installation_added,
    "installation.deleted": installation.installation_deleted,
    "installation.new_permissions_accepted": installation.installation_added,
    "installation.suspend": installation.installation_suspended,
    "installation.unsuspend": installation.installation_added,
    "installation_repositories.added": installation.installation_repositories,
    "installation_repositories.removed": installation.installation_repositories,
    "issue_comment.created": comments.comment_created,
    "issue_dependencies.blocked_by_added": issues.dependency_changed,
    "issue_dependencies.blocked_by_removed": issues.dependency_changed,
    "issue_dependencies.blocking_added": issues.dependency_changed,
    "issue_dependencies.blocking_removed": issues.dependency_changed,
    "issues.assigned": issues.issue_changed,
    "issues.closed": issues.issue_changed,
    "issues.deleted": issues.issue_deleted,
    "issues.demilestoned": issues.issue_changed,
    "issues.edited": issues.issue_changed,
    "issues.labeled": issues.issue_changed,
    "issues.milestoned": issues.issue_changed,
    "issues.opened": issues.issue_changed,
    "issues.reopened": issues.issue_changed,
    "issues.transferred": issues.issue_changed,
    "issues.unassigned": issues.issue_changed,
    "issues.unlabeled": issues.issue_changed,
    "label.created": labels.label_created,
    "label.deleted": labels.label_deleted,
    "label.edited": labels.label_edited,
    "milestone.closed": labels.milestone_changed,
    "milestone.created": labels.milestone_changed,
    "milestone.deleted": labels.milestone_deleted,
    "milestone.edited": labels.milestone_changed,
    "milestone.opened": labels.milestone_changed,
    "ping": installation.ping,
    "pull_request.closed": pulls.pull_changed,
    "pull_request.converted_to_draft": pulls.pull_changed,
    "pull_request.edited": pulls.pull_changed,
    "pull_request.labeled": pulls.pull_changed,
    "pull_request.opened": pulls.pull_changed,
    "pull_request.ready_for_review": pulls.pull_changed,
    "pull_request.reopened": pulls.pull_changed,
    "pull_request.synchronize": pulls.pull_changed,
    "pull_request.unlabeled": pulls.pull_changed,
    "pull_request_review.dismissed": pulls.review_changed,
    "pull_request_review.edited": pulls.review_changed,
    "pull_request_review.submitted": pulls.review_changed,
    "push": git.pushed,
    "repository.archived": repository.repository_changed,
    "repository.deleted": repository.repository_deleted,
    "repository.privatized": repository.repository_changed,
    "repository.publicized": repository.repository_changed,
    "repository.renamed": repository.repository_changed,
    "repository.transferred": repository.repository_transferred,
    "repository.unarchived": repository.repository_changed,
    "status": checks.status_changed,
    "sub_issues.parent_issue_added": issues.sub_issue_changed,
    "sub_issues.parent_issue_removed": issues.sub_issue_changed,
    "sub_issues.sub_issue_added": issues.sub_issue_changed,
    "sub_issues.sub_issue_removed": issues.sub_issue_changed,
}

IGNORED: dict[str, str] = {
    "issue_comment.edited": "commands count only in new comments",
    "issue_comment.deleted": "a deleted command has already been acted on",
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


def route(event: str, action: str | None) -> Handler | None:
    """The handler for this event, or None when Fleet ignores it.

    An exact ``event.action`` wins over a handler registered for the whole ``event``.
    """
    if action and f"{event}.{action}" in ROUTES:
        return ROUTES[f"{event}.{action}"]
    if action and f"{event}.{action}" in IGNORED:
        return None
    return ROUTES.get(event)


def ignore_reason(event: str, action: str | None) -> str:
    key = f"{event}.{action}" if action else event
    return IGNORED.get(key) or IGNORED.get(event) or f"Fleet has no handler for {key}"
