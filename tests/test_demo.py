"""``fleet demo`` end to end, small: 3 scripted agents, a 6-task plan with dependencies, the real
Fleet processes, simulated CI with failures, one agent that goes silent so its lease expires."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app import db
from app.sandbox.demo import (ClaimRecord, Tally, busiest_minute, claim_figures, delivery_figures, fleet_yml, held_twice,
                      is_fleet_identity, parse_duration_seconds, percentile, tasks_merged_twice)
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
    from app.repos.config import parse_repo_config

    config = parse_repo_config(text)
    assert config.claims.max_per_agent == 1 and list(config.gates.required_checks) == ["ci"]
    assert config.queue.allow_authors
    assert parse_duration_seconds("30s") == 30 and parse_duration_seconds("1m30s") == 90
    assert is_fleet_identity("app") and is_fleet_identity("installation:7") and not is_fleet_identity("user:agent-a")


def test_demo_config_sets_the_queue_mode():
    from app.repos.config import parse_repo_config

    groups = parse_repo_config(fleet_yml("30s", "groups", depth=2, batch_size=4)).queue
    assert (groups.mode, groups.merge_method, groups.depth, groups.batch_size) == ("groups", "merge", 2, 4)
    assert parse_repo_config(fleet_yml("30s", "serial")).queue.mode == "serial"


def test_demo_ci_blames_one_pr_of_a_failing_group_until_that_pr_moves_on():
    """A group head failing by the rate blames one of the PRs merged into it (never one of the
    group it was built on); later groups with that head fail too; the PR's fix starts clean."""
    import random

    from app.sandbox.demo import DEMO_REPO, SimulatedCI
    from app.sandbox.simulator import ops_repo
    from app.sandbox.simulator.simulator import Simulator

    sim = Simulator()
    sim.create_repo(DEMO_REPO)
    sim.add_user("agent-a", "write")
    branches = {}
    for n in (1, 2, 3):
        sim.push(DEMO_REPO, f"agent-a/{n}-x", {f"{n}.md": "x"}, author="agent-a")
        branches[sim.open_pr(DEMO_REPO, f"agent-a/{n}-x", title="x", author="agent-a")] = f"agent-a/{n}-x"
    first, second, third = sorted(branches)

    def group(gid: int, after: str | None, prs: list[int]) -> str:
        name = f"fleet/queue/main/{gid}"
        sim.create_branch(DEMO_REPO, name, after)
        with sim.world.lock:
            r = sim.world.repo(DEMO_REPO)
            for number in prs:
                ops_repo.merge_refs(sim.world, r, name, r.issues[number].pull.head_sha, r.owner, "group")
        return sim.branch_sha(DEMO_REPO, name)

    below = group(1, None, [first])
    on_top = group(2, below, [second, third])
    blamed = set()
    for seed in range(8):
        ci = SimulatedCI(sim, DEMO_REPO, 0, 0.0, Tally(), random.Random(seed), group_failure_rate=1.0)  # groups fail
        failed, why = ci._group_verdict(on_top)
        assert failed and why.endswith("breaks it combined with the others")
        blamed.add(int(why.split("#")[1].split()[0]))
    assert blamed <= {second, third} and blamed
    culprit = sorted(blamed)[0]
    ci = SimulatedCI(sim, DEMO_REPO, 0, 1.0, Tally(), random.Random(0), group_failure_rate=0.0)
    ci.failed_heads.add(sim.pull(DEMO_REPO, culprit)["head"]["sha"])
    assert ci._group_verdict(below) == (False, None)
    assert ci._group_verdict(group(3, below, [culprit])) == (True, "contains a failing change")
    sim.push(DEMO_REPO, branches[culprit], {"fix.md": "fixed"}, author="agent-a")  # the agent's fix
    assert ci._group_verdict(group(4, below, [culprit])) == (False, None)


def test_percentile_is_nearest_rank():
    assert percentile([], 50) is None
    assert percentile([3.0], 99) == 3.0
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0
    assert percentile([0.2, 43.0], 99) == 43.0  # one slow verdict in two is the p99


def test_held_twice_finds_overlapping_beliefs_of_different_agents_only():
    beliefs = [
        [18, "agent-a", 0.0, 10.0], [18, "agent-b", 0.4, 5.0],  # the issue's #18: both believed they held it
        [5, "agent-c", 0.0, 3.0], [5, "agent-d", 3.0, 9.0],  # handed on: no overlap
        [7, "agent-e", 0.0, 2.0], [7, "agent-e", 1.0, None],  # the same agent twice is not a clash
        [9, "agent-f", 0.0, None], [9, "agent-g", 100.0, None],  # both still believing at the end
    ]
    assert held_twice(beliefs) == [9, 18]


def test_claim_figures_count_duplicate_work_and_verdict_latency():
    tally = Tally()
    tally.record_claim(ClaimRecord("agent-a", 18, "assign", 0.0, 0.5, "held"))
    tally.record_claim(ClaimRecord("agent-b", 18, "assign", 0.4, 43.4, "refused"))
    tally.record_claim(ClaimRecord("agent-c", None, "next", 1.0, 61.0, "none"))
    tally.record_claim(ClaimRecord("agent-d", 20, "next", 2.0, 32.0, "held"))  # 30 s in line for a ready task
    tally.record_claim(ClaimRecord("agent-e", None, "next", 3.0, 90.0, "in_line"))
    tally.start_work(18, "agent-a")
    tally.start_work(18, "agent-b")
    tally.start_work(19, "agent-c")
    tally.start_work(19, "agent-c")
    figures = claim_figures(tally)
    assert figures["duplicate_work"] == [18]
    assert figures["claims_made"] == 5 and figures["claims_without_verdict"] == 1
    assert figures["claims_by_way"] == {"assign": 2, "next": 3}
    # A verdict's latency is a claim's (self-assign, /claim): a /next may wait in line for work.
    assert figures["verdict_latency_s"]["held"] == {"n": 1, "p50": 0.5, "p99": 0.5, "max": 0.5}
    assert figures["verdict_latency_s"]["refused"]["p99"] == 43.0
    assert figures["verdict_latency_s"]["n"] == 2 and figures["verdict_latency_s"]["max"] == 43.0
    assert figures["next_answer_s"] == {"n": 1, "p50": 30.0, "p99": 30.0, "max": 30.0, "in_line_at_end": 1}


def test_delivery_figures_find_the_longest_stall_while_deliveries_waited():
    rows = [
        {"received": 0.0, "started": 0.1, "processed": 0.5},
        {"received": 1.0, "started": 1.1, "processed": 48.0},  # a worker asleep in the pacer
        {"received": 2.0, "started": 48.1, "processed": 48.3},  # waited behind it
        {"received": 100.0, "started": None, "processed": None},  # never processed before the end
    ]
    figures = delivery_figures(rows, until=130.0)
    assert figures["deliveries"] == 4 and figures["deliveries_unprocessed"] == 1
    assert figures["longest_stall_with_deliveries_waiting_s"] == 46.0  # from 2.0 (arrived) to 48.0
    assert figures["delivery_wait_s"]["max"] == 47.0
    idle = delivery_figures([{"received": 0.0, "started": 0.1, "processed": 0.2}], until=500.0)
    assert idle["longest_stall_with_deliveries_waiting_s"] == 0.0  # nothing waited: not a stall


def test_busiest_minute_counts_writes_per_clock_minute():
    class Write:
        def __init__(self, timestamp):
            self.timestamp = timestamp

    assert busiest_minute([]) == 0
    assert busiest_minute([Write(60.0 + i) for i in range(20)] + [Write(121.0)]) == 20


def test_tasks_merged_twice_reads_closing_keywords_of_merged_prs():
    from app.sandbox.demo import DEMO_REPO
    from app.sandbox.simulator.simulator import Simulator

    sim = Simulator()
    sim.create_repo(DEMO_REPO)
    sim.add_user("agent-a", "write")
    sim.add_user("agent-b", "write")
    task = sim.open_issue(DEMO_REPO, "Task 18")
    prs = []
    for login in ("agent-a", "agent-b"):
        sim.push(DEMO_REPO, f"{login}/{task}-x", {f"{login}.md": "x"}, author=login)
        prs.append(sim.open_pr(DEMO_REPO, f"{login}/{task}-x", title="x", body=f"Closes #{task}", author=login))
    assert tasks_merged_twice(sim) == []
    for pr in prs:
        sim.merge_pr(DEMO_REPO, pr)
    assert tasks_merged_twice(sim) == [task]


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
            [sys.executable, "-m", "app.cli.main", "demo", "--agents", "3", "--plan", str(plan), "--ci-seconds", "0.5",
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
