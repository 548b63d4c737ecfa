"""Fault injection: a real ``fleet worker`` process is killed with SIGKILL in the middle of a job.

The worker runs as a subprocess (``python -m app.cli.main worker``) against the test database, the
test Redis namespace and the simulator over HTTP. The job is held inside a GitHub call by a
simulator delay; the whole worker (the process running the job, and with ``--fork`` RQ's
work-horse too) is then SIGKILLed while GitHub still completes the call, as happens when a machine
dies mid-request.
Recovery is what production does: the sweeper re-enqueues the unfinished delivery, the merge
queue's poll steps the queue again, and a fresh worker finishes. The final state must be right,
with no duplicate comment and no second merge.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from app.replies import parse_marker
from jobs import merge_queue as mq_jobs
from jobs.sweeper import sweep_deliveries
from tests.fault_services import wait_until
from tests.test_e2e_merge_queue import (
    drive,
    merge_calls,
    merged,
    open_task_pr,
    queue_rows,
    run_ci,
)

ROOT = Path(__file__).resolve().parent.parent


class WorkerProcess:
    """``fleet worker`` in its own process group, configured like production through the env."""

    def __init__(self, world):
        s = world.settings
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "GITHUB_"))}
        env.update({
            "DATABASE_URL": s.database_url, "REDIS_URL": s.redis_url, "FLEET_QUEUE": s.queue_name,
            "GITHUB_API_URL": world.sim.url, "GITHUB_APP_ID": str(s.app_id),
            "GITHUB_APP_PRIVATE_KEY": s.private_key, "GITHUB_WEBHOOK_SECRET": s.webhook_secret,
            "FLEET_WRITES_PER_MINUTE": "100000", "FLEET_WRITES_PER_HOUR": "1000000",
            "LOG_LEVEL": "WARNING", "FLEET_LOG_FORMAT": "console",
        })
        self.log = tempfile.NamedTemporaryFile(prefix="fleet-worker-", suffix=".log", delete=False)
        self.proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "worker"], cwd=ROOT, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the worker (and a work-horse, if one was forked), as when the machine dies.

        With ``--fork`` RQ's work-horse is a child in a process group of its own, so the parent is
        frozen first (SIGSTOP: it cannot notice its horse dying and fail the job), then both are
        killed; the default in-process worker has no children and simply dies.
        """
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            for pid in _children(self.proc.pid):
                os.kill(pid, signal.SIGKILL)
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def close(self) -> None:
        try:
            self.kill()
        finally:
            self.log.close()
            os.unlink(self.log.name)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


@pytest.fixture
def worker_process(world):
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        w = WorkerProcess(world)
        started.append(w)
        return w

    yield start
    for w in started:
        w.close()


def delay_taken(sim, path: str) -> bool:
    """The delayed request has reached the simulator (its fault rule is used up)."""
    return not any(f.kind == "delay" and f.path_contains == path for f in sim.faults._rest)


def bot_comments(world, number: int) -> list[dict]:
    return [c for c in world.comments(number) if c["user"]["login"] == "fleet[bot]"]


def hold_then_kill(world, worker_process, path: str, method: str, seconds: float = 2.0):
    """Start a worker, wait until it is inside the delayed ``method path`` call, SIGKILL it."""
    world.sim.faults.delay_next(1, seconds=seconds, path_contains=path, method=method)
    worker = worker_process()
    try:
        wait_until(lambda: delay_taken(world.sim, path) or worker.proc.poll() is not None, 30,
                   what=f"the worker to call {method} {path}")
    except AssertionError:
        raise AssertionError(f"worker never made the call; its output:\n{worker.output()}") from None
    assert worker.proc.poll() is None, worker.output()
    worker.kill()
    return worker


def test_worker_killed_while_posting_a_refusal_recovers_without_a_duplicate_comment(world, db_conn, worker_process):
    sim, repo = world.sim, world.repo
    for login in ("alice", "bob"):
        sim.add_user(login, "write")
    n = sim.open_issue(repo, "Contested")
    world.settle()
    world.assign("alice", n)
    world.settle()

    world.assign("bob", n)  # refused: unassign bob, then comment why
    assert sim.wait_idle(timeout=10)
    guid = db_conn.execute(
        "SELECT id FROM deliveries WHERE action = 'assigned' ORDER BY received_at DESC LIMIT 1").fetchone()["id"]
    hold_then_kill(world, worker_process, f"/issues/{n}/comments", "POST")
    # GitHub finishes the POST the dead worker sent: the comment exists, the job never finished.
    wait_until(lambda: len(bot_comments(world, n)) == 1, 30, what="the orphaned comment to land")
    row = db_conn.execute("SELECT status, attempts FROM deliveries WHERE id = %s", (guid,)).fetchone()
    assert (row["status"], row["attempts"]) == ("processing", 1)

    assert guid in sweep_deliveries(grace=0, stuck=0)
    world.settle()

    row = db_conn.execute("SELECT status, attempts FROM deliveries WHERE id = %s", (guid,)).fetchone()
    assert (row["status"], row["attempts"]) == ("processed", 2)
    holder = db_conn.execute("SELECT agent_id FROM claims WHERE number = %s AND released_at IS NULL", (n,)).fetchone()
    assert holder["agent_id"] == "alice"
    assert [a["login"] for a in sim.issue(repo, n)["assignees"]] == ["alice"]
    assert sorted(label["name"] for label in sim.issue(repo, n)["labels"]) == ["fleet:claimed"]
    comments = bot_comments(world, n)
    assert len(comments) == 1, [c["body"] for c in comments]
    assert parse_marker(comments[0]["body"])["reason"] == "taken"


def test_worker_killed_while_assigning_a_claim_recovers_to_one_claim(world, db_conn, worker_process):
    """Killed inside ``POST .../assignees`` of an accepted /claim: GitHub assigned, the claim row
    was rolled back with the job; the retry decides again and ends with one claim."""
    sim, repo = world.sim, world.repo
    sim.add_user("alice", "write")
    n = sim.open_issue(repo, "Claim me")
    world.settle()
    sim.comment(repo, n, "/claim", author="alice")
    assert sim.wait_idle(timeout=10)
    hold_then_kill(world, worker_process, f"/issues/{n}/assignees", "POST")
    wait_until(lambda: [a["login"] for a in sim.issue(repo, n)["assignees"]] == ["alice"], 30,
               what="the orphaned assignment to land")
    assert db_conn.execute("SELECT count(*) AS c FROM claims WHERE number = %s", (n,)).fetchone()["c"] == 0

    assert sweep_deliveries(grace=0, stuck=0)
    world.settle()

    claims = db_conn.execute("SELECT agent_id, released_at FROM claims WHERE number = %s", (n,)).fetchall()
    assert [(c["agent_id"], c["released_at"]) for c in claims] == [("alice", None)]
    issue = sim.issue(repo, n)
    assert [a["login"] for a in issue["assignees"]] == ["alice"]
    assert sorted(label["name"] for label in issue["labels"]) == ["fleet:claimed"]
    assert bot_comments(world, n) == []  # an accepted claim is acknowledged with a reaction only
    statuses = {r["status"] for r in db_conn.execute("SELECT status FROM deliveries").fetchall()}
    assert statuses <= {"processed", "ignored"}


def test_worker_killed_inside_the_merge_call_never_merges_twice(world, db_conn, worker_process):
    sim, repo = world.sim, world.repo
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "killmerge")
    world.settle()
    run_ci(world)
    world.settle()

    sim.comment(repo, pr, "/queue", author="alice")
    assert sim.wait_idle(timeout=10)
    hold_then_kill(world, worker_process, f"/pulls/{pr}/merge", "PUT")
    # GitHub completes the merge the dead worker asked for.
    wait_until(lambda: [n for n, _, _ in merged(world)] == [pr], 30, what="the orphaned merge to land")
    assert [r["state"] for r in queue_rows(db_conn)] == ["merging"]  # the intent was committed first

    sweep_deliveries(grace=0, stuck=0)
    mq_jobs.poll_queues()
    drive(world)

    assert [n for n, _, _ in merged(world)] == [pr]
    assert len(merge_calls(world)) == 1, [(c.method, c.path, c.status) for c in merge_calls(world)]
    assert [(r["pr_number"], r["state"], r["outcome"]) for r in queue_rows(db_conn)] == [(pr, "merged", "merged")]
    markers = [parse_marker(c["body"]) for c in bot_comments(world, pr)]
    keys = [tuple(sorted((m or {}).items())) for m in markers]
    assert len(keys) == len(set(keys)), markers  # no reply posted twice
    statuses = {r["status"] for r in db_conn.execute("SELECT status FROM deliveries").fetchall()}
    assert statuses <= {"processed", "ignored"}
