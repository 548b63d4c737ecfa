"""End to end through the simulator with simulated CI: the serialized merge queue.

Five PRs merge one at a time in order, each on a head whose gates were green on exactly that
SHA; every failure path dequeues with one comment and the queue moves on; concurrent and killed
workers never merge two PRs at once nor one PR twice.
"""
from __future__ import annotations

import threading
import time
from dataclasses import replace

import pytest

from app import runtime
from app.queue import service as queue_service
from app.queue import store as queue_store
from app.github.gateway import RepoGateway
from app.queue.state import QueueEntry
from app.sandbox.simulator.state import Repo
from jobs import merge_queue as jobs
from jobs.outbox import flush_held_writes


@pytest.fixture
def settings(settings):
    """These tests make a few hundred writes within seconds: lift Fleet's per-minute write pacing
    (kept for production). Its Redis counters are per installation and the simulator reuses
    installation ids, so a namespace of their own keeps these writes off other tests' budget."""
    value = replace(settings, writes_per_minute=100_000, writes_per_hour=1_000_000,
                    queue_name=f"{settings.queue_name}-mq")
    runtime.configure(value)
    return value


# --- helpers (also used by test_e2e_gates) ----------------------------------------------------


def sim_repo(world) -> Repo:
    return world.sim.world.repo(world.repo)


def open_task_pr(world, name: str, files: dict | None = None, author: str = "alice") -> int:
    """An issue, a branch ``author/N-name`` changing ``files`` and a PR closing the issue."""
    sim, repo = world.sim, world.repo
    n = sim.open_issue(repo, f"Task {name}")
    branch = f"{author}/{n}-{name}"
    sim.push(repo, branch, files or {f"{name}.txt": f"{name}\n"}, author=author)
    return sim.open_pr(repo, branch, f"Add {name}", body=f"Closes #{n}", author=author)


def heads_without_ci(world, check: str = "tests") -> list[tuple[int, str]]:
    """(PR, head) of open PRs whose head has no ``check`` run yet."""
    with world.sim.world.lock:
        r = sim_repo(world)
        done = {c.head_sha for c in r.check_runs if c.name == check}
        return [(i.number, i.pull.head_sha) for i in r.issues.values()
                if i.pull and i.state == "open" and i.pull.head_sha not in done]


def run_ci(world, conclusion=lambda number, sha: "success", check: str = "tests") -> int:
    """CI reports on every head that has no result yet (``conclusion`` None: it stays silent);
    returns how many results it reported."""
    reported = 0
    for number, sha in heads_without_ci(world, check):
        result = conclusion(number, sha)
        if result is not None:
            world.sim.ci(world.repo, sha, check, conclusion=result)
            reported += 1
    return reported


def drive(world, conclusion=lambda number, sha: "success", rounds: int = 60) -> None:
    """Settle, let CI report on new heads, until nothing changes."""
    for _ in range(rounds):
        world.settle()
        if run_ci(world, conclusion) == 0:
            return
    raise AssertionError("the queue did not settle")


def merged(world) -> list[tuple[int, str, str]]:
    """(PR, merged head, merge commit) in merge order."""
    with world.sim.world.lock:
        pulls = [i for i in sim_repo(world).issues.values() if i.pull and i.pull.merged]
        pulls.sort(key=lambda i: (i.pull.merged_at, i.number))
        return [(i.number, i.pull.head_sha, i.pull.merge_commit_sha) for i in pulls]


def check_runs(world, sha: str) -> dict[str, tuple[str, str | None]]:
    """name -> (status, conclusion) of the latest run of each check on ``sha``."""
    with world.sim.world.lock:
        return {c.name: (c.status, c.conclusion) for c in sim_repo(world).check_runs if c.head_sha == sha}


def merge_calls(world) -> list:
    return [c for c in world.sim.calls("PUT") if c.path.endswith("/merge")]


def queue_rows(conn) -> list[dict]:
    return conn.execute("SELECT * FROM queue_entries ORDER BY id").fetchall()


def comments_text(world, number: int) -> str:
    return "\n".join(c["body"] for c in world.comments(number))


def labels_of(world, number: int) -> set[str]:
    return {label["name"] for label in world.sim.issue(world.repo, number)["labels"]}


def repo_id(conn) -> int:
    return conn.execute("SELECT id FROM repositories").fetchone()["id"]


def green_then_queue(world, prs: list[int], who: str = "alice") -> None:
    """CI green on every current head, then ``/queue`` on each PR, in order."""
    world.settle()
    run_ci(world)
    world.settle()
    for number in prs:
        world.sim.comment(world.repo, number, "/queue", author=who)


def assert_merged_on_green(world, conn, expected_order: list[int], *, gates_run: bool = False) -> None:
    """Each PR merged once, in order, on a head where CI was green; ``fleet/gates`` is on those
    heads, green, when ``queue.gates_before_merge`` asks for it (``gates_run``)."""
    done = merged(world)
    assert [n for n, _, _ in done] == expected_order
    calls = merge_calls(world)
    assert [c.status for c in calls] == [200] * len(expected_order)
    evidence = conn.execute(
        "SELECT target, detail->>'sha' AS sha FROM evidence WHERE action = 'merge_pull' AND outcome = 'ok' ORDER BY id"
    ).fetchall()
    assert [(e["target"], e["sha"]) for e in evidence] == [(f"#{n}", head) for n, head, _ in done]
    for number, head, _ in done:
        runs = check_runs(world, head)
        assert runs["tests"] == ("completed", "success"), (number, runs)
        if gates_run:
            assert runs["fleet/gates"] == ("completed", "success"), (number, runs)
        else:  # the queue writes none; one the gates job wrote before the PR was queued is green
            assert runs.get("fleet/gates", ("completed", "success")) == ("completed", "success"), (number, runs)


# --- the done-when scenarios ----------------------------------------------------------------

def test_five_prs_queued_at_once_merge_one_at_a_time_in_order(world, db_conn):
    """Five queued PRs merge in queue order; each later one is brought up to date with the base
    first, and every merge call names a head whose gates were green on exactly that SHA."""
    world.sim.add_user("alice", "write")
    prs = [open_task_pr(world, f"five{i}") for i in range(5)]
    green_then_queue(world, prs)
    drive(world)
    assert_merged_on_green(world, db_conn, prs)
    rows = queue_rows(db_conn)
    assert [(r["pr_number"], r["state"], r["outcome"]) for r in rows] == [(n, "merged", "merged") for n in prs]
    # PRs 2..5 were behind the base when their turn came: updated once each, never merged stale.
    updates = [c for c in world.sim.calls("PUT") if c.path.endswith("/update-branch")]
    assert len(updates) == 4 and all(c.status == 202 for c in updates)
    # Every linked task is closed (GitHub closed them via "Closes #N": Fleet only verified).
    for number in prs:
        task = int(world.sim.pull(world.repo, number)["body"].split("#")[1])
        assert world.sim.issue(world.repo, task)["state"] == "closed"
    # Each /queue was answered by its merge, well within QUEUE_ACK_DELAY: no reaction, no
    # comment, and no acknowledgement left waiting (issue 13's budget).
    for number in prs:
        assert queue_reactions(world, number) == []
        assert all(c["user"]["login"] != "fleet[bot]" for c in world.comments(number))
    assert db_conn.execute("SELECT count(*) AS n FROM held_writes").fetchone()["n"] == 0


def queue_reactions(world, number: int) -> list[str]:
    with world.sim.world.lock:
        asked = [c for c in sim_repo(world).issues[number].comments if c.body.strip() == "/queue"]
        return [x.content for c in asked for x in c.reactions]


def test_a_pr_still_queued_after_the_delay_gets_its_thumbs_up_and_one_that_merged_does_not(world, db_conn):
    """`/queue` is acknowledged with 👍 only when the PR still waits QUEUE_ACK_DELAY later; a PR
    that left the queue by then (merged or dequeued) was answered by that."""
    world.sim.add_user("alice", "write")
    waiting = open_task_pr(world, "waits")  # its CI never reports: it stays in the queue
    world.settle()
    world.sim.comment(world.repo, waiting, "/queue", author="alice")
    world.settle()
    [row] = db_conn.execute("SELECT kind, number, not_before > now() AS later FROM held_writes").fetchall()
    assert (row["kind"], row["number"], row["later"]) == ("reaction", waiting, True)
    assert flush_held_writes(repo_id(db_conn)) == 0 and queue_reactions(world, waiting) == []  # not due yet

    db_conn.execute("UPDATE held_writes SET not_before = now() - interval '1 second'")  # the delay passes
    assert flush_held_writes(repo_id(db_conn)) == 1
    assert queue_reactions(world, waiting) == ["+1"]

    # Dequeued before its delay: the acknowledgement is taken back with the entry.
    world.sim.comment(world.repo, waiting, "/dequeue", author="alice")
    world.sim.comment(world.repo, waiting, "/queue", author="alice")
    world.settle()
    assert db_conn.execute("SELECT count(*) AS n FROM held_writes").fetchone()["n"] == 1
    world.sim.comment(world.repo, waiting, "/dequeue", author="alice")
    world.settle()
    assert db_conn.execute("SELECT count(*) AS n FROM held_writes").fetchone()["n"] == 0


def test_gates_before_merge_writes_a_green_fleet_gates_on_each_merged_head(world, db_conn):
    """`queue.gates_before_merge` (for a branch protection that requires `fleet/gates`)."""
    sim = world.sim
    sim.add_user("alice", "write")
    sim.set_file(world.repo, ".github/fleet.yml", "queue:\n  gates_before_merge: true\n")
    prs = [open_task_pr(world, f"gated{i}") for i in range(2)]
    green_then_queue(world, prs)
    drive(world)
    assert_merged_on_green(world, db_conn, prs, gates_run=True)


def test_failing_check_dequeues_with_a_comment_and_the_queue_moves_on(world, db_conn):
    world.sim.add_user("alice", "write")
    bad, good = open_task_pr(world, "bad"), open_task_pr(world, "good")
    world.settle()
    run_ci(world, lambda n, sha: "failure" if n == bad else "success")
    world.settle()
    for number in (bad, good):
        world.sim.comment(world.repo, number, "/queue", author="alice")
    drive(world)
    assert [n for n, _, _ in merged(world)] == [good]
    text = comments_text(world, bad)
    assert text.count("Removed from the merge queue") == 1
    assert "check `tests`" in text and "failed on" in text
    assert "fleet:queue-failed" in labels_of(world, bad)
    row = next(r for r in queue_rows(db_conn) if r["pr_number"] == bad)
    assert (row["state"], row["outcome"]) == ("failed", "checks_failed")


def _settle_labels(world) -> None:
    """Run the label catch-up the queue scheduled a second ahead, then settle."""
    from tests.conftest import drain, release_scheduled

    world.settle()
    release_scheduled(lambda job: job.func_name == "jobs.labels.sync_repo_labels")
    drain()
    world.settle()


def test_the_task_label_follows_its_pr_into_and_out_of_the_queue(world, db_conn):
    """With ``tasks.manage_labels``, ``/queue`` moves the linked task from ``fleet:review`` to
    ``fleet:queued`` and ``/dequeue`` moves it back (issue 15, point 5: the label stayed
    ``fleet:review`` until an unrelated event); a failed check's dequeue does too."""
    world.sim.add_user("alice", "write")
    world.sim.set_file(world.repo, ".github/fleet.yml", "tasks:\n  manage_labels: true\n")
    pr = open_task_pr(world, "labelled")
    task = pr - 1
    world.settle()
    assert "fleet:review" in labels_of(world, task)
    world.sim.comment(world.repo, pr, "/queue", author="alice")  # CI has not reported: it waits
    _settle_labels(world)
    assert {name for name in labels_of(world, task) if name.startswith("fleet:")} == {"fleet:queued"}
    world.sim.comment(world.repo, pr, "/dequeue", author="alice")
    _settle_labels(world)
    assert {name for name in labels_of(world, task) if name.startswith("fleet:")} == {"fleet:review"}
    world.sim.comment(world.repo, pr, "/queue", author="alice")
    _settle_labels(world)
    assert "fleet:queued" in labels_of(world, task)
    run_ci(world, lambda number, sha: "failure")
    _settle_labels(world)
    assert {name for name in labels_of(world, task) if name.startswith("fleet:")} == {"fleet:review"}
    assert "Removed from the merge queue" in comments_text(world, pr)


def test_a_dequeue_does_not_wait_for_budget_to_write_fleet_gates(world, db_conn):
    """With the replies' share of the minute spent, a failed PR still leaves the queue at once
    (its reply held for a slot, its `fleet/gates` left out) and the next PR merges."""
    from app.github.write_budget import WriteClass
    from tests.test_write_deferral import fill_window

    world.sim.add_user("alice", "write")
    bad, good = open_task_pr(world, "bad"), open_task_pr(world, "good")
    world.settle()
    for number in (bad, good):
        world.sim.comment(world.repo, number, "/queue", author="alice")
    world.settle()
    fill_window(world.installation_id, WriteClass.QUEUE)
    drive(world, lambda n, sha: "failure" if n == bad else "success")
    assert [n for n, _, _ in merged(world)] == [good]
    row = next(r for r in queue_rows(db_conn) if r["pr_number"] == bad)
    assert (row["state"], row["outcome"]) == ("failed", "checks_failed")
    assert "fleet/gates" not in check_runs(world, world.sim.pull(world.repo, bad)["head"]["sha"])
    held = db_conn.execute("SELECT kind, number FROM held_writes WHERE not_before IS NULL ORDER BY id").fetchall()
    assert [(h["kind"], h["number"]) for h in held][:1] == [("comment", bad)]  # the reply waits for a slot


def test_a_push_during_ci_prevents_the_stale_merge(world, db_conn):
    """A push to the in-flight PR while its CI runs dequeues it; the old head never merges,
    even when its CI turns green afterwards."""
    sim = world.sim
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "pushed")
    world.settle()
    old = sim.pull(world.repo, pr)["head"]["sha"]
    sim.comment(world.repo, pr, "/queue", author="alice")
    world.settle()
    assert queue_rows(db_conn)[0]["state"] == "waiting_checks"
    sim.push(world.repo, sim.pull(world.repo, pr)["head"]["ref"], {"pushed.txt": "v2\n"}, author="alice")
    world.settle()
    sim.ci(world.repo, old, "tests", conclusion="success")  # the stale head's CI finishes late
    drive(world)
    assert merged(world) == [] and merge_calls(world) == []
    assert "new commits were pushed while it was in flight" in comments_text(world, pr)
    assert queue_rows(db_conn)[0]["outcome"] == "head_changed"


def test_a_push_racing_the_merge_call_is_refused_by_sha(world, db_conn):
    """The merge call carries the tested SHA: a push landing just before it makes GitHub refuse
    it (409), and Fleet re-reads the PR and dequeues it instead of merging untested code."""
    sim = world.sim
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "racy")
    green_then_queue(world, [pr])
    branch = sim.pull(world.repo, pr)["head"]["ref"]
    sim.faults.delay_next(1, seconds=0.5, path_contains="/merge", method="PUT")
    pusher = threading.Timer(0.2, lambda: sim.push(world.repo, branch, {"racy.txt": "late\n"}, author="alice"))
    pusher.start()
    world.settle()
    pusher.join()
    drive(world, conclusion=lambda n, sha: None)
    assert merged(world) == []
    assert [c.status for c in merge_calls(world)] == [409]
    assert queue_rows(db_conn)[0]["outcome"] == "head_changed"


def test_a_merge_conflict_dequeues(world, db_conn):
    world.sim.add_user("alice", "write")
    first = open_task_pr(world, "left", {"shared.txt": "left\n"})
    second = open_task_pr(world, "right", {"shared.txt": "right\n"})
    green_then_queue(world, [first, second])
    drive(world)
    assert [n for n, _, _ in merged(world)] == [first]
    assert "merge conflict with `main`" in comments_text(world, second)
    assert next(r for r in queue_rows(db_conn) if r["pr_number"] == second)["outcome"] == "conflict"
    assert "fleet:queue-failed" in labels_of(world, second)


def test_ci_timeout_dequeues_and_the_poll_notices_it(world, db_conn):
    """No CI result within ``queue.ci_timeout``: the safety-net poll steps the queue and the PR
    leaves it with the names of the checks still missing."""
    sim = world.sim
    sim.add_user("alice", "write")
    sim.set_file(world.repo, ".github/fleet.yml", "queue:\n  ci_timeout: 1s\n")
    world.settle()
    pr = open_task_pr(world, "slow")
    world.settle()
    sim.comment(world.repo, pr, "/queue", author="alice")
    world.settle()
    assert queue_rows(db_conn)[0]["state"] == "waiting_checks"
    time.sleep(1.1)
    assert jobs.poll_queues()["queues"] == 1
    world.settle()
    row = queue_rows(db_conn)[0]
    assert row["outcome"] == "ci_timeout"
    assert "did not turn green within 1s" in comments_text(world, pr)


def test_queue_needs_write_even_for_the_author(world, db_conn):
    """`queue.allow_authors` (on by default) no longer lets an author without write queue."""
    sim = world.sim
    sim.add_user("rob", "triage")  # triage: always answered, still cannot queue
    sim.add_user("carol", "read")
    sim.add_user("wendy", "write")
    pr = open_task_pr(world, "perm", author="carol")
    world.settle()
    sim.comment(world.repo, pr, "/queue", author="rob")
    sim.comment(world.repo, pr, "/queue", author="carol")
    world.settle()
    text = comments_text(world, pr)
    assert "`rob` cannot use `/queue` here: it needs write access." in text
    assert "`carol` cannot use `/queue` here: it needs write access." in text
    assert queue_rows(db_conn) == []
    sim.comment(world.repo, pr, "/queue", author="wendy")
    world.settle()
    assert [r["queued_by"] for r in queue_rows(db_conn)] == ["wendy"]


def test_the_queue_label_queues_and_dequeue_removes(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "labelled")
    world.settle()
    sim.update_issue(world.repo, pr, author="alice", labels=["fleet:queue"])
    world.settle()
    assert [r["queued_by"] for r in queue_rows(db_conn)] == ["alice"]
    sim.comment(world.repo, pr, "/dequeue", author="alice")
    world.settle()
    row = queue_rows(db_conn)[0]
    assert (row["state"], row["outcome"]) == ("dequeued", "user_request")
    assert "fleet:queue" not in labels_of(world, pr)


def _queue_directly(conn, prs: list[int]) -> int:
    rid = repo_id(conn)
    from datetime import datetime, timedelta, timezone

    start = datetime.now(timezone.utc)
    for i, number in enumerate(prs):
        entry = QueueEntry(number, start + timedelta(milliseconds=i), "alice")
        assert queue_store.insert_entry(conn, rid, "main", entry)
    return rid


def test_four_concurrent_workers_never_merge_two_prs_of_one_queue_at_once(world, db_conn, monkeypatch):
    """Four workers step the same queue at once (webhooks paused, so only they move it; CI
    reports on every new head): merges never overlap and each PR merges exactly once."""
    sim = world.sim
    sim.add_user("alice", "write")
    prs = [open_task_pr(world, f"conc{i}") for i in range(4)]
    world.settle()
    run_ci(world)
    world.settle()
    sim.pause_deliveries()
    rid = _queue_directly(db_conn, prs)
    # With webhooks paused the recorded state never moves, so a step would wait quietly for the
    # silence limits (minutes); here every step reads GitHub, as after a silence.
    monkeypatch.setattr(queue_service, "waits_quietly", lambda *args, **kwargs: False)

    flying, most = [0], [0]
    lock = threading.Lock()
    original = RepoGateway.merge_pull

    def watched(self, *args, **kwargs):
        with lock:
            flying[0] += 1
            most[0] = max(most[0], flying[0])
        try:
            time.sleep(0.05)  # widen the window a second merge would need
            return original(self, *args, **kwargs)
        finally:
            with lock:
                flying[0] -= 1

    monkeypatch.setattr(RepoGateway, "merge_pull", watched)
    errors: list[BaseException] = []
    deadline = time.monotonic() + 20

    def worker() -> None:
        while time.monotonic() < deadline and queue_store.active_queues(db_conn):
            try:
                queue_service.step(rid, "main")
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                return

    def ci() -> None:
        while time.monotonic() < deadline and queue_store.active_queues(db_conn):
            run_ci(world)
            time.sleep(0.02)

    threads = [threading.Thread(target=worker) for _ in range(4)] + [threading.Thread(target=ci)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sim.resume_deliveries()
    world.settle()
    assert errors == []
    assert most[0] == 1
    assert_merged_on_green(world, db_conn, prs)


class WorkerKilled(BaseException):
    """Stands in for SIGKILL: not an Exception, so nothing on the way catches it."""


def test_a_worker_killed_right_after_the_merge_call_is_resumed_without_a_double_merge(world, db_conn, monkeypatch):
    sim = world.sim
    sim.add_user("alice", "write")
    prs = [open_task_pr(world, f"kill{i}") for i in range(2)]
    world.settle()
    run_ci(world)
    world.settle()
    sim.pause_deliveries()
    rid = _queue_directly(db_conn, prs)
    original = RepoGateway.merge_pull

    def merge_then_die(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise WorkerKilled()

    monkeypatch.setattr(RepoGateway, "merge_pull", merge_then_die)
    with pytest.raises(WorkerKilled):
        queue_service.step(rid, "main")
    assert [n for n, _, _ in merged(world)] == [prs[0]]
    assert queue_rows(db_conn)[0]["state"] == "merging"  # the intent was committed first
    monkeypatch.setattr(RepoGateway, "merge_pull", original)
    sim.resume_deliveries()
    jobs.poll_queues()  # the safety net picks the queue up again
    drive(world)
    assert_merged_on_green(world, db_conn, prs)
    assert [r["outcome"] for r in queue_rows(db_conn)] == ["merged"] * 2
