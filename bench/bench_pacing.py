"""Benchmark: does a spent write budget of one installation stall everyone else?

Run ``python -m bench.bench_pacing`` from the project root (up to about a minute on the code
before pacing deferred jobs, a few seconds after). One in-process worker, GitHub's limits
(80 writes/min, 500/h), two installations on the simulator. Installation A's minute budget is
spent (its counter in Redis is full, as after a burst); then an agent claims a task in A and,
right after, another agent claims a task in B. The figure is how long B's claim delivery waited:
from B's self-assignment until Fleet had decided it (the delivery processed), and what happened
to A's delivery meanwhile.

The script only uses what both versions share (settings, the simulator, the pacer's Redis keys),
so it measures the code before the change too (run it with that checkout on ``PYTHONPATH``).
"""
from __future__ import annotations

import argparse
import logging
import time
from dataclasses import replace

from bench.common import REDIS_URL, scratch_database, scratch_namespace

OTHER = "other/tools"


def run(runs: int = 1) -> dict:
    from app import db, runtime
    from app.settings import Settings
    from app.wsgi import create_app
    from tests.conftest import drain
    from tests.github_env import start_world

    logging.disable(logging.WARNING)
    waits, a_outcomes = [], []
    with scratch_database() as url, scratch_namespace() as queue_name:
        settings = Settings(database_url=url, redis_url=REDIS_URL, queue_name=queue_name, webhook_secret="bench",
                            github_api_url="http://127.0.0.1:9", log_format="console")
        runtime.configure(settings)
        apps = []
        world = start_world(settings, lambda s: apps.append(create_app(s)) or apps[-1], repo="bench/pacing")
        sim = world.sim
        try:
            for login in ("alice", "bob"):
                sim.add_user(login, "write")
            sim.add_org("other")
            sim.create_repo(OTHER)
            installation_a, _ = world.installation_id, sim.install([OTHER])
            world.settle()
            runtime.configure(replace(world.settings, writes_per_minute=80, writes_per_hour=500))
            for _ in range(runs):
                mine = sim.open_issue(world.repo, "Task in A")
                theirs = sim.open_issue(OTHER, "Task in B")
                world.settle()
                minute = int(time.time() // 60)
                runtime.redis_client().set(f"{queue_name}:writes:{installation_a}:m:{minute}", 80, ex=120)
                alice, bob = world.agent("alice"), world.agent("bob")  # githubkit holds clients weakly
                alice.rest.issues.add_assignees(*world.repo.split("/"), mine, assignees=["alice"])
                started = time.time()
                bob.rest.issues.add_assignees(*OTHER.split("/"), theirs, assignees=["bob"])
                sim.wait_idle()
                drain()  # one worker: A's delivery first, then B's
                with db.connect(url, autocommit=True) as conn:
                    b = conn.execute(
                        "SELECT extract(epoch FROM processed_at) AS at FROM deliveries WHERE repo_full_name = %s "
                        "AND action = 'assigned' ORDER BY received_at DESC LIMIT 1", (OTHER,)).fetchone()
                    a = conn.execute(
                        "SELECT status FROM deliveries WHERE repo_full_name = %s AND action = 'assigned' "
                        "ORDER BY received_at DESC LIMIT 1", (world.repo,)).fetchone()
                waits.append(float(b["at"]) - started if b and b["at"] else float("nan"))
                a_outcomes.append(a["status"] if a else "missing")
                runtime.redis_client().delete(f"{queue_name}:writes:{installation_a}:m:{minute}")
        finally:
            world.fleet.stop()
            sim.stop()
            for app in apps:
                app.config["FLEET_POOL"].close()
    return {"waits": waits, "a_outcomes": a_outcomes}


def report(f: dict) -> list[str]:
    waits = ", ".join(f"{w:.2f} s" for w in f["waits"])
    return [
        "pacing: installation A's minute budget spent, one worker, claim in A then claim in B",
        f"  B's claim decided after: {waits}",
        f"  A's claim delivery: {', '.join(f['a_outcomes'])}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args(argv)
    print("\n".join(report(run(args.runs))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
