"""Plan import: validation with paths, and a diff that converges (a second run changes nothing)."""
from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest

from app.tasks.plan import (
    CreateIssue,
    CreateMilestone,
    ExistingIssue,
    ExistingMilestone,
    PlanChange,
    PlanError,
    UpdateIssue,
    UpdateMilestone,
    diff_plan,
    parse_plan,
    plan_key,
)
from app.tasks.refs import parse_dependencies, parse_estimate, parse_priority

SAMPLE = Path(__file__).resolve().parents[1] / "app" / "sandbox" / "sample" / "plan.yml"


class FakeRepo:
    """Milestones and issues as GitHub would hold them; applies changes like `fleet plan apply`."""

    def __init__(self) -> None:
        self.milestones: dict[int, ExistingMilestone] = {}
        self.issues: dict[int, ExistingIssue] = {}
        self.milestone_numbers: dict[str, int] = {}
        self.calls: list[str] = []

    def apply(self, changes: list[PlanChange]) -> None:
        for change in changes:
            self.calls.append(type(change).__name__)
            if isinstance(change, CreateMilestone):
                number = len(self.milestones) + 1
                self.milestones[number] = ExistingMilestone(number, change.title, change.description, change.due_on)
                self.milestone_numbers[change.key] = number
            elif isinstance(change, UpdateMilestone):
                self.milestones[change.number] = dataclasses.replace(
                    self.milestones[change.number],
                    **{"due_on" if k == "due_on" else k: v for k, v in change.changes.items()})
            elif isinstance(change, CreateIssue):
                number = len(self.issues) + 100
                milestone = change.milestone or self.milestone_numbers.get(change.milestone_key or "")
                self.issues[number] = ExistingIssue(number, change.title, change.body, frozenset(change.labels), milestone)
            elif isinstance(change, UpdateIssue):
                issue = self.issues[change.number]
                fields = {k: v for k, v in change.changes.items() if k in ("title", "body")}
                if "milestone_key" in change.changes:
                    key = change.changes["milestone_key"]
                    fields["milestone"] = change.changes["milestone"] or self.milestone_numbers.get(key)
                labels = (issue.labels | set(change.add_labels)) - set(change.remove_labels)
                self.issues[change.number] = dataclasses.replace(issue, labels=frozenset(labels), **fields)

    def diff(self, plan) -> list[PlanChange]:
        return diff_plan(plan, list(self.milestones.values()), list(self.issues.values()))


def sample_plan():
    return parse_plan(SAMPLE.read_text(encoding="utf-8"))


def test_sample_plan_is_the_seed_plan() -> None:
    """The sample plan: 5 epics, 27 tasks, 592 estimated hours, dependencies forming a DAG."""
    plan = sample_plan()
    assert len(plan.epics) == 5 and len(plan.tasks) == 27 and plan.total_hours == 592
    assert sum(len(t.depends_on) for t in plan.tasks) >= 20
    assert {t.priority for t in plan.tasks} == {0, 1, 2, 3}
    assert all(t.epic for t in plan.tasks)


def test_import_converges_create_then_dependencies_then_nothing() -> None:
    """Pass 1 creates everything, pass 2 writes the `Depends on #N` lines, pass 3 is a no-op."""
    plan, repo = sample_plan(), FakeRepo()
    first = repo.diff(plan)
    assert [type(c) for c in first[:5]] == [CreateMilestone] * 5
    assert sum(isinstance(c, CreateIssue) for c in first) == 27
    pending = {c.key for c in first if isinstance(c, CreateIssue) and c.unresolved}
    assert pending == {t.key for t in plan.tasks if t.depends_on}
    repo.apply(first)

    second = repo.diff(plan)
    assert {c.key for c in second} == pending
    assert all(isinstance(c, UpdateIssue) and set(c.changes) == {"body"} for c in second)
    repo.apply(second)

    assert repo.diff(plan) == []
    assert repo.diff(sample_plan()) == []  # a fresh parse of the same file too


def test_issue_bodies_speak_the_claims_parsers_language() -> None:
    """Estimate, priority and dependencies written by the import are what Fleet's parsers read back."""
    plan, repo = sample_plan(), FakeRepo()
    repo.apply(repo.diff(plan))
    repo.apply(repo.diff(plan))
    by_key = {plan_key(i.body): i for i in repo.issues.values()}
    for t in plan.tasks:
        issue = by_key[t.key]
        assert parse_estimate(issue.labels, issue.body) == t.estimate
        assert parse_priority(issue.labels) == t.priority
        deps = {ref.number for ref in parse_dependencies(issue.body, "o/r")}
        assert deps == {by_key[d].number for d in t.depends_on}
        assert issue.milestone == repo.milestone_numbers[t.epic]


def applied_repo() -> tuple[FakeRepo, object]:
    plan, repo = sample_plan(), FakeRepo()
    repo.apply(repo.diff(plan))
    repo.apply(repo.diff(plan))
    return repo, plan


def test_renamed_task_is_updated_not_duplicated() -> None:
    """The hidden key finds the issue, so a new title updates it in place."""
    repo, plan = applied_repo()
    tasks = list(plan.tasks)
    tasks[0] = tasks[0].model_copy(update={"title": "Schema, renamed"})
    changed = plan.model_copy(update={"tasks": tuple(tasks)})
    changes = repo.diff(changed)
    assert len(changes) == 1 and isinstance(changes[0], UpdateIssue)
    assert changes[0].changes == {"title": "Schema, renamed"}
    repo.apply(changes)
    assert repo.diff(changed) == []


def test_priority_change_swaps_only_the_priority_label() -> None:
    """Labels people (or Fleet's state labels) added stay; only other `priority:` labels go."""
    repo, plan = applied_repo()
    number = next(n for n, i in repo.issues.items() if plan_key(i.body) == "schema")
    repo.issues[number] = dataclasses.replace(repo.issues[number],
                                              labels=repo.issues[number].labels | {"fleet:ready", "good first issue"})
    tasks = [t.model_copy(update={"priority": 3}) if t.key == "schema" else t for t in plan.tasks]
    changes = repo.diff(plan.model_copy(update={"tasks": tuple(tasks)}))
    assert len(changes) == 1
    assert changes[0].add_labels == ("priority:p3",) and changes[0].remove_labels == ("priority:p0",)
    assert not changes[0].changes


def test_milestone_updates_and_adoption_by_title() -> None:
    """A milestone without the marker but with the plan's title is adopted; due dates compare as dates."""
    plan = sample_plan()
    existing = [ExistingMilestone(7, "Claims, leases and commands", "made by hand", date(2027, 1, 8))]
    changes = diff_plan(plan, existing, [])
    update = [c for c in changes if isinstance(c, UpdateMilestone)]
    assert len(update) == 1 and update[0].number == 7 and set(update[0].changes) == {"description"}
    created = [c for c in changes if isinstance(c, CreateIssue) and c.milestone_key == "claims"]
    assert created and all(c.milestone == 7 for c in created)


def test_crlf_bodies_from_github_are_not_changes() -> None:
    """GitHub may return CRLF line endings; that alone is not a difference."""
    repo, plan = applied_repo()
    for n, issue in list(repo.issues.items()):
        repo.issues[n] = dataclasses.replace(issue, body=issue.body.replace("\n", "\r\n"))
    assert repo.diff(plan) == []


def test_duplicate_issues_for_one_key_use_the_oldest() -> None:
    """A create retried by the HTTP client may leave two issues with one key: the oldest is kept."""
    repo, plan = applied_repo()
    original = next(i for i in repo.issues.values() if plan_key(i.body) == "schema")
    repo.issues[999] = dataclasses.replace(original, number=999, title="dup")
    assert repo.diff(plan) == []


def test_describe_for_dry_run() -> None:
    """Every change describes itself in one line for --dry-run."""
    changes = diff_plan(sample_plan(), [], [])
    lines = [c.describe() for c in changes]
    assert lines[0] == "create milestone 'Foundation: webhooks to Postgres' (epic foundation)"
    assert lines[6].endswith("(task ingest); after its dependencies schema")


def test_issues_are_created_after_the_issues_they_depend_on_with_their_depends_on_lines() -> None:
    """A task listed before its dependency is created after it, and names it when created."""
    plan = parse_plan(
        "tasks:\n"
        "  - {key: late, title: Needs early, estimate: 1, depends_on: [early]}\n"
        "  - {key: early, title: First, estimate: 1}\n"
        "  - {key: alone, title: Alone, estimate: 1}\n"
    )
    creates = diff_plan(plan, [], [])
    assert [c.key for c in creates] == ["early", "late", "alone"]
    assert "Depends on" not in creates[1].body  # no number yet when diffed
    assert "Depends on #41" in creates[1].body_with({"early": 41})
    assert creates[0].body_with({}) == creates[0].body


@pytest.mark.parametrize("text, path, line, message", [
    ("tasks:\n  - key: a\n    title: x\n    estimate: -1\n", "tasks[0].estimate", 4, "greater than 0"),
    ("tasks:\n  - key: a\n    title: x\n    estimate: 1\n    depends_on: [zz]\n",
     "tasks[0].depends_on[0]", 5, "unknown task 'zz'"),
    ("tasks:\n  - {key: a, title: x, estimate: 1, depends_on: [b]}\n"
     "  - {key: b, title: y, estimate: 1, depends_on: [a]}\n", "tasks[0].depends_on", 2, "cycle: a -> b -> a"),
    ("tasks:\n  - {key: a, title: x, estimate: 1}\n  - {key: a, title: y, estimate: 1}\n",
     "tasks[1].key", 3, "duplicate task key 'a'"),
    ("tasks:\n  - {key: a, title: x, estimate: 1, epic: nope}\n", "tasks[0].epic", 2, "unknown epic 'nope'"),
    ("tasks:\n  - {key: a, title: x, estimate: 1, colour: red}\n", "tasks[0].colour", 2, "Extra inputs"),
    ("tasks:\n  - {key: A B, title: x, estimate: 1}\n", "tasks[0].key", 2, "should match pattern"),
    ("epics: [{key: e, title: E, due: not-a-date}]\ntasks: [{key: a, title: x, estimate: 1}]\n",
     "epics[0].due", 1, "date"),
    ("tasks: [1", None, 1, "not valid YAML"),
    ("- just a list\n", None, 1, "mapping"),
    ("epics: []\n", "tasks", None, "Field required"),
])
def test_invalid_plans_name_path_and_line(text: str, path: str | None, line: int | None, message: str) -> None:
    """Every validation error names where in the file it is."""
    with pytest.raises(PlanError) as info:
        parse_plan(text)
    assert info.value.path == path and info.value.line == line
    assert message in str(info.value)


def test_a_plan_with_anchors_or_aliases_is_refused() -> None:
    """Plans are loaded without alias expansion, like .github/fleet.yml."""
    text = "epics: []\ntasks:\n  - &t {key: a, title: A, estimate: 1}\n  - *t\n"
    with pytest.raises(PlanError) as err:
        parse_plan(text)
    assert str(err.value) == "line 3: aliases are not allowed"


def test_a_plan_over_the_size_cap_is_refused_naming_the_cap() -> None:
    from app.input_limits import MAX_PLAN_BYTES

    with pytest.raises(PlanError, match="at most 1024 KiB"):
        parse_plan("# " + "x" * MAX_PLAN_BYTES + "\nepics: []\ntasks: []\n")


def test_the_wide_bench_plan_is_32_tasks_no_one_waits_for():
    """``bench/plans/wide.yml`` compares fleet sizes in ``fleet demo``: no dependency may bound it."""
    plan = parse_plan((SAMPLE.parents[3] / "bench" / "plans" / "wide.yml").read_text())
    assert len(plan.tasks) == 32
    assert all(not task.depends_on for task in plan.tasks)
