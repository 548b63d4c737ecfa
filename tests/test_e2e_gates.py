"""End to end through the simulator: the ``fleet/gates`` check run.

Published on the PR head with one table row per gate, updated in place (one run per head, no
PATCH when nothing changed), re-evaluated by the re-run button and by ``/gates``; a burst of
check results costs one evaluation, not one per webhook; ``queue.auto`` queues green PRs.
"""
from __future__ import annotations

from jobs import merge_queue as jobs
from tests.test_e2e_merge_queue import (  # noqa: F401 - `settings` lifts write pacing here too
    drive, merged, open_task_pr, queue_rows, settings, sim_repo,
)


def gate_runs(world, sha: str) -> list:
    with world.sim.world.lock:
        return [c for c in sim_repo(world).check_runs if c.head_sha == sha and c.name == "fleet/gates"]


def gate_writes(world) -> tuple[int, int]:
    """(POST check-runs, PATCH check-runs) Fleet made so far."""
    calls = world.sim.calls(path_contains="/check-runs")
    return (sum(1 for c in calls if c.method == "POST"), sum(1 for c in calls if c.method == "PATCH"))


def head_of(world, number: int) -> str:
    return world.sim.pull(world.repo, number)["head"]["sha"]


def test_fleet_gates_is_published_on_the_head_and_updated_in_place(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "gated")
    world.settle()
    head = head_of(world, pr)
    # Waiting for CI is not worth a write (the PR shows CI running): no run yet, nothing read.
    assert gate_runs(world, head) == [] and gate_writes(world) == (0, 0)

    sim.ci(world.repo, head, "tests", status="in_progress", conclusion=None)
    world.settle()
    assert gate_runs(world, head) == []  # still waiting
    sim.ci(world.repo, head, "tests", conclusion="success")
    world.settle()
    [run] = gate_runs(world, head)
    assert gate_writes(world) == (1, 0)  # created once, with its verdict
    assert (run.status, run.conclusion) == ("completed", "success")
    assert run.output["title"] == "All 8 gates passed"
    assert "| | Gate | Result | Details |" in run.output["summary"]
    assert "| ✅ | checks | 1 check passed" in run.output["summary"]
    assert "| ✅ | linked\\_task | linked to" in run.output["summary"]

    writes = gate_writes(world)
    jobs.enqueue_evaluation(db_conn.execute("SELECT id FROM repositories").fetchone()["id"], pr, head)
    world.settle()
    assert gate_writes(world) == writes  # nothing changed: no PATCH at all
    stored = db_conn.execute("SELECT check_run_id, conclusion FROM gate_runs WHERE head_sha = %s", (head,)).fetchone()
    assert (stored["check_run_id"], stored["conclusion"]) == (run.id, "success")


def test_a_failing_check_fails_fleet_gates_with_its_name(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "red")
    world.settle()
    head = head_of(world, pr)
    sim.ci(world.repo, head, "lint", conclusion="failure")
    world.settle()
    [run] = gate_runs(world, head)
    assert (run.status, run.conclusion) == ("completed", "failure")
    assert "| ❌ | checks | 1 check failed: `lint` | [details](http" in run.output["summary"]


def test_the_rerun_button_and_the_gates_command_re_evaluate(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "rerun")
    world.settle()
    sim.ci(world.repo, head_of(world, pr), "tests", conclusion="success")
    world.settle()
    [run] = gate_runs(world, head_of(world, pr))
    posts, patches = gate_writes(world)
    sim.rerequest_check(world.repo, check_run_id=run.id, sender="alice")
    world.settle()
    assert gate_writes(world) == (posts, patches + 1)  # re-published in place even though unchanged
    comment = sim.comment(world.repo, pr, "/gates", author="alice")
    world.settle()
    assert gate_writes(world) == (posts, patches + 2)
    with sim.world.lock:
        reactions = [x.content for c in sim_repo(world).issues[pr].comments if c.id == comment for x in c.reactions]
    assert reactions == ["+1"]


def test_a_burst_of_check_results_costs_one_evaluation(world, db_conn, monkeypatch):
    """Twenty CI results on one head arriving together enqueue one gates job, not twenty."""
    sim = world.sim
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "burst")
    world.settle()
    head = head_of(world, pr)
    runs = []
    real = jobs.evaluate_gates
    monkeypatch.setattr(jobs, "evaluate_gates", lambda *a, **k: runs.append(a) or real(*a, **k))
    sim.pause_deliveries()
    for i in range(20):
        sim.ci(world.repo, head, f"check-{i}", conclusion="success")
    sim.resume_deliveries()
    world.settle()
    assert 1 <= len(runs) <= 2, runs
    [run] = gate_runs(world, head)
    assert run.conclusion == "success" and "20 checks passed" in run.output["summary"]


def test_queue_auto_queues_a_pr_once_its_gates_are_green(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.set_file(world.repo, ".github/fleet.yml", "queue:\n  auto: true\n")
    world.settle()
    pr = open_task_pr(world, "auto")
    world.settle()
    assert queue_rows(db_conn) == []  # no checks yet: not green, not queued
    drive(world)
    assert [n for n, _, _ in merged(world)] == [pr]
    assert queue_rows(db_conn)[0]["queued_by"] == "fleet[bot]"


def green_head_just_reported(world, name: str) -> tuple[int, str]:
    """(PR, head) of a new PR whose CI just reported success, its webhooks delivered, no job run."""
    world.sim.add_user("alice", "write")
    pr = open_task_pr(world, name)
    world.settle()
    head = head_of(world, pr)
    world.sim.ci(world.repo, head, "tests", conclusion="success")
    assert world.sim.wait_idle(timeout=10)
    return pr, head


def test_mergeability_still_being_computed_is_evaluated_again_later_not_slept_on(world, db_conn):
    """GitHub answers ``mergeable: null`` on the first read after a move (the simulator mimics it):
    the evaluation publishes nothing, schedules itself again, and the worker goes on."""
    from rq.registry import ScheduledJobRegistry

    from app import runtime
    from tests.conftest import drain

    pr, head = green_head_just_reported(world, "computing")
    drain()  # no rechecks run: only what the webhooks started
    assert gate_runs(world, head) == []  # a "waiting" run would be a write corrected a second later
    registry = ScheduledJobRegistry(queue=runtime.queue())
    [job_id] = registry.get_job_ids()
    recheck = runtime.queue().fetch_job(job_id)
    assert recheck.func_name == "jobs.merge_queue.evaluate_gates" and recheck.args[1] == pr and recheck.args[4] == 1
    world.settle()  # the recheck runs: GitHub has computed it by now
    [run] = gate_runs(world, head)
    assert (run.status, run.conclusion) == ("completed", "success")


def test_after_the_last_recheck_a_head_still_being_computed_is_published_as_waiting(world, db_conn):
    pr, head = green_head_just_reported(world, "never-computed")
    repo_id = db_conn.execute("SELECT id FROM repositories").fetchone()["id"]
    # The first read after the head moved still finds mergeable null; this is the last try.
    assert jobs.evaluate_gates(repo_id, pr, fresh=True, recheck=len(jobs.MERGEABLE_RECHECKS)) == "waiting"
    [run] = gate_runs(world, head)
    assert run.status != "completed" and "computing mergeability" in run.output["summary"]
