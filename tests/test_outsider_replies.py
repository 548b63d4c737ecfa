"""Outsiders cannot drain Fleet's write budget: a commenter below triage permission gets at most
one answer (reply or reaction) per issue per interval, and cannot force a re-publish of the gates;
collaborators are answered exactly as before."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from app.commands.handlers import OUTSIDER_REPLY_INTERVAL, decide_answer
from app.replies import parse_marker
from tests.test_e2e_gates import gate_writes, head_of
from tests.test_e2e_merge_queue import open_task_pr, run_ci, sim_repo

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


# --- the decision ----------------------------------------------------------------------------


@pytest.mark.parametrize(("last", "expected"), [
    (None, ("reply", "outsider")),
    (NOW - OUTSIDER_REPLY_INTERVAL - timedelta(seconds=1), ("reply", "outsider")),
    (NOW - OUTSIDER_REPLY_INTERVAL, ("reply", "outsider")),
    (NOW - OUTSIDER_REPLY_INTERVAL + timedelta(seconds=1), ("none", "outsider_throttled")),
    (NOW - timedelta(seconds=1), ("none", "outsider_throttled")),
])
def test_an_outsider_is_answered_once_per_interval(last, expected):
    assert decide_answer(has_replies=True, succeeded=False, collaborator=False, last_outsider_reply=last, now=NOW) == expected


def test_an_outsiders_success_reaction_shares_the_same_budget():
    recent = NOW - timedelta(minutes=1)
    assert decide_answer(has_replies=False, succeeded=True, collaborator=False, last_outsider_reply=None,
                         now=NOW) == ("react", "outsider")
    assert decide_answer(has_replies=False, succeeded=True, collaborator=False, last_outsider_reply=recent,
                         now=NOW) == ("none", "outsider_throttled")


@pytest.mark.parametrize(("has_replies", "succeeded", "answer"), [(True, False, "reply"), (True, True, "reply"),
                                                                  (False, True, "react"), (False, False, "none")])
def test_a_collaborator_is_always_answered(has_replies, succeeded, answer):
    recent = NOW - timedelta(seconds=1)
    decided = decide_answer(has_replies=has_replies, succeeded=succeeded, collaborator=True,
                            last_outsider_reply=recent, now=NOW)
    assert decided[0] == answer


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture
def people(world):
    world.sim.add_user("alice", "write")
    world.sim.add_user("tina", "triage")
    world.sim.add_user("mallory", "none")
    world.sim.add_user("reader", "read")
    return world


def fleet_comments(world, number):
    return [c for c in world.comments(number) if c["user"]["login"] == "fleet[bot]"]


def fleet_comment_posts(world, number) -> int:
    return len([c for c in world.sim.calls("POST", f"/issues/{number}/comments") if c.status == 201])


def test_twenty_help_comments_from_an_outsider_get_one_reply_and_a_writer_is_always_answered(people, db_conn, caplog):
    w = people
    n = w.sim.open_issue(w.repo, "Spam target")
    w.settle()
    caplog.set_level(logging.INFO)
    for _ in range(20):
        w.sim.comment(w.repo, n, "/help", author="mallory")
    w.settle()
    assert len(fleet_comments(w, n)) == 1
    assert fleet_comment_posts(w, n) == 1
    withheld = [r for r in caplog.records if r.getMessage() == "outsider answer withheld"]
    assert len(withheld) == 19 and {r.login for r in withheld} == {"mallory"}
    for _ in range(3):
        w.sim.comment(w.repo, n, "/help", author="alice")
        w.settle()
    assert [parse_marker(c["body"])["command"] for c in fleet_comments(w, n)] == ["help"] * 4


def test_unknown_commands_and_refusals_of_outsiders_share_the_one_reply(people, db_conn):
    """`/clam` (unknown), `/block #1` (refused: maintainers only), `/release` (refused: not held)
    from outsiders, several accounts: one reply on the issue per interval, and the refused
    commands still change nothing."""
    w = people
    n = w.sim.open_issue(w.repo, "Spam target")
    w.settle()
    for author in ("mallory", "reader"):
        for body in ("/clam", "/block #1", "/release", "/help"):
            w.sim.comment(w.repo, n, body, author=author)
    w.settle()
    assert len(fleet_comments(w, n)) == 1
    assert db_conn.execute("SELECT count(*) AS n FROM dependencies").fetchone()["n"] == 0
    other = w.sim.open_issue(w.repo, "Another issue")
    w.settle()
    w.sim.comment(w.repo, other, "/help", author="mallory")
    w.settle()
    assert len(fleet_comments(w, other)) == 1  # the budget is per issue


def test_an_outsider_is_answered_again_after_the_interval(people, db_conn):
    """The clock is moved by ageing the stored reply time: no sleeping."""
    w = people
    n = w.sim.open_issue(w.repo, "Patience")
    w.settle()
    w.sim.comment(w.repo, n, "/help", author="mallory")
    w.settle()
    w.sim.comment(w.repo, n, "/help", author="mallory")
    w.settle()
    assert len(fleet_comments(w, n)) == 1
    db_conn.execute("UPDATE outsider_replies SET last_reply_at = last_reply_at - %s", (OUTSIDER_REPLY_INTERVAL,))
    w.sim.comment(w.repo, n, "/help", author="mallory")
    w.settle()
    assert len(fleet_comments(w, n)) == 2


def test_a_triager_is_not_an_outsider(people, db_conn):
    w = people
    n = w.sim.open_issue(w.repo, "Triage")
    w.settle()
    for _ in range(3):
        w.sim.comment(w.repo, n, "/help", author="tina")
    w.settle()
    assert len(fleet_comments(w, n)) == 3


def test_gates_from_a_non_writer_never_forces_a_republish(people, db_conn):
    """`/gates` by anyone re-evaluates, but only a writer's re-publishes an unchanged check run;
    an outsider's repeated `/gates` gets at most one reaction."""
    w = people
    pr = open_task_pr(w, "gated")
    w.settle()
    run_ci(w)  # a conclusive verdict: fleet/gates exists on the head
    w.settle()
    head = head_of(w, pr)
    writes = gate_writes(w)
    assert writes[0] == 1
    comments = [w.sim.comment(w.repo, pr, "/gates", author="mallory") for _ in range(5)]
    w.settle()
    assert gate_writes(w) == writes  # nothing changed: no PATCH
    with w.sim.world.lock:
        reactions = [x.content for c in sim_repo(w).issues[pr].comments if c.id in comments for x in c.reactions]
    assert reactions == ["+1"]
    w.sim.comment(w.repo, pr, "/gates", author="alice")
    w.settle()
    assert gate_writes(w) == (writes[0], writes[1] + 1)  # a writer's /gates re-publishes in place
    assert head_of(w, pr) == head
