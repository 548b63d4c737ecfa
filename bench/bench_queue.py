"""Benchmark: the merge queue's own overhead per PR, measured end to end through the simulator.

Run ``python -m bench.bench_queue`` from the project root (Postgres and Redis as for the tests:
``FLEET_TEST_PG``, ``FLEET_TEST_REDIS``). It starts the GitHub simulator and Fleet's web app
over HTTP, queues ``--prs`` pull requests at once and lets a simulated CI report success on
every new head (after ``--ci-seconds``), while this process works the RQ queue. It prints:

- green → merge: from the CI result that made the head green (the simulator accepting the
  check run) to Fleet's merge call for that head;
- merge → next: from one merge call to the next PR's first call (update-branch, or the merge
  itself when it needed no update);
- GitHub requests and writes per merged PR.

Everything runs in one machine's processes, so the figures are Fleet's own latency (webhook
ingest, job hand-offs, the re-reads before merging), not GitHub's.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import statistics
import threading
import time

from app import db, runtime
from bench.common import scratch_namespace
from app.settings import Settings

PG_BASE = os.environ.get("FLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("FLEET_TEST_REDIS", "redis://127.0.0.1:6379/0")
_PR_PATH = re.compile(r"/pulls/(\d+)/(merge|update-branch)$")


def _ci_loop(world, green_at: dict[str, float], ci_seconds: float, stop: threading.Event) -> None:
    """Simulated CI: report success on every open PR head it has not seen, ``ci_seconds`` later."""
    seen: dict[str, float] = {}
    while not stop.is_set():
        with world.sim.world.lock:
            r = world.sim.world.repo(world.repo)
            heads = [i.pull.head_sha for i in r.issues.values() if i.pull and i.state == "open"]
        now = time.perf_counter()
        for sha in heads:
            seen.setdefault(sha, now)
            if sha not in green_at and now - seen[sha] >= ci_seconds:
                world.sim.ci(world.repo, sha, "tests", conclusion="success")
                green_at[sha] = time.time()
        time.sleep(0.005)


def _describe(label: str, values: list[float]) -> str:
    if not values:
        return f"{label}: no samples"
    ms = sorted(v * 1000 for v in values)
    p90 = ms[min(len(ms) - 1, int(round(0.9 * (len(ms) - 1))))]
    return (f"{label}: median {statistics.median(ms):.0f} ms, p90 {p90:.0f} ms, max {ms[-1]:.0f} ms "
            f"(n={len(ms)})")


def run(prs: int = 10, ci_seconds: float = 0.0, timeout: float = 120.0) -> dict:
    """Queue ``prs`` PRs at once and measure; the RQ namespace's Redis keys are removed after."""
    with scratch_namespace() as queue_name:
        return _run(prs, ci_seconds, timeout, queue_name)


def _run(prs: int, ci_seconds: float, timeout: float, queue_name: str) -> dict:
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
    stop = threading.Event()
    try:
        sim, repo = world.sim, world.repo
        sim.add_user("alice", "write")
        numbers = []
        for i in range(prs):
            task = sim.open_issue(repo, f"Bench task {i}")
            branch = f"alice/{task}-bench"
            sim.push(repo, branch, {f"bench/{i}.txt": f"{i}\n"}, author="alice")
            numbers.append(sim.open_pr(repo, branch, f"Bench {i}", body=f"Closes #{task}", author="alice"))
        world.settle()
        green_at: dict[str, float] = {}
        ci = threading.Thread(target=_ci_loop, args=(world, green_at, ci_seconds, stop), daemon=True)
        ci.start()
        world.settle()
        first_request = len(sim.requests)
        started = time.time()
        for number in numbers:
            sim.comment(repo, number, "/queue", author="alice")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            drain()
            with sim.world.lock:
                done = sum(1 for i in sim.world.repo(repo).issues.values() if i.pull and i.pull.merged)
            if done == prs:
                break
            time.sleep(0.002)
        elapsed = time.time() - started
        stop.set()
        ci.join(timeout=5)
        return _figures(world, green_at, first_request, elapsed, prs)
    finally:
        stop.set()
        world.fleet.stop()
        world.sim.stop()
        for app in apps:
            app.config["FLEET_POOL"].close()
        runtime.queue().empty()
        db.drop_database(url)


def _figures(world, green_at: dict[str, float], first_request: int, elapsed: float, prs: int) -> dict:
    sim = world.sim
    calls = sim.requests[first_request:]
    with sim.world.lock:
        pulls = {i.number: i.pull for i in sim.world.repo(world.repo).issues.values() if i.pull}
    merges = [(c.timestamp, int(_PR_PATH.search(c.path).group(1))) for c in calls
              if c.method == "PUT" and c.status == 200 and c.path.endswith("/merge")]
    green_to_merge = [ts - green_at[pulls[n].head_sha] for ts, n in merges if pulls[n].head_sha in green_at]
    firsts: dict[int, float] = {}
    for c in calls:
        m = _PR_PATH.search(c.path) if c.method == "PUT" else None
        if m:
            firsts.setdefault(int(m.group(1)), c.timestamp)
    merge_to_next = [firsts[nxt] - ts for (ts, _), (_, nxt) in zip(merges, merges[1:])]
    merged = len(merges)
    writes = sum(1 for c in calls if c.method != "GET" and not c.path.startswith("/app/"))
    return {
        "prs": prs, "merged": merged, "elapsed_s": elapsed,
        "green_to_merge": green_to_merge, "merge_to_next": merge_to_next,
        "requests_per_pr": len(calls) / max(merged, 1), "writes_per_pr": writes / max(merged, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prs", type=int, default=10, help="pull requests queued at once")
    parser.add_argument("--ci-seconds", type=float, default=0.0, help="simulated CI duration per head")
    args = parser.parse_args(argv)
    figures = run(args.prs, args.ci_seconds)
    print(f"merge queue, {figures['merged']}/{figures['prs']} PRs merged in {figures['elapsed_s']:.1f} s "
          f"(simulated CI {args.ci_seconds:g} s per head)")
    print(_describe("  green -> merge call", figures["green_to_merge"]))
    print(_describe("  merge -> next PR's first call", figures["merge_to_next"]))
    print(f"  GitHub requests per PR: {figures['requests_per_pr']:.1f} "
          f"(writes {figures['writes_per_pr']:.1f}, claims' label upkeep included)")
    return 0 if figures["merged"] == figures["prs"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
