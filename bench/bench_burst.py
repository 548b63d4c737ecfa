"""Benchmark: a burst of deliveries across repositories while agents claim tasks.

Run ``python -m bench.bench_burst`` from the project root (Postgres and Redis as for the tests:
``FLEET_TEST_PG``, ``FLEET_TEST_REDIS``).

- The GitHub simulator (this process) holds 5 repositories of one installation, with tasks ready
  to claim. ``fleet web`` (gunicorn, its default 2 workers x 8 threads) and ``--workers`` ``fleet
  worker`` processes run against it on a scratch database and RQ namespace, at GitHub's write
  limits unless ``--writes-per-minute`` says otherwise.
- The burst: ~1,000 deliveries GitHub really emitted for work in those repositories (issues
  opened with dependencies, comments, pushes, pull requests, check suites and runs), recorded
  first and then posted, signed, evenly over ``--seconds`` from 16 keep-alive connections of a
  process of its own (bench/load_generator.py). Their GitHub state is real: handlers that call
  GitHub find what the payloads name.
- Meanwhile agents comment ``/claim`` on ready tasks through the simulator, whose own webhooks
  reach Fleet behind and among the burst's; the verdict latency is the time from the comment to
  Fleet's reply.

Reported: answers (every one must be 202), deliveries stored and their final statuses (none lost),
the time until the last burst delivery was processed, order per repository (processing order
against arrival order), and the claim verdict latencies (p50, p99, max).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter

from bench.bench_ingest import _serve, _stop
from bench.common import REDIS_URL, free_port, percentile, scratch_database, scratch_namespace

OWNER = "burst"
REPOS = [f"{OWNER}/repo-{i}" for i in range(5)]
AGENTS = [f"agent-{i}" for i in range(8)]
SECRET = "bench-burst-secret"
FLEET_YML = "claims:\n  lease: 1h\ngates:\n  required_checks: [ci]\n"


def _stretch(sim, repo: str, i: int) -> None:
    """One task's worth of GitHub activity (~10 webhooks), none of it a claim."""
    author = AGENTS[i % len(AGENTS)]
    number = sim.open_issue(repo, f"Burst task {i}: part {i}", body=f"Estimate: {i % 5 + 1}h")
    sim.comment(repo, number, f"Notes on part {i}: looking at the parser first.", author=author)
    branch = f"{author}/burst-{i}"
    sha = sim.push(repo, branch, {f"src/burst_{i}.py": f"PART = {i}\n"}, author=author)
    sim.open_pr(repo, branch, f"Part {i}", body=f"Work towards #{number}", author=author)
    sim.ci(repo, sha, "ci", conclusion="success")


def record_burst(sim, deliveries: int) -> list:
    """Drive the simulator (webhooks not sent) until ``deliveries`` webhooks were emitted."""
    mark = len(sim.events)
    i = 0
    while len(sim.events) - mark < deliveries:
        _stretch(sim, REPOS[i % len(REPOS)], i)
        i += 1
    return sim.events[mark:mark + deliveries]


def _signed(events) -> list[tuple[str, bytes, str, str]]:
    from webhooks.signature import sign

    out = []
    for e in events:
        body = json.dumps(e.payload).encode()
        out.append((e.event, body, sign(SECRET, body), e.guid))
    return out


def _post_in_order(url: str, requests) -> None:
    import httpx

    with httpx.Client(timeout=30) as client:
        for event, body, signature, guid in requests:
            resp = client.post(url, content=body, headers={
                "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": guid,
                "X-Hub-Signature-256": signature})
            resp.raise_for_status()


def _pending(url: str, guids: list[str]) -> int:
    from app import db

    with db.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) AS n FROM deliveries WHERE id = ANY(%s) "
                            "AND status NOT IN ('processed', 'ignored', 'parked')", (guids,)).fetchone()["n"]


def _wait_processed(url: str, guids: list[str], timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _pending(url, guids) == 0:
            return time.monotonic() - started
        time.sleep(0.05)
    return None


class Claims:
    """Agents commenting ``/claim`` on ready tasks during the burst, and Fleet's verdicts."""

    def __init__(self, sim, tasks: dict[str, list[int]]):
        self.sim, self.tasks = sim, tasks
        self.claimed: list[tuple[str, int, float]] = []
        self.agents: dict[tuple[str, int], str] = {}
        self.verdicts: dict[tuple[str, int], float] = {}

    def claim_during(self, seconds: float, count: int) -> None:
        targets = [(repo, number) for repo, numbers in self.tasks.items() for number in numbers][:count]
        for k, (repo, number) in enumerate(targets):
            time.sleep(max(0.0, k * seconds / count - (time.monotonic() - self.started)))
            at = time.monotonic()
            self.agents[(repo, number)] = AGENTS[k % len(AGENTS)]
            self.sim.comment(repo, number, "/claim", author=self.agents[(repo, number)])
            self.claimed.append((repo, number, at))

    def start(self) -> None:
        self.started = time.monotonic()

    def watch(self, until: float, expected: int) -> None:
        """Record when each claimed task first shows Fleet's verdict: the agent assigned (the
        answer to an accepted claim) or Fleet's reply to the /claim (a refusal)."""
        from app.replies import parse_marker
        from app.sandbox.simulator import ops_issues

        while time.monotonic() < until and len(self.verdicts) < expected:
            for repo, number, _ in list(self.claimed):
                if (repo, number) in self.verdicts:
                    continue
                with self.sim.world.lock:
                    issue = ops_issues.get_issue(self.sim._repo(repo), number)
                    comments = list(issue.comments)
                    assignees = [u.login for u in issue.assignees]
                if self.agents[(repo, number)] in assignees:
                    self.verdicts[(repo, number)] = time.monotonic()
                    continue
                for c in comments:
                    data = parse_marker(c.body) if c.user.login.endswith("[bot]") else None
                    if data and data.get("command") == "claim":
                        self.verdicts[(repo, number)] = time.monotonic()
                        break
            time.sleep(0.02)

    def latencies(self) -> list[float]:
        return [self.verdicts[(r, n)] - at for r, n, at in self.claimed if (r, n) in self.verdicts]


def _order_inversions(url: str, guids: list[str]) -> int:
    """Burst deliveries of a repository processed before one that arrived ahead of them."""
    from app import db

    with db.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT repo_id, processed_at FROM deliveries WHERE id = ANY(%s) "
                            "AND processed_at IS NOT NULL ORDER BY received_at, id", (guids,)).fetchall()
    latest: dict[int, object] = {}
    inversions = 0
    for row in rows:
        last = latest.get(row["repo_id"])
        if last is not None and row["processed_at"] < last:
            inversions += 1
        latest[row["repo_id"]] = max(filter(None, (last, row["processed_at"])))
    return inversions


def run(deliveries: int = 1000, seconds: float = 2.0, workers: int = 2, claims: int = 10,
        writes_per_minute: int = 80, writes_per_hour: int = 500, timeout: float = 300) -> dict:
    from app import db
    from app.sandbox.simulator.simulator import Simulator

    with scratch_database() as url, scratch_namespace() as queue_name:
        sim = Simulator(webhook_secret=SECRET).start()
        procs: list[subprocess.Popen] = []
        try:
            for login in AGENTS:
                sim.add_user(login, "write")
            for repo in REPOS:
                sim.create_repo(repo)
                sim.set_file(repo, ".github/fleet.yml", FLEET_YML)
            sim.install(REPOS)
            tasks = {repo: [sim.open_issue(repo, f"Ready task {k}") for k in range(-(-claims // len(REPOS)))]
                     for repo in REPOS}
            setup = _signed(sim.events)
            burst_events = record_burst(sim, deliveries)
            burst = _signed(burst_events)

            env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "FLEET_QUEUE": queue_name,
                   "GITHUB_API_URL": sim.url, "GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": sim.app_private_key_pem,
                   "GITHUB_APP_PRIVATE_KEY_PATH": "", "GITHUB_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "WARNING",
                   "FLEET_LOG_FORMAT": "console", "FLEET_WRITES_PER_MINUTE": str(writes_per_minute),
                   "FLEET_WRITES_PER_HOUR": str(writes_per_hour), "FLEET_BOT_LOGIN": "fleet[bot]"}
            port = free_port()
            procs.append(_serve([sys.executable, "-m", "app.cli.main", "web", "--bind", f"127.0.0.1:{port}"],
                                env, port, "/healthz"))
            for _ in range(workers):
                procs.append(subprocess.Popen([sys.executable, "-m", "app.cli.main", "worker"], env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            hook = f"http://127.0.0.1:{port}/webhooks/github"
            _post_in_order(hook, setup)
            if _wait_processed(url, [g for *_, g in setup], 120) is None:
                raise RuntimeError("the set-up deliveries were not processed")
            sim.webhook_url = hook  # from now on GitHub's own webhooks (the claims') go to Fleet

            from bench.load_generator import post_paced

            guids = [g for *_, g in burst]
            claim = Claims(sim, tasks)
            wait_posted = post_paced("127.0.0.1", port, burst, seconds)
            started = time.monotonic()
            claim.start()
            claimer = threading.Thread(target=claim.claim_during, args=(seconds, claims), daemon=True)
            claimer.start()
            expected = min(claims, sum(len(n) for n in tasks.values()))
            watcher = threading.Thread(target=claim.watch, args=(started + timeout, expected), daemon=True)
            watcher.start()
            latencies_posted, statuses = wait_posted(timeout)
            drained = _wait_processed(url, guids, timeout)
            done_s = None if drained is None else time.monotonic() - started
            claimer.join(timeout=10)
            watcher.join(timeout=timeout)
            with db.connect(url, autocommit=True) as conn:
                final = Counter(r["status"] for r in conn.execute(
                    "SELECT status FROM deliveries WHERE id = ANY(%s)", (guids,)).fetchall())
            verdicts = claim.latencies()
            return {
                "deliveries": len(burst), "seconds": seconds, "repos": len(REPOS), "workers": workers,
                "writes_per_minute": writes_per_minute,
                "events": dict(Counter(e.event for e in burst_events).most_common()),
                "answers": statuses, "stored": sum(final.values()), "final_statuses": dict(final),
                "post_p99_ms": percentile(latencies_posted, 99) * 1000,
                "processed_all_after_s": done_s,
                "processed_per_s": len(burst) / done_s if done_s else None,
                "order_inversions": _order_inversions(url, guids),
                "claims": len(claim.claimed), "verdicts": len(verdicts),
                "verdict_p50_s": percentile(verdicts, 50) if verdicts else None,
                "verdict_p99_s": percentile(verdicts, 99) if verdicts else None,
                "verdict_max_s": max(verdicts) if verdicts else None,
            }
        finally:
            for proc in reversed(procs):
                _stop(proc)
            sim.stop()


def report(f: dict) -> list[str]:
    def s(value):
        return "none" if value is None else f"{value:.2f} s"
    return [
        f"burst: {f['deliveries']} deliveries across {f['repos']} repositories posted over {f['seconds']:g} s, "
        f"{f['workers']} worker(s), {f['writes_per_minute']} writes/min",
        f"  events   {f['events']}",
        f"  answers  {f['answers']} (p99 {f['post_p99_ms']:.1f} ms); stored {f['stored']}; final {f['final_statuses']}",
        f"  all processed {s(f['processed_all_after_s'])} after the burst began"
        + (f" ({f['processed_per_s']:.0f} deliveries/s)" if f["processed_per_s"] else ""),
        f"  order    {f['order_inversions']} deliveries processed before one that arrived ahead of them",
        f"  claims   {f['claims']} /claim comments, {f['verdicts']} verdicts: p50 {s(f['verdict_p50_s'])}, "
        f"p99 {s(f['verdict_p99_s'])}, max {s(f['verdict_max_s'])}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=2.0, help="the burst arrives over this long")
    parser.add_argument("--workers", type=int, default=2, help="fleet worker processes")
    parser.add_argument("--claims", type=int, default=10, help="/claim comments during the burst")
    parser.add_argument("--writes-per-minute", type=int, default=80)
    parser.add_argument("--writes-per-hour", type=int, default=500)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.deliveries, args.seconds, args.workers, args.claims, args.writes_per_minute,
                  args.writes_per_hour)
    print(json.dumps(figures, indent=2) if args.json else "\n".join(report(figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
