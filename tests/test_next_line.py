"""The /next line's decisions (``app.claims.waiting``): who gets which ready task, and when a
/next waits rather than being told there is nothing."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.claims import waiting
from app.claims.rules import AgentId
from app.tasks.readiness import Dependency, TaskSnapshot
from app.tasks.refs import PRIORITY_NORMAL, TaskRef

REPO = "octo/widgets"
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


def task(number, *, holder=None, blocked_by=None, priority=PRIORITY_NORMAL, assignees=(), open_prs=(), state="open"):
    deps = (Dependency(TaskRef.of(REPO, blocked_by), "open"),) if blocked_by else ()
    return TaskSnapshot(REPO, number, f"Task {number}", state=state, holder=holder, dependencies=deps,
                        priority=priority, assignees=assignees, open_prs=open_prs)


def waiter(login, name=None, at=0):
    asked = T0 + timedelta(seconds=at)
    return waiting.Waiter(AgentId(login, name), 1, 100 + at, asked, asked, asked + timedelta(minutes=30))


def test_the_longest_waiting_agent_gets_the_most_urgent_task_and_no_task_goes_twice():
    tasks = [task(3), task(4, priority=PRIORITY_NORMAL - 1), task(5, blocked_by=9)]
    pairs = waiting.match([waiter("bob", at=0), waiter("carol", at=5), waiter("dave", at=9)], tasks)
    assert [(w.agent.login, t.number) for w, t in pairs] == [("bob", 4), ("carol", 3)]  # dave keeps waiting


def test_a_task_assigned_to_another_account_is_not_handed_out():
    pairs = waiting.match([waiter("bob")], [task(3, assignees=("carol",)), task(6)])
    assert [(w.agent.login, t.number) for w, t in pairs] == [("bob", 6)]


def test_next_waits_only_while_some_task_may_still_become_ready():
    bob = AgentId("bob")
    assert waiting.may_wait([task(3, blocked_by=2)], bob, 0)  # its blocker may close
    assert waiting.may_wait([task(3, holder=AgentId("carol"))], bob, 0)  # carol may release it
    assert not waiting.may_wait([task(3, holder=bob)], bob, 0)  # only bob's own work is open
    assert not waiting.may_wait([task(3, holder=AgentId("carol"), open_prs=(8,))], bob, 0)  # in review
    assert not waiting.may_wait([task(3, blocked_by=2, state="closed")], bob, 0)
    assert not waiting.may_wait([], bob, 0)


def test_one_account_cannot_fill_the_line_with_names():
    assert not waiting.may_wait([task(3, blocked_by=2)], AgentId("bob", "n51"), waiting.MAX_WAITING_PER_ACCOUNT)
