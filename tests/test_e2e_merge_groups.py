"""End to end through the simulator: the merge queue in group mode (``queue.mode: groups``).

Queued PRs are merged into Fleet's branches ``fleet/queue/main/<id>``, CI runs there, and the base
is only ever fast-forwarded to a group head whose required check passed on exactly that SHA.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from app import db, runtime
from app.github.gateway import RepoGateway
from app.queue import group_store
from app.queue import service as queue_service
from app.queue.groups import GROUP_BRANCH_PREFIX, group_branch
from jobs.merge_queue import poll_queues, step_queue
from tests.conftest import drain
from tests.test_e2e_merge_queue import (
    comments_text, labels_of, merge_calls, open_task_pr, queue_rows, repo_id, run_ci, sim_repo,
)

GROUPS_YML = ("gates:\n  required_checks: [tests]\nqueue:\n  mode: groups\n  merge_method: {method}\n"
              "  depth: {depth}\n  batch_size: {batch}\n")


@pytest.fixture
def settings(settings):
    value = replace(settings, writes_per_minute=100_000, writes_per_hour=1_000_000,
                    queue_name=f"{settings.queue_name}-mg")
    runtime.configure(value)
    return value


def use_groups(world, depth: int = 2, batch: int = 1, extra: str = "", method: str = "merge") -> None:
    world.sim.set_file(world.repo, ".github/fleet.yml", GROUPS_YML.format(depth=depth, batch=batch, method=method) + extra)
    world.settle()


def group_heads(world) -> dict[str, str]:
    """branch -> head of every group branch that exists now."""
    with world.sim.world.lock:
        return {b: sha for b, sha in sim_repo(world).git.branches.items() if b.startswith(GROUP_BRANCH_PREFIX)}


def contains(world, head: str, sha: str) -> bool:
    with world.sim.world.lock:
        return sim_repo(world).git.is_ancestor(sha, head)


def run_group_ci(world, failing_heads: frozenset[str] = frozenset(), silent: bool = False) -> int:
    """CI on every group head without a result: failure when the group contains one of
    ``failing_heads`` (a PR head), else success; ``silent``: CI is not configured for groups."""
    if silent:
        return 0
    reported = 0
    with world.sim.world.lock:
        done = {c.head_sha for c in sim_repo(world).check_runs if c.name == "tests"}
    for sha in set(group_heads(world).values()) - done:
        bad = any(contains(world, sha, head) for head in failing_heads)
        world.sim.ci(world.repo, sha, "tests", conclusion="failure" if bad else "success")
        reported += 1
    return reported


def drive(world, failing_heads: frozenset[str] = frozenset(), rounds: int = 80) -> None:
    """Settle, let CI report on new PR and group heads, until nothing changes."""
    for _ in range(rounds):
        world.settle()
        if run_ci(world) + run_group_ci(world, failing_heads) == 0:
            return
    raise AssertionError("the queue did not settle")


def pr_head(world, number: int) -> str:
    return world.sim.pull(world.repo, number)["head"]["sha"]


def queue_prs(world, prs: list[int], who: str = "alice") -> None:
    world.settle()
    run_ci(world)  # each PR green on its own head first: only those join a group
    world.settle()
    for number in prs:
        world.sim.comment(world.repo, number, "/queue", author=who)


def base_moves(conn) -> list[tuple[str, str]]:
    """(sha, outcome) of Fleet's fast-forwards of ``main``, from its evidence."""
    rows = conn.execute("SELECT detail->>'sha' AS sha, outcome FROM evidence WHERE action = 'fast_forward' "
                        "AND target = 'main' ORDER BY id").fetchall()
    return [(r["sha"], r["outcome"]) for r in rows]


def assert_base_only_on_green(world, conn) -> None:
    """Every commit Fleet moved the base to passed ``tests`` as that exact tree."""
    with world.sim.world.lock:
        runs = {(c.head_sha, c.conclusion) for c in sim_repo(world).check_runs if c.name == "tests"}
    for sha, outcome in base_moves(conn):
        if outcome == "ok":
            assert (sha, "success") in runs, sha


def groups(conn) -> list[dict]:
    return conn.execute("SELECT * FROM queue_groups ORDER BY id").fetchall()


# --- the happy path -------------------------------------------------------------------------

def test_four_prs_land_through_groups_tested_in_parallel(world, db_conn):
    """Depth 2: two groups are under test at once, each built on the one ahead; the base is
    fast-forwarded to each group head that passed, the PRs turn merged on GitHub, in queue order;
    no merge call, no update-branch, and no group branch left behind."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=2)
    prs = [open_task_pr(world, f"grp{i}") for i in range(4)]
    heads = {n: pr_head(world, n) for n in prs}
    queue_prs(world, prs)
    world.settle()
    building = groups(db_conn)
    assert [g["prs"] for g in building] == [[prs[0]], [prs[1]]]  # depth 2: two at once
    assert building[1]["parent_sha"] == building[0]["head_sha"]  # the second on top of the first
    drive(world)

    with world.sim.world.lock:
        pulls = {i.number: i.pull for i in sim_repo(world).issues.values() if i.pull}
    assert all(pulls[n].merged for n in prs)
    assert sorted(prs, key=lambda n: (pulls[n].merged_at, n)) == prs
    assert merge_calls(world) == [] and not [c for c in world.sim.calls("PUT") if c.path.endswith("/update-branch")]
    assert [s for _, s in base_moves(db_conn)] == ["ok"] * 4
    assert_base_only_on_green(world, db_conn)
    assert group_heads(world) == {}
    rows = groups(db_conn)
    assert [(g["outcome"], g["branch_deleted_at"] is not None) for g in rows] == [("landed", True)] * 4
    assert [(r["pr_number"], r["outcome"]) for r in queue_rows(db_conn)] == [(n, "merged") for n in prs]
    for number in prs:  # each merged head is the one that was queued and tested
        assert contains(world, world.sim.world.repo(world.repo).git.branches["main"], heads[number])
        task = int(world.sim.pull(world.repo, number)["body"].split("#")[1])
        assert world.sim.issue(world.repo, task)["state"] == "closed"
        assert all(c["user"]["login"] != "fleet[bot]" for c in world.comments(number))


def test_a_failing_pr_alone_in_its_group_is_dequeued_and_the_groups_behind_rebuilt(world, db_conn):
    """Batch 1, depth 3: the second PR's group fails; it is dequeued with one comment naming the
    check and its group, the groups behind (built on it) are rebuilt without it and land."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=3)
    prs = [open_task_pr(world, f"fail{i}") for i in range(4)]
    bad = prs[1]
    queue_prs(world, prs)
    drive(world, failing_heads=frozenset({pr_head(world, bad)}))

    with world.sim.world.lock:
        pulls = {i.number: i.pull for i in sim_repo(world).issues.values() if i.pull}
    assert [n for n in prs if pulls[n].merged] == [prs[0], prs[2], prs[3]]
    assert not pulls[bad].merged
    text = comments_text(world, bad)
    assert text.count("Removed from the merge queue") == 1
    assert "`tests`" in text and "fleet/queue/main/" in text
    assert "fleet:queue-failed" in labels_of(world, bad)
    assert_base_only_on_green(world, db_conn)
    assert group_heads(world) == {}
    outcomes = {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)}
    assert outcomes == {prs[0]: "merged", bad: "checks_failed", prs[2]: "merged", prs[3]: "merged"}


def test_a_failed_batch_is_split_until_the_culprit_is_alone(world, db_conn):
    """Batch 4 at depth 2: the group of four fails; its PRs are tested again as growing prefixes
    ({1}, {1, 2}, ...) until the culprit fails alone; only it is dequeued and the other three land."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=2, batch=4)
    prs = [open_task_pr(world, f"bis{i}") for i in range(4)]
    bad = prs[2]
    queue_prs(world, prs)
    drive(world, failing_heads=frozenset({pr_head(world, bad)}))

    outcomes = {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)}
    assert outcomes == {prs[0]: "merged", prs[1]: "merged", bad: "checks_failed", prs[3]: "merged"}
    sizes = [(len(g["prs"]), g["outcome"]) for g in groups(db_conn)]
    assert sizes[0] == (4, "failed")
    assert (1, "failed") in sizes  # the culprit alone
    assert comments_text(world, bad).count("Removed from the merge queue") == 1
    assert_base_only_on_green(world, db_conn)
    assert group_heads(world) == {}


def test_with_gates_before_merge_each_landed_group_head_carries_a_green_fleet_gates(world, db_conn):
    """Branch protection that requires `fleet/gates` on the base: Fleet writes it, green, on the
    group's head right before moving the base there (and on no other group head)."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=2, extra="  gates_before_merge: true\n")
    prs = [open_task_pr(world, f"gbm{i}") for i in range(2)]
    queue_prs(world, prs)
    drive(world)
    landed = [sha for sha, outcome in base_moves(db_conn) if outcome == "ok"]
    assert len(landed) == 2
    with world.sim.world.lock:
        gates = {c.head_sha: (c.status, c.conclusion) for c in sim_repo(world).check_runs if c.name == "fleet/gates"}
    for sha in landed:
        assert gates[sha] == ("completed", "success")
    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {n: "merged" for n in prs}


def test_squashed_groups_land_one_commit_per_pr_and_close_each_pr_saying_which(world, db_conn):
    """merge_method squash: the base gets one single-parent commit per PR, in queue order, each
    with exactly the tree CI passed on the group; each PR is closed (GitHub cannot call it merged)
    with one comment naming its commit, and its task is closed by Fleet."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=2, batch=2, method="squash")
    before = world.sim.world.repo(world.repo).git.branches["main"]
    prs = [open_task_pr(world, f"sq{i}") for i in range(3)]
    queue_prs(world, prs)
    drive(world)

    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {n: "merged" for n in prs}
    carriers = {r["pr_number"]: r["merge_commit_sha"] for r in queue_rows(db_conn)}
    with world.sim.world.lock:
        git = sim_repo(world).git
        chain, sha = [], git.branches["main"]
        while sha != before:
            commit = git.commits[sha]
            assert len(commit.parents) == 1  # squashed: no merge commits on the base
            chain.append(sha)
            sha = commit.parents[0]
    assert list(reversed(chain)) == [carriers[n] for n in prs]
    assert_base_only_on_green(world, db_conn)
    for number in prs:
        pull = world.sim.pull(world.repo, number)
        assert pull["state"] == "closed" and pull["merged"] is False
        said = [c["body"] for c in world.comments(number) if c["user"]["login"] == "fleet[bot]"]
        assert len(said) == 1 and carriers[number][:12] in said[0] and "squashed" in said[0]
        task = int(pull["body"].split("#")[1])
        assert world.sim.issue(world.repo, task)["state"] == "closed"
    assert group_heads(world) == {}


# --- races and bad input ----------------------------------------------------------------------

def test_a_push_to_a_pr_in_a_group_rebuilds_without_the_stale_head(world, db_conn):
    """A push to a PR whose group is under test: that PR is dequeued (its new head was never
    tested), the group and those behind are rebuilt, and nothing stale lands."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=2)
    prs = [open_task_pr(world, f"push{i}") for i in range(3)]
    queue_prs(world, prs)
    world.settle()
    stale = pr_head(world, prs[0])
    branch = world.sim.pull(world.repo, prs[0])["head"]["ref"]
    world.sim.push(world.repo, branch, {"more.txt": "more\n"}, author="alice")
    drive(world)

    outcomes = {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)}
    assert outcomes == {prs[0]: "head_changed", prs[1]: "merged", prs[2]: "merged"}
    main = world.sim.world.repo(world.repo).git.branches["main"]
    assert not contains(world, main, stale)
    assert "new commits were pushed while it was in a merge group" in comments_text(world, prs[0])
    assert group_heads(world) == {}


def fleet_gates_on(world, sha: str) -> list[str | None]:
    with world.sim.world.lock:
        return [c.conclusion for c in sim_repo(world).check_runs if c.name == "fleet/gates" and c.head_sha == sha]


def test_a_queued_prs_green_fleet_gates_is_recorded_not_written_until_it_leaves_the_queue(world, db_conn):
    """In merge groups a queued PR's green ``fleet/gates`` would only echo what its group's checks
    decide: it is recorded (the queue reads it), not written, a write per task saved. A PR that
    leaves the queue without landing gets it written; ``/gates`` always writes."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=2)
    prs = [open_task_pr(world, f"quiet{i}") for i in range(3)]
    world.settle()
    for number in prs:  # queued before their CI reports, as agents do
        world.sim.comment(world.repo, number, "/queue", author="alice")
    world.settle()
    run_ci(world)
    world.settle()
    assert [g["prs"] for g in groups(db_conn)] == [[prs[0]], [prs[1]]]  # the recorded success let them in
    heads = {n: pr_head(world, n) for n in prs}
    assert all(fleet_gates_on(world, heads[n]) == [] for n in prs)
    world.sim.comment(world.repo, prs[1], "/gates", author="alice")  # asked for: written
    world.sim.comment(world.repo, prs[2], "/dequeue", author="alice")
    drive(world)
    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {
        prs[0]: "merged", prs[1]: "merged", prs[2]: "user_request"}
    assert fleet_gates_on(world, heads[prs[0]]) == []
    assert fleet_gates_on(world, heads[prs[1]]) == ["success"]
    assert fleet_gates_on(world, heads[prs[2]]) == ["success"]  # out of the queue: written


def test_dequeue_of_a_pr_in_a_group_rebuilds_the_queue_without_it(world, db_conn):
    world.sim.add_user("alice", "write")
    use_groups(world, depth=2)
    prs = [open_task_pr(world, f"deq{i}") for i in range(3)]
    queue_prs(world, prs)
    world.settle()
    world.sim.comment(world.repo, prs[0], "/dequeue", author="alice")
    drive(world)
    outcomes = {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)}
    assert outcomes == {prs[0]: "user_request", prs[1]: "merged", prs[2]: "merged"}
    main = world.sim.world.repo(world.repo).git.branches["main"]
    assert not contains(world, main, pr_head(world, prs[0]))
    assert group_heads(world) == {}


def test_a_base_moved_by_a_person_rebuilds_every_group_on_the_new_tip(world, db_conn):
    world.sim.add_user("alice", "write")
    use_groups(world, depth=2)
    prs = [open_task_pr(world, f"mv{i}") for i in range(2)]
    queue_prs(world, prs)
    world.settle()
    world.sim.push(world.repo, "main", {"hotfix.txt": "fix\n"}, author="alice")
    hotfix = world.sim.world.repo(world.repo).git.branches["main"]
    drive(world)
    main = world.sim.world.repo(world.repo).git.branches["main"]
    assert contains(world, main, hotfix)
    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {prs[0]: "merged", prs[1]: "merged"}
    assert_base_only_on_green(world, db_conn)
    assert any(g["outcome"] == "abandoned" for g in groups(db_conn))
    assert group_heads(world) == {}


def test_a_group_branch_deleted_by_someone_is_rebuilt(world, db_conn):
    world.sim.add_user("alice", "write")
    use_groups(world, depth=1)
    [pr] = [open_task_pr(world, "gone")]
    queue_prs(world, [pr])
    world.settle()
    [branch] = group_heads(world)
    world.sim.delete_branch(world.repo, branch)
    drive(world)
    rows = groups(db_conn)
    assert rows[0]["outcome"] == "abandoned" and "deleted" in rows[0]["detail"]
    assert rows[-1]["outcome"] == "landed"
    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {pr: "merged"}


def test_a_check_that_never_reports_on_groups_times_out_naming_the_cause(world, db_conn):
    """CI not configured for fleet/queue/**: the check reports on the PR but never on the
    group; after ci_timeout the PR is dequeued saying to run CI on group branches."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=1, extra="  ci_timeout: 1s\n")
    pr = open_task_pr(world, "silent")
    queue_prs(world, [pr])
    world.settle()
    time.sleep(1.1)
    step_queue(repo_id(db_conn), "main")
    world.settle()
    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {pr: "ci_timeout"}
    assert "fleet/queue/**" in comments_text(world, pr)
    assert group_heads(world) == {}


def test_a_base_that_refuses_fleets_push_falls_back_to_the_serial_queue(world, db_conn):
    """Branch protection forbids the App's push to main: the landing is refused, the queue says
    why in its fallback record and merges serially (PUT merge) instead."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=1)
    world.sim.protect_branch(world.repo, "main", restrict_pushes=True)
    pr = open_task_pr(world, "prot")
    queue_prs(world, [pr])
    drive(world)
    fallback = group_store.serial_fallback(db_conn, repo_id(db_conn), "main")
    assert fallback is not None and "422" in fallback[0]
    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {pr: "merged"}
    assert [c.status for c in merge_calls(world)] == [200]
    assert group_heads(world) == {}


# --- crashes and concurrent workers -----------------------------------------------------------------

class WorkerKilled(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""


def test_a_worker_killed_mid_build_leaves_a_group_the_next_step_resumes(world, db_conn, monkeypatch):
    """Killed after the group's branch was created, before its PR was merged into it: the next
    step goes on from what the group recorded (the branch is not created twice); it lands once."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=1)
    pr = open_task_pr(world, "midbuild")
    original = RepoGateway.merge_into

    def die(self, *args, **kwargs):
        raise WorkerKilled()

    monkeypatch.setattr(RepoGateway, "merge_into", die)
    queue_prs(world, [pr])
    world.settle()  # the step job dies in the worker (RQ records it as failed)
    [half] = groups(db_conn)
    assert half["state"] == "building" and group_heads(world) == {group_branch("main", half["id"]): half_parent(world)}
    monkeypatch.setattr(RepoGateway, "merge_into", original)
    step_queue(repo_id(db_conn), "main")
    drive(world)
    rows = groups(db_conn)
    assert [(g["outcome"], g["branch_deleted_at"] is not None) for g in rows] == [("landed", True)]
    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {pr: "merged"}
    created = db_conn.execute("SELECT outcome FROM evidence WHERE action = 'create_branch'").fetchall()
    assert [r["outcome"] for r in created] == ["ok"]
    assert group_heads(world) == {}


def half_parent(world) -> str:
    return world.sim.world.repo(world.repo).git.branches["main"]


def test_a_worker_killed_right_after_moving_the_base_lands_the_group_once(world, db_conn, monkeypatch):
    """Killed between the fast-forward and recording it: the group is still `landing`; the next
    step moves the base to the same head again (nothing changes) and records it: one landing."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=1)
    pr = open_task_pr(world, "midland")
    queue_prs(world, [pr])
    world.settle()
    original = RepoGateway.fast_forward

    def move_then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise WorkerKilled()

    monkeypatch.setattr(RepoGateway, "fast_forward", move_then_die)
    run_group_ci(world)
    world.settle()  # the step job that lands dies in the worker right after the fast-forward
    [landing] = groups(db_conn)
    assert landing["state"] == "landing" and landing["ended_at"] is None
    assert world.sim.pull(world.repo, pr)["merged"] is True
    monkeypatch.setattr(RepoGateway, "fast_forward", original)
    poll_queues()
    drive(world)
    [landed] = groups(db_conn)
    assert landed["outcome"] == "landed" and landed["branch_deleted_at"] is not None
    assert {r["pr_number"]: r["outcome"] for r in queue_rows(db_conn)} == {pr: "merged"}
    # Every retry (the killed worker was retried while still dying) moved the base to the same
    # head, which changes nothing after the first: one landing.
    moves = base_moves(db_conn)
    assert len(moves) >= 2 and {o for _, o in moves} == {"ok"} and len({s for s, _ in moves}) == 1


def test_four_workers_stepping_one_queue_at_once_land_each_group_once(world, db_conn):
    """Four threads step the same queue while CI reports: the queue's lock lets one at a time
    decide, so each group lands once, in order, and no branch is left."""
    world.sim.add_user("alice", "write")
    use_groups(world, depth=3)
    prs = [open_task_pr(world, f"four{i}") for i in range(5)]
    queue_prs(world, prs)
    world.settle()
    rid = repo_id(db_conn)
    deadline = time.monotonic() + 30
    errors: list[BaseException] = []

    def busy() -> bool:
        return time.monotonic() < deadline and bool(db_conn.execute(
            "SELECT 1 FROM queue_entries WHERE finished_at IS NULL").fetchone())

    def worker() -> None:
        with db.connect(world.settings.database_url, autocommit=True) as conn:
            while time.monotonic() < deadline and conn.execute(
                    "SELECT 1 FROM queue_entries WHERE finished_at IS NULL").fetchone():
                try:
                    queue_service.step(rid, "main")
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
                    return
                time.sleep(0.005)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    while busy():  # CI, and the webhooks it causes turned into recorded state (RQ wants the main thread)
        run_group_ci(world)
        world.sim.wait_idle(timeout=5)
        drain()
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert errors == [] and time.monotonic() < deadline, "the workers did not finish the queue"
    drive(world)
    with world.sim.world.lock:
        pulls = {i.number: i.pull for i in sim_repo(world).issues.values() if i.pull}
    assert sorted(prs, key=lambda n: (pulls[n].merged_at, n)) == prs and all(pulls[n].merged for n in prs)
    landed = [g for g in groups(db_conn) if g["outcome"] == "landed"]
    assert len([o for _, o in base_moves(db_conn) if o == "ok"]) == len(landed)
    assert_base_only_on_green(world, db_conn)
    assert group_heads(world) == {}
