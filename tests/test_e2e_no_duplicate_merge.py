"""End to end: two agents, two PRs for one task. The first merges and closes the task; the second
is refused by the gates (the task is closed, or held by another agent) and never merged."""
from __future__ import annotations

from tests.test_e2e_merge_queue import (  # noqa: F401  (the settings fixture lifts write pacing)
    comments_text, drive, merge_calls, merged, queue_rows, run_ci, settings,
)


def _two_prs_for_one_task(world) -> tuple[int, int, int]:
    sim, repo = world.sim, world.repo
    for login in ("alice", "bob", "carol"):
        sim.add_user(login, "write")
    task = sim.open_issue(repo, "Task dup")
    world.settle()
    world.assign("alice", task)
    world.settle()
    prs = []
    for agent in ("alice", "bob"):
        branch = f"{agent}/{task}-dup"
        sim.push(repo, branch, {f"{agent}.txt": f"{agent}\n"}, author=agent)
        prs.append(sim.open_pr(repo, branch, f"Do #{task}", body=f"Closes #{task}", author=agent))
    world.settle()
    run_ci(world)
    world.settle()
    return task, prs[0], prs[1]


def test_second_pr_for_a_closed_task_is_refused_and_never_merged(world, db_conn):
    task, first, second = _two_prs_for_one_task(world)
    world.sim.comment(world.repo, first, "/queue", author="carol")
    drive(world)
    world.sim.comment(world.repo, second, "/queue", author="carol")
    drive(world)
    assert [n for n, _, _ in merged(world)] == [first]
    assert world.sim.issue(world.repo, task)["state"] == "closed"
    assert not any(c.path.endswith(f"/pulls/{second}/merge") for c in merge_calls(world))
    row = next(r for r in queue_rows(db_conn) if r["pr_number"] == second)
    assert (row["state"], row["outcome"]) == ("failed", "gates_failed")
    assert "linked\\_task: the linked task is already closed: `#1`" in comments_text(world, second)


def test_both_queued_at_once_only_the_holders_merges(world, db_conn):
    """Queued together: the second is refused whether its step sees the task held or closed."""
    task, first, second = _two_prs_for_one_task(world)
    for number in (first, second):
        world.sim.comment(world.repo, number, "/queue", author="carol")
    drive(world)
    assert [n for n, _, _ in merged(world)] == [first]
    row = next(r for r in queue_rows(db_conn) if r["pr_number"] == second)
    assert (row["state"], row["outcome"]) == ("failed", "gates_failed")


def test_pr_for_a_task_held_by_another_agent_is_refused_naming_the_holder(world, db_conn):
    task, first, second = _two_prs_for_one_task(world)
    world.sim.comment(world.repo, second, "/queue", author="carol")
    drive(world)
    assert merged(world) == [] and merge_calls(world) == []
    assert world.sim.issue(world.repo, task)["state"] == "open"
    text = comments_text(world, second)
    assert "is held by another agent: `alice`" in text
    row = queue_rows(db_conn)[0]
    assert (row["pr_number"], row["outcome"]) == (second, "gates_failed")
