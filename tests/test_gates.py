"""Pure tests for the quality gates: one rule per test, builders with defaults."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from app.gates.rules import (
    CheckResult,
    GateVerdict,
    GateResult,
    PullSnapshot,
    Review,
    evaluate_gates,
    latest_checks,
    latest_reviews,
)
from app.repos.config import GatesConfig
from tests import builders

HEAD = "a" * 40
OLD = "b" * 40
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def check(name="ci", conclusion="success", *, sha=HEAD, **fields) -> CheckResult:
    return builders.check(name, conclusion, sha=sha, **fields)


# What gate_service.read_snapshot looks up for each reviewer; "rita" can only read.
WRITERS = (("bob", "write"), ("amy", "write"), ("zed", "maintain"), ("alice", "admin"), ("rita", "read"),
           ("tom", "triage"))


def make_pr(**overrides) -> PullSnapshot:
    """A PR that passes every default gate; each test overrides what it is about."""
    return builders.make_pr(head_sha=HEAD, **{"reviewer_permissions": WRITERS, **overrides})


def make_config(**overrides) -> GatesConfig:
    return GatesConfig(**overrides)


def gate(pr: PullSnapshot, name: str, **config) -> GateResult:
    return evaluate_gates(pr, make_config(**config)).result(name)


def test_default_pr_passes_every_gate():
    """The builder's PR is green, so every other test changes exactly one thing."""
    verdict = evaluate_gates(make_pr(), make_config())
    assert verdict.conclusion == "success"
    assert [r.gate for r in verdict.results] == [
        "checks", "reviews", "changes_requested", "labels", "draft", "linked_task", "conflict", "size"
    ]
    assert verdict.head_sha == HEAD
    assert verdict.is_green_for(HEAD)
    assert not verdict.is_green_for(OLD)


# --- checks -------------------------------------------------------------------------------

CHECK_CASES = [
    # (id, checks, config overrides, expected state, expected names)
    ("all-green", (check("ci"), check("lint")), {}, "passed", ()),
    ("none-reported-min-1", (), {}, "waiting", ()),
    ("min-checks-not-reached", (check("ci"),), {"min_checks": 2}, "waiting", ()),
    ("min-zero-no-checks", (), {"min_checks": 0}, "passed", ()),
    ("one-failing", (check("ci"), check("lint", "failure")), {}, "failing", ("lint",)),
    ("queued-waits", (check("ci", status="queued"),), {}, "waiting", ("ci",)),
    ("in-progress-waits", (check("ci", status="in_progress"),), {}, "waiting", ("ci",)),
    ("failing-beats-waiting", (check("a", status="queued"), check("b", "failure")), {}, "failing", ("b",)),
    ("neutral-passes", (check("ci", "neutral"),), {}, "passed", ()),
    ("skipped-passes", (check("ci", "skipped"),), {}, "passed", ()),
    ("timed-out-fails", (check("ci", "timed_out"),), {}, "failing", ("ci",)),
    ("cancelled-fails", (check("ci", "cancelled"),), {}, "failing", ("ci",)),
    ("action-required-fails", (check("ci", "action_required"),), {}, "failing", ("ci",)),
    ("stale-fails", (check("ci", "stale"),), {}, "failing", ("ci",)),
    ("unknown-conclusion-fails-closed", (check("ci", "brand_new"),), {}, "failing", ("ci",)),
    ("completed-without-conclusion-fails", (check("ci", None),), {}, "failing", ("ci",)),
    ("other-sha-ignored", (check("ci", "failure", sha=OLD), check("lint")), {}, "passed", ()),
    ("only-other-sha-is-none", (check("ci", sha=OLD),), {}, "waiting", ()),
    ("own-check-ignored", (check("fleet/gates", "failure"), check("ci")), {}, "passed", ()),
    ("own-check-alone-is-none", (check("fleet/gates"),), {}, "waiting", ()),
    ("required-present", (check("ci"), check("extra", "failure")), {"required_checks": ("ci",)}, "passed", ()),
    ("required-missing", (check("lint"),), {"required_checks": ("ci",)}, "waiting", ("ci",)),
    ("required-running", (check("ci", status="in_progress"),), {"required_checks": ("ci",)}, "waiting", ("ci",)),
    ("required-failed", (check("ci", "failure"),), {"required_checks": ("ci", "lint")}, "failing", ("ci",)),
    ("required-status-context", (check("ci/travis", kind="status", app="github-actions[bot]"),), {"required_checks": ("ci/travis",)}, "passed", ()),
    # Required checks are tied to an App (GitHub Actions unless configured): a fork's own
    # workflow or another App reporting the same name never satisfies them.
    ("required-status-unknown-creator", (check("ci/travis", kind="status", app=None),), {"required_checks": ("ci/travis",)}, "waiting", ("ci/travis",)),
    ("required-status-by-a-user-named-like-the-app", (check("ci", kind="status", app="github-actions"),), {"required_checks": ("ci",)}, "waiting", ("ci",)),
    ("required-status-by-another-bot", (check("ci", kind="status", app="evil-ci[bot]"),), {"required_checks": ("ci",)}, "waiting", ("ci",)),
    ("required-ci-from-another-app", (check("ci", app="evil-ci"),), {"required_checks": ("ci",)}, "waiting", ("ci",)),
    ("required-other-app-failure-not-hidden", (check("ci"), check("ci", "failure", app="evil-ci")), {"required_checks": ("ci",)}, "failing", ("ci",)),
    ("required-other-app-running-waits", (check("ci"), check("ci", status="in_progress", app="evil-ci")), {"required_checks": ("ci",)}, "waiting", ("ci",)),
    ("required-app-any", (check("ci", app="evil-ci"),), {"required_checks": ({"name": "ci", "app": "any"},)}, "passed", ()),
    ("required-checks-app-any", (check("ci", kind="status", app=None),), {"required_checks": ("ci",), "required_checks_app": "any"}, "passed", ()),
    ("required-mapping-own-app", (check("ci", app="circleci-checks"),), {"required_checks": ({"name": "ci", "app": "circleci-checks"},)}, "passed", ()),
    ("required-mapping-wrong-app", (check("ci"),), {"required_checks": ({"name": "ci", "app": "circleci-checks"},)}, "waiting", ("ci",)),
    ("required-checks-app-setting", (check("ci", app="buildkite"),), {"required_checks": ("ci",), "required_checks_app": "buildkite"}, "passed", ()),
    ("required-own-check-ignored", (check("ci"),), {"required_checks": ("ci", "fleet/gates")}, "passed", ()),
    ("required-wrong-sha", (check("ci", sha=OLD),), {"required_checks": ("ci",)}, "waiting", ("ci",)),
]


@pytest.mark.parametrize("checks,config,state,names", [c[1:] for c in CHECK_CASES], ids=[c[0] for c in CHECK_CASES])
def test_checks_gate(checks, config, state, names):
    """Only checks on exactly the head count; the conclusion table decides passed/failing/waiting."""
    result = gate(make_pr(checks=checks), "checks", **config)
    assert result.state == state, result
    if names:
        assert result.names == names


def test_rerun_supersedes_earlier_failure_by_start_time():
    """A re-run (later start) replaces the failed run with the same name."""
    checks = (check("ci", "success", started=T0 + timedelta(minutes=5), id=2),
              check("ci", "failure", started=T0, id=1))
    assert gate(make_pr(checks=checks), "checks").state == "passed"


def test_rerun_in_progress_makes_the_check_wait_again():
    """A re-run still running replaces the earlier failure: wait, don't fail."""
    checks = (check("ci", "failure", started=T0, id=1),
              check("ci", status="in_progress", started=T0 + timedelta(minutes=1), id=2))
    assert gate(make_pr(checks=checks), "checks").state == "waiting"


def test_latest_by_id_then_list_order():
    """Without start times the larger id wins; without ids the later entry wins."""
    by_id = (check("ci", "success", id=9), check("ci", "failure", id=3))
    assert gate(make_pr(checks=by_id), "checks").state == "passed"
    by_order = (check("ci", "failure"), check("ci", "success"))
    assert gate(make_pr(checks=by_order), "checks").state == "passed"


def test_status_success_under_same_name_cannot_hide_a_check_run_failure():
    """Anyone with status access could post `ci = success`; a failing run of `ci` still fails."""
    checks = (check("ci", "failure", app="github-actions", started=T0),
              CheckResult.from_status("ci", "success", HEAD, updated_at=T0 + timedelta(hours=1)))
    result = gate(make_pr(checks=checks), "checks", required_checks=("ci",))
    assert result.state == "failing"


@pytest.mark.parametrize("state,expected", [
    ("pending", "waiting"), ("success", "passed"), ("failure", "failing"), ("error", "failing"),
])
def test_commit_status_states(state, expected):
    """Commit statuses map onto the check model: pending waits, error fails."""
    status = CheckResult.from_status("ci/legacy", state, HEAD, "https://ci.example/1")
    assert status.state == expected
    assert gate(make_pr(checks=(status,)), "checks").state == expected


def test_failing_checks_link_to_first_failure_and_carry_the_runs():
    """The gate links the failing run so the table and the dequeue comment can point at it."""
    checks = (check("a", url="https://ci/a"), check("b", "failure", url="https://ci/b"))
    result = gate(make_pr(checks=checks), "checks")
    assert result.link == "https://ci/b"
    assert [c.name for c in result.checks] == ["b"]


def test_waiting_reason_counts_running_and_missing():
    checks = (check("ci", status="queued"),)
    result = gate(make_pr(checks=checks), "checks", required_checks=("ci", "lint"))
    assert result.reason == "waiting for checks (1 running, 1 not reported yet)"
    assert result.names == ("ci", "lint")


def test_verdict_lists_latest_checks_considered():
    """The verdict keeps the latest run of each check on the head, for the detail table."""
    pr = make_pr(checks=(check("ci", "failure", id=1), check("ci", id=2), check("x", sha=OLD), check("fleet/gates")))
    verdict = evaluate_gates(pr, make_config())
    assert [(c.name, c.conclusion) for c in verdict.checks] == [("ci", "success")]
    assert latest_checks(pr) == verdict.checks


def test_custom_own_check_name():
    """The excluded name follows own_check_name."""
    pr = make_pr(checks=(check("ci"), check("my/gates", "failure")))
    assert evaluate_gates(pr, make_config(), own_check_name="my/gates").conclusion == "success"
    assert evaluate_gates(pr, make_config()).conclusion == "failure"


# --- reviews ------------------------------------------------------------------------------

def review(who, state, commit=HEAD, at=None) -> Review:
    return Review(who, state, commit, at)


REVIEW_CASES = [
    ("zero-required", (), 0, "passed"),
    ("one-required-none", (), 1, "failing"),
    ("one-required-approved", (review("bob", "APPROVED"),), 1, "passed"),
    ("approved-on-older-commit-does-not-count", (review("bob", "APPROVED", OLD),), 1, "failing"),
    ("approval-without-commit-does-not-count", (review("bob", "APPROVED", None),), 1, "failing"),
    ("read-only-approval-does-not-count", (review("rita", "APPROVED"),), 1, "failing"),
    ("triage-approval-does-not-count", (review("tom", "APPROVED"),), 1, "failing"),
    ("unknown-permission-does-not-count", (review("mallory", "APPROVED"),), 1, "failing"),
    ("maintain-approval-counts", (review("zed", "APPROVED"),), 1, "passed"),
    ("permission-matched-case-insensitively", (review("Bob", "APPROVED"),), 1, "passed"),
    ("two-writers-on-head", (review("bob", "APPROVED"), review("amy", "APPROVED")), 2, "passed"),
    ("writer-plus-outsider", (review("bob", "APPROVED"), review("rita", "APPROVED")), 2, "failing"),
    ("two-required-one", (review("bob", "APPROVED"),), 2, "failing"),
    ("comment-after-approval-keeps-it", (review("bob", "APPROVED"), review("bob", "COMMENTED")), 1, "passed"),
    ("dismissed-approval", (review("bob", "APPROVED"), review("bob", "DISMISSED")), 1, "failing"),
    ("changes-then-approve", (review("bob", "CHANGES_REQUESTED"), review("bob", "APPROVED")), 1, "passed"),
    ("self-approval-ignored", (review("alice", "APPROVED"),), 1, "failing"),
    ("self-approval-ignored-any-case", (review("ALICE", "APPROVED"),), 1, "failing"),
    ("pending-ignored", (review("bob", "PENDING"),), 1, "failing"),
]


@pytest.mark.parametrize("reviews,required,state", [c[1:] for c in REVIEW_CASES], ids=[c[0] for c in REVIEW_CASES])
def test_reviews_gate(reviews, required, state):
    """Approvals are each reviewer's standing review; comments never override, authors never count."""
    assert gate(make_pr(reviews=reviews), "reviews", required_approvals=required).state == state


def test_reviews_gate_says_why_an_approval_did_not_count():
    """Stale and outsider approvals are named, apart from the ones that count, quoted safely."""
    reviews = (review("bob", "APPROVED"), review("amy", "APPROVED", OLD), review("@evil|`x`", "APPROVED"))
    result = gate(make_pr(reviews=reviews), "reviews", required_approvals=2)
    assert (result.state, result.names) == ("failing", ("bob",))
    assert [(n.reason, n.names) for n in result.notes] == [
        ("not counted, approved an older commit", ("amy",)),
        ("not counted, no write access", ("@evil|`x`",)),
    ]
    from app.gates.check_run import md_gate_reason

    rendered = md_gate_reason(result)
    assert "approved an older commit: `amy`" in rendered
    # The login is inert: inside a code span (no mention), its pipe escaped for the table.
    assert rendered.endswith("not counted, no write access: `` @evil\\|`x` ``")


def test_no_reviewer_permissions_means_no_approval_counts():
    """A snapshot without looked-up permissions (fail closed): nobody's approval counts."""
    pr = make_pr(reviews=(review("bob", "APPROVED"),), reviewer_permissions=())
    assert gate(pr, "reviews", required_approvals=1).state == "failing"


def test_reviews_ordered_by_submitted_at_when_known():
    """A list out of order still resolves to the latest submission."""
    reviews = (review("bob", "APPROVED", at=T0 + timedelta(hours=1)),
               review("bob", "CHANGES_REQUESTED", at=T0))
    assert latest_reviews(make_pr(reviews=reviews))["bob"].state == "APPROVED"


CHANGES_CASES = [
    ("none", (), True, "passed", ()),
    ("outstanding", (review("bob", "CHANGES_REQUESTED"),), True, "failing", ("bob",)),
    ("disabled", (review("bob", "CHANGES_REQUESTED"),), False, "passed", ()),
    ("resolved-by-approval", (review("bob", "CHANGES_REQUESTED"), review("bob", "APPROVED")), True, "passed", ()),
    ("comment-does-not-resolve", (review("bob", "CHANGES_REQUESTED"), review("bob", "COMMENTED")), True, "failing", ("bob",)),
    ("dismissed", (review("bob", "CHANGES_REQUESTED"), review("bob", "DISMISSED")), True, "passed", ()),
    ("two-reviewers", (review("zed", "CHANGES_REQUESTED"), review("amy", "CHANGES_REQUESTED")), True, "failing", ("amy", "zed")),
    # An outsider cannot block merges; a writer's change request stands across pushes, like GitHub's.
    ("read-only-cannot-block", (review("rita", "CHANGES_REQUESTED"),), True, "passed", ()),
    ("unknown-permission-cannot-block", (review("mallory", "CHANGES_REQUESTED"),), True, "passed", ()),
    ("stands-across-pushes", (review("bob", "CHANGES_REQUESTED", OLD),), True, "failing", ("bob",)),
    ("writer-blocks-outsider-ignored", (review("bob", "CHANGES_REQUESTED"), review("rita", "CHANGES_REQUESTED")), True, "failing", ("bob",)),
]


@pytest.mark.parametrize("reviews,block,state,names", [c[1:] for c in CHANGES_CASES], ids=[c[0] for c in CHANGES_CASES])
def test_changes_requested_gate(reviews, block, state, names):
    """An outstanding change request blocks (when configured) and names the reviewers."""
    result = gate(make_pr(reviews=reviews), "changes_requested", block_on_changes_requested=block)
    assert (result.state, result.names) == (state, names)


# --- labels, draft, linked task, conflict, size -------------------------------------------

LABEL_CASES = [
    ("no-labels", (), {}, "passed", ()),
    ("harmless", ("bug", "agent"), {}, "passed", ()),
    ("default-wip", ("wip",), {}, "failing", ("wip",)),
    ("default-do-not-merge", ("do-not-merge", "bug"), {}, "failing", ("do-not-merge",)),
    ("case-insensitive", ("WIP",), {}, "failing", ("WIP",)),
    ("custom-list", ("hold",), {"blocking_labels": ("hold",)}, "failing", ("hold",)),
    ("custom-list-replaces-default", ("wip",), {"blocking_labels": ("hold",)}, "passed", ()),
    ("empty-list", ("wip",), {"blocking_labels": ()}, "passed", ()),
]


@pytest.mark.parametrize("labels,config,state,names", [c[1:] for c in LABEL_CASES], ids=[c[0] for c in LABEL_CASES])
def test_labels_gate(labels, config, state, names):
    """Blocking labels fail the gate and are named as the PR spells them."""
    result = gate(make_pr(labels=labels), "labels", **config)
    assert (result.state, result.names) == (state, names)


@pytest.mark.parametrize("draft,state", [(False, "passed"), (True, "failing")])
def test_draft_gate(draft, state):
    assert gate(make_pr(draft=draft), "draft").state == state


@pytest.mark.parametrize("tasks,required,state", [
    ((12,), True, "passed"), ((), True, "failing"), ((), False, "passed"), ((3, 1, 3), True, "passed"),
])
def test_linked_task_gate(tasks, required, state):
    """A PR must be linked to a task unless require_linked_task is off."""
    assert gate(make_pr(linked_tasks=tasks), "linked_task", require_linked_task=required).state == state


def test_linked_task_reason_lists_tasks_once_sorted():
    assert gate(make_pr(linked_tasks=(3, 1, 3)), "linked_task").reason == "linked to #1, #3"


@pytest.mark.parametrize("mergeable,mergeable_state,state", [
    (True, "clean", "passed"),
    (True, "behind", "passed"),  # behind is the queue's business, not a conflict
    (True, "unstable", "passed"),
    (None, "unknown", "waiting"),
    (False, "dirty", "failing"),
    (None, "dirty", "failing"),
])
def test_conflict_gate(mergeable, mergeable_state, state):
    """mergeable None means GitHub is still computing: wait; False is a conflict."""
    result = gate(make_pr(mergeable=mergeable, mergeable_state=mergeable_state), "conflict")
    assert result.state == state
    if state == "failing":
        assert result.names == ("main",)


SIZE_CASES = [
    ("no-limits", dict(changed_files=999, additions=10**6), {}, "passed"),
    ("files-within", dict(changed_files=10), {"max_changed_files": 10}, "passed"),
    ("files-over", dict(changed_files=11), {"max_changed_files": 10}, "failing"),
    ("lines-within", dict(additions=60, deletions=40), {"max_changed_lines": 100}, "passed"),
    ("lines-over", dict(additions=60, deletions=41), {"max_changed_lines": 100}, "failing"),
    ("both-over", dict(changed_files=5, additions=500), {"max_changed_files": 1, "max_changed_lines": 1}, "failing"),
]


@pytest.mark.parametrize("pr_fields,config,state", [c[1:] for c in SIZE_CASES], ids=[c[0] for c in SIZE_CASES])
def test_size_gate(pr_fields, config, state):
    """Optional limits on files and on lines added plus deleted."""
    assert gate(make_pr(**pr_fields), "size", **config).state == state


def test_size_reason_names_both_limits():
    result = gate(make_pr(changed_files=5, additions=500), "size", max_changed_files=1, max_changed_lines=1)
    assert result.reason == "too large: 5 files changed (limit 1), 500 lines changed (limit 1)"


# --- overall conclusion -------------------------------------------------------------------

def _verdict(*states) -> GateVerdict:
    return GateVerdict(HEAD, tuple(GateResult("checks", s, "r") for s in states))


@pytest.mark.parametrize("states,conclusion", [
    (("passed", "passed"), "success"),
    (("passed", "waiting"), "waiting"),
    (("waiting", "failing"), "failure"),
    (("failing", "passed"), "failure"),
    ((), "success"),
])
def test_overall_conclusion(states, conclusion):
    """Failing beats waiting beats success."""
    assert _verdict(*states).conclusion == conclusion


def test_waiting_on_checks_and_failing_label_is_failure():
    verdict = evaluate_gates(make_pr(checks=(check(status="queued"),), labels=("wip",)), make_config())
    assert verdict.conclusion == "failure"
    assert [r.gate for r in verdict.failing] == ["labels"]
    assert [r.gate for r in verdict.waiting] == ["checks"]


def test_result_unknown_gate_raises():
    with pytest.raises(KeyError):
        _verdict("passed").result("size")


def test_describe_is_plain_text():
    assert GateResult("labels", "failing", "blocking label", ("wip",)).describe() == "blocking label: wip"
    assert GateResult("draft", "passed", "ready").describe() == "ready"


def test_snapshot_is_frozen():
    with pytest.raises(Exception):
        make_pr().head_sha = OLD  # type: ignore[misc]
    assert replace(make_pr(), draft=True).draft


def test_only_fleet_gates_required_still_warns():
    """Requiring only Fleet's own check is no requirement at all: any green check merges."""
    from app.gates.rules import NO_REQUIRED_CHECKS_WARNING

    assert evaluate_gates(make_pr(), make_config()).warnings == (NO_REQUIRED_CHECKS_WARNING,)
    assert evaluate_gates(make_pr(), make_config(required_checks=("fleet/gates",))).warnings == (
        NO_REQUIRED_CHECKS_WARNING,)
    assert evaluate_gates(make_pr(), make_config(required_checks=("ci",))).warnings == ()
