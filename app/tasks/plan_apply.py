"""``fleet plan apply``: make a repository's milestones and issues match a YAML plan.

The pure diff is in plan.py; this applies it through GitHub, creating issues after the issues
they depend on so each is written once with its ``Depends on`` lines, and diffs again until a
pass finds nothing to change (the second pass normally finds nothing).
"""
from __future__ import annotations

from datetime import date, datetime
from typing import Any

from app.github.identity import is_bot
from app.github.gateway import RepoGateway
from app.tasks.plan import (
    CreateIssue,
    CreateMilestone,
    ExistingIssue,
    ExistingMilestone,
    Plan,
    PlanChange,
    UpdateIssue,
    UpdateMilestone,
    diff_plan,
)

MAX_PASSES = 4


def _due(value: Any) -> date | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()


def _existing(gh: RepoGateway) -> tuple[list[ExistingMilestone], list[ExistingIssue]]:
    milestones = [
        ExistingMilestone(m["number"], m["title"], m.get("description") or "", _due(m.get("due_on")), m.get("state", "open"))
        for m in gh.milestones()
    ]
    # Only issues Fleet opened can be a plan's: anyone can paste a plan-key marker into an
    # issue of their own, and adopting it would let them take a plan task's place.
    issues = [
        ExistingIssue(i["number"], i["title"], i.get("body") or "", frozenset(l["name"] for l in i.get("labels", [])),
                      (i.get("milestone") or {}).get("number"), i.get("state", "open"))
        for i in gh.issues(state="all") if "pull_request" not in i and is_bot((i.get("user") or {}).get("login"))
    ]
    return milestones, issues


def _due_text(value: date | None) -> str | None:
    return f"{value.isoformat()}T00:00:00Z" if value else None


def _apply(gh: RepoGateway, change: PlanChange, milestones: dict[str, int], created: dict[str, int]) -> None:
    if isinstance(change, CreateMilestone):
        fields = {"description": change.description}
        if change.due_on:
            fields["due_on"] = _due_text(change.due_on)
        milestones[change.key] = gh.create_milestone(change.title, **fields)["number"]
    elif isinstance(change, UpdateMilestone):
        fields = dict(change.changes)
        if "due_on" in fields:
            fields["due_on"] = _due_text(fields["due_on"])
        gh.update_milestone(change.number, **fields)
        milestones[change.key] = change.number
    elif isinstance(change, CreateIssue):
        number = change.milestone or (milestones.get(change.milestone_key) if change.milestone_key else None)
        extra = {"milestone": number} if number else {}
        issue = gh.create_issue(change.title, change.body_with(created), labels=list(change.labels), **extra)
        created[change.key] = issue["number"]
    elif isinstance(change, UpdateIssue):
        fields = {k: v for k, v in change.changes.items() if k != "milestone_key"}
        if "milestone_key" in change.changes and fields.get("milestone") is None:
            fields["milestone"] = milestones.get(change.changes["milestone_key"])
        if fields:
            gh.update_issue(change.number, **fields)
        if change.add_labels:
            gh.add_labels(change.number, list(change.add_labels))
        for label in change.remove_labels:
            gh.remove_label(change.number, label)


def apply_plan(gh: RepoGateway, plan: Plan, *, dry_run: bool = False) -> list[str]:
    """Apply the plan; returns a description of every change made (or, dry-run, to be made)."""
    done: list[str] = []
    for _ in range(MAX_PASSES):
        existing_milestones, existing_issues = _existing(gh)
        changes = diff_plan(plan, existing_milestones, existing_issues)
        if not changes:
            return done
        done.extend(change.describe() for change in changes)
        if dry_run:
            return done
        milestones: dict[str, int] = {}
        created: dict[str, int] = {}
        for change in changes:
            _apply(gh, change, milestones, created)
    raise RuntimeError(f"the plan did not converge after {MAX_PASSES} passes; last changes: {done[-5:]}")
