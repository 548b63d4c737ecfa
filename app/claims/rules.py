"""Claims: who holds which task, for how long, and every decision about taking and giving back.

A claim is a lease held by an agent identity (a login, or login + name when several agents share
one account). These functions are pure: the caller loads the task's claim state inside a database
transaction (the task row locked), calls a ``decide_*`` function and applies the returned actions.
That transaction, not GitHub, is the single decider of races.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, Union

from app import replies
from app.tasks.agents import AGENT_NAME_RE, AgentId
from app.github.permissions import has_permission
from app.repos.config import ClaimsConfig
from app.tasks.refs import TaskRef


# GitHub's own ordering of a claim, smaller = earlier: (created_at epoch seconds, kind, id) with
# kind ASSIGNED_KIND for an ``assigned`` issue event (id: the event's id) and COMMENT_KIND for a
# /claim or /next comment (id: the comment's id). Ids order claims of one kind; GitHub's times
# have whole seconds only, so an assignment and a comment in the same second are a tie
# (``github_earlier``), which the claim Fleet accepted first keeps. docs/agents.md states the rule.
OrderKey = tuple[int, ...]
ASSIGNED_KIND = 0
COMMENT_KIND = 1


def comment_order_key(created_at: datetime | None, comment_id: int) -> OrderKey:
    """The order key of a claim made by the comment ``comment_id``."""
    return (int(created_at.timestamp()) if created_at else 0, COMMENT_KIND, comment_id)


def assignment_order_keys(events: Iterable[Mapping]) -> dict[str, OrderKey]:
    """login (lower-cased) → the order key of that login's current assignment, from an issue's
    events (``GET .../issues/{n}/events``): its latest ``assigned`` event not undone by a later
    ``unassigned``. Events of other kinds and malformed ones are skipped."""
    keys: dict[str, OrderKey] = {}
    for event in events:
        kind = event.get("event")
        login = ((event.get("assignee") or {}).get("login") or "").lower()
        if not login or kind not in ("assigned", "unassigned"):
            continue
        if kind == "unassigned":
            keys.pop(login, None)
            continue
        try:
            at = datetime.fromisoformat(str(event["created_at"]).replace("Z", "+00:00"))
            keys[login] = (int(at.timestamp()), ASSIGNED_KIND, int(event["id"]))
        except (KeyError, TypeError, ValueError):
            continue
    return keys


def assigners(events: Iterable[Mapping]) -> dict[str, str]:
    """login (lower-cased) → who made its latest assignment (the event's ``actor``)."""
    found: dict[str, str] = {}
    for event in events:
        login = ((event.get("assignee") or {}).get("login") or "").lower()
        actor = (event.get("actor") or {}).get("login")
        if event.get("event") == "assigned" and login and actor:
            found[login] = actor
    return found

# A claim accepted by one delivery can be undone by an *earlier* claim (by GitHub's ordering)
# whose delivery arrived late, but only this soon after: later the holder has started work.
DISPLACE_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class Claim:
    """A held task. The lease runs from ``renewed_at`` (last activity) to ``expires_at``."""

    task: TaskRef
    agent: AgentId
    claimed_at: datetime
    renewed_at: datetime
    expires_at: datetime
    order_key: OrderKey | None = None
    warned: bool = False
    branch: str | None = None
    head_sha: str | None = None
    pr_number: int | None = None
    progress: int | None = None
    progress_note: str | None = None


# --- Actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateClaim:
    claim: Claim


@dataclass(frozen=True)
class RenewClaim:
    """Store ``claim`` (same task and agent) in place of the current one: lease, warning, progress."""

    claim: Claim


@dataclass(frozen=True)
class WarnLease:
    """Record that the holder was warned (``claim.warned`` is True); a Comment goes with it."""

    claim: Claim


ReleaseReason = Literal[
    "released", "expired", "unassigned", "displaced",
    # Ended because GitHub can no longer serve the task (see jobs/leases.py).
    "task-deleted", "task-unreachable", "repository-archived", "repository-removed",
    "repository-deleted", "repository-transferred", "installation-suspended", "installation-deleted",
]


@dataclass(frozen=True)
class ReleaseClaim:
    """End the claim; the task goes back to ready (or blocked)."""

    claim: Claim
    reason: ReleaseReason


@dataclass(frozen=True)
class CompleteClaim:
    """The task was closed while held: the claim ends as done."""

    claim: Claim


@dataclass(frozen=True)
class Assign:
    task: TaskRef
    login: str


@dataclass(frozen=True)
class Unassign:
    task: TaskRef
    login: str


@dataclass(frozen=True)
class GrantVerdict:
    """Tell the new holder, on GitHub, that the claim is theirs: the positive verdict an agent
    waits for before starting (``claim_actions.write_verdict``, one write)."""

    task: TaskRef


@dataclass(frozen=True)
class Comment:
    """Post ``body`` on the task (it ends with a marker: look for it before re-posting)."""

    task: TaskRef
    body: str


Action = Union[CreateClaim, RenewClaim, WarnLease, ReleaseClaim, CompleteClaim, Assign, Unassign, GrantVerdict, Comment]


# --- Claiming ----------------------------------------------------------------------------------

ClaimSource = Literal["assign", "command", "next"]
RefusalReason = Literal["blocked", "taken", "wip_limit", "not_allowed", "maintainer_required", "closed", "not_a_task"]
Outcome = Literal["accept", "refuse", "noop", "ignore"]


@dataclass(frozen=True)
class ClaimRequest:
    """Somebody wants ``claimant`` to hold ``task``.

    ``source`` is ``assign`` for an ``issues.assigned`` event (the claimant is already assigned
    on GitHub), ``command`` for ``/claim``, ``next`` for ``/next``. ``assigner`` is who acted
    (the event's sender or the commenter) and ``assigner_permission`` their repo permission.
    ``claimant_teams`` (``org/team`` slugs) is needed only when ``claims.allow`` names teams.
    """

    task: TaskRef
    claimant: AgentId
    assigner: str
    assigner_permission: str | None = None
    source: ClaimSource = "assign"
    claimant_assignable: bool = True
    claimant_teams: frozenset[str] | None = None
    order_key: OrderKey | None = None


@dataclass(frozen=True)
class ClaimState:
    """What the database knows when the request is decided (read under the task's row lock).

    ``agent_claims`` are the open claims of the claimant's account (every named agent of it) that
    count towards its WIP limit: those in this repository, or in its installation with
    ``claims.wip_scope: installation``; ``open_blockers`` the task's dependencies that are not
    closed (unknown state counts as open).
    """

    task_open: bool = True
    is_task: bool = True
    holder: Claim | None = None
    agent_claims: tuple[Claim, ...] = ()
    open_blockers: tuple[TaskRef, ...] = ()


@dataclass(frozen=True)
class ClaimDecision:
    """The outcome of a claim request and the actions that carry it out.

    ``accept``: a new claim (``claim``). ``noop``: the claimant already holds the task; the lease
    is renewed. ``refuse``: ``reason`` says why. ``ignore``: nothing to do (e.g. a closed issue
    was assigned).
    """

    outcome: Outcome
    actions: tuple[Action, ...] = ()
    reason: RefusalReason | None = None
    claim: Claim | None = None
    holder: AgentId | None = None
    blockers: tuple[TaskRef, ...] = ()
    open_claims: tuple[TaskRef, ...] = ()
    claims_elsewhere: int = 0
    displaced: AgentId | None = None


def allowed_teams(config: ClaimsConfig) -> tuple[str, ...]:
    """The ``org/team`` entries of ``claims.allow`` (written ``@org/team``), lower-cased."""
    return tuple(entry.lstrip("@").lower() for entry in config.allow if "/" in entry)


def _allowed_logins(config: ClaimsConfig) -> set[str]:
    return {entry.lstrip("@").lower() for entry in config.allow if "/" not in entry}


def not_allowed_detail(request: ClaimRequest, config: ClaimsConfig) -> str | None:
    """Why the claimant may not claim at all (``not_assignable``, ``named_agents_disabled``,
    ``allow_list``), or None when they may."""
    if not request.claimant_assignable:
        return "not_assignable"
    if request.claimant.name is not None:
        if not config.allow_named_agents:
            return "named_agents_disabled"
        if not AGENT_NAME_RE.fullmatch(request.claimant.name):
            return "allow_list"
    if config.allow:
        teams = {t.lower() for t in request.claimant_teams or ()}
        if request.claimant.login.lower() not in _allowed_logins(config) and not teams & set(allowed_teams(config)):
            return "allow_list"
    return None


def new_claim(request: ClaimRequest, config: ClaimsConfig, now: datetime) -> Claim:
    return Claim(
        task=request.task, agent=request.claimant, claimed_at=now, renewed_at=now,
        expires_at=now + config.lease, order_key=request.order_key,
    )


def github_earlier(key: OrderKey, other: OrderKey) -> bool:
    """``key`` is strictly earlier than ``other`` by GitHub's record: an earlier second, or the
    same second and the same kind with a smaller id (across kinds a second is a tie)."""
    if len(key) != 3 or len(other) != 3:  # keys stored before kinds existed: (seconds, comment id)
        return key < other if len(key) == len(other) else key[0] < other[0]
    if key[0] != other[0]:
        return key[0] < other[0]
    return key[1] == other[1] and key[2] < other[2]


def _earlier(request: ClaimRequest, holder: Claim, now: datetime) -> bool:
    """The request happened before the holder's claim by GitHub's ordering, and the holder's
    claim is young enough to undo."""
    if request.order_key is None or holder.order_key is None:
        return False
    return github_earlier(request.order_key, holder.order_key) and now - holder.claimed_at <= DISPLACE_WINDOW


def _refuse(request: ClaimRequest, reason: RefusalReason, repo: str, **details: object) -> ClaimDecision:
    holder = details.get("holder")
    blockers = tuple(details.get("blockers", ()))  # type: ignore[arg-type]
    open_claims = tuple(details.get("open_claims", ()))  # type: ignore[arg-type]
    elsewhere = int(details.get("elsewhere", 0))  # type: ignore[call-overload]
    body = replies.claim_refused(
        reason, task=request.task, repo=repo, agent=request.claimant,
        command="next" if request.source == "next" else "claim",
        holder=holder, blockers=blockers, open_claims=open_claims, elsewhere=elsewhere,  # type: ignore[arg-type]
        limit=details.get("limit"), assigner=request.assigner, detail=details.get("detail"),  # type: ignore[arg-type]
    )
    actions: list[Action] = []
    # Undo a self-assignment, but never unassign the account that holds the task (shared logins).
    if request.source == "assign" and not (isinstance(holder, AgentId) and holder.same_account(request.claimant.login)):
        actions.append(Unassign(request.task, request.claimant.login))
    actions.append(Comment(request.task, body))
    return ClaimDecision(
        "refuse", tuple(actions), reason=reason, holder=holder,  # type: ignore[arg-type]
        blockers=blockers, open_claims=open_claims, claims_elsewhere=elsewhere,
    )


def wip_counted(open_claims: Iterable[Claim], request: ClaimRequest, config: ClaimsConfig) -> tuple[TaskRef, ...]:
    """The other tasks that count towards the claimant's WIP limit: every claim of the account
    (``/claim as x1`` … ``as xN`` would otherwise multiply the limit), or with
    ``claims.wip_per_name`` only the claimant identity's own."""
    def counts(claim: Claim) -> bool:
        if config.wip_per_name:
            return claim.agent == request.claimant
        return claim.agent.same_account(request.claimant.login)

    return tuple(c.task for c in open_claims if c.task != request.task and counts(c))


def decide_claim(request: ClaimRequest, state: ClaimState, config: ClaimsConfig, now: datetime) -> ClaimDecision:
    """Accept, refuse or renew one claim request. Rules in order:

    closed / not a task → ignored for assignments, refused for commands; held by the same agent →
    noop (lease renewed); an assignment of the account a named holder uses → noop; someone else assigning without write permission → maintainer_required;
    claimant not on the allow-list / not assignable → not_allowed; held by another agent →
    taken (unless this request is earlier by GitHub's ordering and the holder's claim is young:
    then the holder is displaced); open blockers → blocked; the claimant's counted open claims
    (``wip_counted``) at ``max_per_agent`` → wip_limit; otherwise accepted.
    """
    repo = request.task.repo_full_name
    holder = state.holder
    if not state.task_open or not state.is_task:
        reason: RefusalReason = "closed" if not state.task_open else "not_a_task"
        if request.source == "assign":
            return ClaimDecision("ignore", reason=reason)
        return _refuse(request, reason, repo)
    if holder is not None and holder.agent == request.claimant:
        return ClaimDecision("noop", (RenewClaim(renew(holder, now, config)),), claim=holder, holder=holder.agent)
    if holder is not None and request.source == "assign" and holder.agent.same_account(request.claimant.login):
        # GitHub assigns accounts, not named agents: this assignment mirrors the holder's own claim
        # (e.g. Fleet assigning `bot` for `/claim as agent-d`), not a competing one.
        return ClaimDecision("noop", (), claim=holder, holder=holder.agent)
    if not request.claimant.same_account(request.assigner) and not has_permission(request.assigner_permission, "write"):
        return _refuse(request, "maintainer_required", repo)
    detail = not_allowed_detail(request, config)
    if detail is not None:
        return _refuse(request, "not_allowed", repo, detail=detail)
    displacing = holder is not None and _earlier(request, holder, now)
    if holder is not None and not displacing:
        return _refuse(request, "taken", repo, holder=holder.agent)
    if state.open_blockers:
        return _refuse(request, "blocked", repo, blockers=state.open_blockers)
    counted = wip_counted(state.agent_claims, request, config)
    if len(counted) >= config.max_per_agent:
        # Name only this repository's tasks: the others may be private, or another team's.
        here = tuple(t for t in counted if t.repo_full_name.lower() == repo.lower())
        return _refuse(request, "wip_limit", repo, open_claims=here, elsewhere=len(counted) - len(here),
                       limit=config.max_per_agent, detail="per_name" if config.wip_per_name else "per_account")

    claim = new_claim(request, config, now)
    actions: list[Action] = []
    if holder is not None:  # displaced by an earlier claim
        actions.append(ReleaseClaim(holder, "displaced"))
        if not holder.agent.same_account(request.claimant.login):
            actions.append(Unassign(request.task, holder.agent.login))
        actions.append(Comment(request.task, replies.claim_displaced(task=request.task, repo=repo, agent=holder.agent, winner=request.claimant)))
    actions.append(CreateClaim(claim))
    if request.source != "assign":
        actions.append(Assign(request.task, request.claimant.login))
    if holder is None:  # a displaced holder's verdict already stands on the task: now the winner's
        actions.append(GrantVerdict(request.task))
    return ClaimDecision("accept", tuple(actions), claim=claim, holder=request.claimant,
                         displaced=holder.agent if holder is not None else None)


@dataclass(frozen=True)
class AssigneeResolution:
    """Of several assignees, the one login that holds (or may claim) the task and the rest."""

    winner: str | None
    losers: tuple[str, ...] = field(default_factory=tuple)


def resolve_assignees(
    assignees: Sequence[str],
    existing_holder: AgentId | None,
    order_keys: Mapping[str, OrderKey] | None = None,
) -> AssigneeResolution:
    """Pick deterministically which assignee wins; everyone else is a loser to unassign.

    The holder's account always wins. If the task has a holder who is no longer among the
    assignees, nobody else wins (the holder's release comes with its own ``unassigned`` event).
    Otherwise the earliest by ``order_keys`` wins, ties and unknown keys broken by login, so
    every delivery that sees the same assignees picks the same winner.
    """
    unique = list(dict.fromkeys(a for a in assignees if a))
    unique = [a for i, a in enumerate(unique) if a.lower() not in {b.lower() for b in unique[:i]}]
    if not unique:
        return AssigneeResolution(None, ())
    if existing_holder is not None:
        winner = next((a for a in unique if existing_holder.same_account(a)), None)
    else:
        keys = {k.lower(): v for k, v in (order_keys or {}).items()}
        far = (float("inf"),)
        winner = min(unique, key=lambda a: (keys.get(a.lower(), far), a.lower()))
    losers = tuple(a for a in unique if a != winner)
    return AssigneeResolution(winner, losers)


def decide_assignees(
    requests: Sequence[ClaimRequest],
    state: ClaimState,
    claims_by_agent: Mapping[AgentId, Sequence[Claim]],
    config: ClaimsConfig,
    now: datetime,
) -> list[ClaimDecision]:
    """Decide several simultaneous claims on one task (e.g. one event adding two assignees).

    Requests are tried in GitHub's order (``order_key``, then login); the first that can be
    accepted wins and every later one is refused as ``taken``, so at most one agent ends up
    holding the task. ``claims_by_agent`` gives each claimant's open claims (for WIP limits).
    Decisions come back in the order of ``requests``.
    """
    far = (float("inf"),)
    order = sorted(range(len(requests)), key=lambda i: (requests[i].order_key or far, requests[i].claimant.login.lower(), i))
    holder = state.holder
    decisions: dict[int, ClaimDecision] = {}
    for i in order:
        request = requests[i]
        step_state = replace(state, holder=holder, agent_claims=tuple(claims_by_agent.get(request.claimant, ())))
        decision = decide_claim(request, step_state, config, now)
        if decision.outcome == "accept":
            holder = decision.claim
        decisions[i] = decision
    return [decisions[i] for i in range(len(requests))]


def renew(claim: Claim, now: datetime, config: ClaimsConfig) -> Claim:
    """The claim with a fresh lease from ``now`` (and a fresh warning); never shortens it."""
    expires = max(claim.expires_at, now + config.lease)
    return replace(claim, renewed_at=now, expires_at=expires, warned=False)
