"""The per-repository configuration, read from ``.github/fleet.yml`` on the default branch.

Every key has a default, so a repository without the file works. ``docs/config.md`` is the
reference and a test keeps it in step with these models.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.repos.branch_patterns import check_branch_patterns
from app.durations import parse_duration
from app.input_limits import MAX_CONFIG_BYTES
from app.yaml_input import RefusedYaml, load_untrusted_yaml, size_problem

CONFIG_PATH = ".github/fleet.yml"


class _Section(BaseModel):
    # Durations serialise as seconds so a stored config reads back through parse_duration.
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_timedelta="float")


def _duration(value: object) -> timedelta:
    if isinstance(value, timedelta):
        return value
    return parse_duration(value)  # type: ignore[arg-type]


def _duration_or_zero(value: object) -> timedelta:
    """A duration where zero means "not at all"."""
    if isinstance(value, timedelta):
        return value
    return parse_duration(value, allow_zero=True)  # type: ignore[arg-type]


# The label on a repository's status issue (app/status/service.py): never a task.
STATUS_LABEL_NAME = "fleet:status"


class TasksConfig(_Section):
    exclude_labels: tuple[str, ...] = Field(
        (STATUS_LABEL_NAME, "question", "discussion"),
        description="Open issues carrying any of these labels are not tasks.",
    )
    include_labels: tuple[str, ...] = Field(
        (), description="When non-empty, only issues carrying one of these labels are tasks."
    )
    branch_patterns: tuple[str, ...] = Field(
        (
            r"^(?P<agent>[A-Za-z0-9][A-Za-z0-9_.-]*)/(?P<number>\d+)(?:[-_].*)?$",
            r"^(?P<number>\d+)(?:[-_].*)?$",
            r"^issue-(?P<number>\d+)(?:[-_].*)?$",
        ),
        description=(
            "Regexes (RE2 syntax: no backreferences or lookaround) that link a branch to a task; group `number` "
            "is the issue, optional group `agent` the agent name. At most 20 patterns of 500 characters; "
            "branch names over 255 characters are not matched."
        ),
    )
    manage_labels: bool = Field(
        False,
        description=(
            "Maintain the `fleet:ready` / `fleet:blocked` / `fleet:review` / `fleet:queued` state labels too. Off: "
            "`fleet:claimed` (the claim verdict) is the only label Fleet writes; the status issue, the `fleet/gates` "
            "check run and the API show state without spending GitHub's write budget."
        ),
    )

    # Tenant regexes run on RE2 on every push; refuse what it cannot run before storing the config.
    _patterns = field_validator("branch_patterns")(check_branch_patterns)


class ClaimsConfig(_Section):
    lease: timedelta = Field(timedelta(hours=4), description="How long a claim lasts without activity (`30s`, `90m`, `4h`).")
    warn_at: float = Field(0.75, gt=0, lt=1, description="Fraction of the lease after which the holder is warned once.")
    max_per_agent: int = Field(2, ge=1, le=100, description="Work-in-progress limit: open claims one GitHub account may hold (all its `as NAME` agents together).")
    wip_per_name: bool = Field(False, description="Count `max_per_agent` per named agent (`login:name`) instead of per account.")
    wip_scope: Literal["repository", "installation"] = Field(
        "repository", description="Where claims count towards the limit: this repository, or every repository of its installation."
    )
    allow: tuple[str, ...] = Field(
        (), description="Logins (or `@org/team`) allowed to claim; empty means anyone GitHub lets be assigned."
    )
    allow_named_agents: bool = Field(True, description="Accept `/claim as NAME` so several agents can share one account.")
    next_wait: timedelta = Field(
        timedelta(minutes=30),
        description=(
            "How long a `/next` that finds nothing ready waits in line, unanswered, for a task to become ready "
            "(it is then assigned to the agent that has waited longest); after that it is answered `no_ready_task`."
        ),
    )

    _lease = field_validator("lease", "next_wait", mode="before")(_duration)


ANY_APP = "any"  # `app: any` / `required_checks_app: any`: a required check may come from anywhere


class RequiredCheck(_Section):
    name: str = Field(min_length=1, description="The check-run name or commit-status context.")
    app: str | None = Field(
        None, min_length=1,
        description="Slug of the GitHub App that must report it (`any`: any source); unset means `required_checks_app`.",
    )


class GatesConfig(_Section):
    required_checks: tuple[str | RequiredCheck, ...] = Field(
        (),
        description="Checks that must succeed: a name, or `{name: NAME, app: SLUG}`; empty means every check reported on the head (with a warning).",
    )
    required_checks_app: str = Field(
        "github-actions", min_length=1,
        description="The App (slug) a required check listed by name alone must come from; `any` accepts any source.",
    )
    min_checks: int = Field(1, ge=0, description="With `required_checks` empty: how many checks must have reported, so \"no checks yet\" is never green.")
    required_approvals: int = Field(0, ge=0, le=10, description="Approving reviews needed, from reviewers with write access, on the current head.")
    block_on_changes_requested: bool = Field(True, description="An outstanding \"changes requested\" review from a reviewer with write access blocks the merge.")
    blocking_labels: tuple[str, ...] = Field(("do-not-merge", "wip"), description="Labels that block the merge.")
    require_linked_task: bool = Field(True, description="The PR must be linked to a task (branch name or closing keyword).")
    max_changed_files: int | None = Field(None, ge=1, description="Optional limit on files changed.")
    max_changed_lines: int | None = Field(None, ge=1, description="Optional limit on lines added plus deleted.")

    def required(self) -> tuple[tuple[str, str], ...]:
        """(name, app slug or ``any``) of every required check, plain names tied to
        ``required_checks_app``; the first entry of a repeated name wins."""
        found: dict[str, str] = {}
        for entry in self.required_checks:
            name, app = (entry, None) if isinstance(entry, str) else (entry.name, entry.app)
            found.setdefault(name, (app or self.required_checks_app).lower())
        return tuple(found.items())


QueueMode = Literal["serial", "groups"]
QUEUE_MODES: tuple[str, ...] = get_args(QueueMode)


class QueueConfig(_Section):
    allow_authors: bool = Field(
        True,
        description="A PR's author who has write permission may `/queue` their own PR; `false` means someone else with write must (four eyes).",
    )
    label: str | None = Field("fleet:queue", description="Adding this label queues the PR (null disables); the user adding it needs write permission.")
    auto: bool = Field(False, description="Queue a PR as soon as its gates are green, when its author has write permission.")
    merge_method: Literal["merge", "squash", "rebase"] = Field("squash", description="How the PR is merged.")
    update_method: Literal["merge", "rebase"] = Field("merge", description="How a PR behind its base is brought up to date.")
    ci_timeout: timedelta = Field(timedelta(minutes=60), description="How long to wait for green checks on the in-flight head.")
    requeue_on_push: bool = Field(False, description="A push to the in-flight PR keeps it queued (re-tested) instead of dequeuing it.")
    gates_before_merge: bool = Field(
        False,
        description="Write a green `fleet/gates` on the head right before merging it (one write per merged PR): turn on when branch protection requires `fleet/gates`; otherwise the merge itself is the answer.",
    )
    commit_title: str = Field("{title} (#{number})", description="Merge commit title; `{title}`, `{number}`, `{author}` are replaced.")
    commit_message: str = Field(
        "Merged by Fleet from #{number} by {author}.",
        description="Merge commit message; same placeholders plus `{body}` (the PR body without `[skip ci]`-style tokens or trailers).",
    )
    mode: QueueMode = Field(
        "serial",
        description="`serial`: one PR at a time (update it, wait for CI on its head, merge). `groups`: PRs are merged in queue order into Fleet's own branches `fleet/queue/<base>/<id>`, up to `depth` of them tested at once, and the base is fast-forwarded to each group that passed; needs CI on `fleet/queue/**` pushes and `merge_method` merge or squash (with rebase, and when the base refuses Fleet's push, the queue runs serially and `fleet doctor` says why).",
    )
    depth: int = Field(3, ge=1, le=10, description="`mode: groups`: groups under test at once, each built on the one ahead.")
    batch_size: int = Field(1, ge=1, le=20, description="`mode: groups`: PRs per group; a failed group of several is split (into depth + 1 parts, tested as growing prefixes) until the failing PR is found.")
    batch_wait: timedelta = Field(
        timedelta(0),
        description="`mode: groups`: while a group is under test, wait up to this long after it started for more PRs before building a group smaller than `batch_size` (a group costs three writes of its own: branch, fast-forward, deletion). 0: build at once.",
    )
    retries: int = Field(0, ge=0, le=3, description="`mode: groups`: a failed group is built again (its checks re-run on a new commit) up to this many times before any PR in it is blamed, for flaky checks.")

    _timeout = field_validator("ci_timeout", mode="before")(_duration)
    _wait = field_validator("batch_wait", mode="before")(_duration_or_zero)

    def groups_refused(self) -> str | None:
        """Why this configuration runs the queue serially, or None when it asks for merge groups
        that it can have (a base that refuses Fleet's push is recorded separately)."""
        if self.mode != "groups":
            return "queue.mode: serial"
        if self.merge_method == "rebase":
            return ("merge groups need queue.merge_method merge or squash: GitHub's API cannot replay a "
                    "pull request's commits one by one (that needs a clone), so rebase merges one at a time")
        return None

    def mode_text(self, fallback: str | None) -> str:
        """The queue's mode and why, as ``fleet doctor`` and the status issue say it."""
        refused = self.groups_refused()
        if refused is None and fallback is None:
            return f"merge groups (depth {self.depth}, batch size {self.batch_size})"
        return f"serial: {refused or fallback}"


class StatusConfig(_Section):
    enabled: bool = Field(True, description="Maintain the pinned status issue.")
    title: str = Field("Fleet status", min_length=1, max_length=200, description="Title of the status issue.")
    min_interval: timedelta = Field(timedelta(seconds=30), description="At most one edit of the status issue per interval.")
    ready_limit: int = Field(10, ge=1, le=100, description="Ready tasks listed.")
    recent_limit: int = Field(10, ge=1, le=100, description="Recently completed tasks listed.")
    pin: bool = Field(True, description="Pin the status issue (GraphQL `pinIssue`).")

    _interval = field_validator("min_interval", mode="before")(_duration)


class RepoConfig(_Section):
    tasks: TasksConfig = TasksConfig()
    claims: ClaimsConfig = ClaimsConfig()
    gates: GatesConfig = GatesConfig()
    queue: QueueConfig = QueueConfig()
    status: StatusConfig = StatusConfig()


class ConfigError(ValueError):
    """A `.github/fleet.yml` that cannot be used; ``line`` and ``key`` say where."""

    def __init__(self, message: str, *, key: str | None = None, line: int | None = None):
        super().__init__(message)
        self.key = key
        self.line = line


DEFAULT_CONFIG = RepoConfig()


def _line_of(text: str, key_path: tuple[str | int, ...]) -> int | None:
    """Best-effort line number of a dotted key in the YAML source (1-based)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in key_path:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            break
    return line


def parse_repo_config(text: str | None) -> RepoConfig:
    """Parse and validate the file's text; ``None`` or empty text gives the defaults.

    Raises ConfigError naming the key and line of the first problem. Anchors and aliases are
    refused (see ``app.yaml_input``), as is a file over MAX_CONFIG_BYTES.
    """
    if text is None or not text.strip():
        return DEFAULT_CONFIG
    too_large = size_problem(text, MAX_CONFIG_BYTES)
    if too_large:
        raise ConfigError(f"{CONFIG_PATH} is too large: {too_large}")
    try:
        data = load_untrusted_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        what = ": " if isinstance(exc, RefusedYaml) else " is not valid YAML: "
        raise ConfigError(f"{CONFIG_PATH}{what}{getattr(exc, 'problem', exc)}", line=line) from None
    if data is None:
        return DEFAULT_CONFIG
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_PATH} must be a mapping of sections (tasks, claims, gates, queue, status)", line=1)
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc)
        raise ConfigError(f"{CONFIG_PATH}: `{key}`: {err['msg']}", key=key, line=_line_of(text, loc)) from exc


def load_stored_config(data: object) -> RepoConfig:
    """A config stored by an earlier version; the defaults when today's rules refuse it (e.g. a
    branch pattern RE2 cannot run), so the repository keeps working and its next reload of the
    file reports the problem instead of every event failing."""
    try:
        return RepoConfig.model_validate(data)
    except ValidationError:
        return DEFAULT_CONFIG
