"""Claims under load, end to end (issue 11): 8 scripted agents race for a few tasks (all of them
claiming the same task within a fraction of a second: self-assigning, commenting ``/claim`` or
asking ``/next``), Fleet's pacer and the simulator's secondary limits on with a deliberately small
write budget (40 a minute, half of GitHub's) so it runs out during the race, real workers draining the queue.

The agents follow ``docs/agents.md``: each acts only on a verdict it observed (it is the task's
only assignee and the task carries ``fleet:claimed``, or a refusal names it), and one whose claim
is undone moves on. Fleet must make that enough: no task worked on by two agents, no task held by
two agents at once, no task merged twice. The verdict latency is reported, not asserted."""
from __future__ import annotations

import json
from pathlib import Path
import os
import subprocess
import sys

import pytest

from app import db
from tests.conftest import PG_BASE, REDIS_URL, RUN_ID
from tests.test_cli import _free_port

PLAN = """
tasks:
  - {key: parser, title: Config parser, estimate: 2, priority: 0}
  - {key: client, title: API client, estimate: 2, priority: 0}
  - {key: cache, title: Response cache, estimate: 2, priority: 1}
  - {key: docs, title: User guide, estimate: 2, priority: 1}
  - {key: cli, title: Command line, estimate: 2, priority: 2}
"""

RACE_SECONDS = 35  # the race itself; setup (processes, plan import) comes on top


@pytest.mark.timeout(120)
def test_eight_agents_racing_under_a_spent_budget_never_share_a_task(tmp_path):
    plan = tmp_path / "plan.yml"
    plan.write_text(PLAN)
    out = tmp_path / "summary.json"
    database = f"fleet_race_test_{RUN_ID}"
    env = {**os.environ, "DATABASE_URL": f"{PG_BASE}/fleet", "REDIS_URL": REDIS_URL,
           "GITHUB_APP_ID": "", "GITHUB_APP_PRIVATE_KEY": "", "GITHUB_APP_PRIVATE_KEY_PATH": ""}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli.main", "demo", "--agents", "8", "--plan", str(plan), "--race", "--spent-budget",
             "--real-limits", "--writes-per-minute", "80", "--writes-per-hour", "500",
             "--ci-seconds", "0.5", "--failure-rate", "0", "--lease", "20s", "--verdict-timeout", "20",
             "--timeout", str(RACE_SECONDS), "--no-live", "--seed", "11", "--workers", "2",
             "--bind", f"127.0.0.1:{_free_port()}", "--database", database, "--json", str(out)],
            env=env, capture_output=True, text=True, timeout=110)
    finally:
        db.drop_database(f"{PG_BASE}/{database}")
    report = result.stdout[-4000:] + result.stderr[-2000:]
    assert out.exists(), report  # the run got as far as its summary (it need not finish every task)
    s = json.loads(out.read_text())
    print(json.dumps({k: s[k] for k in ("verdict_latency_s", "claims_made", "claims_by_way", "claims_without_verdict",
                                        "secondary_limit_hits", "fleet_writes_busiest_minute",
                                        "longest_stall_with_deliveries_waiting_s", "deliveries_deferred",
                                        "writes_without_budget", "writes_held")}))
    assert s["real_limits"] and s["writes_per_minute"] == 80
    assert s["claims_made"] >= 8 and set(s["claims_by_way"]) == {"assign", "claim", "next"}, report
    # The budget ran out during the race: Fleet's pacer or GitHub's limit had to say no at least once.
    assert s["writes_without_budget"] > 0 or s["secondary_limit_hits"] > 0, report
    assert s["duplicate_work"] == [], f"tasks two agents started work on: {s['duplicate_work']}\n{report}"
    assert s["held_twice_at_once"] == [], f"tasks two agents held at once: {s['held_twice_at_once']}\n{report}"
    assert s["tasks_merged_twice"] == [], f"tasks merged twice: {s['tasks_merged_twice']}\n{report}"
    assert s["claims_without_verdict"] == 0, f"claims no verdict answered within 20 s\n{report}"
    # The run's log is kept whatever the outcome (a surprising green run must be inspectable).
    logs = [line.split(": ", 1)[1] for line in result.stderr.splitlines() if line.startswith("Fleet's logs: ")]
    assert logs and Path(logs[-1]).is_file(), f"{logs}\n{result.stderr[-500:]}"
