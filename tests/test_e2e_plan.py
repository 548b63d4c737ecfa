"""Plan import through the simulator: the sample plan creates its epics and issues, a second run
changes nothing, and an edit to the plan updates only what changed."""
from __future__ import annotations

from pathlib import Path

from app.github.evidence import EvidenceRecorder
from app.tasks.plan import parse_plan
from app.tasks.plan_apply import apply_plan
from jobs.sync import gateway_for

SAMPLE = Path(__file__).resolve().parent.parent / "app" / "sandbox" / "sample" / "plan.yml"


def writes(world):
    return [c for c in world.sim.requests if c.method in ("POST", "PATCH", "PUT", "DELETE") and c.identity and "bot" in str(c.identity)]


def test_sample_plan_imports_idempotently(world, db_conn, settings):
    gh = gateway_for(world.repo, EvidenceRecorder(world.settings.database_url))
    plan = parse_plan(SAMPLE.read_text())
    dry = apply_plan(gh, plan, dry_run=True)
    assert len(dry) == 5 + 27
    calls_before = len(world.sim.requests)
    first = apply_plan(gh, plan)
    assert len(first) == 5 + 27  # one pass: every issue is created with its Depends on lines
    made = [c.operation_id for c in world.sim.requests[calls_before:] if c.method != "GET"]
    assert sorted(set(made)) == ["issues/create", "issues/create-milestone"] and len(made) == 5 + 27
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


def test_an_outsiders_issue_carrying_a_plan_key_is_never_adopted(world, db_conn, settings):
    """Anyone can paste a plan-key marker into an issue of their own; only issues Fleet opened can
    be a plan's, so the outsider's issue is left as it is and the plan creates its own."""
    plan = parse_plan(SAMPLE.read_text())
    first = plan.tasks[0]
    squatter = world.sim.open_issue(world.repo, "mine now", f"<!-- fleet:plan-key={first.key} -->", "mallory")
    gh = gateway_for(world.repo, EvidenceRecorder(world.settings.database_url))
    changes = apply_plan(gh, plan)
    assert not any(f"#{squatter} " in change or change.endswith(f"#{squatter}") for change in changes)
    mallory = world.agent("mallory")
    issue = mallory.rest.issues.get(*world.repo.split("/"), squatter).json()
    assert issue["title"] == "mine now"
    created = [c for c in changes if c.startswith("create issue") and first.title in c]
    assert created, changes
