"""The simulator's state: plain dataclasses behind one lock.

Everything GitHub would store lives in a ``World``. Handlers (REST routes and the
Python control API alike) take ``world.lock`` for the whole operation, so state
changes and the webhooks they emit are atomic and ordered.
"""
from __future__ import annotations

import base64
import itertools
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .git_model import GitStore


def iso(ts: float) -> str:
    """GitHub's timestamp format: ``2024-01-02T03:04:05Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, ident: int) -> str:
    """An opaque, stable global id in the spirit of GitHub's node ids."""
    return kind + "_" + base64.b64encode(f"{kind}:{ident}".encode()).decode().rstrip("=")


@dataclass
class User:
    """A GitHub account (user, bot or organization)."""

    login: str
    id: int
    type: str = "User"  # User | Bot | Organization
    permission: str | None = None  # default permission on every repository; None = unset
    name: str | None = None

    @property
    def node_id(self) -> str:
        """The user's global node id."""
        return node_id("U", self.id)


@dataclass
class AppInfo:
    """A GitHub App identity (Fleet itself, or the simulated CI app)."""

    id: int
    slug: str
    name: str
    owner: User
    bot: User
    permissions: dict
    events: list
    client_id: str = ""
    created_at: float = field(default_factory=time.time)


@dataclass
class Label:
    """A repository label."""

    id: int
    name: str
    color: str = "ededed"
    description: str | None = None
    default: bool = False


@dataclass
class Milestone:
    """A repository milestone (Fleet's epics)."""

    id: int
    number: int
    title: str
    creator: User
    created_at: float
    updated_at: float
    description: str | None = None
    state: str = "open"
    due_on: str | None = None
    closed_at: float | None = None


@dataclass
class Reaction:
    """An emoji reaction on an issue or comment."""

    id: int
    user: User
    content: str
    created_at: float


@dataclass
class Comment:
    """An issue or pull request comment."""

    id: int
    issue_number: int
    user: User
    body: str
    created_at: float
    updated_at: float
    app: AppInfo | None = None
    reactions: list = field(default_factory=list)


@dataclass
class Review:
    """A pull request review."""

    id: int
    user: User
    body: str
    state: str
    commit_id: str
    submitted_at: float


@dataclass
class PullRequest:
    """The pull-request half of an Issue whose ``pull`` is set."""

    id: int
    head_ref: str
    base_ref: str
    head_sha: str
    base_sha: str
    draft: bool = False
    merged: bool = False
    merged_at: float | None = None
    merged_by: User | None = None
    merge_commit_sha: str | None = None
    maintainer_can_modify: bool = False
    reviews: list = field(default_factory=list)
    # (base_sha, head_sha) already reported once as mergeable: null
    null_reported_for: tuple | None = None


@dataclass
class Issue:
    """An issue, or a pull request when ``pull`` is set (GitHub numbers them together)."""

    id: int
    number: int
    title: str
    user: User
    created_at: float
    updated_at: float
    body: str | None = None
    state: str = "open"
    state_reason: str | None = None
    labels: list = field(default_factory=list)  # label names, in the repo's order of adding
    assignees: list = field(default_factory=list)  # User objects
    milestone: int | None = None
    comments: list = field(default_factory=list)
    closed_at: float | None = None
    closed_by: User | None = None
    locked: bool = False
    reactions: list = field(default_factory=list)
    pull: PullRequest | None = None
    app: AppInfo | None = None
    events: list = field(default_factory=list)  # IssueEvent, oldest first (the issue's timeline)


@dataclass
class IssueEvent:
    """One entry of ``GET .../issues/{n}/events``: ``assigned`` / ``unassigned`` so far.

    ``created_at`` is the simulated clock's reading; ids grow with time (GitHub's do as well)."""

    id: int
    event: str
    actor: User
    created_at: float
    assignee: User | None = None
    app: AppInfo | None = None


@dataclass
class CheckSuite:
    """The suite grouping one App's check runs on one sha."""

    id: int
    head_sha: str
    head_branch: str | None
    app: AppInfo
    created_at: float
    updated_at: float
    status: str = "queued"
    conclusion: str | None = None


@dataclass
class CheckRun:
    """A check run."""

    id: int
    name: str
    head_sha: str
    suite: CheckSuite
    app: AppInfo
    status: str = "queued"
    conclusion: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    external_id: str | None = None
    details_url: str | None = None
    output: dict = field(default_factory=dict)


@dataclass
class Status:
    """A commit status."""

    id: int
    sha: str
    context: str
    state: str
    creator: User
    created_at: float
    updated_at: float
    description: str | None = None
    target_url: str | None = None


@dataclass
class BranchProtection:
    """The two settings of a branch protection rule the simulator enforces, on App pushes only."""

    allow_force_pushes: bool = False
    restrict_pushes: bool = True  # "Restrict who can push" without the App on the list


@dataclass
class Repo:
    """A repository with its git data, issues, labels, milestones, checks and relations."""

    id: int
    owner: User
    name: str
    default_branch: str
    private: bool
    created_at: float
    updated_at: float
    pushed_at: float
    description: str | None = None
    git: GitStore = field(default_factory=GitStore)
    issues: dict = field(default_factory=dict)  # number -> Issue
    labels: dict = field(default_factory=dict)  # lower(name) -> Label
    milestones: dict = field(default_factory=dict)  # number -> Milestone
    collaborators: dict = field(default_factory=dict)  # login -> permission
    check_suites: list = field(default_factory=list)
    check_runs: list = field(default_factory=list)
    statuses: list = field(default_factory=list)
    blocked_by: dict = field(default_factory=dict)  # issue number -> [blocker numbers]
    sub_issues: dict = field(default_factory=dict)  # parent number -> [child numbers]
    pinned: list = field(default_factory=list)
    archived: bool = False  # read-only: every write answers 403
    deleted_issues: set = field(default_factory=set)  # numbers of deleted issues (410 Gone)
    protections: dict = field(default_factory=dict)  # branch name -> BranchProtection
    next_number: int = 1
    next_milestone: int = 1

    @property
    def full_name(self) -> str:
        """``owner/name``."""
        return f"{self.owner.login}/{self.name}"

    @property
    def node_id(self) -> str:
        """The repository's global node id."""
        return node_id("R", self.id)


@dataclass
class Installation:
    """An installation of an App on some repositories of one account."""

    id: int
    app: AppInfo
    account: User
    repos: list  # full names
    created_at: float
    updated_at: float


@dataclass
class Token:
    """An installation token (``installation_id``) or a user token (``login``)."""

    token: str
    expires_at: float
    installation_id: int | None = None
    login: str | None = None  # user tokens act as this user


# Ids are unique across every World in the process: clients such as githubkit cache
# installation tokens by (app id, installation id) process-wide, so two simulators
# handing out the same installation id would make a client reuse a dead token.
_IDS = itertools.count(1000)


class World:
    """All simulated GitHub state plus a global lock and id generator."""

    def __init__(self, api_url: str = "http://127.0.0.1"):
        self.lock = threading.RLock()
        self.api_url = api_url
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}  # lower(full_name) -> Repo
        self.installations: dict[int, Installation] = {}
        # lower("org/team-slug") -> {lower(login): membership state ("active" or "pending")}
        self.team_members: dict[str, dict[str, str]] = {}
        self.tokens: dict[str, Token] = {}
        self.apps: dict[int, AppInfo] = {}
        self.app: AppInfo | None = None  # Fleet's App (the one webhooks go to)
        self.ci_app: AppInfo | None = None  # a second App that plays CI
        self.clock = time.time  # swappable for tests that need to move time
        self.emit = lambda event, payload, installation_id: None

    def now(self) -> float:
        """Current simulated time (epoch seconds)."""
        return self.clock()

    def new_id(self) -> int:
        """A fresh id, unique across all object kinds (GitHub ids are per kind, ours need not be)."""
        return next(_IDS)

    @property
    def html_url(self) -> str:
        """Base for html_url fields: the simulator itself, so links stay local."""
        return self.api_url

    def user(self, login: str, type_: str = "User") -> User:
        """Look up a user, creating it on first sight."""
        u = self.users.get(login.lower())
        if u is None:
            u = User(login=login, id=self.new_id(), type=type_)
            self.users[login.lower()] = u
        return u

    def repo(self, full_name: str) -> Repo | None:
        """The repository called ``owner/name`` (case-insensitive), or None."""
        return self.repos.get(full_name.lower())

    def installation_for(self, repo: Repo, app_id: int | None = None) -> Installation | None:
        """The installation of ``app_id`` (any app when None) that covers ``repo``."""
        for inst in self.installations.values():
            if repo.full_name in inst.repos and (app_id is None or inst.app.id == app_id):
                return inst
        return None

    def permission(self, repo: Repo, login: str) -> str:
        """Effective permission of ``login`` on ``repo``: admin, maintain, write, triage, read or none."""
        if login.lower() == repo.owner.login.lower():
            return "admin"
        if login in repo.collaborators:
            return repo.collaborators[login]
        u = self.users.get(login.lower())
        if u and u.type == "Bot" and login.endswith("[bot]"):
            return "write" if self._bot_installed(repo, u) else "none"
        perm = u.permission if u else None
        if perm is None:
            # Anyone can read a public repository; nobody else can see a private one.
            return "none" if repo.private else "read"
        return perm

    def _bot_installed(self, repo: Repo, bot: User) -> bool:
        return any(inst.app.bot is bot and repo.full_name in inst.repos for inst in self.installations.values())
