"""Benchmark: deliveries per second one worker process turns into state.

Run ``python -m bench.bench_processing`` from the project root (Postgres and Redis as for the
tests: ``FLEET_TEST_PG``, ``FLEET_TEST_REDIS``). It drives the GitHub simulator through a
realistic stretch of work (issues opened with dependencies, self-assignments, ``/progress``
comments, pushes, PRs, check runs, ``/queue``), keeps every webhook it emitted, stores them all as
deliveries in Postgres, enqueues them and runs ONE ``fleet worker --burst`` process until the
queue is empty. The App is installed (and its backfill of the empty repository processed) before
the stretch begins, as in a deployment; ``--backfill-last`` restores the earlier order, where the
backfill saw the stretch's end state and every issue event after it looked stale or tied.
Follow-up jobs the handlers enqueue (gates, merge-queue steps, the status issue) run in the same
burst.

Baseline, same run: the same worker command draining one no-op job per delivery, so the ratio
is Fleet's handler work against RQ's own per-job cost (Redis round trips). Then ten times as many
deliveries of an event Fleet ignores, drained by the same worker: the delivery path's own cost
without handlers.

What limits it is measured during the Fleet run: Postgres sessions and transactions per
delivery (``pg_stat_database``), Redis commands per delivery (``INFO``), GitHub calls per
delivery and the time the simulator spent answering them. ``--profile`` additionally runs the
deliveries in-process under cProfile and prints the top functions; ``--statements`` re-runs
them in-process counting SQL statements and their time by event. ``BENCH_WORKER_CMD`` (a
command line) replaces ``fleet worker --burst`` to try another worker set-up.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import replace

from bench.common import REDIS_URL, scratch_database, scratch_namespace

REPO = "bench/processing"
NOOP_FACTOR = 10
FLEET_YML = "claims:\n  lease: 1h\ngates:\n  required_checks: [ci]\nstatus:\n  min_interval: 5s\n"


def noop(delivery_id: str) -> str:
    """The baseline job: what RQ costs per job without Fleet's handler."""
    return delivery_id


class _TimedWSGI:
    """Wraps the simulator's WSGI app to sum the time spent answering each caller kind."""

    def __init__(self, app):
        self.app = app
        self.seconds: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        try:
            return self.app(environ, start_response)
        finally:
            auth = environ.get("HTTP_AUTHORIZATION", "")
            kind = "user" if "ghu_" in auth else "fleet"
            with self.lock:
                self.seconds[kind] += time.perf_counter() - started


def install(sim) -> None:
    """The repository, its agents and configuration, and the App installed on it."""
    sim.create_repo(REPO)
    for login in ("agent-a", "agent-b", "agent-c"):
        sim.add_user(login, "write")
    sim.set_file(REPO, ".github/fleet.yml", FLEET_YML)
    sim.install([REPO])


def build_events(sim, tasks: int) -> None:
    """Drive the simulator like a small team would; every action emits GitHub's webhooks."""
    numbers = []
    for i in range(tasks):
        deps = f"\n\nDepends on #{numbers[-1]}" if numbers and i % 3 == 2 else ""
        numbers.append(sim.open_issue(REPO, f"Task {i}: implement part {i}", body=f"Estimate: {i % 5 + 1}h{deps}",
                                      labels=[f"priority:{('high', 'normal', 'low')[i % 3]}"]))
    for i, number in enumerate(numbers):
        agent = ("agent-a", "agent-b", "agent-c")[i % 3]
        sim.update_issue(REPO, number, author=agent, assignees=[agent])
        sim.comment(REPO, number, "/progress 30 parser done", author=agent)
        branch = f"{agent}/{number}-part-{i}"
        sha = sim.push(REPO, branch, {f"src/part_{i}.py": f"PART = {i}\n"}, author=agent)
        pr = sim.open_pr(REPO, branch, f"Part {i}", body=f"Closes #{number}", author=agent)
        sim.ci(REPO, sha, "ci", conclusion="success")
        sim.comment(REPO, pr, "/queue", author=agent)


def _pg_counters(url: str) -> dict[str, int]:
    from app import db

    with db.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT sessions, xact_commit + xact_rollback AS xacts FROM pg_stat_database "
                           "WHERE datname = current_database()").fetchone()
    return {"sessions": row["sessions"], "xacts": row["xacts"]}


def _redis_commands() -> int:
    import redis

    return int(redis.Redis.from_url(REDIS_URL).info("stats")["total_commands_processed"])


def _run_worker(env: dict[str, str]) -> float:
    started = time.perf_counter()
    cmd = os.environ.get("BENCH_WORKER_CMD", "").split() or [sys.executable, "-m", "app.cli.main", "worker", "--burst"]
    subprocess.run(cmd, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def run(tasks: int = 12, profile: bool = False, backfill_last: bool = False, statements: bool = False) -> dict:
    """``backfill_last``: the order of the earlier versions of this benchmark, where the
    installation (and its backfill) was processed after the whole stretch had happened, so the
    backfill recorded every issue's final state and every issue event after it looked stale or
    tied (one ``GET`` each). By default the App is installed, and its backfill done, first, as in
    a deployment: the deliveries then meet the state they would meet live."""
    from app import db, deliveries, runtime
    from app.settings import Settings
    from app.sandbox.simulator.simulator import Simulator
    from jobs.dispatch import request_drain
    from tests.conftest import release_scheduled

    logging.disable(logging.WARNING)
    with scratch_database() as url, scratch_namespace() as queue_name:
        sim = Simulator(webhook_secret="bench-secret").start()
        timed = _TimedWSGI(sim._server.app)
        sim._server.app = timed
        try:
            install(sim)
            settings = Settings(database_url=url, redis_url=REDIS_URL, queue_name=queue_name,
                                webhook_secret="bench-secret", github_api_url=sim.url, app_id=1,
                                private_key=sim.app_private_key_pem, log_format="console", log_level="WARNING",
                                writes_per_minute=100_000, writes_per_hour=1_000_000)
            runtime.configure(settings)
            from app.github import identity as bot_identity

            bot_identity._login_for.cache_clear()
            # The installation (it backfills the repository) is processed in this process.
            installed = len(sim.events)
            if not backfill_last:
                _backfill(url, sim.events)
            build_events(sim, tasks)
            rest = [e for e in sim.events[installed:] if e.event != "installation"]
            if backfill_last:
                _backfill(url, sim.events[:installed] + rest)
            else:
                _store(url, rest)
            env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "FLEET_QUEUE": queue_name,
                   "GITHUB_API_URL": sim.url, "GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": sim.app_private_key_pem,
                   "GITHUB_APP_PRIVATE_KEY_PATH": "", "GITHUB_WEBHOOK_SECRET": "bench-secret", "LOG_LEVEL": "WARNING",
                   "FLEET_LOG_FORMAT": "console", "FLEET_WRITES_PER_MINUTE": "100000",
                   "FLEET_WRITES_PER_HOUR": "1000000", "FLEET_BOT_LOGIN": "fleet[bot]"}
            startup = _run_worker(env)  # empty queue: process start-up and RQ registration only

            # Baseline: no-op jobs through the same worker. Many more than the deliveries, so the
            # run lasts well beyond the worker's start-up and the per-job figure is not noise.
            noop_jobs = NOOP_FACTOR * len(rest)
            for i in range(noop_jobs):
                runtime.queue().enqueue("bench.bench_processing.noop", str(i), result_ttl=0)
            noop_s = _run_worker(env)

            # The delivery path without handlers: as many deliveries of an event Fleet ignores
            # (``watch``), of a repository of their own (the real ones wait in theirs), drained by
            # the same worker.
            repo_payload = {"id": 987_654_321, "full_name": "bench/ignored"}
            with db.connect(url, autocommit=True) as conn:
                for i in range(noop_jobs):
                    deliveries.store(conn, deliveries.describe(
                        "watch", f"ignored-{i}", {"action": "started", "repository": repo_payload}))
            request_drain(repo_payload["id"])
            ignored_s = _run_worker(env)

            # Fleet.
            calls_before = len(sim.requests)
            timed.seconds.clear()
            pg_before, redis_before = _pg_counters(url), _redis_commands()
            for e in rest:  # as ingest does for each stored delivery
                request_drain(deliveries.describe(e.event, e.guid, e.payload).lane)
            fleet_s = _run_worker(env)
            # A job scheduled for later (a gate evaluation waiting for GitHub to compute
            # mergeability) is still Fleet's work for these deliveries: run it now, and count it.
            later = release_scheduled()
            if later:
                fleet_s += _run_worker(env) - startup
            pg_after, redis_after = _pg_counters(url), _redis_commands()
            calls = [q for q in sim.requests[calls_before:] if q.identity == "app" or q.identity.startswith("installation:")]
            with db.connect(url, autocommit=True) as conn:
                statuses = Counter(r["status"] for r in conn.execute(
                    "SELECT status FROM deliveries WHERE id = ANY(%s)", ([e.guid for e in rest],)).fetchall())
            n = len(rest)
            figures = {
                "deliveries": n, "events": dict(Counter(f"{e.event}.{e.payload.get('action', '')}".rstrip(".")
                                                        for e in rest).most_common()),
                "statuses": dict(statuses), "scheduled_jobs_run_after": later,
                "startup_s": startup, "noop_s": noop_s, "fleet_s": fleet_s,
                "noop_per_s": noop_jobs / max(noop_s - startup, 1e-3),
                "ignored_per_s": noop_jobs / max(ignored_s - startup, 1e-3), "fleet_per_s": n / max(fleet_s - startup, 1e-3),
                "fleet_per_s_gross": n / fleet_s,
                "pg_sessions_per_delivery": (pg_after["sessions"] - pg_before["sessions"]) / n,
                "pg_xacts_per_delivery": (pg_after["xacts"] - pg_before["xacts"]) / n,
                "redis_commands_per_delivery": (redis_after - redis_before) / n,
                "github_calls_per_delivery": len(calls) / n,
                "github_calls_by_endpoint": dict(Counter(f"{q.method} {q.operation_id}" for q in calls).most_common(8)),
                "token_requests": sum(1 for q in calls if q.path.endswith("/access_tokens")),
                "github_server_s": timed.seconds["fleet"],
            }
            figures["ratio"] = figures["fleet_per_s"] / figures["noop_per_s"]
            if profile:
                figures["profile"] = _profile(url, rest, settings)
            if statements:
                figures["statements"] = _statements(url, rest, settings)
            return figures
        finally:
            sim.stop()
            runtime.queue().empty()


def _backfill(url: str, events) -> None:
    """Store ``events`` and process the installation among them (it backfills the repository);
    the rest wait for the measured worker."""
    from app import runtime
    from jobs.dispatch import enqueue_drain
    from tests.conftest import drain

    _store(url, events)
    enqueue_drain(0)  # installation events are about no repository: lane 0
    drain()
    runtime.queue().empty()


def _store(url: str, events) -> None:
    from app import db, deliveries

    with db.connect(url, autocommit=True) as conn:
        for e in events:
            deliveries.store(conn, deliveries.describe(e.event, e.guid, e.payload))


def _requeue(url: str, events, settings) -> None:
    """Make the stored deliveries due again and ask for their lanes' drains, for a re-run in
    this process."""
    from app import db, deliveries, runtime
    from jobs.dispatch import request_drain

    with db.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE deliveries SET status = 'queued', attempts = 0 WHERE id = ANY(%s)", ([e.guid for e in events],))
    runtime.configure(replace(settings))
    for e in events:
        request_drain(deliveries.describe(e.event, e.guid, e.payload).lane)


def _profile(url: str, events, settings) -> str:
    """Re-run the same deliveries in this process under cProfile (RQ's SimpleWorker, no fork)."""
    import cProfile
    import io
    import pstats

    from tests.conftest import drain

    _requeue(url, events, settings)
    prof = cProfile.Profile()
    prof.enable()
    drain()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
    return out.getvalue()


def _statements(url: str, events, settings) -> str:
    """Re-run the same deliveries in this process, counting SQL statements and their time by the
    delivery's ``event.action`` ("(drain)": the drain's own, outside any delivery's run)."""
    import re

    import psycopg

    from jobs import process
    from tests.conftest import drain

    current = ["(drain)"]
    runs, run_seconds, statements, statement_seconds = Counter(), Counter(), Counter(), Counter()
    real_execute, real_process = psycopg.Connection.execute, process._process

    def execute(conn, query, *args, **kwargs):
        started = time.perf_counter()
        try:
            return real_execute(conn, query, *args, **kwargs)
        finally:
            key = (current[0], re.sub(r"\s+", " ", str(query).strip())[:80])
            statements[key] += 1
            statement_seconds[key] += time.perf_counter() - started

    def run_one(delivery, *args, **kwargs):
        current[0] = delivery.key
        started = time.perf_counter()
        try:
            return real_process(delivery, *args, **kwargs)
        finally:
            runs[delivery.key] += 1
            run_seconds[delivery.key] += time.perf_counter() - started
            current[0] = "(drain)"

    _requeue(url, events, settings)
    psycopg.Connection.execute, process._process = execute, run_one
    try:
        drain()
    finally:
        psycopg.Connection.execute, process._process = real_execute, real_process
    by_event = Counter()
    for (event, _), n in statements.items():
        by_event[event] += n
    lines = ["SQL statements by event (in-process re-run; a run's time includes its GitHub calls):"]
    lines += [f"  {event:32s} {n:4d} runs, {by_event[event] / n:5.1f} statements and {run_seconds[event] * 1000 / n:5.1f} ms each"
              for event, n in runs.most_common()]
    lines.append(f"  (drain) {by_event['(drain)']} statements outside the runs")
    lines.append("top statements by time:")
    lines += [f"  {seconds * 1000:7.1f} ms {statements[key]:5d}x  {key[0][:28]:28s} {key[1]}"
              for key, seconds in statement_seconds.most_common(20)]
    return "\n".join(lines)


def report(f: dict) -> list[str]:
    lines = [
        f"processing: {f['deliveries']} realistic deliveries by one `fleet worker --burst` process",
        f"  Fleet    {f['fleet_per_s']:.1f} deliveries/s ({f['fleet_s']:.1f} s, of which {f['startup_s']:.1f} s worker "
        f"start-up; gross {f['fleet_per_s_gross']:.1f}/s; follow-up jobs included)",
        f"  baseline {f['noop_per_s']:.1f} no-op jobs/s ({f['noop_s']:.1f} s, same worker, {NOOP_FACTOR}x as many jobs)",
        f"  path     {f['ignored_per_s']:.1f} deliveries/s of an event without a handler (same worker, {NOOP_FACTOR}x as "
        f"many): the drain's own cost",
        f"  ratio    {f['ratio']:.2f} of the no-op baseline; {1000 / f['fleet_per_s']:.0f} ms per delivery vs "
        f"{1000 / f['noop_per_s']:.0f} ms per no-op job",
        f"  per delivery: {f['pg_sessions_per_delivery']:.1f} Postgres connections, {f['pg_xacts_per_delivery']:.1f} "
        f"transactions, {f['redis_commands_per_delivery']:.0f} Redis commands, {f['github_calls_per_delivery']:.2f} "
        f"GitHub calls ({f['token_requests']} installation-token requests in all); the simulator spent "
        f"{f['github_server_s']:.1f} s answering Fleet",
        "  top GitHub calls: " + ", ".join(f"{v} {k}" for k, v in f["github_calls_by_endpoint"].items()),
        f"  delivery outcomes: {f['statuses']}; {f['scheduled_jobs_run_after']} jobs scheduled for later run after them (counted)",
    ]
    for extra in ("statements", "profile"):
        if f.get(extra):
            lines += ["", f[extra]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=12, help="tasks in the scripted stretch (~11 deliveries each)")
    parser.add_argument("--profile", action="store_true", help="also profile the handlers in-process (cProfile)")
    parser.add_argument("--statements", action="store_true",
                        help="also count SQL statements and their time by event, in-process")
    parser.add_argument("--backfill-last", action="store_true",
                        help="process the installation's backfill after the stretch, as earlier versions did")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.tasks, args.profile, args.backfill_last, args.statements)
    print(json.dumps(figures, indent=2, default=str) if args.json else "\n".join(report(figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
