"""Sync pages first (security review: "sync holds the repository row lock across all its GitHub
paging"): while a sync is reading GitHub, deliveries of the same repository are processed."""
from __future__ import annotations

import threading
import time

from app.github.gateway import RepoGateway
from jobs.process import process_delivery
from jobs.sync import sync_repository


def task_row(db_conn, number):
    return db_conn.execute("SELECT title, state, labels FROM tasks WHERE number = %s", (number,)).fetchone()


def test_a_delivery_is_processed_while_a_sync_is_paging(world, db_conn, monkeypatch):
    w = world
    w.use_state_labels()  # the task's label shows that the delivery was processed
    for i in range(3):
        w.sim.open_issue(w.repo, f"Existing {i}")
    w.settle()
    paging, release = threading.Event(), threading.Event()
    real_issues = RepoGateway.issues

    def blocking_issues(self, state="open"):
        """GitHub's issue list, stalling after the first item until the test says go."""
        for index, raw in enumerate(real_issues(self, state=state)):
            if index == 1:
                paging.set()
                release.wait(60)
            yield raw

    monkeypatch.setattr(RepoGateway, "issues", blocking_issues)
    result: dict = {}
    sync = threading.Thread(target=lambda: result.update(sync_repository(w.repo)))
    sync.start()
    try:
        assert paging.wait(30), "the sync never started paging"
        number = w.sim.open_issue(w.repo, "Opened during the sync")
        assert w.sim.wait_idle(10)  # stored by Fleet's ingest; now process it as a worker would
        [guid] = [r["id"] for r in db_conn.execute(
            "SELECT id FROM deliveries WHERE event = 'issues' AND action = 'opened' AND status <> 'processed'")]
        delivery = threading.Thread(target=process_delivery, args=(guid,))
        delivery.start()
        delivery.join(60)  # generous: before the fix it waited for the whole sync (here: forever)
        blocked = delivery.is_alive()
    finally:
        release.set()
        sync.join(60)
    assert not blocked, "the delivery waited for the sync's repository lock"
    delivery.join(60)
    w.settle()
    assert task_row(db_conn, number)["labels"] == ["fleet:ready"]
    assert result["issues"] >= 3
    assert not sync.is_alive()


def test_sync_does_not_undo_a_newer_webhook_stored_while_it_paged(world, db_conn, monkeypatch):
    """The sync read the issue open; a webhook closed it before the sync wrote: the older read
    must not win (the sync no longer holds the lock between reading and writing)."""
    from jobs import sync as sync_module

    w = world
    number = w.sim.open_issue(w.repo, "Closed during the sync")
    w.settle()
    real_write = sync_module.write_repository

    def close_between_read_and_write(database_url, reading, counts):
        later = time.time() + 5  # GitHub's updated_at has one-second resolution
        w.sim.world.clock = lambda: later
        w.sim.update_issue(w.repo, number, state="closed")
        w.settle()
        return real_write(database_url, reading, counts)

    monkeypatch.setattr(sync_module, "write_repository", close_between_read_and_write)
    sync_repository(w.repo)
    assert task_row(db_conn, number)["state"] == "closed"
