"""End to end through the simulator: install, issues, labels, assignment, branch, PR, check run,
merge — Postgres holds the matching state and every request passed OpenAPI validation."""
from __future__ import annotations


def q(conn, sql, *args):
    return conn.execute(sql, args).fetchall()


def test_install_backfills_repository(world, db_conn):
    """Installing the App records the installation and repository and syncs its state."""
    repo = q(db_conn, "SELECT full_name, installation_id, synced_at FROM repositories")
    assert [(r["full_name"], r["installation_id"]) for r in repo] == [("octo/widgets", world.installation_id)]
    assert repo[0]["synced_at"] is not None
    statuses = {r["status"] for r in q(db_conn, "SELECT status FROM deliveries")}
    assert statuses <= {"processed", "ignored"}


def test_issue_lifecycle_and_pull_request_become_state(world, db_conn):
    sim, repo = world.sim, world.repo
    sim.add_user("alice", "write")
    n = sim.open_issue(repo, "Add a widget | with pipes", body="Estimate: 3h\n\nDepends on #99", labels=["priority:high"])
    world.settle()
    task = q(db_conn, "SELECT title, state, estimate_hours, priority, labels FROM tasks WHERE number = %s", n)[0]
    assert task["title"] == "Add a widget | with pipes"
    assert float(task["estimate_hours"]) == 3.0 and task["priority"] == 1
    deps = q(db_conn, "SELECT dep_number, source FROM dependencies WHERE number = %s", n)
    assert [(d["dep_number"], d["source"]) for d in deps] == [(99, "body")]

    sim.push(repo, f"alice/{n}-widget", {"widget.py": "print('w')\n"}, author="alice")
    pr = sim.open_pr(repo, f"alice/{n}-widget", "Widget", body=f"Closes #{n}", author="alice")
    world.settle()
    branch = q(db_conn, "SELECT task_number, head_sha FROM branches WHERE name = %s", f"alice/{n}-widget")[0]
    assert branch["task_number"] == n
    row = q(db_conn, "SELECT linked_tasks, head_sha, state FROM pull_requests WHERE number = %s", pr)[0]
    assert row["linked_tasks"] == [n] and row["state"] == "open"
    assert row["head_sha"] == branch["head_sha"]

    sim.ci(repo, row["head_sha"], "tests", conclusion="success")
    world.settle()
    checks = q(db_conn, "SELECT name, status, conclusion FROM check_runs WHERE head_sha = %s", row["head_sha"])
    assert ("tests", "completed", "success") in {(c["name"], c["status"], c["conclusion"]) for c in checks}

    sim.merge_pr(repo, pr, by="alice")
    world.settle()
    merged = q(db_conn, "SELECT merged, state FROM pull_requests WHERE number = %s", pr)[0]
    assert merged["merged"] is True and merged["state"] == "closed"
    assert q(db_conn, "SELECT state FROM tasks WHERE number = %s", n)[0]["state"] == "closed"
    failed = q(db_conn, "SELECT id, event, last_error FROM deliveries WHERE status NOT IN ('processed', 'ignored')")
    assert failed == []


def test_late_older_issue_event_does_not_overwrite_newer_state(world, db_conn):
    """Replaying an older delivery after a newer one leaves the newer title in place."""
    from jobs.process import process_delivery

    sim, repo = world.sim, world.repo
    n = sim.open_issue(repo, "First title")
    world.settle()
    sim.update_issue(repo, n, title="Second title")
    world.settle()
    opened = q(db_conn, "SELECT id FROM deliveries WHERE event = 'issues' AND action = 'opened'")[0]["id"]
    db_conn.execute("UPDATE deliveries SET status = 'queued' WHERE id = %s", (opened,))
    assert process_delivery(opened) == "processed"
    assert q(db_conn, "SELECT title FROM tasks WHERE number = %s", n)[0]["title"] == "Second title"


def test_dependency_cycle_reported_once_on_the_issue_that_closes_it(world, db_conn):
    """Opening the issue that closes a cycle says so there, once; a task outside the cycle, or one
    that depends on nothing, gets no such reply."""
    from app.replies import parse_marker

    sim, repo = world.sim, world.repo

    def cycle_replies(number):
        return [m for m in (parse_marker(c["body"]) for c in world.comments(number)) if m and m.get("result") == "cycle"]

    a = sim.open_issue(repo, "A", body="Depends on #2")
    b = sim.open_issue(repo, "B", body=f"Depends on #{a}")
    c = sim.open_issue(repo, "C", body=f"Depends on #{a}")
    d = sim.open_issue(repo, "D")
    assert (a, b) == (1, 2)
    world.settle()
    (reply,) = cycle_replies(b)
    assert reply["cycle"] == [1, 2]
    assert cycle_replies(c) == [] and cycle_replies(d) == []
    sim.update_issue(repo, b, body=f"Depends on #{a}\n\nStill.")
    world.settle()
    assert len(cycle_replies(b)) == 1  # the same cycle is not reported twice
