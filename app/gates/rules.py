"""Quality gates: may this pull request merge, judged on exactly its current head SHA?

Pure code, no I/O. The job layer fetches a complete ``PullSnapshot`` (PR, reviews, labels,
check runs and commit statuses on the head), calls ``evaluate_gates`` and publishes the verdict
as the ``fleet/gates`` check run (``app.gates.check_run``). The merge queue (``app.queue.rules``)
reads the same verdict.

Each gate is a small rule ``(pr, config) -> GateResult`` with one of three states:

- ``passed``:  nothing to do;
- ``waiting``: will settle by itself (CI running, GitHub still computing mergeability);
- ``failing``: needs someone to act (a failed check, a conflict, a blocking label...).

Reasons are plain text written by Fleet; anything that comes from users or other apps (check
names, labels, logins, branch names) travels separately in ``GateResult.names`` so renderers
can quote it safely.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Literal

from app.github.permissions import has_permission
from app.repos.config import ANY_APP, GatesConfig

GateName = Literal[
    "checks", "reviews", "changes_requested", "labels", "draft", "linked_task", "conflict", "size"
]
GateState = Literal["passed", "waiting", "failing"]
Conclusion = Literal["success", "waiting", "failure"]
CheckKind = Literal["check_run", "status"]
ReviewState = Literal["APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"]

OWN_CHECK_NAME = "fleet/gates"

# Check-run conclusions (and commit-status states) that let a check count as passed. Anything
# else that is completed fails, including conclusions GitHub may add later: fail closed.
PASSING_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})
FAILING_CONCLUSIONS = frozenset(
    {"failure", "timed_out", "cancelled", "action_required", "stale", "error", "startup_failure"}
)
# mergeable_state values that mean "conflicts with the base".
_CONFLICT_STATES = frozenset({"dirty"})


NO_REQUIRED_CHECKS_WARNING = (
    "No required checks are configured: any green check lets a PR merge. "
    "Set `gates.required_checks` in .github/fleet.yml."
)


def config_warnings(config: GatesConfig) -> tuple[str, ...]:
    """Fleet's own warnings about a gates configuration (plain text with `code` spans)."""
    required = [name for name, _ in config.required() if name != OWN_CHECK_NAME]
    return () if required else (NO_REQUIRED_CHECKS_WARNING,)


@dataclass(frozen=True)
class CheckResult:
    """One check run or commit status reported on some commit.

    ``started_at`` / ``id`` decide which of several runs with the same name is the latest
    (re-runs get a later start and a larger id); with neither, later in the list wins.
    Commit statuses: build them with ``CheckResult.from_status``.
    """

    name: str
    kind: CheckKind
    status: str  # queued | in_progress | completed (GitHub may also send waiting/requested/pending)
    conclusion: str | None
    head_sha: str
    url: str | None = None
    app_slug: str | None = None
    started_at: datetime | None = None
    id: int | None = None

    @classmethod
    def from_status(
        cls,
        context: str,
        state: str,
        head_sha: str,
        url: str | None = None,
        *,
        updated_at: datetime | None = None,
        id: int | None = None,
        creator: str | None = None,
    ) -> "CheckResult":
        """Map a commit status (``pending|success|failure|error``) onto the check-run model."""
        if state == "pending":
            return cls(context, "status", "in_progress", None, head_sha, url, creator, updated_at, id)
        return cls(context, "status", "completed", state, head_sha, url, creator, updated_at, id)

    @property
    def state(self) -> GateState:
        """This single check's state: waiting until completed, then passed or failing."""
        if self.status != "completed":
            return "waiting"
        if self.conclusion in PASSING_CONCLUSIONS:
            return "passed"
        return "failing"


@dataclass(frozen=True)
class Review:
    """A submitted review: reviewer login, state, and the commit it was made on."""

    reviewer: str
    state: ReviewState | str
    commit_id: str | None = None
    submitted_at: datetime | None = None


@dataclass(frozen=True)
class LinkedTask:
    """What Fleet's database knows of a task the PR is linked to: its state and its holder
    (``login``, ``name`` for a named agent, the branch the holder works on), if any."""

    number: int
    state: Literal["open", "closed"] = "open"
    holder_login: str | None = None
    holder_name: str | None = None
    holder_branch: str | None = None

    @property
    def holder(self) -> str | None:
        """The holder as Fleet writes agents: ``login`` or ``login:name``."""
        if self.holder_login is None:
            return None
        return f"{self.holder_login}:{self.holder_name}" if self.holder_name else self.holder_login


@dataclass(frozen=True)
class PullSnapshot:
    """Everything the gates and the queue need to know about one pull request, fetched at once.

    ``merge_base_sha`` is the merge base of head and the base branch's tip (compare API,
    ``merge_base_commit.sha``): the PR is up to date when it equals the base tip. The queue treats
    an unknown merge base as "behind", so fill it for the in-flight PR.
    """

    repo: str
    number: int
    head_sha: str
    base_ref: str
    head_ref: str
    author: str
    title: str = ""
    body: str | None = None
    draft: bool = False
    state: Literal["open", "closed"] = "open"
    merged: bool = False
    mergeable: bool | None = None
    mergeable_state: str = "unknown"
    labels: tuple[str, ...] = ()
    linked_tasks: tuple[int, ...] = ()
    changed_files: int = 0
    additions: int = 0
    deletions: int = 0
    reviews: tuple[Review, ...] = ()
    checks: tuple[CheckResult, ...] = ()
    merge_base_sha: str | None = None
    merge_commit_sha: str | None = None
    # (login, permission) of each reviewer, as GitHub reports it; a reviewer missing here has none.
    reviewer_permissions: tuple[tuple[str, str], ...] = ()
    # The linked tasks as Fleet's database has them (no GitHub call), and the agent the head
    # branch names (``agent-d/12-topic``); a linked task missing here is not judged.
    task_states: tuple[LinkedTask, ...] = ()
    branch_agent: str | None = None

    def reviewer_permission(self, login: str) -> str:
        wanted = login.lower()
        return next((perm for who, perm in self.reviewer_permissions if who.lower() == wanted), "none")


@dataclass(frozen=True)
class GateResult:
    """The outcome of one gate.

    ``reason`` is Fleet's own plain text; ``names`` are the user-controlled subjects it is
    about (check names, labels, logins), to be quoted by the renderer; ``link`` points at the
    most useful detail (e.g. the first failing check); ``checks`` are the check results behind
    a failing or waiting checks gate.
    """

    gate: GateName
    state: GateState
    reason: str
    names: tuple[str, ...] = ()
    link: str | None = None
    checks: tuple[CheckResult, ...] = ()
    notes: tuple["GateNote", ...] = ()

    def describe(self) -> str:
        """Plain-text one-liner for logs (not for Markdown: names are not escaped)."""
        text = f"{self.reason}: {', '.join(self.names)}" if self.names else self.reason
        return "; ".join([text] + [f"{n.reason}: {', '.join(n.names)}" for n in self.notes])


@dataclass(frozen=True)
class GateNote:
    """A further remark on a gate result (e.g. approvals that did not count): Fleet's plain
    ``reason`` about user-controlled ``names``, quoted by the renderer like ``GateResult.names``."""

    reason: str
    names: tuple[str, ...]


@dataclass(frozen=True)
class GateVerdict:
    """All gate results for one head SHA; ``conclusion`` is what ``fleet/gates`` reports."""

    head_sha: str
    results: tuple[GateResult, ...]
    checks: tuple[CheckResult, ...] = field(default=())  # latest run of each check considered
    warnings: tuple[str, ...] = ()  # Fleet's own text about the configuration (config_warnings)

    @property
    def conclusion(self) -> Conclusion:
        """failure if any gate fails, else waiting if any waits, else success."""
        states = {r.state for r in self.results}
        if "failing" in states:
            return "failure"
        if "waiting" in states:
            return "waiting"
        return "success"

    @property
    def failing(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if r.state == "failing")

    @property
    def waiting(self) -> tuple[GateResult, ...]:
        return tuple(r for r in self.results if r.state == "waiting")

    def result(self, gate: GateName) -> GateResult:
        """The result of the named gate."""
        for r in self.results:
            if r.gate == gate:
                return r
        raise KeyError(gate)

    def is_green_for(self, sha: str) -> bool:
        """True only when every gate passed and the verdict was computed for exactly ``sha``."""
        return self.conclusion == "success" and self.head_sha == sha


# --- checks -------------------------------------------------------------------------------

def _recency(indexed: tuple[int, CheckResult]) -> tuple:
    index, check = indexed
    started = check.started_at.timestamp() if check.started_at is not None else float("-inf")
    return (started, check.id if check.id is not None else -1, index)


def latest_checks(pr: PullSnapshot, own_check_name: str = OWN_CHECK_NAME) -> tuple[CheckResult, ...]:
    """The latest run of every check on exactly ``pr.head_sha``, Fleet's own check excluded.

    "Latest" is per source (kind, app, name), so a re-run supersedes its own earlier failure,
    but another app (or anyone with status access) posting a success under the same name cannot
    hide a real failure: ``_combine`` keeps the worst state per name.
    """
    latest: dict[tuple[str, str, str], tuple[int, CheckResult]] = {}
    for indexed in enumerate(pr.checks):
        check = indexed[1]
        # Only the exact head counts; our own check never gates itself.
        if check.head_sha != pr.head_sha or check.name == own_check_name:
            continue
        key = (check.kind, check.app_slug or "", check.name)
        if key not in latest or _recency(indexed) >= _recency(latest[key]):
            latest[key] = indexed
    return tuple(c for _, c in sorted(latest.values(), key=lambda ic: (ic[1].name, ic[0])))


_SEVERITY = {"passed": 0, "waiting": 1, "failing": 2}


def _combine(checks: tuple[CheckResult, ...]) -> dict[str, tuple[GateState, tuple[CheckResult, ...]]]:
    """Group by name; a name is as bad as its worst source. Values: (state, worst checks)."""
    grouped: dict[str, list[CheckResult]] = {}
    for check in checks:
        grouped.setdefault(check.name, []).append(check)
    combined = {}
    for name, runs in grouped.items():
        worst = max((c.state for c in runs), key=_SEVERITY.__getitem__)
        combined[name] = (worst, tuple(c for c in runs if c.state == worst))
    return combined


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _first_url(checks: list[CheckResult]) -> str | None:
    return next((c.url for c in checks if c.url), None)


def reported_by(check: CheckResult, app: str) -> bool:
    """The check comes from ``app`` (a slug, or ``any``): a check run's App, or for a commit
    status its creator ``app[bot]``."""
    if app == ANY_APP:
        return True
    source = (check.app_slug or "").lower()
    return source == (app if check.kind == "check_run" else f"{app}[bot]")


def gate_checks(pr: PullSnapshot, config: GatesConfig, own_check_name: str = OWN_CHECK_NAME) -> GateResult:
    """Required checks succeeded on the head, each reported by the App it is tied to (or, with
    none configured, every reported check succeeded and at least ``min_checks`` reported).

    A name is as bad as its worst source: a failing run from any App still fails it, while only
    a run from the tied App can make it pass."""
    latest = latest_checks(pr, own_check_name)
    combined = _combine(latest)
    required = tuple((n, app) for n, app in config.required() if n != own_check_name)
    wanted = required if required else tuple((n, ANY_APP) for n in sorted(combined))
    failing, failing_runs, running, running_runs, missing, foreign = [], [], [], [], [], []
    for name, app in wanted:
        state, runs = combined.get(name, ("waiting", ()))  # never reported: not failing
        if state == "failing":
            failing.append(name)
            failing_runs.extend(runs)
        elif not any(c.name == name and reported_by(c, app) for c in latest):
            missing.append(name)
            if name in combined:
                foreign.append(name)
        elif state == "waiting":
            running.append(name)
            running_runs.extend(runs)
    notes = (GateNote("reported only by another App than required, not counted", tuple(foreign)),) if foreign else ()
    if failing:
        return GateResult(
            "checks", "failing", f"{_plural(len(failing), 'check')} failed",
            tuple(failing), _first_url(failing_runs), tuple(failing_runs),
        )
    if running or missing:
        parts = []
        if running:
            parts.append(f"{len(running)} running")
        if missing:
            parts.append(f"{len(missing)} not reported yet")
        return GateResult(
            "checks", "waiting", "waiting for checks (" + ", ".join(parts) + ")",
            tuple(running + missing), _first_url(running_runs), tuple(running_runs), notes,
        )
    if not required and len(wanted) < config.min_checks:
        return GateResult(
            "checks", "waiting",
            f"waiting for checks ({len(wanted)} of at least {config.min_checks} reported)",
        )
    if required:
        return GateResult("checks", "passed", f"{_plural(len(wanted), 'required check')} passed")
    if not wanted:
        return GateResult("checks", "passed", "no checks required")
    return GateResult("checks", "passed", f"{_plural(len(wanted), 'check')} passed")


# --- reviews ------------------------------------------------------------------------------

def latest_reviews(pr: PullSnapshot) -> dict[str, Review]:
    """Each reviewer's standing review, like GitHub computes it.

    A later COMMENTED review does not replace an approval or a change request; DISMISSED
    clears it; the author's own reviews never count. Order: ``submitted_at`` when known, else
    list order.
    """
    def order(indexed: tuple[int, Review]) -> tuple:
        i, r = indexed
        return (r.submitted_at.timestamp() if r.submitted_at else float("-inf"), i)

    standing: dict[str, Review] = {}
    for _, review in sorted(enumerate(pr.reviews), key=order):
        if review.reviewer.lower() == pr.author.lower():
            continue
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            standing[review.reviewer] = review
    return {k: v for k, v in standing.items() if v.state != "DISMISSED"}


def _counts(pr: PullSnapshot, reviewer: str) -> bool:
    """Only a reviewer with write access (or higher) can approve or block."""
    return has_permission(pr.reviewer_permission(reviewer), "write")


def gate_reviews(pr: PullSnapshot, config: GatesConfig) -> GateResult:
    """At least ``required_approvals`` reviewers with write access approve exactly the head
    (an approval of an older commit does not carry over a push)."""
    approvers, stale, outsiders = [], [], []
    for reviewer, review in sorted(latest_reviews(pr).items()):
        if review.state != "APPROVED":
            continue
        if not _counts(pr, reviewer):
            outsiders.append(reviewer)
        elif review.commit_id != pr.head_sha:
            stale.append(reviewer)
        else:
            approvers.append(reviewer)
    notes = tuple(
        GateNote(reason, tuple(names)) for reason, names in (
            ("not counted, approved an older commit", stale),
            ("not counted, no write access", outsiders),
        ) if names
    )
    need = config.required_approvals
    if len(approvers) >= need:
        if need == 0:
            return GateResult("reviews", "passed", "no approval required", tuple(approvers), notes=notes)
        return GateResult("reviews", "passed", f"approved by {len(approvers)} of {need} required", tuple(approvers),
                          notes=notes)
    # An approval needs a person to act: failing, not waiting.
    return GateResult("reviews", "failing", f"{len(approvers)} of {need} required approvals", tuple(approvers),
                      notes=notes)


def gate_changes_requested(pr: PullSnapshot, config: GatesConfig) -> GateResult:
    """No reviewer with write access has a standing "changes requested" review (when configured
    to block). Like GitHub, a change request stands across pushes until dismissed or superseded."""
    if not config.block_on_changes_requested:
        return GateResult("changes_requested", "passed", "not blocking (disabled)")
    requested = sorted(r for r, v in latest_reviews(pr).items() if v.state == "CHANGES_REQUESTED")
    blockers = tuple(r for r in requested if _counts(pr, r))
    ignored = tuple(r for r in requested if not _counts(pr, r))
    notes = (GateNote("not counted, no write access", ignored),) if ignored else ()
    if blockers:
        return GateResult("changes_requested", "failing", "changes requested by", blockers, notes=notes)
    return GateResult("changes_requested", "passed", "no outstanding change requests", notes=notes)


def gate_labels(pr: PullSnapshot, config: GatesConfig) -> GateResult:
    """No blocking label (GitHub label names are case-insensitive)."""
    blocking = {b.lower() for b in config.blocking_labels}
    present = tuple(label for label in pr.labels if label.lower() in blocking)
    if present:
        word = "blocking label" if len(present) == 1 else "blocking labels"
        return GateResult("labels", "failing", word, present)
    return GateResult("labels", "passed", "no blocking label")


def gate_draft(pr: PullSnapshot, config: GatesConfig) -> GateResult:
    """The pull request is not a draft."""
    if pr.draft:
        return GateResult("draft", "failing", "the pull request is a draft")
    return GateResult("draft", "passed", "ready for review")


def is_pr_agent(task: LinkedTask, pr: PullSnapshot) -> bool:
    """The task's holder is the agent behind ``pr``: the holder works on the PR's head branch,
    or is the PR author's account and (when both are named) the agent the branch names."""
    if task.holder_login is None:
        return False
    if task.holder_branch is not None and task.holder_branch == pr.head_ref:
        return True
    if task.holder_login.lower() != pr.author.lower():
        return False
    return task.holder_name is None or pr.branch_agent is None or task.holder_name.lower() == pr.branch_agent.lower()


def gate_linked_task(pr: PullSnapshot, config: GatesConfig) -> GateResult:
    """The pull request is linked to at least one task (when required), and none of its linked
    tasks is closed or held by another agent: merging it would duplicate finished or someone
    else's work (two PRs for one task must not both merge)."""
    closed = tuple(f"#{t.number}" for t in pr.task_states if t.number in pr.linked_tasks and t.state == "closed")
    if closed:
        return GateResult("linked_task", "failing", "the linked task is already closed", closed)
    foreign = [t for t in pr.task_states
               if t.number in pr.linked_tasks and t.holder is not None and not is_pr_agent(t, pr)]
    if foreign:
        notes = tuple(GateNote(f"#{t.number} is held by", (t.holder,)) for t in foreign[1:])  # type: ignore[misc]
        first = foreign[0]
        return GateResult("linked_task", "failing", f"the linked task #{first.number} is held by another agent",
                          (first.holder,), notes=notes)  # type: ignore[arg-type]
    if pr.linked_tasks:
        tasks = ", ".join(f"#{n}" for n in sorted(set(pr.linked_tasks)))
        return GateResult("linked_task", "passed", f"linked to {tasks}")
    if not config.require_linked_task:
        return GateResult("linked_task", "passed", "no linked task required")
    return GateResult(
        "linked_task", "failing",
        "not linked to a task (name the branch like agent/123-topic or write Closes #123 in the description)",
    )


def gate_conflict(pr: PullSnapshot, config: GatesConfig) -> GateResult:
    """No merge conflict with the base; ``mergeable is None`` means GitHub is still computing."""
    if pr.mergeable is False or pr.mergeable_state in _CONFLICT_STATES:
        return GateResult("conflict", "failing", "merge conflict with the base branch", (pr.base_ref,))
    if pr.mergeable is None:
        return GateResult("conflict", "waiting", "GitHub is still computing mergeability")
    return GateResult("conflict", "passed", "no conflict")


def gate_size(pr: PullSnapshot, config: GatesConfig) -> GateResult:
    """Within the optional limits on changed files and changed lines."""
    problems = []
    if config.max_changed_files is not None and pr.changed_files > config.max_changed_files:
        problems.append(f"{pr.changed_files} files changed (limit {config.max_changed_files})")
    lines = pr.additions + pr.deletions
    if config.max_changed_lines is not None and lines > config.max_changed_lines:
        problems.append(f"{lines} lines changed (limit {config.max_changed_lines})")
    if problems:
        return GateResult("size", "failing", "too large: " + ", ".join(problems))
    if config.max_changed_files is None and config.max_changed_lines is None:
        return GateResult("size", "passed", "no size limit")
    return GateResult("size", "passed", f"{pr.changed_files} files, {lines} lines changed")


Rule = Callable[[PullSnapshot, GatesConfig], GateResult]

# Order is the order of rows in the fleet/gates table.
RULES: tuple[Rule, ...] = (
    gate_checks,
    gate_reviews,
    gate_changes_requested,
    gate_labels,
    gate_draft,
    gate_linked_task,
    gate_conflict,
    gate_size,
)


def evaluate_gates(pr: PullSnapshot, config: GatesConfig, *, own_check_name: str = OWN_CHECK_NAME) -> GateVerdict:
    """Evaluate every gate for ``pr`` at exactly ``pr.head_sha``; one result per gate."""
    results = tuple(
        gate_checks(pr, config, own_check_name) if rule is gate_checks else rule(pr, config)
        for rule in RULES
    )
    return GateVerdict(pr.head_sha, results, latest_checks(pr, own_check_name), config_warnings(config))
