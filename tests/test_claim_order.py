"""GitHub's order decides competing claims: order keys from the issue's events and comments on
one scale, and an end-to-end race whose deliveries arrive in the wrong order."""
from __future__ import annotations

from datetime import datetime, timezone

from app.claims.rules import (
    ASSIGNED_KIND, COMMENT_KIND, assigners, assignment_order_keys, comment_order_key,
    github_earlier,
)
from tests.test_e2e_claims import agents, assignees, fleet_markers, holder, open_task  # noqa: F401


def _event(kind, login, at, event_id, actor=None):
    return {"id": event_id, "event": kind, "created_at": at, "assignee": {"login": login},
            "actor": {"login": actor or login}}


def test_assignment_keys_come_from_the_latest_standing_assigned_event() -> None:
    events = [
        _event("assigned", "alice", "2026-01-01T00:00:05Z", 10),
        _event("assigned", "bob", "2026-01-01T00:00:05Z", 11),
        _event("unassigned", "bob", "2026-01-01T00:00:06Z", 12),
        _event("labeled", "bob", "2026-01-01T00:00:06Z", 13),
        _event("assigned", "Bob", "2026-01-01T00:00:07Z", 14, actor="carol"),
        {"event": "assigned", "assignee": {"login": "mallory"}, "created_at": "not a time", "id": 15},
    ]
    epoch = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp())
    keys = assignment_order_keys(events)
    assert keys == {"alice": (epoch + 5, ASSIGNED_KIND, 10), "bob": (epoch + 7, ASSIGNED_KIND, 14)}
    assert assigners(events)["bob"] == "carol"


def test_comments_and_assignments_compare_on_one_scale() -> None:
    """Earlier second wins; in one second ids order claims of one kind; across kinds it is a tie."""
    at = datetime(2026, 1, 1, 0, 0, 5, 900000, tzinfo=timezone.utc)
    second = int(at.timestamp())
    comment = comment_order_key(at, 1)
    assert comment == (second, COMMENT_KIND, 1)
    assert github_earlier(comment, comment_order_key(at, 2))
    assert github_earlier((second - 1, COMMENT_KIND, 99), (second, ASSIGNED_KIND, 1))
    assert github_earlier((second, ASSIGNED_KIND, 10), (second, ASSIGNED_KIND, 11))
    tie = (second, ASSIGNED_KIND, 0)
    assert not github_earlier(tie, comment) and not github_earlier(comment, tie)


def test_a_same_second_assignment_does_not_displace_an_accepted_claim_command() -> None:
    from app.claims.rules import AgentId, Claim, ClaimRequest, ClaimState, decide_claim
    from app.repos.config import ClaimsConfig
    from app.tasks.refs import TaskRef

    task = TaskRef.of("o/r", 3)
    at = datetime(2026, 1, 1, 0, 0, 5, tzinfo=timezone.utc)
    held = Claim(task, AgentId("bob"), at, at, at, order_key=comment_order_key(at, 500))
    request = ClaimRequest(task, AgentId("carol"), "carol", order_key=(int(at.timestamp()), ASSIGNED_KIND, 1))
    decision = decide_claim(request, ClaimState(holder=held), ClaimsConfig(), at)
    assert (decision.outcome, decision.reason) == ("refuse", "taken")


def test_the_earlier_assignment_wins_when_its_delivery_arrives_last(agents, db_conn):
    """Alice self-assigns first, bob 0.x s later; alice's delivery is lost and redelivered after
    bob's. Bob's delivery sees a rival assignee, reads the issue's events once, and alice wins."""
    w = agents
    n = open_task(w, "Race")
    w.sim.faults.drop_next_webhooks(1)
    w.assign("alice", n)
    w.settle()  # the simulator sends webhooks from its own thread: wait until alice's is dropped
    lost = [d for d in w.sim.deliveries if not d.ok][-1]
    assert (lost.event.event, lost.event.payload["action"]) == ("issues", "assigned")
    w.assign("bob", n)
    w.settle()
    assert holder(db_conn, n) == "alice" and assignees(w, n) == ["alice"]
    refusals = [m for m in fleet_markers(w, n) if m and m.get("result") == "refused"]
    assert [(m["agent"], m["reason"], m["holder"]) for m in refusals] == [("bob", "taken", "alice")]
    assert len(w.sim.calls("GET", f"/issues/{n}/events")) == 1
    w.sim.redeliver(lost.id)
    w.settle()
    assert holder(db_conn, n) == "alice" and assignees(w, n) == ["alice"]


def test_an_uncontested_claim_reads_no_events(agents, db_conn):
    w = agents
    n = open_task(w, "Alone")
    w.assign("alice", n)
    w.settle()
    assert holder(db_conn, n) == "alice"
    assert w.sim.calls("GET", f"/issues/{n}/events") == []
