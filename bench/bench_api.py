"""Benchmark: GitHub API economy — Fleet's calls per claim, per merged PR, per status-issue update.

Run ``python -m bench.bench_api`` from the project root (Postgres and Redis as for the tests).
A scripted version of the ``fleet demo`` scenario, in phases so every call is attributed: the
simulator and Fleet's web app over HTTP, jobs run in this process (RQ's SimpleWorker), and

1. ``--tasks`` tasks are opened (a third depend on the one before) and labelled;
2. claims: as many agents self-assign the ready ones;
3. merged PRs: each agent pushes ``agent/N-slug``, opens a PR with ``Closes #N``, CI reports
   ``ci`` success, the agent comments ``/queue``; the queue merges them one by one;
4. status issue: created once, then ``--updates`` edits after a change each.

Only requests made as the App (JWT) or its installations count; the agents' own calls do not.
Every successful GET is also checked for whether its body equals the body of the previous GET of
the same URL: those re-reads are what a conditional request (``If-None-Match`` → 304, which the
simulator supports and which does not count against the rate limit) would save.

Jobs run in one process here, so the installation token is minted once; under ``fleet worker``
(a fork per job) each job mints its own (see the demo's figures in RESULTS.md).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import threading
from collections import Counter

from bench.common import REDIS_URL, scratch_database, scratch_namespace

CONFIG = ("claims:\n  lease: 1h\n  max_per_agent: 1\ngates:\n  required_checks: [ci]\nqueue:\n  allow_authors: true\n"
          "status:\n  enabled: {enabled}\n  min_interval: 0s\n")


class ConditionalProbe:
    """WSGI middleware: per URL, did a Fleet GET return the same body as Fleet's last GET of it?"""

    def __init__(self, app):
        self.app = app
        self.last: dict[str, str] = {}
        self.unchanged: Counter = Counter()
        self.gets: Counter = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        fleet = bool(auth) and "ghu_" not in auth
        if environ.get("REQUEST_METHOD") != "GET" or not fleet:
            return self.app(environ, start_response)
        seen = {}

        def capture(status, headers, exc_info=None):
            seen["status"] = status
            return start_response(status, headers, exc_info)

        body = b"".join(self.app(environ, capture))
        if seen.get("status", "").startswith("200"):
            url = environ.get("PATH_INFO", "") + "?" + environ.get("QUERY_STRING", "")
            digest = hashlib.sha1(body).hexdigest()
            kind = _kind(environ.get("PATH_INFO", ""))
            with self.lock:
                self.gets[kind] += 1
                if self.last.get(url) == digest:
                    self.unchanged[kind] += 1
                self.last[url] = digest
        return [body]


def _kind(path: str) -> str:
    import re

    path = re.sub(r"^/repos/[^/]+/[^/]+", "", path)
    path = re.sub(r"/compare/.*$", "/compare/BASE...HEAD", path)
    return re.sub(r"/[0-9a-f]{40}|/\d+", "/N", path) or "/"


def _fleet_calls(sim, start: int) -> list:
    return [q for q in sim.requests[start:] if q.identity == "app" or q.identity.startswith("installation:")]


def run(tasks: int = 6, updates: int = 5) -> dict:
    from app import db, runtime
    from app.settings import Settings
    from app.wsgi import create_app
    from jobs.status import update_status
    from tests.github_env import start_world

    logging.disable(logging.WARNING)
    with scratch_database() as url, scratch_namespace() as queue_name:
        settings = Settings(database_url=url, redis_url=REDIS_URL, queue_name=queue_name, webhook_secret="bench",
                            github_api_url="http://127.0.0.1:9", log_format="console",
                            writes_per_minute=100_000, writes_per_hour=1_000_000)
        runtime.configure(settings)
        apps = []
        world = start_world(settings, lambda s: apps.append(create_app(s)) or apps[-1], repo="bench/economy")
        sim, repo = world.sim, world.repo
        probe = ConditionalProbe(sim._server.app)
        sim._server.app = probe
        try:
            agents = [f"agent-{chr(97 + i)}" for i in range(tasks)]
            for login in agents:
                sim.add_user(login, "write")
            sim.set_file(repo, ".github/fleet.yml", CONFIG.format(enabled="false"))
            world.settle()
            mark = len(sim.requests)
            numbers = []
            for i in range(tasks):
                deps = f"\n\nDepends on #{numbers[-1]}" if numbers and i % 3 == 2 else ""
                numbers.append(sim.open_issue(repo, f"Task {i}", body=f"Estimate: 2h{deps}"))
            world.settle()
            opened = _fleet_calls(sim, mark)
            ready = [n for n in numbers if any(l["name"] == "fleet:ready" for l in sim.issue(repo, n)["labels"])]

            # Claims.
            mark = len(sim.requests)
            for login, number in zip(agents, ready):
                world.assign(login, number)
            world.settle()
            claims = _fleet_calls(sim, mark)

            # Merged PRs.
            mark = len(sim.requests)
            prs = []
            for login, number in zip(agents, ready):
                branch = f"{login}/{number}-task"
                sha = sim.push(repo, branch, {f"work/{number}.md": "done\n"}, author=login)
                pr = sim.open_pr(repo, branch, f"Task #{number}", body=f"Closes #{number}", author=login)
                sim.ci(repo, sha, "ci", conclusion="success")
                prs.append((pr, branch))
            world.settle()
            for pr, _ in prs:
                sim.comment(repo, pr, "/queue", author=agents[0] if False else sim.pull(repo, pr)["user"]["login"])
            _merge_all(world, prs)
            merged = sum(1 for pr, _ in prs if sim.pull(repo, pr)["merged"])
            merging = _fleet_calls(sim, mark)

            # Status issue.
            sim.set_file(repo, ".github/fleet.yml", CONFIG.format(enabled="true"))
            world.settle()
            with db.connect(url, autocommit=True) as conn:
                repo_id = conn.execute("SELECT id FROM repositories WHERE full_name = %s", (repo,)).fetchone()["id"]
            from datetime import datetime, timedelta, timezone

            def later(minutes: int) -> str:  # past status.min_interval, whatever its floor
                return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).isoformat()

            mark = len(sim.requests)
            update_status(repo_id, now=later(10))
            create_calls = _fleet_calls(sim, mark)
            edit_calls, outcomes = 0, Counter()
            for i in range(updates):
                with db.connect(url, autocommit=True) as conn:
                    conn.execute("UPDATE tasks SET title = %s WHERE repo_id = %s AND number = %s",
                                 (f"Task renamed {i}", repo_id, numbers[-1]))
                mark = len(sim.requests)
                outcomes[update_status(repo_id, now=later(20 + 10 * i))] += 1
                edit_calls += len(_fleet_calls(sim, mark))
            mark = len(sim.requests)
            outcomes[update_status(repo_id, now=later(20 + 10 * (updates - 1)))] += 1  # nothing changed
            unchanged_calls = len(_fleet_calls(sim, mark))
            conditional = _conditional_demo(sim, world)
            return {
                "tasks": tasks, "claims": len(ready), "merged": merged,
                "calls_labelling_new_tasks": len(opened),
                "calls_per_new_task": len(opened) / tasks,
                "calls_per_claim": len(claims) / max(len(ready), 1),
                "calls_per_merged_pr": len(merging) / max(merged, 1),
                "writes_per_merged_pr": sum(1 for q in merging if q.method != "GET") / max(merged, 1),
                "claim_calls": dict(Counter(f"{q.method} {q.operation_id}" for q in claims).most_common(6)),
                "pr_calls": dict(Counter(f"{q.method} {q.operation_id}" for q in merging).most_common(10)),
                "status_create_calls": len(create_calls), "status_edit_calls": edit_calls / max(updates, 1),
                "status_unchanged_calls": unchanged_calls, "status_outcomes": dict(outcomes),
                "gets": sum(probe.gets.values()), "gets_unchanged": sum(probe.unchanged.values()),
                "unchanged_by_endpoint": dict(probe.unchanged.most_common(6)),
                "conditional_demo": conditional,
            }
        finally:
            world.fleet.stop()
            sim.stop()
            for app in apps:
                app.config["FLEET_POOL"].close()
            runtime.queue().empty()


def _merge_all(world, prs, timeout: float = 90) -> None:
    import time

    from tests.conftest import drain

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        world.settle()
        if all(world.sim.pull(world.repo, pr)["merged"] for pr, _ in prs):
            return
        # Each merge moves main: CI reports on the updated heads.
        for pr, _ in prs:
            p = world.sim.pull(world.repo, pr)
            if not p["merged"] and p["state"] == "open":
                world.sim.ci(world.repo, p["head"]["sha"], "ci", conclusion="success")
        drain()
        time.sleep(0.05)


def _conditional_demo(sim, world) -> dict:
    """One conditional GET against the simulator, as Fleet's client would make it."""
    import httpx

    token = sim.installation_token(world.installation_id)
    url = f"{sim.url}/repos/{world.repo}/labels"
    headers = {"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}
    first = httpx.get(url, headers=headers)
    second = httpx.get(url, headers={**headers, "If-None-Match": first.headers.get("ETag", "")})
    return {"first": first.status_code, "second": second.status_code,
            "remaining_after_first": first.headers.get("x-ratelimit-remaining"),
            "remaining_after_304": second.headers.get("x-ratelimit-remaining")}


def report(f: dict) -> list[str]:
    c = f["conditional_demo"]
    return [
        f"GitHub API economy: scripted demo scenario, {f['tasks']} tasks, {f['claims']} claims, {f['merged']} merged PRs "
        f"(calls made as the App or its installation)",
        f"  per new task (labelled ready/blocked): {f['calls_per_new_task']:.1f}",
        f"  per claim (self-assignment accepted): {f['calls_per_claim']:.1f}  [{_fmt(f['claim_calls'])}]",
        f"  per merged PR (gates, queue, update-branch, merge, close, labels): {f['calls_per_merged_pr']:.1f} "
        f"({f['writes_per_merged_pr']:.1f} writes)  [{_fmt(f['pr_calls'])}]",
        f"  per status-issue update: {f['status_edit_calls']:.1f} (first update after enabling: {f['status_create_calls']}; "
        f"nothing changed: {f['status_unchanged_calls']}; outcomes {f['status_outcomes']})",
        f"  conditional requests: {f['gets_unchanged']} of Fleet's {f['gets']} GETs re-read an unchanged body "
        f"({_fmt(f['unchanged_by_endpoint'])}); with If-None-Match they would be 304s "
        f"(simulator check: {c['first']} then {c['second']}, rate limit remaining {c['remaining_after_first']} → "
        f"{c['remaining_after_304']})",
    ]


def _fmt(counts: dict) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=6)
    parser.add_argument("--updates", type=int, default=5, help="status-issue edits to measure")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = run(args.tasks, args.updates)
    print(json.dumps(figures, indent=2) if args.json else "\n".join(report(figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
