"""Benchmark: the merge queue's throughput and own overhead, measured end to end through the simulator.

Run ``python -m bench.bench_queue`` from the project root (Postgres and Redis as for the tests:
``FLEET_TEST_PG``, ``FLEET_TEST_REDIS``). It starts the GitHub simulator and Fleet's web app
over HTTP, writes the repository's ``.github/fleet.yml`` (required check ``tests``; ``--mode
groups`` adds ``queue.mode: groups``, ``depth``, ``batch_size`` and ``merge_method: merge``),
opens ``--prs`` pull requests, lets a simulated CI turn every PR head green, then queues them
all at once and starts the clock, while this process works the RQ queue (and, as the RQ
scheduler would, moves scheduled jobs to the queue once they are due).

The simulated CI reports ``tests`` on every open PR head and every merge-group branch head
(``fleet/queue/...``) ``--ci-seconds`` after it first sees the head. ``--failing K`` picks K PRs
spread evenly through the queue whose changes "break the build" only combined with others: their
own head passes, but any other head that contains it fails (a group head with it merged in; in
serial mode the head ``update-branch`` makes). It prints:

- elapsed time and merges per T (T = ``--ci-seconds``: merged PRs / (elapsed / T));
- PRs merged and dequeued, and Fleet's dequeue comments per dequeued PR;
- serial: green → merge (the CI result that made the head green → Fleet's merge call) and
  merge → next (one merge call → the next PR's first call, update-branch or merge);
- groups: groups built / landed / failed / abandoned (``queue_groups``) and green → landed (the
  CI result on a group head → the group recorded as landed);
- GitHub requests and writes (non-GET requests by the App, token requests excepted) per merged PR.

Everything runs in one machine's processes, so the figures are Fleet's own latency (webhook
ingest, job hand-offs, the re-reads before merging), not GitHub's. By default the jobs run in
this process, one at a time, sharing it with the simulator and the web app; ``--workers N`` runs
them in N ``fleet worker`` processes instead, as ``fleet up`` does. ``--timeline`` prints every
group's life (created, built, CI reported, ended) relative to the start of the clock.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime

from app import db, runtime
from bench.common import scratch_namespace
from app.settings import Settings

PG_BASE = os.environ.get("FLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("FLEET_TEST_REDIS", "redis://127.0.0.1:6379/0")
_PR_PATH = re.compile(r"/pulls/(\d+)/(merge|update-branch)$")
CHECK = "tests"


def fleet_yml(mode: str, depth: int, batch: int) -> str:
    """The bench repository's config: the simulated CI's check is required; group mode needs the
    merge method ``merge``. Serial keeps the default merge method (squash), as before."""
    text = f"gates:\n  required_checks: [{CHECK}]\nqueue:\n  mode: {mode}\n"
    if mode == "groups":
        text += f"  merge_method: merge\n  depth: {depth}\n  batch_size: {batch}\n"
    return text


def failing_positions(prs: int, failing: int) -> list[int]:
    """Indexes (queue order) of the ``failing`` PRs, spread evenly, never the first."""
    return sorted({min(prs - 1, (j + 1) * prs // (failing + 1)) for j in range(failing)})


class SimulatedCI(threading.Thread):
    """Reports ``tests`` on every open PR head and every group branch head ``seconds`` after it
    first saw the head: failure for a head that contains one of ``failing`` (original PR heads)
    without being it, success otherwise. ``reported[sha] = (epoch, conclusion)``."""

    def __init__(self, world, seconds: float, failing: frozenset[str] = frozenset()):
        super().__init__(name="bench-ci", daemon=True)
        self.world, self.seconds, self.failing = world, seconds, failing
        self.stop = threading.Event()
        self.reported: dict[str, tuple[float, str]] = {}
        self._verdict: dict[str, str] = {}

    def run(self) -> None:
        from app.queue.groups import GROUP_BRANCH_PREFIX

        seen: dict[str, float] = {}
        sim = self.world.sim
        while not self.stop.is_set():
            with sim.world.lock:
                r = sim.world.repo(self.world.repo)
                heads = [i.pull.head_sha for i in r.issues.values() if i.pull and i.state == "open"]
                heads += [sha for b, sha in r.git.branches.items() if b.startswith(GROUP_BRANCH_PREFIX)]
                for sha in heads:
                    if sha not in self._verdict:
                        bad = any(sha != f and r.git.is_ancestor(f, sha) for f in self.failing)
                        self._verdict[sha] = "failure" if bad else "success"
            now = time.perf_counter()
            for sha in heads:
                seen.setdefault(sha, now)
                if sha not in self.reported and now - seen[sha] >= self.seconds:
                    sim.ci(self.world.repo, sha, CHECK, conclusion=self._verdict[sha])
                    self.reported[sha] = (time.time(), self._verdict[sha])
            time.sleep(0.005)


def _describe(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: no samples"
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return (f"{label}: median {statistics.median(ms):.0f} ms, p90 {p90:.0f} ms, max {ms[-1]:.0f} ms "
            f"(n={len(ms)})")


def run(prs: int = 10, ci_seconds: float = 0.0, timeout: float | None = None, mode: str = "serial",
        depth: int = 3, batch: int = 1, failing: int = 0, workers: int = 0) -> dict:
    """Queue ``prs`` PRs at once and measure; the RQ namespace's Redis keys are removed after.
    ``workers``: 0 runs the jobs in this process (one worker); N > 0 starts N ``fleet worker``
    processes instead, as ``fleet up`` does."""
    if timeout is None:
        timeout = 120.0 + 4 * prs * max(ci_seconds, 0.5)
    with scratch_namespace() as queue_name:
        figures = _run(prs, ci_seconds, timeout, queue_name, mode, depth, batch, failing, workers)
    return {**figures, "depth": depth, "batch": batch, "workers": workers}


def _start_workers(n: int, world, url: str) -> list[subprocess.Popen]:
    """``n`` × ``fleet worker`` (RQ scheduler included) on this run's database, namespace and
    simulator; returns once they are listening."""
    from rq import Worker

    s = world.settings
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": s.redis_url, "FLEET_QUEUE": s.queue_name,
           "GITHUB_API_URL": world.sim.url, "GITHUB_APP_ID": str(s.app_id), "GITHUB_APP_PRIVATE_KEY": s.private_key,
           "GITHUB_APP_PRIVATE_KEY_PATH": "", "GITHUB_WEBHOOK_SECRET": s.webhook_secret or "",
           "FLEET_WRITES_PER_MINUTE": str(s.writes_per_minute), "FLEET_WRITES_PER_HOUR": str(s.writes_per_hour),
           "LOG_LEVEL": "WARNING", "FLEET_LOG_FORMAT": "console"}
    children = [subprocess.Popen([sys.executable, "-m", "app.cli.main", "worker"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(n)]
    deadline = time.monotonic() + 60
    while len(Worker.all(queue=runtime.queue())) < n:
        if time.monotonic() > deadline or any(c.poll() is not None for c in children):
            _stop_workers(children)
            raise RuntimeError("the fleet worker processes did not start")
        time.sleep(0.1)
    return children


def _wait_quiet(url: str, timeout: float = 60) -> None:
    """With worker processes, ``settle`` cannot see a job they are running: wait until the queue is
    empty, every worker idle and every delivery processed, twice in a row."""
    from rq import Worker

    quiet, deadline = 0, time.monotonic() + timeout
    with db.connect(url, autocommit=True) as conn:
        while quiet < 2 and time.monotonic() < deadline:
            pending = conn.execute("SELECT count(*) AS n FROM deliveries WHERE status IN "
                                   "('received', 'queued', 'processing')").fetchone()["n"]
            busy = [w for w in Worker.all(queue=runtime.queue()) if w.get_state() == "busy"]
            quiet = quiet + 1 if not (pending or busy or runtime.queue().count) else 0
            time.sleep(0.2)


def _stop_workers(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()


def _release_due() -> int:
    """What the RQ scheduler of ``fleet worker`` does: move scheduled jobs whose time has come
    (e.g. the re-evaluation of a head whose mergeability GitHub was still computing) to the queue."""
    from rq.registry import ScheduledJobRegistry

    from tests.conftest import release_scheduled

    due = set(ScheduledJobRegistry(queue=runtime.queue()).get_jobs_to_schedule(int(time.time())))
    return release_scheduled(lambda job: job.id in due) if due else 0


def _run(prs: int, ci_seconds: float, timeout: float, queue_name: str, mode: str, depth: int, batch: int,
         failing: int, workers: int) -> dict:
    from app.wsgi import create_app
    from tests.conftest import drain
    from tests.github_env import start_world

    logging.disable(logging.WARNING)
    run_id = f"{os.getpid()}_{secrets.token_hex(3)}"
    url = f"{PG_BASE}/fleet_bench_{run_id}"
    db.ensure_database(url)
    with db.connect(url) as conn:
        db.migrate(conn)
    settings = Settings(
        database_url=url, redis_url=REDIS_URL, queue_name=queue_name, webhook_secret="bench-secret",
        github_api_url="http://127.0.0.1:9", log_format="console",
        # The simulator answers at once; Fleet's production write pacing would dominate the figure.
        writes_per_minute=100_000, writes_per_hour=1_000_000,
    )
    runtime.configure(settings)
    apps = []
    world = start_world(settings, lambda s: apps.append(create_app(s)) or apps[-1])
    ci, children = None, []
    try:
        sim, repo = world.sim, world.repo
        sim.add_user("alice", "write")
        sim.set_file(repo, ".github/fleet.yml", fleet_yml(mode, depth, batch))
        world.settle()
        if workers:  # started early: they warm up (imports, token) on the setup's deliveries
            children = _start_workers(workers, world, url)
        numbers = []
        for i in range(prs):
            task = sim.open_issue(repo, f"Bench task {i}")
            branch = f"alice/{task}-bench"
            sim.push(repo, branch, {f"bench/{i}.txt": f"{i}\n"}, author="alice")
            numbers.append(sim.open_pr(repo, branch, f"Bench {i}", body=f"Closes #{task}", author="alice"))
        world.settle()
        bad = [numbers[i] for i in failing_positions(prs, failing)] if failing else []
        failing_heads = frozenset(sim.pull(repo, n)["head"]["sha"] for n in bad)
        ci = SimulatedCI(world, ci_seconds, failing_heads)
        ci.start()
        # Every PR green on its own head before it is queued: only those join a group.
        heads = {sim.pull(repo, n)["head"]["sha"] for n in numbers}
        deadline = time.monotonic() + 60 + ci_seconds
        while not heads <= set(ci.reported) and time.monotonic() < deadline:
            time.sleep(0.01)
        world.settle()
        if workers:
            _wait_quiet(url)
        first_request = len(sim.requests)
        started = time.time()
        for number in numbers:
            sim.comment(repo, number, "/queue", author="alice")
        deadline = time.monotonic() + timeout
        finished, last_check, queue = False, 0.0, runtime.queue()
        with db.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                # An empty drain costs ~4 ms of CPU (a worker registered and retired): spinning on
                # it would starve the simulator, the web app and the CI thread of the GIL.
                if queue.count and not workers:
                    drain()
                else:
                    time.sleep(0.002)
                if time.monotonic() - last_check >= 0.1:
                    last_check = time.monotonic()
                    _release_due()
                    if _all_finished(conn, world, numbers):
                        finished = True
                        break
        elapsed = time.time() - started
        _stop_workers(children)
        if finished:
            try:  # the last landing's follow-ups (tasks closed, branches deleted) count as its writes
                world.settle()
            except AssertionError:
                pass
        ci.stop.set()
        ci.join(timeout=5)
        return _figures(world, url, ci, first_request, started, elapsed, numbers, bad, mode)
    finally:
        _stop_workers(children)
        if ci is not None:
            ci.stop.set()
        world.fleet.stop()
        world.sim.stop()
        for app in apps:
            app.config["FLEET_POOL"].close()
        runtime.queue().empty()
        db.drop_database(url)


def _merged(world) -> dict[int, bool]:
    with world.sim.world.lock:
        return {i.number: bool(i.pull.merged) for i in world.sim.world.repo(world.repo).issues.values() if i.pull}


def _all_finished(conn, world, numbers: list[int]) -> bool:
    """Every PR merged on GitHub or dequeued by Fleet (its queue entry ended otherwise)."""
    merged = _merged(world)
    if all(merged.get(n) for n in numbers):
        return True
    ended = {r["pr_number"] for r in conn.execute(
        "SELECT pr_number FROM queue_entries WHERE finished_at IS NOT NULL AND outcome <> 'merged'").fetchall()}
    return all(merged.get(n) or n in ended for n in numbers)


def _figures(world, url: str, ci: SimulatedCI, first_request: int, started: float, elapsed: float,
             numbers: list[int], bad: list[int], mode: str) -> dict:
    from app.queue.messages import DEQUEUE_PREFIX

    sim = world.sim
    calls = [c for c in sim.requests[first_request:] if c.identity == "app" or c.identity.startswith("installation:")]
    with sim.world.lock:
        issues = {i.number: i for i in sim.world.repo(world.repo).issues.values()}
        pulls = {n: i.pull for n, i in issues.items() if i.pull}
        comments = {n: [c.body for c in issues[n].comments if c.app is not None] for n in numbers}
    merged = sum(1 for n in numbers if pulls[n].merged)
    with db.connect(url, autocommit=True) as conn:
        entries = conn.execute("SELECT pr_number, outcome FROM queue_entries WHERE finished_at IS NOT NULL "
                               "ORDER BY id").fetchall()
        groups = conn.execute("SELECT id, prs, head_sha, outcome, detail, created_at, tested_since, ended_at "
                              "FROM queue_groups ORDER BY id").fetchall()
    dequeued = sorted({r["pr_number"] for r in entries if r["outcome"] != "merged"})
    # Greens reported before the clock started (each PR's own head, before /queue) are no sample.
    green = {sha: at for sha, (at, conclusion) in ci.reported.items() if conclusion == "success" and at >= started}
    merges = [(c.timestamp, int(_PR_PATH.search(c.path).group(1))) for c in calls
              if c.method == "PUT" and c.status == 200 and c.path.endswith("/merge")]
    green_to_merge = [ts - green[pulls[n].head_sha] for ts, n in merges if pulls[n].head_sha in green]
    firsts: dict[int, float] = {}
    for c in calls:
        m = _PR_PATH.search(c.path) if c.method == "PUT" else None
        if m:
            firsts.setdefault(int(m.group(1)), c.timestamp)
    merge_to_next = [firsts[nxt] - ts for (ts, _), (_, nxt) in zip(merges, merges[1:])]
    green_to_landed = [_epoch(g["ended_at"]) - green[g["head_sha"]] for g in groups
                       if g["outcome"] == "landed" and g["head_sha"] in green]
    writes = sum(1 for c in calls if c.method != "GET" and not c.path.startswith("/app/"))
    outcomes = [g["outcome"] for g in groups]
    return {
        "mode": mode, "prs": len(numbers), "merged": merged, "elapsed_s": elapsed,
        "failing": bad, "dequeued": dequeued,
        "outcomes": {r["pr_number"]: r["outcome"] for r in entries},
        "dequeue_comments": {n: sum(1 for b in comments[n] if b.startswith(DEQUEUE_PREFIX)) for n in dequeued},
        "green_to_merge": green_to_merge, "merge_to_next": merge_to_next, "green_to_landed": green_to_landed,
        "requests_per_pr": len(calls) / max(merged, 1), "writes_per_pr": writes / max(merged, 1),
        "groups": {"built": len(groups), "landed": outcomes.count("landed"), "failed": outcomes.count("failed"),
                   "abandoned": outcomes.count("abandoned"), "active": outcomes.count(None)},
        "timeline": [_group_line(g, started, ci) for g in groups],
    }


def _epoch(at: datetime | None) -> float | None:
    return at.timestamp() if at is not None else None


def _group_line(g: dict, started: float, ci: SimulatedCI) -> str:
    def rel(t: float | None) -> str:
        return f"{t - started:6.2f}" if t is not None else "     -"

    reported = ci.reported.get(g["head_sha"] or "")
    return (f"group {g['id']:>3} PRs {','.join(map(str, g['prs'])):<14} created {rel(_epoch(g['created_at']))} "
            f"built {rel(_epoch(g['tested_since']))} CI {rel(reported[0] if reported else None)}"
            f"{'' if not reported else ' ' + reported[1][:4]} ended {rel(_epoch(g['ended_at']))} "
            f"{g['outcome'] or 'active'}: {(g['detail'] or '')[:60]}")


def per_t(figures: dict, ci_seconds: float) -> float:
    """PRs merged per CI duration T."""
    return figures["merged"] / (figures["elapsed_s"] / ci_seconds) if ci_seconds else float("nan")


def report(f: dict, ci_seconds: float) -> list[str]:
    """The figures as printed lines (``python -m bench`` indents them under its own heading)."""
    if f["mode"] == "groups":
        how = f"groups depth {f['depth']}, batch {f['batch']}"
    else:
        how = "serial"
    if f.get("workers"):
        how += f"; {f['workers']} fleet worker processes"
    lines = [
        f"merge queue ({how}), {f['merged']}/{f['prs']} PRs merged in {f['elapsed_s']:.1f} s "
        f"(simulated CI {ci_seconds:g} s per head)",
        f"  {per_t(f, ci_seconds):.2f} PRs merged per T",
    ]
    if f["failing"] or f["dequeued"]:
        comments = ", ".join(f"#{n} {k}" for n, k in f["dequeue_comments"].items()) or "-"
        lines.append(f"  failing PRs {f['failing']}; dequeued {f['dequeued']} "
                     f"({', '.join(f['outcomes'][n] for n in f['dequeued']) or '-'}); "
                     f"dequeue comments per dequeued PR: {comments}")
    if f["mode"] == "groups":
        g = f["groups"]
        lines.append(f"  groups built {g['built']}, landed {g['landed']}, failed {g['failed']}, "
                     f"abandoned {g['abandoned']}" + (f", still active {g['active']}" if g["active"] else ""))
        lines.append(_describe("  green -> group landed", f["green_to_landed"]))
    else:
        lines.append(_describe("  green -> merge call", f["green_to_merge"]))
        lines.append(_describe("  merge -> next PR's first call", f["merge_to_next"]))
    lines.append(f"  GitHub requests per merged PR: {f['requests_per_pr']:.1f} "
                 f"(writes {f['writes_per_pr']:.1f}, claims' label upkeep included)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=10, help="pull requests queued at once")
    parser.add_argument("--ci-seconds", type=float, default=0.0, help="simulated CI duration per head (T)")
    parser.add_argument("--mode", choices=("serial", "groups"), default="serial", help="queue.mode (default serial)")
    parser.add_argument("--depth", type=int, default=3,
                        help="groups: queue.depth, groups under test at once (default 3)")
    parser.add_argument("--batch", type=int, default=1, help="groups: queue.batch_size, PRs per group (default 1)")
    parser.add_argument("--failing", type=int, default=0, metavar="K",
                        help="K PRs, spread evenly, pass on their own head but fail any head that contains them")
    parser.add_argument("--timeout", type=float, help="give up after this many seconds (default scales with --prs)")
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="run the jobs in N `fleet worker` processes (default 0: in this process)")
    parser.add_argument("--timeline", action="store_true", help="groups: print every group's life")
    args = parser.parse_args(argv)
    figures = run(args.prs, args.ci_seconds, args.timeout, args.mode, args.depth, args.batch, args.failing,
                  args.workers)
    print("\n".join(report(figures, args.ci_seconds)))
    if args.timeline:
        print("\n".join("  " + line for line in figures["timeline"]))
    return 0 if figures["merged"] + len(figures["dequeued"]) == figures["prs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
