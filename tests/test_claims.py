"""Claim decisions: accept, every refusal, renewals, races, leases, release and completion."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.claims.leases import (
    Activity, decide_activity, decide_closed, decide_lease, decide_progress, decide_release,
    decide_unassigned, renew, warn_time,
)
from app.claims.rules import (
    AgentId, Assign, AssigneeResolution, Claim, ClaimRequest, ClaimState, Comment, CompleteClaim,
    CreateClaim, GrantVerdict, ReleaseClaim, RenewClaim, Unassign, WarnLease, decide_assignees,
    decide_claim, resolve_assignees,
)
from app.replies import parse_marker
from app.repos.config import ClaimsConfig
from app.tasks.refs import TaskRef

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)
TASK = TaskRef("acme", "widgets", 12)
ALICE = AgentId("alice")
BOB = AgentId("bob")


def create_config(**overrides: object) -> ClaimsConfig:
    return ClaimsConfig(**overrides)  # type: ignore[arg-type]


def create_request(**overrides: object) -> ClaimRequest:
    fields: dict[str, object] = {"task": TASK, "claimant": ALICE, "assigner": "alice", "assigner_permission": "read"}
    fields.update(overrides)
    return ClaimRequest(**fields)  # type: ignore[arg-type]


def create_claim(**overrides: object) -> Claim:
    fields: dict[str, object] = {
        "task": TASK, "agent": BOB, "claimed_at": NOW - timedelta(hours=1),
        "renewed_at": NOW - timedelta(hours=1), "expires_at": NOW + timedelta(hours=3),
    }
    fields.update(overrides)
    return Claim(**fields)  # type: ignore[arg-type]


def other_task(n: int) -> TaskRef:
    return TaskRef("acme", "widgets", n)


def comment_body(actions: tuple | list) -> str:
    (comment,) = [a for a in actions if isinstance(a, Comment)]
    return comment.body


def comment_data(actions: tuple | list) -> dict:
    (comment,) = [a for a in actions if isinstance(a, Comment)]
    data = parse_marker(comment.body)
    assert data is not None
    return data


# --- AgentId ---------------------------------------------------------------------------------


def test_agent_id_forms_and_equality() -> None:
    """An agent is `login` or `login:name`, compared without case."""
    assert str(AgentId("bot")) == "bot" and str(AgentId("bot", "agent-d")) == "bot:agent-d"
    assert AgentId("Bot", "Agent-D") == AgentId("bot", "agent-d")
    assert len({AgentId("Bot"), AgentId("bot")}) == 1
    assert AgentId("bot") != AgentId("bot", "a")
    assert AgentId.parse("bot:agent-d") == AgentId("bot", "agent-d") and AgentId.parse("bot") == AgentId("bot")


# --- decide_claim ----------------------------------------------------------------------------


def test_accept_self_assignment_creates_a_leased_claim() -> None:
    """An eligible self-assignment is accepted with a lease of claims.lease; GitHub already has the assignee."""
    decision = decide_claim(create_request(), ClaimState(), create_config(lease="30s"), NOW)
    assert decision.outcome == "accept" and decision.reason is None
    assert decision.claim == Claim(TASK, ALICE, NOW, NOW, NOW + timedelta(seconds=30))
    assert decision.actions == (CreateClaim(decision.claim), GrantVerdict(TASK))


@pytest.mark.parametrize("source", ["command", "next"])
def test_accept_by_command_also_assigns(source: str) -> None:
    """/claim and /next make Fleet assign the commenter."""
    decision = decide_claim(create_request(source=source), ClaimState(), create_config(), NOW)
    assert decision.outcome == "accept"
    assert decision.actions[-2:] == (Assign(TASK, "alice"), GrantVerdict(TASK))


def test_only_an_accept_grants_the_verdict() -> None:
    """The positive verdict is written for an accepted claim, never for a refusal or a renewal."""
    held = create_claim(agent=BOB)
    refused = decide_claim(create_request(), ClaimState(holder=held), create_config(), NOW)
    renewed = decide_claim(create_request(source="command"), ClaimState(holder=create_claim(agent=ALICE)),
                           create_config(), NOW)
    for decision in (refused, renewed):
        assert not any(isinstance(a, GrantVerdict) for a in decision.actions)


def test_same_agent_again_renews() -> None:
    """Claiming a task you already hold is a noop that renews the lease."""
    held = create_claim(agent=ALICE)
    decision = decide_claim(create_request(source="command"), ClaimState(holder=held), create_config(), NOW)
    assert decision.outcome == "noop"
    (renewal,) = decision.actions
    assert isinstance(renewal, RenewClaim) and renewal.claim.expires_at == NOW + timedelta(hours=4)


def test_refused_blocked_names_the_blockers_and_unassigns() -> None:
    """A blocked task is refused with its open blockers; the self-assignment is undone."""
    state = ClaimState(open_blockers=(other_task(10), TaskRef("x", "y", 3)))
    decision = decide_claim(create_request(), state, create_config(), NOW)
    assert (decision.outcome, decision.reason) == ("refuse", "blocked")
    assert decision.blockers == state.open_blockers
    assert decision.actions[0] == Unassign(TASK, "alice")
    data = comment_data(decision.actions)
    assert data == {"agent": "alice", "blockers": [10, "x/y#3"], "command": "claim", "reason": "blocked", "result": "refused", "task": 12}


def test_refused_taken_names_the_holder() -> None:
    """Someone else holds it: first claim wins."""
    decision = decide_claim(create_request(), ClaimState(holder=create_claim()), create_config(), NOW)
    assert (decision.outcome, decision.reason, decision.holder) == ("refuse", "taken", BOB)
    assert Unassign(TASK, "alice") in decision.actions
    assert comment_data(decision.actions)["holder"] == "bob"


def test_taken_by_a_named_agent_on_the_same_account_does_not_unassign_the_account() -> None:
    """Two agents sharing a login: `/claim as agent-e` is refused, and the shared account stays assigned."""
    holder = create_claim(agent=AgentId("bot", "agent-d"))
    request = create_request(claimant=AgentId("bot", "agent-e"), assigner="bot", source="command")
    decision = decide_claim(request, ClaimState(holder=holder), create_config(), NOW)
    assert decision.reason == "taken"
    assert not any(isinstance(a, Unassign) for a in decision.actions)


def test_assigning_the_account_of_a_named_holder_is_a_mirror_not_a_rival() -> None:
    """`/claim as agent-d` makes Fleet assign `bot`; that assignment event changes nothing."""
    holder = create_claim(agent=AgentId("bot", "agent-d"))
    request = create_request(claimant=AgentId("bot"), assigner="fleet-app[bot]", assigner_permission="write")
    decision = decide_claim(request, ClaimState(holder=holder), create_config(), NOW)
    assert (decision.outcome, decision.actions, decision.holder) == ("noop", (), AgentId("bot", "agent-d"))


def test_refused_wip_limit_lists_open_claims() -> None:
    """At claims.max_per_agent open claims, another claim is refused, naming them."""
    mine = (create_claim(task=other_task(1), agent=ALICE), create_claim(task=other_task(2), agent=ALICE))
    decision = decide_claim(create_request(), ClaimState(agent_claims=mine), create_config(max_per_agent=2), NOW)
    assert (decision.outcome, decision.reason) == ("refuse", "wip_limit")
    assert decision.open_claims == (other_task(1), other_task(2))
    data = comment_data(decision.actions)
    assert (data["claims"], data["limit"]) == ([1, 2], 2)


def test_wip_limit_counts_every_named_agent_of_an_account_together() -> None:
    """`/claim as x1` … `/claim as xN` must not multiply the limit: by default it is per account."""
    claims = (create_claim(task=other_task(1), agent=AgentId("bot", "x1")),
              create_claim(task=other_task(2), agent=AgentId("bot", "x2")))
    request = create_request(claimant=AgentId("bot", "x3"), assigner="bot", source="command")
    decision = decide_claim(request, ClaimState(agent_claims=claims), create_config(max_per_agent=2), NOW)
    assert (decision.outcome, decision.reason) == ("refuse", "wip_limit")
    assert decision.open_claims == (other_task(1), other_task(2))
    assert "(all its agents together)" in comment_body(decision.actions)


def test_wip_per_name_gives_each_named_agent_its_own_limit() -> None:
    """`claims.wip_per_name: true`: named agents on one account each have their own WIP limit."""
    claims = (create_claim(task=other_task(1), agent=AgentId("bot", "a")),)
    request = create_request(claimant=AgentId("bot", "b"), assigner="bot", source="command")
    decision = decide_claim(request, ClaimState(agent_claims=claims), create_config(max_per_agent=1, wip_per_name=True), NOW)
    assert decision.outcome == "accept"


def test_wip_refusal_names_only_this_repositorys_tasks_and_counts_the_rest() -> None:
    """Claims in other repositories (of the same installation, with wip_scope: installation)
    count towards the limit but are never named: they may be private."""
    private = TaskRef("acme", "private-repo", 12)
    mine = (create_claim(task=private, agent=ALICE), create_claim(task=other_task(3), agent=ALICE))
    decision = decide_claim(create_request(), ClaimState(agent_claims=mine), create_config(max_per_agent=2), NOW)
    assert (decision.outcome, decision.reason) == ("refuse", "wip_limit")
    assert (decision.open_claims, decision.claims_elsewhere) == ((other_task(3),), 1)
    body = comment_body(decision.actions)
    assert "private-repo" not in body and "1 in other repositories" in body
    data = comment_data(decision.actions)
    assert (data["claims"], data["elsewhere"]) == ([3], 1)


@pytest.mark.parametrize(
    ("config", "request_overrides", "detail"),
    [
        (create_config(allow=("carol",)), {}, "allow_list"),
        (create_config(allow=("@acme/agents",)), {"claimant_teams": frozenset({"acme/humans"})}, "allow_list"),
        (create_config(allow=("@acme/agents",)), {"claimant_teams": None}, "allow_list"),
        (create_config(), {"claimant_assignable": False}, "not_assignable"),
        (create_config(allow_named_agents=False), {"claimant": AgentId("alice", "a1")}, "named_agents_disabled"),
    ],
)
def test_refused_not_allowed(config: ClaimsConfig, request_overrides: dict, detail: str) -> None:
    """Allow-list, team membership, assignability and named-agent settings gate claims."""
    decision = decide_claim(create_request(**request_overrides), ClaimState(), config, NOW)
    assert (decision.outcome, decision.reason) == ("refuse", "not_allowed")
    assert comment_data(decision.actions)["detail"] == detail


@pytest.mark.parametrize(
    ("allow", "teams"),
    [(("Alice",), None), (("@alice",), None), (("@acme/agents",), frozenset({"ACME/Agents"}))],
)
def test_allowed_by_login_or_team(allow: tuple[str, ...], teams: frozenset[str] | None) -> None:
    """Listed logins (with or without @) and members of listed teams may claim."""
    decision = decide_claim(create_request(claimant_teams=teams), ClaimState(), create_config(allow=allow), NOW)
    assert decision.outcome == "accept"


def test_maintainer_required_for_assigning_someone_else() -> None:
    """A human without write access assigning another user is refused; the assignment is undone."""
    request = create_request(assigner="mallory", assigner_permission="triage")
    decision = decide_claim(request, ClaimState(), create_config(), NOW)
    assert (decision.outcome, decision.reason) == ("refuse", "maintainer_required")
    assert decision.actions[0] == Unassign(TASK, "alice")
    assert comment_data(decision.actions)["assigner"] == "mallory"


def test_maintainer_assigning_someone_else_is_a_claim_for_them() -> None:
    """With write access, assigning another user is honoured as that user's claim."""
    request = create_request(assigner="maint", assigner_permission="write")
    decision = decide_claim(request, ClaimState(), create_config(), NOW)
    assert decision.outcome == "accept" and decision.claim is not None and decision.claim.agent == ALICE


@pytest.mark.parametrize(("open_", "is_task", "reason"), [(False, True, "closed"), (True, False, "not_a_task")])
def test_closed_or_non_task(open_: bool, is_task: bool, reason: str) -> None:
    """Assigning a closed issue or a non-task is ignored; /claim on one is refused without unassigning."""
    state = ClaimState(task_open=open_, is_task=is_task)
    assigned = decide_claim(create_request(), state, create_config(), NOW)
    assert (assigned.outcome, assigned.actions) == ("ignore", ())
    commanded = decide_claim(create_request(source="command"), state, create_config(), NOW)
    assert (commanded.outcome, commanded.reason) == ("refuse", reason)
    assert [type(a) for a in commanded.actions] == [Comment]


def test_refusals_from_commands_never_unassign() -> None:
    """/claim refused: the commenter was never assigned, so only a comment is posted."""
    decision = decide_claim(create_request(source="command"), ClaimState(holder=create_claim()), create_config(), NOW)
    assert [type(a) for a in decision.actions] == [Comment]


def test_rule_order_taken_before_blocked_before_wip() -> None:
    """When several refusals apply, the most definitive is given."""
    full = (create_claim(task=other_task(1), agent=ALICE),)
    state = ClaimState(holder=create_claim(), open_blockers=(other_task(9),), agent_claims=full)
    assert decide_claim(create_request(), state, create_config(max_per_agent=1), NOW).reason == "taken"
    state = replace(state, holder=None)
    assert decide_claim(create_request(), state, create_config(max_per_agent=1), NOW).reason == "blocked"


def test_an_earlier_claim_arriving_late_displaces_a_young_claim() -> None:
    """GitHub's order decides: a young claim loses to an earlier event that was delivered later."""
    holder = create_claim(order_key=(100, 2), claimed_at=NOW - timedelta(seconds=20))
    decision = decide_claim(create_request(order_key=(100, 1)), ClaimState(holder=holder), create_config(), NOW)
    assert decision.outcome == "accept" and decision.displaced == BOB
    kinds = [type(a) for a in decision.actions]
    assert kinds == [ReleaseClaim, Unassign, Comment, CreateClaim]
    assert decision.actions[1] == Unassign(TASK, "bob")
    assert comment_data(decision.actions)["result"] == "displaced"


def test_an_old_claim_is_never_displaced() -> None:
    """After the displacement window, the holder keeps the task even against an earlier event."""
    holder = create_claim(order_key=(100, 2), claimed_at=NOW - timedelta(hours=1))
    decision = decide_claim(create_request(order_key=(100, 1)), ClaimState(holder=holder), create_config(), NOW)
    assert decision.reason == "taken"


# --- several assignees -----------------------------------------------------------------------


def test_resolve_assignees() -> None:
    """The holder's account wins; otherwise the earliest, ties broken by login."""
    assert resolve_assignees(["b", "a"], None) == AssigneeResolution("a", ("b",))
    assert resolve_assignees(["b", "a"], None, {"b": (1,), "a": (2,)}).winner == "b"
    assert resolve_assignees(["a", "Bob"], BOB).winner == "Bob"
    gone = resolve_assignees(["a", "c"], BOB)
    assert (gone.winner, gone.losers) == (None, ("a", "c"))
    assert resolve_assignees([], None).winner is None
    assert resolve_assignees(["a", "A"], None).losers == ()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["ann", "bob", "cy", "dee", "ed"]), min_size=1, max_size=5, unique=True), st.randoms())
def test_resolution_is_order_independent(assignees: list[str], rnd) -> None:
    """Every delivery that sees the same assignees, in any order, picks the same winner."""
    shuffled = assignees[:]
    rnd.shuffle(shuffled)
    assert resolve_assignees(assignees, None).winner == resolve_assignees(shuffled, None).winner


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(["ann", "bob", "cy", "dee", "ed"]), min_size=1, max_size=5, unique=True),
    st.sets(st.sampled_from(["ann", "bob", "cy", "dee", "ed"])),
    st.booleans(),
    st.lists(st.integers(0, 3), min_size=5, max_size=5),
)
def test_simultaneous_assignees_leave_exactly_one_holder(
    assignees: list[str], over_limit: set[str], blocked: bool, keys: list[int]
) -> None:
    """One event adding several assignees ends with exactly one holder (unless none is eligible),
    and every other assignee is unassigned."""
    requests = [create_request(claimant=AgentId(a), assigner=a, order_key=(keys[i], i)) for i, a in enumerate(assignees)]
    busy = [create_claim(task=other_task(1), agent=AgentId(a)) for a in over_limit]
    claims_by_agent = {c.agent: [c] for c in busy}
    state = ClaimState(open_blockers=(other_task(2),) if blocked else ())
    decisions = decide_assignees(requests, state, claims_by_agent, create_config(max_per_agent=1), NOW)
    accepted = [d for d in decisions if d.outcome == "accept"]
    eligible = any(a not in over_limit for a in assignees) and not blocked
    assert len(accepted) == (1 if eligible else 0)
    unassigned = {a.login for d in decisions for a in d.actions if isinstance(a, Unassign)}
    holders = {d.claim.agent.login for d in accepted if d.claim}
    assert unassigned | holders == set(assignees) and not unassigned & holders
    if accepted:
        earliest = min((requests[i].order_key, a) for i, a in enumerate(assignees) if a not in over_limit)
        assert holders == {earliest[1]}


def test_simultaneous_assignees_with_an_existing_holder() -> None:
    """If the task is held, every new assignee is refused as taken."""
    decisions = decide_assignees(
        [create_request(claimant=AgentId("x"), assigner="x"), create_request(claimant=AgentId("y"), assigner="y")],
        ClaimState(holder=create_claim()), {}, create_config(), NOW,
    )
    assert [d.reason for d in decisions] == ["taken", "taken"]


# --- leases ----------------------------------------------------------------------------------


def test_lease_warns_once_then_releases_with_a_handoff() -> None:
    """The scheduled job warns once at warn_at of the lease, then releases at expiry."""
    config = create_config(lease="40s", warn_at=0.75)
    claim = Claim(TASK, ALICE, NOW, NOW, NOW + timedelta(seconds=40), branch="alice/12-fix", head_sha="abc123def4567890", pr_number=30, progress=60, progress_note="tests @bob <b>x</b>")
    assert warn_time(claim, config) == NOW + timedelta(seconds=30)
    assert decide_lease(claim, NOW + timedelta(seconds=29), config) == []
    warn = decide_lease(claim, NOW + timedelta(seconds=30), config)
    assert [type(a) for a in warn] == [WarnLease, Comment]
    warned = warn[0].claim
    assert warned.warned
    assert comment_data(warn)["result"] == "warning"
    assert decide_lease(warned, NOW + timedelta(seconds=35), config) == []  # warned once only
    release = decide_lease(warned, NOW + timedelta(seconds=40), config)
    assert [type(a) for a in release] == [ReleaseClaim, Unassign, Comment]
    assert release[0] == ReleaseClaim(warned, "expired") and release[1] == Unassign(TASK, "alice")
    body = release[2].body
    assert "`alice/12-fix`" in body and "`abc123def456`" in body and "PR #30" in body and "60%" in body
    assert "@bob" not in body and "<b>" not in body
    data = comment_data(release)
    assert (data["reason"], data["branch"], data["pr"], data["progress"]) == ("expired", "alice/12-fix", 30, 60)


def test_release_at_expiry_even_if_never_warned() -> None:
    """A missed warning (job down) does not delay the release."""
    claim = create_claim(expires_at=NOW)
    assert isinstance(decide_lease(claim, NOW + timedelta(minutes=5), create_config())[0], ReleaseClaim)


def test_renew_resets_the_lease_and_the_warning() -> None:
    """Activity gives a fresh lease and allows a new warning; it never shortens a lease."""
    claim = create_claim(warned=True)
    renewed = renew(claim, NOW, create_config(lease="30s"))
    assert renewed.expires_at == claim.expires_at and not renewed.warned and renewed.renewed_at == NOW
    longer = renew(claim, NOW, create_config(lease="8h"))
    assert longer.expires_at == NOW + timedelta(hours=8)


@pytest.mark.parametrize(
    ("holder", "login", "name", "renews"),
    [
        (AgentId("bob"), "bob", None, True),
        (AgentId("bob"), "BOB", "x", True),
        (AgentId("bot", "a"), "bot", "a", True),
        (AgentId("bot", "a"), "bot", None, True),  # an unnamed comment from the shared account
        (AgentId("bot", "a"), "bot", "b", False),
        (AgentId("bob"), "alice", None, False),
    ],
)
def test_activity_renews_only_for_the_holder(holder: AgentId, login: str, name: str | None, renews: bool) -> None:
    """Pushes, commits and comments by the holder renew the lease and record the work."""
    claim = create_claim(agent=holder, renewed_at=NOW - timedelta(hours=3), expires_at=NOW + timedelta(hours=1))
    actions = decide_activity(claim, Activity("push", login, name, branch="b/12", sha="f00"), NOW, create_config())
    if not renews:
        assert actions == []
        return
    (action,) = actions
    assert isinstance(action, RenewClaim)
    assert (action.claim.branch, action.claim.head_sha, action.claim.expires_at) == ("b/12", "f00", NOW + timedelta(hours=4))


def test_activity_without_claim_does_nothing() -> None:
    assert decide_activity(None, Activity("comment", "bob"), NOW, create_config()) == []


def test_progress_records_and_renews_for_the_holder() -> None:
    """/progress by the holder stores the number and note and renews the lease."""
    claim = create_claim()
    (action,) = decide_progress(claim, TASK, BOB, "read", 40, "tests pass", NOW, create_config())
    assert isinstance(action, RenewClaim)
    assert (action.claim.progress, action.claim.progress_note, action.claim.renewed_at) == (40, "tests pass", NOW)


@pytest.mark.parametrize(("claim", "holder"), [(None, None), (create_claim(), "bob")])
def test_progress_refused_for_others(claim: Claim | None, holder: str | None) -> None:
    """/progress from someone who does not hold the task is refused with a reply."""
    actions = decide_progress(claim, TASK, ALICE, "read", 40, "", NOW, create_config())
    assert comment_data(actions)["holder"] == holder and comment_data(actions)["reason"] == "not_holder"


# --- release, unassign, close ----------------------------------------------------------------


def test_release_by_holder() -> None:
    """/release by the holder ends the claim and unassigns."""
    claim = create_claim()
    assert decide_release(claim, TASK, BOB, "read") == [ReleaseClaim(claim, "released"), Unassign(TASK, "bob")]


def test_release_by_the_shared_account_or_a_maintainer() -> None:
    """The unnamed account may release its named agent's claim; a writer may release anyone's."""
    claim = create_claim(agent=AgentId("bot", "a"))
    assert isinstance(decide_release(claim, TASK, AgentId("bot"), "read")[0], ReleaseClaim)
    assert isinstance(decide_release(claim, TASK, ALICE, "write")[0], ReleaseClaim)


@pytest.mark.parametrize(("claim", "reason"), [(None, "not_held"), (create_claim(), "not_holder"), (create_claim(agent=AgentId("bot", "a")), "not_holder")])
def test_release_refused(claim: Claim | None, reason: str) -> None:
    """/release of a task you do not hold is refused with a reason."""
    actor = AgentId("bot", "b") if claim and claim.agent.name else ALICE
    actions = decide_release(claim, TASK, actor, "triage")
    assert comment_data(actions)["reason"] == reason


def test_manual_unassign_releases_only_the_holder() -> None:
    """Unassigning the holder's account releases; unassigning anyone else (or Fleet's own undo) does nothing."""
    claim = create_claim()
    assert decide_unassigned(claim, "Bob") == [ReleaseClaim(claim, "unassigned")]
    assert decide_unassigned(claim, "alice") == []
    assert decide_unassigned(None, "bob") == []


def test_close_completes() -> None:
    """Closing a held task completes the claim."""
    claim = create_claim()
    assert decide_closed(claim) == [CompleteClaim(claim)]
    assert decide_closed(None) == []
