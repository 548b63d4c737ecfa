"""Small typed views of webhook payloads: only the fields Fleet uses.

Handlers parse payloads into these at the boundary; raw dicts do not travel past ``webhooks/``. Unknown
fields are ignored so GitHub adding fields never breaks a handler.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class User(_Model):
    login: str
    id: int | None = None
    type: str = "User"


class Label(_Model):
    name: str
    color: str | None = None
    description: str | None = None


class Milestone(_Model):
    number: int
    title: str
    description: str | None = None
    state: str = "open"
    due_on: datetime | None = None


class Repository(_Model):
    id: int
    full_name: str
    default_branch: str = "main"
    private: bool = False
    archived: bool = False


class Installation(_Model):
    id: int


class InstallationDetail(_Model):
    id: int
    account: User | None = None
    suspended_at: datetime | None = None


class Issue(_Model):
    id: int | None = None
    node_id: str | None = None
    number: int
    title: str = ""
    body: str | None = None
    state: str = "open"
    state_reason: str | None = None
    user: User | None = None
    labels: list[Label] = []
    assignees: list[User] = []
    milestone: Milestone | None = None
    pull_request: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    closed_at: datetime | None = None

    @property
    def is_pull_request(self) -> bool:
        return self.pull_request is not None


class Comment(_Model):
    id: int
    body: str | None = None
    user: User
    created_at: datetime | None = None
    performed_via_github_app: dict[str, Any] | None = None


class Ref(_Model):
    ref: str
    sha: str
    repo: Repository | None = None


class PullRequest(_Model):
    id: int | None = None
    node_id: str | None = None
    number: int
    title: str = ""
    body: str | None = None
    state: str = "open"
    draft: bool = False
    merged: bool | None = False
    merged_at: datetime | None = None
    merge_commit_sha: str | None = None
    user: User | None = None
    head: Ref
    base: Ref
    labels: list[Label] = []
    mergeable: bool | None = None
    mergeable_state: str | None = None
    additions: int | None = None
    deletions: int | None = None
    changed_files: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    closed_at: datetime | None = None


class Review(_Model):
    id: int
    user: User | None = None
    state: str
    commit_id: str | None = None
    submitted_at: datetime | None = None


class App(_Model):
    slug: str | None = None


class CheckRun(_Model):
    id: int
    head_sha: str
    name: str
    status: str
    conclusion: str | None = None
    app: App | None = None
    html_url: str | None = None
    details_url: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    pull_requests: list[dict[str, Any]] = []


class CheckSuite(_Model):
    id: int
    head_sha: str
    head_branch: str | None = None
    status: str | None = None
    conclusion: str | None = None
    app: App | None = None
    pull_requests: list[dict[str, Any]] = []


class Commit(_Model):
    id: str
    message: str = ""
    timestamp: datetime | None = None
    added: list[str] = []
    modified: list[str] = []
    removed: list[str] = []


class Pusher(_Model):
    name: str


class Envelope(_Model):
    """Fields common to every event; each handler parses the part it needs."""

    action: str | None = None
    installation: Installation | None = None
    repository: Repository | None = None
    sender: User | None = None


class IssuesEvent(Envelope):
    issue: Issue
    assignee: User | None = None
    label: Label | None = None
    milestone: Milestone | None = None
    changes: dict[str, Any] | None = None


class IssueCommentEvent(Envelope):
    issue: Issue
    comment: Comment


class PullRequestEvent(Envelope):
    number: int
    pull_request: PullRequest
    label: Label | None = None
    before: str | None = None
    after: str | None = None


class PullRequestReviewEvent(Envelope):
    review: Review
    pull_request: PullRequest


class CheckRunEvent(Envelope):
    check_run: CheckRun
    requested_action: dict[str, Any] | None = None


class CheckSuiteEvent(Envelope):
    check_suite: CheckSuite


class StatusEvent(Envelope):
    id: int
    sha: str
    context: str
    state: str
    target_url: str | None = None
    updated_at: datetime | None = None


class PushEvent(Envelope):
    ref: str
    before: str
    after: str
    created: bool = False
    deleted: bool = False
    forced: bool = False
    pusher: Pusher | None = None
    commits: list[Commit] = []
    head_commit: Commit | None = None


class RefEvent(Envelope):
    """``create`` and ``delete`` (branches and tags)."""

    ref: str
    ref_type: str


class LabelEvent(Envelope):
    label: Label
    changes: dict[str, Any] | None = None


class MilestoneEvent(Envelope):
    milestone: Milestone


class InstallationEvent(Envelope):
    installation: InstallationDetail  # type: ignore[assignment]
    repositories: list[dict[str, Any]] | None = None


class InstallationRepositoriesEvent(Envelope):
    installation: InstallationDetail  # type: ignore[assignment]
    repositories_added: list[dict[str, Any]] = []
    repositories_removed: list[dict[str, Any]] = []


class IssueDependenciesEvent(Envelope):
    blocked_issue: Issue | None = None
    blocking_issue: Issue | None = None
    blocking_issue_repo: Repository | None = None


class SubIssuesEvent(Envelope):
    sub_issue: Issue | None = None
    parent_issue: Issue | None = None
    parent_issue_repo: Repository | None = None
    sub_issue_repo: Repository | None = None


class RepositoryEvent(Envelope):
    """``repository.*``; ``changes`` says what a rename or transfer changed."""

    repository: Repository
    changes: dict[str, Any] | None = None


class RepoRef(_Model):
    """A repository named in a list (installation events carry only id and full_name)."""

    id: int
    full_name: str
    private: bool = False


def labels_of(labels: list[Label]) -> list[str]:
    return sorted({label.name for label in labels})


def logins_of(users: list[User]) -> list[str]:
    return sorted({user.login for user in users})


