"""GitHub never retries a failed delivery; Fleet's scheduler asks for redelivery of those it
never stored, and only those."""
from __future__ import annotations

from jobs.redeliver import redeliver_failed


def test_failed_deliveries_are_redelivered_once_and_stored(world, db_conn):
    sim = world.sim
    sim.webhook_url = world.fleet.url + "/nowhere"  # Fleet is unreachable: GitHub records failures
    numbers = [sim.open_issue(world.repo, f"Lost {i}") for i in range(3)]
    assert sim.wait_idle(timeout=10)
    assert db_conn.execute("SELECT count(*) AS n FROM tasks WHERE number = ANY(%s)", (numbers,)).fetchone()["n"] == 0
    sim.webhook_url = world.fleet.url + "/webhooks/github"
    requested = redeliver_failed()
    assert len(requested) == 3
    world.settle()
    titles = {r["title"] for r in db_conn.execute("SELECT title FROM tasks WHERE number = ANY(%s)", (numbers,))}
    assert titles == {"Lost 0", "Lost 1", "Lost 2"}
    assert redeliver_failed() == []  # every failed GUID now has a successful attempt / is stored
