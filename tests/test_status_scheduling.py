"""The status issue's coalescing really schedules the deferred edit (RQ's scheduled registry),
and that job, when it runs, writes the burst's changes."""
from __future__ import annotations

from rq.registry import ScheduledJobRegistry

from app import runtime
from tests.conftest import drop_scheduled_jobs


def test_a_burst_after_an_edit_is_written_by_one_scheduled_update(world, db_conn):
    """A burst inside status.min_interval (30 s by default) leaves exactly one scheduled update;
    run at its time, it writes every change of the burst in one edit."""
    from datetime import datetime, timedelta, timezone

    from jobs.status import update_status

    sim, repo = world.sim, world.repo
    sim.open_issue(repo, "First")
    world.settle()
    edits_before = db_conn.execute("SELECT edits FROM status_issues").fetchone()["edits"]
    for i in range(5):
        sim.open_issue(repo, f"Burst {i}")
    world.settle()
    registry = ScheduledJobRegistry(queue=runtime.queue())
    jobs = [runtime.queue().fetch_job(job_id) for job_id in registry.get_job_ids()]
    status_jobs = [j for j in jobs if j is not None and j.func_name == "jobs.status.update_status"]
    assert len(status_jobs) == 1
    assert db_conn.execute("SELECT edits FROM status_issues").fetchone()["edits"] == edits_before
    # What the scheduled job does when RQ's scheduler enqueues it, with the clock at its time.
    rid = status_jobs[0].args[0]
    assert update_status(rid, now=(datetime.now(timezone.utc) + timedelta(seconds=31)).isoformat()) == "edited"
    row = db_conn.execute("SELECT edits, body FROM status_issues").fetchone()
    assert row["edits"] == edits_before + 1
    assert "| Tasks | 0 | 6 |" in row["body"]


def test_a_clock_only_change_never_holds_back_real_changes(world, db_conn):
    """Only relative times moved: nothing is scheduled and no flag is held, so the next real
    change is written as soon as the interval allows (a held flag once hid changes for 10 min)."""
    from datetime import datetime, timedelta, timezone

    from jobs.status import _flag, update_status

    sim, repo = world.sim, world.repo
    sim.add_user("alice", "write")
    n = sim.open_issue(repo, "Leased")
    world.settle()
    world.assign("alice", n)
    world.settle()
    rid = db_conn.execute("SELECT id FROM repositories").fetchone()["id"]
    start = datetime.now(timezone.utc) + timedelta(minutes=1)
    update_status(rid, now=start.isoformat())
    registry = ScheduledJobRegistry(queue=runtime.queue())
    drop_scheduled_jobs(runtime.queue())  # earlier real changes' retries are not this test's subject
    assert update_status(rid, now=(start + timedelta(minutes=2)).isoformat()) == "clocks"
    assert not runtime.redis_client().exists(_flag(rid))
    assert registry.get_job_ids() == []
