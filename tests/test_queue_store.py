"""queue_entries and gate_runs rows round-trip through merge_queue's dataclasses; the database,
not the code, refuses a second in-flight entry per queue and a second active entry per PR."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from app.gates import store as gate_store
from app.queue import store as queue_store
from app.queue.state import AcceptHead, Dequeue, QueueEntry, StartEntry, UpdateBranch, transition

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
REPO = 7


@pytest.fixture
def conn(db_conn):
    """A clean database holding one repository with two open PRs."""
    db_conn.execute("INSERT INTO repositories (id, full_name) VALUES (%s, 'octo/widgets')", (REPO,))
    for number in (1, 2):
        db_conn.execute(
            "INSERT INTO pull_requests (repo_id, number, title, author, head_ref, head_sha, base_ref, labels, linked_tasks, mergeable) "
            "VALUES (%s, %s, %s, 'alice', %s, %s, 'main', %s, %s, true)",
            (REPO, number, f"PR {number}", f"alice/{number}-x", str(number) * 40, ["wip"], [10 + number]),
        )
    return db_conn


def entry(number: int, minutes: int = 0, **fields) -> QueueEntry:
    return QueueEntry(number, NOW + timedelta(minutes=minutes), "alice", **fields)


def test_an_entry_round_trips_through_every_transition(conn):
    assert queue_store.insert_entry(conn, REPO, "main", entry(1, priority="high"))
    [loaded] = queue_store.load_queue(conn, REPO, "octo/widgets", "main").entries
    assert loaded == entry(1, priority="high")
    started = transition(loaded, StartEntry(1, "a" * 40), NOW)
    updating = transition(started, UpdateBranch(1, "a" * 40, "merge"), NOW + timedelta(seconds=5))
    accepted = transition(updating, AcceptHead(1, "b" * 40, "a" * 40, "update"), NOW + timedelta(seconds=9))
    for state in (started, updating, accepted):
        assert queue_store.save_entry(conn, REPO, state, wake_at=NOW)
        assert queue_store.load_queue(conn, REPO, "octo/widgets", "main").entries == (state,)
    assert queue_store.active_entry(conn, REPO, 1) == ("main", accepted)


def test_a_second_active_entry_for_one_pr_is_a_no_op(conn):
    assert queue_store.insert_entry(conn, REPO, "main", entry(1))
    assert not queue_store.insert_entry(conn, REPO, "main", entry(1, minutes=5))
    assert len(queue_store.load_queue(conn, REPO, "octo/widgets", "main").entries) == 1


def test_postgres_refuses_a_second_in_flight_entry_per_queue(conn):
    for number in (1, 2):
        queue_store.insert_entry(conn, REPO, "main", entry(number, minutes=number))
    queue_store.save_entry(conn, REPO, transition(entry(1, minutes=1), StartEntry(1, "a" * 40), NOW))
    with pytest.raises(psycopg.errors.UniqueViolation):
        queue_store.save_entry(conn, REPO, transition(entry(2, minutes=2), StartEntry(2, "b" * 40), NOW))


def test_finishing_frees_the_queue_and_saving_a_finished_entry_does_nothing(conn):
    queue_store.insert_entry(conn, REPO, "main", entry(1))
    failed = transition(entry(1), Dequeue(1, "checks_failed", "no"), NOW)
    assert queue_store.finish_entry(conn, REPO, failed, NOW, "checks_failed", "no")
    assert not queue_store.finish_entry(conn, REPO, failed, NOW, "checks_failed", "no")
    assert not queue_store.save_entry(conn, REPO, replace(failed, state="merging"))
    assert queue_store.load_queue(conn, REPO, "octo/widgets", "main").entries == ()
    assert queue_store.active_queues(conn) == []
    assert queue_store.left_queue_on_head(conn, REPO, 1, "1" * 40) is False  # never started: no head
    assert queue_store.insert_entry(conn, REPO, "main", entry(1, minutes=3))  # may queue again


def test_pull_snapshot_reads_the_pr_its_reviews_and_the_checks_on_its_head(conn):
    head = "1" * 40
    conn.execute("INSERT INTO reviews (id, repo_id, pr_number, reviewer, state, submitted_at) VALUES (1, %s, 1, 'bob', 'APPROVED', %s)",
                 (REPO, NOW))
    conn.execute("INSERT INTO check_runs (id, repo_id, head_sha, name, status, conclusion) VALUES (5, %s, %s, 'tests', 'completed', 'success')",
                 (REPO, head))
    conn.execute("INSERT INTO check_runs (id, repo_id, head_sha, name, status, conclusion) VALUES (6, %s, %s, 'tests', 'completed', 'failure')",
                 (REPO, "9" * 40))
    conn.execute("INSERT INTO commit_statuses (repo_id, sha, context, state) VALUES (%s, %s, 'ci/legacy', 'pending')", (REPO, head))
    pr = gate_store.pull_snapshot(conn, REPO, "octo/widgets", 1)
    assert (pr.head_sha, pr.base_ref, pr.labels, pr.linked_tasks, pr.mergeable) == (head, "main", ("wip",), (11,), True)
    assert [(r.reviewer, r.state) for r in pr.reviews] == [("bob", "APPROVED")]
    assert sorted((c.name, c.kind, c.state) for c in pr.checks) == [
        ("ci/legacy", "status", "waiting"), ("tests", "check_run", "passed")]
    assert gate_store.pull_snapshot(conn, REPO, "octo/widgets", 99) is None


def test_gate_runs_remember_the_check_run_and_its_digest(conn):
    assert gate_store.gate_run(conn, REPO, "a" * 40) is None
    gate_store.store_gate_run(conn, REPO, "a" * 40, 1, 77, "d1", "waiting")
    gate_store.store_gate_run(conn, REPO, "a" * 40, 1, None, "d2", "success")
    known = gate_store.gate_run(conn, REPO, "a" * 40)
    assert known is not None and known.evaluated_at is not None
    assert replace(known, evaluated_at=None) == gate_store.GateRun(77, "d2", "success", 1)
    conn.execute("UPDATE gate_runs SET evaluated_at = now() - interval '1 hour'")
    gate_store.store_gate_run(conn, REPO, "b" * 40, 2, 78, "d3", "waiting")
    conn.execute("UPDATE gate_runs SET evaluated_at = now() - interval '1 hour' WHERE head_sha = %s", ("b" * 40,))
    # PR 1's head (1…1) never published, PR 2's head (2…2) neither: both are stale.
    assert {n for _, n, _ in gate_store.stale_gates(conn, 60)} == {1, 2}
