"""The positive verdict agents wait for: ``fleet:claimed`` on the task while they are assigned.
One write per accepted claim (the label), none for a refusal; it works with labels managed or not."""
from __future__ import annotations

from tests.test_e2e_claims import agents, assign, assignees, configure, holder, labels, open_task  # noqa: F401


def _label_posts(world, number: int) -> int:
    """Label-adding calls on the issue (the verdict is the only one after the task is ready)."""
    return len(world.sim.calls("POST", f"/issues/{number}/labels"))


def test_an_accepted_self_assignment_gets_the_verdict_in_one_write(agents, db_conn):
    w = agents
    n = open_task(w, "Verdict")
    before = _label_posts(w, n)
    assign(w, "alice", n)
    assert holder(db_conn, n) == "alice"
    assert labels(w, n) == ["fleet:claimed"] and assignees(w, n) == ["alice"]
    assert _label_posts(w, n) - before == 1


def test_a_refused_claim_never_sees_a_verdict_for_itself(agents, db_conn):
    """The loser is unassigned: 'label present and I am assigned' is false for it."""
    w = agents
    n = open_task(w, "Taken")
    assign(w, "alice", n)
    before = _label_posts(w, n)
    assign(w, "bob", n)
    assert assignees(w, n) == ["alice"]
    assert _label_posts(w, n) == before  # bob's refusal wrote no verdict


def test_verdict_with_manage_labels_off(agents, db_conn):
    """Fleet sets no state labels then, but still writes the verdict, and takes it off on release."""
    w = agents
    configure(w, "tasks:\n  manage_labels: false\n")
    n = open_task(w, "No labels")
    assert labels(w, n) == []
    w.sim.comment(w.repo, n, "/claim", author="carol")
    w.settle()
    assert holder(db_conn, n) == "carol" and labels(w, n) == ["fleet:claimed"]
    w.sim.comment(w.repo, n, "/release", author="carol")
    w.settle()
    assert holder(db_conn, n) is None and labels(w, n) == []
