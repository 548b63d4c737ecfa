"""``fleet demo`` end to end, small: 3 scripted agents, a 6-task plan with dependencies, the real
Fleet processes, simulated CI with failures, one agent that goes silent so its lease expires."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app import db
from app.demo import fleet_yml, is_fleet_identity, parse_duration_seconds
from tests.conftest import PG_BASE, REDIS_URL, RUN_ID
from tests.test_cli import _free_port

PLAN = """
epics:
  - key: core
    title: Core
    description: The core of the demo product.
tasks:
  - {key: schema, title: Database schema, estimate: 4, priority: 0, epic: core}
  - {key: ingest, title: Webhook ingest, estimate: 4, priority: 0, epic: core, depends_on: [schema]}
  - {key: worker, title: Job worker, estimate: 3, priority: 1, epic: core, depends_on: [ingest]}
  - {key: client, title: API client, estimate: 2, priority: 1, epic: core}
  - {key: docs, title: User guide, estimate: 2, priority: 2, epic: core}
  - {key: cli, title: Command line, estimate: 3, priority: 2, epic: core, depends_on: [client]}
"""


def test_demo_config_and_helpers():
    text = fleet_yml("30s")
    from app.repo_config import parse_repo_config

    config = parse_repo_config(text)
    assert config.claims.max_per_agent == 1 and list(config.gates.required_checks) == ["ci"]
    assert config.queue.allow_authors
    assert parse_duration_seconds("30s") == 30 and parse_duration_seconds("1m30s") == 90
    assert is_fleet_identity("app") and is_fleet_identity("installation:7") and not is_fleet_identity("user:agent-a")


@pytest.mark.timeout(240)
def test_demo_runs_a_small_fleet_to_completion(tmp_path):
    plan = tmp_path / "plan.yml"
    plan.write_text(PLAN)
    out = tmp_path / "summary.json"
    database = f"fleet_demo_test_{RUN_ID}"
    env = {**os.environ, "DATABASE_URL": f"{PG_BASE}/fleet", "REDIS_URL": REDIS_URL,
           "GITHUB_APP_ID": "", "GITHUB_APP_PRIVATE_KEY": "", "GITHUB_APP_PRIVATE_KEY_PATH": ""}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "app.cli", "demo", "--agents", "3", "--plan", str(plan), "--ci-seconds", "0.5",
             "--failure-rate", "0.2", "--lease", "10s", "--timeout", "180", "--no-live", "--seed", "7",
             "--bind", f"127.0.0.1:{_free_port()}", "--database", database, "--json", str(out)],
            env=env, capture_output=True, text=True, timeout=230)
    finally:
        db.drop_database(f"{PG_BASE}/{database}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "/dashboard" in result.stdout and "Fleet demo summary" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["tasks_total"] == 6 and summary["tasks_done"] == 6
    assert summary["prs_merged"] == 6
    assert summary["lease_expiries"] >= 1
    assert summary["fleet_api_calls"] > 0 and summary["agent_api_calls"] > 0
    assert summary["ci_runs"] >= 6 and summary["recovered"] <= summary["prs_merged"]
