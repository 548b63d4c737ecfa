"""GitHub calls and writes per merged task, by category, for the demo plan (issue 13's measure).

Runs ``fleet demo`` (the sample plan, 27 tasks) at GitHub's limits (its default: Fleet's pacer at
80 writes a minute and 500 an hour, the simulator enforcing them), once per agent count, on the
happy path (no CI failures unless ``--failure-rate``), and sorts every call Fleet made by what it
was for. The plan import is counted apart: it is a one-off per plan, not a cost of merging a
task. Goal (issue 13): at most 6 writes and 20 calls per merged task.

    python -m bench.bench_economy [--agents 8 --agents 16] [--ci-seconds 1] [--failure-rate 0] [--queue-mode serial]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import PG_BASE, REDIS_URL, free_port, run_id

# Every write endpoint Fleet uses, by what it is for; anything else that is not a GET is "other".
WRITE_CATEGORIES = {
    "labels": ("issues/add-labels", "issues/remove-label", "issues/set-labels", "issues/create-label",
               "issues/update-label", "issues/delete-label"),
    "comments": ("issues/create-comment", "issues/update-comment", "issues/delete-comment"),
    "reactions": ("reactions/",),
    "check runs": ("checks/create", "checks/update"),
    "merge": ("pulls/merge",),
    "update-branch": ("pulls/update-branch",),
    # queue.mode: groups: a group branch created, each PR merged into it, the base fast-forwarded, the branch deleted
    "merge groups": ("git/create-ref", "repos/merge", "git/update-ref", "git/delete-ref"),
    "assignees": ("issues/add-assignees", "issues/remove-assignees"),
    "issue edits (status issue, closing tasks)": ("issues/update", "issues/create", "issues/lock"),
    "tokens": ("apps/create-installation-access-token",),
}


def write_category(endpoint: str) -> str:
    _, _, name = endpoint.partition(" ")
    for category, prefixes in WRITE_CATEGORIES.items():
        if any(name.startswith(p) for p in prefixes):
            return category
    return "other"


def run_demo(agents: int, ci_seconds: float, timeout: float, failure_rate: float = 0.0,
             queue_mode: str | None = None) -> dict:
    """One demo run at GitHub's limits; its JSON summary (``queue_mode`` None: the demo's default)."""
    database = f"fleet_bench_economy_{run_id()}"
    env = {**os.environ, "DATABASE_URL": f"{PG_BASE}/postgres", "REDIS_URL": REDIS_URL, "LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "demo.json"
        cmd = [sys.executable, "-m", "app.cli.main", "demo", "--no-live", "--seed", "11", "--agents", str(agents),
               "--ci-seconds", str(ci_seconds), "--failure-rate", str(failure_rate), "--timeout", str(timeout),
               "--database", database,
               "--bind", f"127.0.0.1:{free_port()}", "--json", str(out)]
        if queue_mode:
            cmd += ["--queue-mode", queue_mode]
        try:
            subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout + 120, check=False)
            return json.loads(out.read_text())
        finally:
            _drop(database)


def _drop(database: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def per_task(summary: dict) -> dict:
    """Calls and writes per merged task (plan import excluded), writes by category, reads by endpoint."""
    merged = max(summary["prs_merged"], 1)
    by_endpoint: dict[str, int] = summary["fleet_calls_by_endpoint"]
    writes: dict[str, float] = {}
    reads: dict[str, float] = {}
    for endpoint, n in by_endpoint.items():
        if endpoint.startswith("GET "):
            reads[endpoint.removeprefix("GET ")] = n / merged
        else:
            writes[write_category(endpoint)] = writes.get(write_category(endpoint), 0) + n / merged
    return {
        "merged": summary["prs_merged"], "tasks_done": summary["tasks_done"], "tasks": summary["tasks_total"],
        "elapsed_s": summary["elapsed_s"],
        "pacer_said_no": summary.get("writes_without_budget", 0), "limit_hits": summary.get("secondary_limit_hits", 0),
        "claims_without_verdict": summary.get("claims_without_verdict", 0),
        "calls": summary["fleet_api_calls_during_run"] / merged,
        "writes": summary.get("fleet_api_writes_during_run", summary["fleet_api_writes"]) / merged,
        "plan_import_calls": summary["fleet_api_calls_plan_import"],
        "status_edits": summary["status_issue_edits"] / merged,
        "writes_by_category": dict(sorted(writes.items(), key=lambda kv: -kv[1])),
        "reads_by_endpoint": dict(sorted(reads.items(), key=lambda kv: -kv[1])),
    }


def report(agents: int, f: dict) -> list[str]:
    lines = [
        f"economy, {agents} agents: {f['merged']} PRs merged, {f['tasks_done']}/{f['tasks']} tasks done in "
        f"{f['elapsed_s']:.0f} s; {f['plan_import_calls']} calls importing the plan (not counted below); "
        f"pacer said no {f['pacer_said_no']} times, {f['limit_hits']} secondary-limit hits, "
        f"{f['claims_without_verdict']} claims without a verdict",
        f"  per merged task: {f['calls']:.1f} calls, {f['writes']:.1f} writes (goal: 20 and 6); "
        f"{f['status_edits']:.2f} status-issue edits",
        "  writes by category (whole run, per merged task): "
        + ", ".join(f"{k} {v:.2f}" for k, v in f["writes_by_category"].items()),
        "  reads by endpoint (whole run, per merged task): "
        + ", ".join(f"{k} {v:.2f}" for k, v in list(f["reads_by_endpoint"].items())[:10]),
    ]
    return lines


def run(agent_counts: tuple[int, ...] = (8, 16), ci_seconds: float = 1.0, timeout: float = 600,
        failure_rate: float = 0.0, queue_mode: str | None = None) -> dict[int, dict]:
    return {n: per_task(run_demo(n, ci_seconds, timeout, failure_rate, queue_mode)) for n in agent_counts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_economy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, action="append", help="agent counts (default 8 and 16)")
    parser.add_argument("--ci-seconds", type=float, default=1.0, help="simulated CI duration per head")
    parser.add_argument("--timeout", type=float, default=600, help="give a demo run up after this many seconds")
    parser.add_argument("--failure-rate", type=float, default=0.0, help="share of CI runs that fail (default 0: the happy path)")
    parser.add_argument("--queue-mode", choices=("serial", "groups"),
                        help="the demo's queue.mode (default: the demo's own, serial)")
    args = parser.parse_args(argv)
    for n, figures in run(tuple(args.agents or (8, 16)), args.ci_seconds, args.timeout, args.failure_rate,
                          args.queue_mode).items():
        print("\n".join(report(n, figures)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
