"""Plan import through the simulator: the sample plan creates its epics and issues, a second run
changes nothing, and an edit to the plan updates only what changed."""
from __future__ import annotations

from pathlib import Path

from app.evidence import EvidenceRecorder
from app.plan import parse_plan
from app.plan_apply import apply_plan
from jobs.sync import gateway_for

SAMPLE = Path(__file__).resolve().parent.parent / "app" / "sample" / "plan.yml"


def writes(world):
    return [c for c in world.sim.requests if c.method in ("POST", "PATCH", "PUT", "DELETE") and c.identity and "bot" in str(c.identity)]


def test_sample_plan_imports_idempotently(world, db_conn, settings):
    gh = gateway_for(world.repo, EvidenceRecorder(world.settings.database_url))
    plan = parse_plan(SAMPLE.read_text())
    dry = apply_plan(gh, plan, dry_run=True)
    assert len(dry) == 5 + 27
    first = apply_plan(gh, plan)
    assert len(first) >= 5 + 27
    world.settle(timeout=60)
    tasks = db_conn.execute("SELECT count(*) AS n, sum(estimate_hours) AS h FROM tasks WHERE is_task").fetchone()
    assert tasks["n"] == 27 and float(tasks["h"]) == 592.0
    assert db_conn.execute("SELECT count(*) AS n FROM milestones").fetchone()["n"] == 5
    deps = db_conn.execute("SELECT count(*) AS n FROM dependencies").fetchone()["n"]
    assert deps == sum(len(t.depends_on) for t in plan.tasks)

    calls_before = len(world.sim.requests)
    assert apply_plan(gh, plan) == []
    new_calls = world.sim.requests[calls_before:]
    assert all(c.method == "GET" for c in new_calls), "a no-op run must not write"

    edited = plan.model_copy(update={"tasks": (plan.tasks[0].model_copy(update={"title": "Renamed first task"}),
                                               *plan.tasks[1:])})
    changes = apply_plan(gh, edited)
    assert changes == [f"update issue #{first_issue(db_conn)} (task schema): title"]
    world.settle()
    assert db_conn.execute("SELECT title FROM tasks WHERE number = %s", (first_issue(db_conn),)).fetchone()["title"] == "Renamed first task"


def first_issue(db_conn):
    return db_conn.execute("SELECT min(number) AS n FROM tasks WHERE is_task").fetchone()["n"]
