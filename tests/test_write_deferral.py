"""Pacing never sleeps in a worker: a spent write budget (Fleet's own ceilings, or GitHub's
Retry-After) defers the job with RQ's scheduler, the worker goes on with other repositories and
installations, per-repository order holds, and a deferral is neither a failure nor an attempt."""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import redis
from githubkit.exception import RateLimitExceeded
from rq.registry import ScheduledJobRegistry

from app import deliveries, runtime
from app.github.client import RetryPolicy, WritePacer
from app.github.write_budget import WINDOW_SECONDS, BudgetSpent, WriteBudget, WriteClass, ceiling, writing
from jobs.sweeper import sweep_deliveries
from tests.conftest import REDIS_URL

OTHER = "other/tools"  # another account: another installation


class FakeClock:
    """A clock tests move by hand; the pacer reads time only through it."""

    def __init__(self, at: float = 1_800_000_000.0):
        self.now = at

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def no_sleep(monkeypatch):
    """Records every time.sleep the pacer, the retry policy or githubkit's retry loop asks for."""
    calls: list[float] = []
    monkeypatch.setattr(time, "sleep", lambda seconds: calls.append(seconds))
    return calls


def budget(namespace, installation_id, per_minute=10, per_hour=1000, clock=None):
    return WriteBudget(redis.Redis.from_url(REDIS_URL), installation_id, per_minute, per_hour, namespace,
                       clock or FakeClock())


def take_all(b: WriteBudget, write_class: WriteClass) -> int:
    """How many writes of this class go through before the budget refuses."""
    taken = 0
    while True:
        try:
            b.take(write_class)
        except BudgetSpent:
            return taken
        taken += 1


# -- the pacer --------------------------------------------------------------------------------

def test_a_spent_budget_raises_at_once_and_never_sleeps(queue_namespace, no_sleep):
    import httpx

    clock = FakeClock(1_800_000_010.0)  # 10 s into a minute
    pacer = WritePacer(redis.Redis.from_url(REDIS_URL), 515151, per_minute=1, per_hour=100,
                       namespace=queue_namespace, clock=clock)
    post = httpx.Request("POST", "http://127.0.0.1/x")
    with pacer.acquire(post):
        pass
    with pytest.raises(BudgetSpent) as info:
        with pacer.acquire(post):
            pass
    # a minute (and the pacer's margin) after the write it waits on, not a sleep
    assert info.value.retry_at == 1_800_000_010.0 + WINDOW_SECONDS["minute"]
    assert no_sleep == []


def test_verdict_writes_go_through_when_labels_and_status_are_at_their_ceiling(queue_namespace):
    b = budget(queue_namespace, 525252, per_minute=10)
    assert take_all(b, WriteClass.LABELS) == 5       # 50 %
    assert take_all(b, WriteClass.STATUS) == 1       # up to 60 %
    assert take_all(b, WriteClass.QUEUE) == 1        # up to 70 %
    assert take_all(b, WriteClass.MERGE) == 2        # up to 90 %
    assert take_all(b, WriteClass.VERDICT) == 1      # the verdicts' own reserve: up to 100 %
    with pytest.raises(BudgetSpent) as info:
        b.take(WriteClass.LABELS)
    assert info.value.reason == "minute ceiling reached"


def test_the_hourly_ceiling_of_a_class_holds_across_minutes(queue_namespace):
    clock = FakeClock()
    b = budget(queue_namespace, 535353, per_minute=100, per_hour=10, clock=clock)
    first = clock.now
    assert take_all(b, WriteClass.LABELS) == 7  # 70 % of the hour (HOUR_SHARE)
    clock.now += 60
    with pytest.raises(BudgetSpent) as info:
        b.take(WriteClass.LABELS)
    assert info.value.reason == "hour ceiling reached"
    assert info.value.retry_at == first + WINDOW_SECONDS["hour"]  # an hour (and the margin) after the oldest write
    b.take(WriteClass.VERDICT)  # the hour's reserve is still there for verdicts


def test_the_minute_is_a_rolling_window_as_github_counts_it(queue_namespace):
    """A burst at the end of a clock minute still counts a second later: GitHub's limit is per
    rolling minute, so a fixed clock minute would let twice the budget through and earn 403s."""
    clock = FakeClock(1_800_000_059.5)
    b = budget(queue_namespace, 565656, per_minute=10, clock=clock)
    assert take_all(b, WriteClass.VERDICT) == 10
    clock.now = 1_800_000_061.0  # a new clock minute, but the burst was 1.5 s ago
    with pytest.raises(BudgetSpent) as info:
        b.take(WriteClass.VERDICT)
    assert info.value.retry_at == 1_800_000_059.5 + WINDOW_SECONDS["minute"]
    clock.now = 1_800_000_059.5 + WINDOW_SECONDS["minute"]
    b.take(WriteClass.VERDICT)  # the burst has aged out


def test_unmarked_writes_are_queue_writes():
    from app.github.write_budget import current_class

    assert current_class() is WriteClass.QUEUE
    with writing(WriteClass.VERDICT):
        assert current_class() is WriteClass.VERDICT
    assert current_class() is WriteClass.QUEUE
    assert ceiling(WriteClass.STATUS, 80) == 48 and ceiling(WriteClass.VERDICT, 500) == 500
    assert ceiling(WriteClass.STATUS, 500, hourly=True) == 425


def test_concurrent_workers_never_overcommit_a_window(queue_namespace):
    b = budget(queue_namespace, 545454, per_minute=50)
    taken: list[int] = []

    def worker():
        mine = WriteBudget(redis.Redis.from_url(REDIS_URL), 545454, 50, 1000, queue_namespace, b.clock)
        taken.append(take_all(mine, WriteClass.VERDICT))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 50


def test_a_long_retry_after_marks_the_installation_spent_instead_of_sleeping(queue_namespace, no_sleep):
    import httpx

    clock = FakeClock(time.time())
    pacer = WritePacer(redis.Redis.from_url(REDIS_URL), 555555, 80, 500, queue_namespace, clock=clock)
    policy = RetryPolicy().bound_to(pacer.mark_spent)
    request = httpx.Request("GET", "http://127.0.0.1/x")
    response = httpx.Response(403, headers={"retry-after": "120"}, request=request)
    from githubkit.response import Response

    exc = RateLimitExceeded(Response(response, object), timedelta(seconds=120))
    assert policy(exc, 0).do_retry is False
    until = pacer.budget.spent_until()
    assert until is not None and 110 < until - clock.now <= 121
    with pytest.raises(BudgetSpent) as info:
        pacer.budget.take(WriteClass.VERDICT)  # GitHub said stop: even verdicts wait
    assert info.value.retry_at == until
    assert no_sleep == []


def test_retry_backoff_for_server_errors_is_bounded_to_a_moment():
    import httpx
    from githubkit.exception import RequestFailed
    from githubkit.response import Response

    request = httpx.Request("GET", "http://127.0.0.1/x")
    exc = RequestFailed(Response(httpx.Response(502, request=request), object))
    policy = RetryPolicy()
    waits = [policy(exc, n).retry_after.total_seconds() for n in range(policy.attempts)]
    assert max(waits) <= 1.0
    assert policy(exc, policy.attempts).do_retry is False


# -- deliveries ----------------------------------------------------------------------------------

@pytest.fixture
def two_installations(world):
    w = world
    for login in ("alice", "bob", "carol"):
        w.sim.add_user(login, "write")
    w.sim.add_org("other")
    w.sim.create_repo(OTHER)
    w.other_installation = w.sim.install([OTHER])
    w.settle()
    return w


def spend(world, installation_id: int, seconds: float = 120) -> float:
    """GitHub said stop for ``seconds`` (as a Retry-After would); returns until when."""
    until = time.time() + seconds
    WritePacer(runtime.redis_client(), installation_id, 80, 500, runtime.settings().queue_name).mark_spent(until)
    return until


def lift(world, installation_id: int) -> None:
    runtime.redis_client().delete(f"{runtime.settings().queue_name}:writes:{installation_id}:spent-until")


def delivery_rows(db_conn, repo: str):
    return db_conn.execute(
        "SELECT id, repo_id, status, attempts, deferrals, not_before, processed_at FROM deliveries "
        "WHERE repo_full_name = %s AND event = 'issues' AND action = 'assigned' ORDER BY received_at", (repo,),
    ).fetchall()


def claim_of(db_conn, repo: str, number: int):
    row = db_conn.execute(
        "SELECT c.agent_id FROM claims c JOIN repositories r ON r.id = c.repo_id "
        "WHERE r.full_name = %s AND c.number = %s AND c.released_at IS NULL", (repo, number),
    ).fetchone()
    return row["agent_id"] if row else None


def assign(world, repo: str, login: str, number: int) -> None:
    owner, name = repo.split("/")
    gh = world.agent(login)
    gh.rest.issues.add_assignees(owner, name, number, assignees=[login])
    world.settle()


def run_scheduled_now() -> int:
    """Move every scheduled job to the queue (time passed) and run them; returns how many."""
    from tests.conftest import drain, release_scheduled

    moved = release_scheduled()
    drain()
    return moved


def scheduled_drains() -> dict[int, list[datetime]]:
    """Lane (repository id) -> when RQ's scheduler drains it again."""
    queue = runtime.queue()
    registry = ScheduledJobRegistry(queue=queue)
    found: dict[int, list[datetime]] = {}
    for job_id in registry.get_job_ids():
        job = queue.fetch_job(job_id)
        if job is not None and job.func_name == "jobs.process.drain_lane":
            found.setdefault(job.args[0], []).append(registry.get_scheduled_time(job_id).replace(tzinfo=timezone.utc))
    return found


def scheduled_functions() -> list[str]:
    queue = runtime.queue()
    jobs = [queue.fetch_job(i) for i in ScheduledJobRegistry(queue=queue).get_job_ids()]
    return [j.func_name for j in jobs if j is not None]


def test_a_spent_budget_defers_the_delivery_and_another_installation_goes_on(two_installations, db_conn, no_sleep):
    w = two_installations
    mine = w.sim.open_issue(w.repo, "Task here")
    theirs = w.sim.open_issue(OTHER, "Task there")
    w.settle()
    until = spend(w, w.installation_id)
    assign(w, w.repo, "alice", mine)
    assign(w, OTHER, "bob", theirs)

    [deferred] = delivery_rows(db_conn, w.repo)
    assert deferred["status"] == "deferred" and deferred["attempts"] == 0 and deferred["deferrals"] >= 1
    assert claim_of(db_conn, w.repo, mine) is None  # rolled back: nothing half-applied
    assert abs(deferred["not_before"].timestamp() - until) < 1
    [at] = scheduled_drains()[deferred["repo_id"]]
    assert until <= at.timestamp() <= until + 5  # RQ's scheduled registry holds its lane, for then
    assert [r["status"] for r in delivery_rows(db_conn, OTHER)] == ["processed"]
    assert claim_of(db_conn, OTHER, theirs) == "bob"
    assert not [s for s in no_sleep if s > 1.0]  # nobody slept for the budget

    lift(w, w.installation_id)
    run_scheduled_now()
    assert [r["status"] for r in delivery_rows(db_conn, w.repo)] == ["processed"]
    assert claim_of(db_conn, w.repo, mine) == "alice"


def test_two_deliveries_of_one_repository_keep_their_order_across_a_deferral(two_installations, db_conn):
    w = two_installations
    first = w.sim.open_issue(w.repo, "First")
    second = w.sim.open_issue(w.repo, "Second")
    w.settle()
    spend(w, w.installation_id)
    assign(w, w.repo, "alice", first)
    lift(w, w.installation_id)  # budget back, but the first is still waiting for its time
    assign(w, w.repo, "bob", second)

    older, later = delivery_rows(db_conn, w.repo)
    assert [older["status"], later["status"]] == ["deferred", "received"]  # it waits in its lane
    assert claim_of(db_conn, w.repo, second) is None  # it did not overtake
    assert len(scheduled_drains()[older["repo_id"]]) == 1

    run_scheduled_now()
    older, later = delivery_rows(db_conn, w.repo)
    assert older["status"] == later["status"] == "processed"
    assert older["processed_at"] < later["processed_at"]
    assert claim_of(db_conn, w.repo, first) == "alice" and claim_of(db_conn, w.repo, second) == "bob"


def test_deliveries_waiting_behind_a_deferred_one_run_as_soon_as_it_ran(two_installations, db_conn):
    """Deliveries behind a deferred one wait in their lane and run right after it, in the same
    drain (not at scheduled times a margin apart each: a backlog of them drained at one a second)."""
    from tests.conftest import drain

    w = two_installations
    numbers = [w.sim.open_issue(w.repo, f"Task {i}") for i in range(3)]
    w.settle()
    spend(w, w.installation_id)
    assign(w, w.repo, "alice", numbers[0])
    lift(w, w.installation_id)
    assign(w, w.repo, "bob", numbers[1])
    assign(w, w.repo, "carol", numbers[2])
    rows = delivery_rows(db_conn, w.repo)
    assert [r["status"] for r in rows] == ["deferred", "received", "received"]
    assert len(scheduled_drains()[rows[0]["repo_id"]]) == 1

    # The first one's time comes: the two behind it follow in the same drain, in order.
    queue = runtime.queue()
    registry = ScheduledJobRegistry(queue=queue)
    [first_job] = registry.get_job_ids()
    registry.remove(first_job)
    queue.enqueue_job(queue.fetch_job(first_job))
    drain()
    rows = delivery_rows(db_conn, w.repo)
    assert [r["status"] for r in rows] == ["processed"] * 3
    assert rows[0]["processed_at"] < rows[1]["processed_at"] < rows[2]["processed_at"]
    assert [claim_of(db_conn, w.repo, n) for n in numbers] == ["alice", "bob", "carol"]
    run_scheduled_now()  # their own scheduled runs, later, find them done
    assert [r["status"] for r in delivery_rows(db_conn, w.repo)] == ["processed"] * 3


def test_a_deferred_delivery_is_never_parked_nor_requeued_early_by_the_sweeper(two_installations, db_conn):
    from jobs.process import process_delivery

    w = two_installations
    n = w.sim.open_issue(w.repo, "Patience")
    w.settle()
    spend(w, w.installation_id, seconds=600)
    assign(w, w.repo, "alice", n)
    [row] = delivery_rows(db_conn, w.repo)
    for _ in range(deliveries.MAX_ATTEMPTS + 2):
        assert process_delivery(row["id"]) == "deferred"
    [row] = delivery_rows(db_conn, w.repo)
    assert row["status"] == "deferred" and row["attempts"] == 0
    assert row["deferrals"] >= deliveries.MAX_ATTEMPTS + 2
    assert row["id"] not in sweep_deliveries(grace=0, stuck=60)
    assert row["id"] not in deliveries.park_dead(db_conn, stuck=0)

    # Long past its time (the scheduled job was lost with Redis): the sweeper picks it up.
    db_conn.execute("UPDATE deliveries SET not_before = now() - interval '2 minutes' WHERE id = %s", (row["id"],))
    assert sweep_deliveries(grace=0, stuck=60) == [row["id"]]


def test_githubs_retry_after_defers_the_delivery_until_then(two_installations, db_conn, no_sleep):
    w = two_installations
    n = w.sim.open_issue(w.repo, "Rate limited")
    w.settle()
    w.sim.faults.rate_limit_next(1, retry_after=300, path_contains=f"/issues/{n}/labels")
    before = time.time()
    assign(w, w.repo, "alice", n)
    [row] = delivery_rows(db_conn, w.repo)
    assert row["status"] == "deferred" and row["attempts"] == 0
    assert before + 295 <= row["not_before"].timestamp() <= time.time() + 301
    key = f"{runtime.settings().queue_name}:writes:{w.installation_id}:spent-until"
    assert float(runtime.redis_client().get(key)) >= before + 295  # shared by every worker
    assert not [s for s in no_sleep if s > 1.0]


def test_a_spent_hourly_budget_defers_instead_of_failing(two_installations, db_conn):
    w = two_installations
    n = w.sim.open_issue(w.repo, "Late in the hour")
    w.settle()
    # GitHub's hourly budget (the world lifts it to a million, which one ZADD cannot fill within
    # Redis's 2 s socket timeout on a loaded machine), spent a minute ago (outside the minute window).
    runtime.configure(replace(runtime.settings(), writes_per_hour=500))
    spent_at = time.time() - 120
    key = f"{runtime.settings().queue_name}:writes:{w.installation_id}:hour"
    runtime.redis_client().zadd(key, {f"earlier:{i}": spent_at for i in range(500)})
    assign(w, w.repo, "alice", n)
    [row] = delivery_rows(db_conn, w.repo)
    assert row["status"] == "deferred"
    assert row["not_before"].timestamp() == pytest.approx(spent_at + WINDOW_SECONDS["hour"], abs=0.01)
    assert db_conn.execute("SELECT count(*) AS n FROM deliveries WHERE status IN ('failed', 'parked')"
                           ).fetchone()["n"] == 0


def test_a_status_update_defers_itself_when_the_budget_is_spent(two_installations, db_conn):
    from jobs.status import update_status

    w = two_installations
    repo_id = db_conn.execute("SELECT id FROM repositories WHERE full_name = %s", (w.repo,)).fetchone()["id"]
    # Fleet forgot its status issue: the next update must write (find it again and edit it).
    db_conn.execute("DELETE FROM status_issues WHERE repo_id = %s", (repo_id,))
    until = spend(w, w.installation_id)
    assert update_status(repo_id) == "deferred"
    queue = runtime.queue()
    registry = ScheduledJobRegistry(queue=queue)
    jobs = [queue.fetch_job(i) for i in registry.get_job_ids()]
    [job] = [j for j in jobs if j is not None and j.func_name == "jobs.status.update_status"]
    assert job.args[0] == repo_id
    assert registry.get_scheduled_time(job.id).replace(tzinfo=timezone.utc).timestamp() >= int(until)
    lift(w, w.installation_id)
    run_scheduled_now()
    assert db_conn.execute("SELECT count(*) AS n FROM status_issues WHERE repo_id = %s", (repo_id,)
                           ).fetchone()["n"] == 1


def test_a_merge_deferred_by_retry_after_uses_no_merge_attempt(world, db_conn):
    """GitHub answers the merge call 403 + Retry-After more often than MAX_MERGE_ATTEMPTS: each
    time the step defers (the entry as before, no attempt used), and the PR still merges."""
    from app.queue.state import MAX_MERGE_ATTEMPTS
    from tests.test_e2e_merge_queue import drive, green_then_queue, merged, open_task_pr, queue_rows

    w = world
    w.sim.add_user("alice", "write")
    pr = open_task_pr(w, "patient")
    refusals = MAX_MERGE_ATTEMPTS + 1
    w.sim.faults.rate_limit_next(refusals, retry_after=300, path_contains=f"/pulls/{pr}/merge", method="PUT")
    green_then_queue(w, [pr])
    drive(w)
    for _ in range(refusals):
        [row] = queue_rows(db_conn)
        assert row["outcome"] is None and row["attempts"] == 0
        assert "jobs.merge_queue.step_queue" in scheduled_functions()  # the step defers itself
        lift(w, w.installation_id)
        run_scheduled_now()
    drive(w)
    assert [n for n, _, _ in merged(w)] == [pr]
    assert [(r["state"], r["outcome"]) for r in queue_rows(db_conn)] == [("merged", "merged")]
    merge_answers = [c.status for c in w.sim.calls("PUT") if c.path.endswith(f"/pulls/{pr}/merge")]
    assert merge_answers == [403] * refusals + [200]


def test_a_rate_limited_sync_is_scheduled_again_not_failed(world, no_sleep):
    from jobs.sync import sync_job

    world.sim.faults.rate_limit_next(1, retry_after=300, path_contains=f"/repos/{world.repo}/issues", method="GET")
    assert sync_job(world.repo) == "deferred"
    assert "jobs.sync.sync_job" in scheduled_functions()
    assert not [s for s in no_sleep if s > 1.0]


def test_fleet_worker_runs_rqs_scheduler_for_deferred_jobs(settings, monkeypatch):
    from rq import SimpleWorker

    from app.cli import worker

    seen = {}
    monkeypatch.setattr(worker, "preload_job_modules", lambda: None)
    monkeypatch.setattr(SimpleWorker, "work", lambda self, **kwargs: seen.update(kwargs))
    worker.run_worker(burst=True)
    assert seen["with_scheduler"] is True


def test_a_refusal_deferred_midway_repeats_safely(two_installations, db_conn):
    """The refusal unassigns, then its comment meets GitHub's Retry-After: the delivery rolls
    back and defers; the re-run unassigns again (idempotent) and posts the comment once."""
    w = two_installations
    n = w.sim.open_issue(w.repo, "Contested")
    w.settle()
    assign(w, w.repo, "alice", n)
    w.sim.faults.rate_limit_next(1, retry_after=300, path_contains=f"/issues/{n}/comments", method="POST")
    assign(w, w.repo, "bob", n)
    deferred = delivery_rows(db_conn, w.repo)[-1]
    assert deferred["status"] == "deferred"
    assert [a["login"] for a in w.sim.issue(w.repo, n)["assignees"]] == ["alice"]  # the unassign was made
    lift(w, w.installation_id)
    run_scheduled_now()
    assert delivery_rows(db_conn, w.repo)[-1]["status"] == "processed"
    assert [a["login"] for a in w.sim.issue(w.repo, n)["assignees"]] == ["alice"]
    fleet_comments = [c for c in w.comments(n) if c["user"]["login"] == "fleet[bot]"]
    assert len(fleet_comments) == 1 and "bob" in fleet_comments[0]["body"]
    assert claim_of(db_conn, w.repo, n) == "alice"


def test_a_run_after_a_deferral_counts_as_a_repeat_for_dedupe(two_installations, db_conn):
    """A deferred run may have written to GitHub: the next run must look for its markers."""
    w = two_installations
    n = w.sim.open_issue(w.repo, "Once")
    w.settle()
    spend(w, w.installation_id)
    assign(w, w.repo, "alice", n)
    [row] = delivery_rows(db_conn, w.repo)
    assert row["attempts"] == 0 and row["deferrals"] == 1
    again = deliveries.start_processing(db_conn, row["id"])
    assert again is not None and again.attempts == 2


def test_a_secondary_limit_without_retry_after_pauses_the_installation_a_minute():
    import httpx
    from githubkit.exception import RequestFailed
    from githubkit.response import Response

    reported: list[float] = []
    request = httpx.Request("POST", "http://127.0.0.1/repos/o/r/issues/1/comments")
    answer = httpx.Response(403, json={"message": "You have exceeded a secondary rate limit."}, request=request)
    before = time.time()
    assert RetryPolicy().bound_to(reported.append)(RequestFailed(Response(answer, object)), 0).do_retry is False
    assert len(reported) == 1 and before + 59 <= reported[0] <= time.time() + 61


def fill_window(installation_id: int, write_class: WriteClass) -> None:
    """The installation's rolling minute already holds as many writes as ``write_class`` may make."""
    key = f"{runtime.settings().queue_name}:writes:{installation_id}:minute"
    spent = ceiling(write_class, runtime.settings().writes_per_minute)
    runtime.redis_client().zadd(key, {f"other-work:{i}": time.time() for i in range(spent)})


def labels_of(world, number: int) -> set[str]:
    return {label["name"] for label in world.sim.issue(world.repo, number)["labels"]}


def test_labels_over_their_share_catch_up_later_and_the_verdict_is_not_held_up(two_installations, db_conn):
    """State labels rank below verdicts: with the label share of the minute spent, a claim is still
    decided and its verdict written at once, and the label change waits in a per-repository job."""
    w = two_installations
    w.use_state_labels()
    n = w.sim.open_issue(w.repo, "Labels later")
    w.settle()
    assert "fleet:ready" in labels_of(w, n)
    fill_window(w.installation_id, WriteClass.LABELS)
    assign(w, w.repo, "alice", n)

    assert [r["status"] for r in delivery_rows(db_conn, w.repo)] == ["processed"]
    assert claim_of(db_conn, w.repo, n) == "alice"
    assert labels_of(w, n) >= {"fleet:claimed", "fleet:ready"}  # the verdict, but ready is still on
    assert "jobs.labels.sync_repo_labels" in scheduled_functions()

    runtime.redis_client().delete(f"{runtime.settings().queue_name}:writes:{w.installation_id}:minute")
    run_scheduled_now()
    assert "fleet:ready" not in labels_of(w, n) and "fleet:claimed" in labels_of(w, n)


def test_a_lease_is_not_released_while_activity_from_before_its_deadline_waits(two_installations, db_conn):
    """A holder's comment that GitHub delivered before the lease ran out, but that waits behind a
    deferred delivery, renews the lease: the lease clock must not release the claim meanwhile."""
    from jobs.leases import check_leases

    w = two_installations
    w.sim.set_file(w.repo, ".github/fleet.yml", "claims:\n  lease: 1h\n")
    held, other = w.sim.open_issue(w.repo, "Held"), w.sim.open_issue(w.repo, "Other")
    w.settle()
    assign(w, w.repo, "alice", held)
    before = db_conn.execute("SELECT lease_expires_at FROM claims WHERE number = %s", (held,)).fetchone()
    spend(w, w.installation_id)
    assign(w, w.repo, "bob", other)  # its verdict needs a write: deferred
    w.sim.comment(w.repo, held, "still on it", author="alice")  # waits behind it, in order
    w.settle()
    waiting = db_conn.execute("SELECT event, status FROM deliveries WHERE status IN ('deferred', 'received') "
                              "ORDER BY received_at").fetchall()
    assert [(r["event"], r["status"]) for r in waiting] == [("issues", "deferred"), ("issue_comment", "received")]

    lift(w, w.installation_id)  # the budget is back, the deferred deliveries have not run yet
    late = before["lease_expires_at"] + timedelta(minutes=1)
    assert check_leases(late.isoformat())["released"] == 0
    assert claim_of(db_conn, w.repo, held) == "alice"

    run_scheduled_now()
    after = db_conn.execute("SELECT lease_expires_at FROM claims WHERE number = %s AND released_at IS NULL",
                            (held,)).fetchone()
    assert after is not None and after["lease_expires_at"] > before["lease_expires_at"]  # renewed


def test_free_at_says_when_a_class_would_find_a_slot_and_counts_nothing(queue_namespace):
    clock = FakeClock()
    b = budget(queue_namespace, 575757, per_minute=10, clock=clock)
    assert b.free_at(WriteClass.MERGE) is None
    assert take_all(b, WriteClass.MERGE) == 9  # 90 %: looking first took no slot
    with pytest.raises(BudgetSpent) as info:
        b.take(WriteClass.MERGE)
    assert b.free_at(WriteClass.MERGE) == info.value.retry_at == clock.now + WINDOW_SECONDS["minute"]
    assert b.free_at(WriteClass.VERDICT) is None  # the verdicts' reserve is still free
    b.mark_spent(clock.now + 30)
    assert b.free_at(WriteClass.VERDICT) == clock.now + 30


def test_a_queue_step_without_a_merge_slot_defers_before_reading(world, db_conn):
    """Reading pull, checks, status and compare only to find the merge has no slot would be read
    again when it has one: the step asks the pacer first and defers, reading nothing."""
    from tests.test_e2e_merge_queue import drive, green_then_queue, merged, open_task_pr

    w = world
    w.sim.add_user("alice", "write")
    pr = open_task_pr(w, "unhurried")
    green_then_queue(w, [pr])
    key = f"{runtime.settings().queue_name}:writes:{w.installation_id}:spent-until"
    runtime.redis_client().set(key, repr(time.time() + 300), ex=300)  # GitHub said stop
    before = len(w.sim.requests)
    w.settle()
    assert [c.path for c in w.sim.requests[before:] if "/compare/" in c.path] == []
    assert "jobs.merge_queue.step_queue" in scheduled_functions()
    assert merged(w) == []
    lift(w, w.installation_id)
    run_scheduled_now()
    drive(w)
    assert [n for n, _, _ in merged(w)] == [pr]
    assert len([c for c in w.sim.requests[before:] if "/compare/" in c.path]) == 1  # read once, then merged
