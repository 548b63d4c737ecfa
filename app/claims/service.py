"""Claims, I/O side: turn issue events, activity and commands into claim decisions and apply them.

Every function here runs inside a delivery's transaction with the repository's advisory lock
held, so "read claim state, decide, write" is atomic across all workers.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from app.tasks.pulls import linked_tasks
from app.claims import store as claim_store
from app.claims import rules as claims
from app.claims import leases as claims_leases
from app.github import held_writes
from app.github import permissions
from app.tasks import readiness
from app import replies
from app.github.identity import is_bot
from app.claims.apply import Effects, apply, sync_labels
from app.repos.registry import Repo
from app.tasks.refs import TaskRef
from app.event_scope import EventScope
from app.github.models import IssuesEvent, PullRequestEvent

STATE_CHANGING = {"opened", "edited", "closed", "reopened", "labeled", "unlabeled", "assigned", "unassigned",
                  "milestoned", "demilestoned"}


def effects_for(ctx: EventScope, repo: Repo) -> Effects:
    return Effects(ctx.conn, repo, ctx.github(repo.full_name), datetime.now(timezone.utc),
                   dedupe=ctx.delivery.id, retrying=ctx.delivery.attempts > 1)


def claim_state(ctx: EventScope, repo: Repo, number: int, claimant: claims.AgentId | None = None) -> claims.ClaimState:
    task = next(iter(claim_store.snapshots(ctx.conn, repo.id, repo.full_name, [number])), None)
    scope = repo.config.claims.wip_scope
    mine = tuple(claim_store.open_claims_for_wip(ctx.conn, claimant.login, repo.id, scope)) if claimant else ()
    return claims.ClaimState(
        task_open=task is not None and task.state == "open",
        is_task=task is not None and task.is_task,
        holder=claim_store.open_claim(ctx.conn, repo.id, number),
        agent_claims=mine,
        open_blockers=task.open_blockers if task else (),
    )


def build_request(ctx: EventScope, repo: Repo, effects: Effects, *, task: TaskRef, claimant: claims.AgentId,
                  assigner: str, source: claims.ClaimSource, order_key: claims.OrderKey | None = None,
                  ) -> claims.ClaimRequest:
    """The one way every claim path (self-assignment, ``/claim``, ``/next``) builds its request:
    the assigner's permission when they assign someone else, whether the claimant is assignable
    (a self-assignment already is) and, when ``claims.allow`` names teams, the claimant's teams."""
    config = repo.config.claims
    someone_else = not claimant.same_account(assigner)
    teams = claims.allowed_teams(config)
    return claims.ClaimRequest(
        task=task, claimant=claimant, assigner=assigner, source=source, order_key=order_key,
        assigner_permission=permissions.permission(ctx.conn, effects.gh, repo.id, assigner) if someone_else else None,
        claimant_assignable=True if source == "assign" else permissions.can_be_assigned(
            ctx.conn, effects.gh, repo.id, claimant.login),
        claimant_teams=permissions.teams_of(effects.gh, claimant.login, teams) if teams else None,
    )


def decide_request(ctx: EventScope, repo: Repo, effects: Effects, request: claims.ClaimRequest) -> claims.ClaimDecision:
    """The one decision for every claim path, from the task's rows read under the lock."""
    state = claim_state(ctx, repo, request.task.number, request.claimant)
    decision = claims.decide_claim(request, state, repo.config.claims, effects.now)
    ctx.log.info("claim decided", extra={"task": request.task.number, "agent": str(request.claimant),
                                          "source": request.source, "outcome": decision.outcome,
                                          "reason": decision.reason})
    return decision


def request_claim(ctx: EventScope, repo: Repo, effects: Effects, request: claims.ClaimRequest) -> claims.ClaimDecision:
    """Decide one claim request under the lock and apply the decision."""
    decision = decide_request(ctx, repo, effects, request)
    apply(effects, decision.actions, claimed_by=request.assigner)
    return decision


def on_issue_event(ctx: EventScope, repo: Repo, event: IssuesEvent, *, status_issue: bool) -> None:
    """issues.*: assignment is a claim, unassignment a release, closing completes the claim.
    ``status_issue``: the issue is the repository's status issue, never a task."""
    action = ctx.delivery.action or ""
    number = event.issue.number
    effects = effects_for(ctx, repo)
    affected = {number}
    sender = event.sender.login if event.sender else ""
    if status_issue:
        _protect_status_issue(effects, event, sender)
    elif action == "assigned" and event.assignee and not is_bot(sender):
        _assigned(ctx, repo, effects, event, sender)
    elif action == "unassigned" and event.assignee:
        holder = claim_store.open_claim(ctx.conn, repo.id, number)
        apply(effects, claims_leases.decide_unassigned(holder, event.assignee.login))
    elif action == "closed":
        apply(effects, claims_leases.decide_closed(claim_store.open_claim(ctx.conn, repo.id, number)))
        affected |= set(claim_store.dependents(ctx.conn, repo.id, repo.full_name, number))
    elif action == "reopened":
        affected |= set(claim_store.dependents(ctx.conn, repo.id, repo.full_name, number))
    if action in ("opened", "edited"):
        report_cycles(ctx, repo, effects, number)
    if action in STATE_CHANGING and event.issue.state == "open" or action == "closed":
        sync_labels(effects, affected)


def _protect_status_issue(effects: Effects, event: IssuesEvent, sender: str) -> None:
    """The status issue is Fleet's, not a task: assignments are undone and closing it reopens it
    (an agent's PR saying "Closes #N" for it would otherwise end the repository's status page)."""
    action = event.action
    if is_bot(sender):
        return
    if action == "assigned" and event.assignee:
        effects.gh.remove_assignees(event.issue.number, [event.assignee.login])
    elif action == "closed":
        effects.gh.update_issue(event.issue.number, state="open")


def _assigned(ctx: EventScope, repo: Repo, effects: Effects, event: IssuesEvent, sender: str) -> None:
    assignee = event.assignee.login  # type: ignore[union-attr]
    holder = claim_store.open_claim(ctx.conn, repo.id, event.issue.number)
    if holder is not None and holder.agent.same_account(assignee):
        apply(effects, [claims.RenewClaim(claims.renew(holder, effects.now, repo.config.claims))])
        return
    task = TaskRef.of(repo.full_name, event.issue.number)
    rivals = [a.login for a in event.issue.assignees
              if a.login.lower() != assignee.lower() and not is_bot(a.login)
              and not (holder is not None and holder.agent.same_account(a.login))]
    if holder is None and not rivals:  # uncontested: decided without reading GitHub's record
        request = build_request(ctx, repo, effects, task=task, claimant=claims.AgentId(assignee),
                                assigner=sender or assignee, source="assign")
        request_claim(ctx, repo, effects, request)
        return
    _contested(ctx, repo, effects, task, holder, assignee, sender, rivals)


def _contested(ctx: EventScope, repo: Repo, effects: Effects, task: TaskRef, holder: claims.Claim | None,
               assignee: str, sender: str, rivals: list[str]) -> None:
    """Competing claims: GitHub's record decides. One read of the issue's events gives every
    assignment's order key (the holder's too, when it claimed by assignment); the claims are
    then decided earliest first (``claims.decide_assignees``), however the deliveries arrived."""
    events = effects.gh.issue_events(task.number)
    keys = claims.assignment_order_keys(events)
    actors = claims.assigners(events)
    logins = [assignee] + [login for login in rivals if login.lower() in keys]  # still assigned on GitHub
    requests = [
        build_request(ctx, repo, effects, task=task, claimant=claims.AgentId(login), source="assign",
                      assigner=(sender or login) if login == assignee else actors.get(login.lower(), login),
                      order_key=keys.get(login.lower()))
        for login in logins
    ]
    if holder is not None and holder.order_key is None:
        holder = replace(holder, order_key=keys.get(holder.agent.login.lower()))
    state = replace(claim_state(ctx, repo, task.number), holder=holder)
    scope = repo.config.claims.wip_scope
    mine = {r.claimant: tuple(claim_store.open_claims_for_wip(ctx.conn, r.claimant.login, repo.id, scope))
            for r in requests}
    decisions = claims.decide_assignees(requests, state, mine, repo.config.claims, effects.now)
    for request, decision in zip(requests, decisions):
        apply(effects, decision.actions, claimed_by=request.assigner)
        ctx.log.info("claim decided", extra={"task": task.number, "agent": str(request.claimant), "source": "assign",
                                              "contested": True, "outcome": decision.outcome,
                                              "reason": decision.reason})


def on_activity(ctx: EventScope, repo: Repo, number: int, login: str, kind: claims_leases.ActivityKind, *,
                sha: str | None = None, branch: str | None = None, agent_name: str | None = None,
                pr_number: int | None = None) -> None:
    """Pushes, PR updates and comments by the holder renew the lease and record where work stands."""
    holder = claim_store.open_claim(ctx.conn, repo.id, number)
    if holder is None:
        return
    activity = claims_leases.Activity(kind, login, agent_name=agent_name, branch=branch, sha=sha, pr_number=pr_number)
    apply(effects_for(ctx, repo), claims_leases.decide_activity(holder, activity, datetime.now(timezone.utc), repo.config.claims))


def on_pull_event(ctx: EventScope, repo: Repo, event: PullRequestEvent) -> None:
    """A PR linked to a task: renew its holder's lease, warn when someone else holds the task,
    and move the task's label to review (or back when the PR closes)."""
    pr = event.pull_request
    author = pr.user.login if pr.user else ""
    numbers = linked_tasks(pr, repo.full_name, repo.config)
    effects = effects_for(ctx, repo)
    for number in numbers:
        holder = claim_store.open_claim(ctx.conn, repo.id, number)
        if holder is None:
            continue
        if claims_leases.is_holder_activity(holder, author):
            kind = "commit" if ctx.delivery.action == "synchronize" else "pr"
            activity = claims_leases.Activity(kind, author, branch=pr.head.ref, sha=pr.head.sha, pr_number=pr.number)
            apply(effects, claims_leases.decide_activity(holder, activity, effects.now, repo.config.claims))
        elif ctx.delivery.action == "opened" and not is_bot(author):
            body = replies.pr_task_held(pr_number=pr.number, task=holder.task, repo=repo.full_name,
                                        holder=holder.agent, author=claims.AgentId(author))
            effects.comment(pr.number, body)
    sync_labels(effects, numbers)


def refresh_labels(ctx: EventScope, repo: Repo, numbers: list[int]) -> None:
    """Re-derive the fleet:* labels after something other than the issue itself changed."""
    sync_labels(effects_for(ctx, repo), numbers)


def report_cycles(ctx: EventScope, repo: Repo, effects: Effects, number: int) -> None:
    """Say so on the issue when its dependencies close a cycle (once per distinct cycle)."""
    graph = claim_store.dependency_graph(ctx.conn, repo.id, repo.full_name)
    me = TaskRef.of(repo.full_name, number)
    if me not in graph:
        return  # a task that depends on nothing closes no cycle
    for cycle in readiness.find_cycles(graph):
        if me not in cycle:
            continue
        key = "cycle:" + ",".join(str(r.number) for r in sorted(cycle))
        marker = f"<!-- fleet:{key} -->"
        body = replies.cycle_found(cycle=cycle, repo=repo.full_name) + "\n" + marker
        held_writes.comment(ctx.conn, effects.gh, repo.id, number, body, marker=marker, look_first=True)
