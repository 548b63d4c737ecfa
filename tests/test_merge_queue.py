"""Pure tests for the merge queue: ordering, every step transition, GitHub answers, commands."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.commands.parse import COMMANDS, command_allowed
from app.gates.rules import CheckResult, GateResult, GateVerdict, PullSnapshot, evaluate_gates
from app.queue.commands import QueueCommand, decide_queue_command, parse_queue_command
from app.queue.messages import commit_message, commit_title, render_commit_template
from app.queue.rules import decide_merge_result, decide_step, decide_update_result, is_behind
from app.queue.state import (
    AcceptHead, AdvanceToNext, CloseLinkedTasks, Dequeue, EnqueueEntry, MAX_MERGE_ATTEMPTS,
    MAX_UPDATE_ATTEMPTS, MarkMerged, Merge, QueueEntry, QueueSnapshot, Reevaluate, Retry,
    SetPriority, StartEntry, UPDATE_LANDING, UpdateBranch, WaitForChecks, WaitForUpdate,
    current_entry, new_entry, observe_push, order_queue, positions, transition,
)
from app.repos.config import GatesConfig, QueueConfig
from tests import builders

HEAD = "h" * 40
NEW = "n" * 40
BASE = "b" * 40
BASE2 = "c" * 40
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(minutes=10)
ADVANCE = AdvanceToNext("o/r", "main")


def check(name="ci", conclusion="success", *, status="completed", sha=HEAD, url=None) -> CheckResult:
    return builders.check(name, conclusion, sha=sha, status=status, url=url, app="actions")


def make_pr(**overrides) -> PullSnapshot:
    """A green, up-to-date PR #7; tests override one thing."""
    head = overrides.pop("head_sha", HEAD)
    return builders.make_pr(head_sha=head, **{"body": "Does the thing.\n\nCloses #12", "checks": (check(sha=head),),
                                             "merge_base_sha": BASE, **overrides})


def make_entry(pr_number=7, **overrides) -> QueueEntry:
    defaults = dict(pr_number=pr_number, queued_at=T0 - timedelta(hours=1), queued_by="alice")
    defaults.update(overrides)
    return QueueEntry(**defaults)


def flying(pr_number=7, state="waiting_checks", sha=HEAD, **overrides) -> QueueEntry:
    """An entry in flight since T0 on ``sha``."""
    return make_entry(pr_number, state=state, head_sha_at_start=sha, expected_head_sha=sha,
                      started_at=T0, head_changed_at=T0, **overrides)


def make_queue(*entries) -> QueueSnapshot:
    return QueueSnapshot("o/r", "main", tuple(entries))


def make_config(**overrides) -> QueueConfig:
    return QueueConfig(**overrides)


def step(queue, pr, *, verdict="auto", base=BASE, config=None, now=NOW):
    if verdict == "auto":
        verdict = evaluate_gates(pr, GatesConfig()) if pr is not None else None
    return decide_step(queue, pr, verdict, base, config or make_config(), now)


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


# --- ordering -----------------------------------------------------------------------------

def test_order_by_priority_then_time_then_number():
    """High before normal before low; equal priority by time queued, then PR number."""
    entries = [
        make_entry(1, priority="low", queued_at=T0),
        make_entry(2, priority="normal", queued_at=T0 + timedelta(seconds=5)),
        make_entry(3, priority="high", queued_at=T0 + timedelta(minutes=9)),
        make_entry(5, priority="normal", queued_at=T0),
        make_entry(4, priority="normal", queued_at=T0),
    ]
    assert [e.pr_number for e in order_queue(entries)] == [3, 4, 5, 2, 1]


def test_in_flight_entry_stays_first_and_finished_entries_are_dropped():
    """Priority never preempts the in-flight PR; merged/failed/dequeued entries are not in the queue."""
    entries = [
        make_entry(1, priority="high"),
        flying(2, priority="low"),
        make_entry(3, state="merged"), make_entry(4, state="failed"), make_entry(5, state="dequeued"),
    ]
    assert [e.pr_number for e in order_queue(entries)] == [2, 1]
    assert positions(make_queue(*entries)) == {2: 1, 1: 2}
    assert current_entry(make_queue(*entries)).pr_number == 2


def test_current_entry_of_empty_queue():
    assert current_entry(make_queue()) is None
    assert current_entry(make_queue(make_entry(state="merged"))) is None


# --- decide_step: starting ----------------------------------------------------------------

def test_empty_queue_does_nothing():
    assert step(make_queue(), None) == []


def test_start_green_up_to_date_head_and_merge_in_the_same_step():
    """Nothing in flight: start the head of the queue and take its first step at once."""
    actions = step(make_queue(make_entry()), make_pr())
    assert actions == [
        StartEntry(7, HEAD),
        Merge(7, HEAD, "squash", "Add thing (#7)", "Merged by Fleet from #7 by alice."),
    ]


def test_start_behind_head_updates_it():
    actions = step(make_queue(make_entry()), make_pr(merge_base_sha=BASE2))
    assert actions == [StartEntry(7, HEAD), UpdateBranch(7, HEAD, "merge")]


def test_start_picks_the_highest_priority_entry():
    queue = make_queue(make_entry(3, queued_at=T0 - timedelta(days=1)), make_entry(7, priority="high"))
    assert step(queue, make_pr())[0] == StartEntry(7, HEAD)


def test_snapshot_for_another_pr_is_a_caller_bug():
    with pytest.raises(ValueError):
        step(make_queue(make_entry(3)), make_pr())


ENDED_CASES = [
    ("not-found", None, "not_found"),
    ("closed", make_pr(state="closed"), "closed"),
    ("draft", make_pr(draft=True), "draft"),
    ("base-changed", make_pr(base_ref="develop"), "base_changed"),
]


@pytest.mark.parametrize("entry", [make_entry(), flying()], ids=["queued", "in-flight"])
@pytest.mark.parametrize("pr,code", [c[1:] for c in ENDED_CASES], ids=[c[0] for c in ENDED_CASES])
def test_pr_that_can_no_longer_merge_is_dequeued_and_the_queue_moves_on(entry, pr, code):
    """Closed, gone, draft or retargeted: dequeue with a label and advance (never start it)."""
    actions = step(make_queue(entry), pr)
    assert kinds(actions) == ["Dequeue", "AdvanceToNext"]
    assert actions[0].reason_code == code
    assert actions[0].label == "fleet:queue-failed"
    assert actions[0].message.startswith("Removed from the merge queue: ")
    assert "\n" not in actions[0].message


@pytest.mark.parametrize("entry", [make_entry(), flying(), flying(state="merging", attempts=1)])
def test_pr_merged_elsewhere_is_marked_merged(entry):
    """A PR merged by someone else (or by a merge whose answer was lost) is recorded, not failed."""
    pr = make_pr(merged=True, state="closed", merge_commit_sha="m" * 40)
    assert step(make_queue(entry), pr) == [
        MarkMerged(7, HEAD, "m" * 40), CloseLinkedTasks(7, (12,)), ADVANCE,
    ]


def test_merged_without_tasks_closes_nothing():
    pr = make_pr(merged=True, state="closed", linked_tasks=())
    assert kinds(step(make_queue(flying()), pr)) == ["MarkMerged", "AdvanceToNext"]


# --- decide_step: in flight ---------------------------------------------------------------

BEHIND_CASES = [
    ("mergeable-state-behind", dict(mergeable_state="behind"), BASE),
    ("merge-base-is-old", dict(merge_base_sha=BASE2), BASE),
    ("merge-base-unknown", dict(merge_base_sha=None), BASE),
    ("base-tip-unknown", dict(), None),
]


@pytest.mark.parametrize("pr_fields,base", [c[1:] for c in BEHIND_CASES], ids=[c[0] for c in BEHIND_CASES])
def test_behind_pr_is_updated_with_expected_head_sha(pr_fields, base):
    """Behind its base (or unknown): update-branch guarded by the current head, never merge."""
    pr = make_pr(**pr_fields)
    assert is_behind(pr, base)
    assert step(make_queue(flying()), pr, base=base) == [UpdateBranch(7, HEAD, "merge")]


def test_update_method_from_config():
    actions = step(make_queue(flying()), make_pr(merge_base_sha=BASE2), config=make_config(update_method="rebase"))
    assert actions == [UpdateBranch(7, HEAD, "rebase")]


def test_base_moving_while_waiting_for_checks_updates_again():
    """A base branch that moves while the PR is in flight sends it back to update."""
    pr = make_pr(checks=(check(status="in_progress"),))
    assert step(make_queue(flying()), pr, base=BASE2) == [UpdateBranch(7, HEAD, "merge")]


def test_failing_checks_on_a_behind_head_update_instead_of_failing():
    """Checks on a stale base may be fixed by the update: update first, judge the new head."""
    pr = make_pr(checks=(check(conclusion="failure"),), merge_base_sha=BASE2)
    assert step(make_queue(flying()), pr) == [UpdateBranch(7, HEAD, "merge")]


def test_update_not_landed_yet_waits():
    entry = flying(state="updating", update_requested_at=NOW - timedelta(seconds=30), update_attempts=1)
    pr = make_pr(merge_base_sha=BASE2)
    assert step(make_queue(entry), pr) == [WaitForUpdate(7, HEAD, NOW - timedelta(seconds=30) + UPDATE_LANDING)]


def test_update_that_never_landed_is_reissued():
    entry = flying(state="updating", update_requested_at=NOW - UPDATE_LANDING, update_attempts=1)
    assert step(make_queue(entry), make_pr(merge_base_sha=BASE2)) == [UpdateBranch(7, HEAD, "merge")]


def test_update_after_failed_call_is_reissued_at_once():
    """After a 5xx on update-branch (Retry cleared update_requested_at) the step re-issues it."""
    entry = flying(state="updating", update_requested_at=None, update_attempts=1)
    assert step(make_queue(entry), make_pr(merge_base_sha=BASE2)) == [UpdateBranch(7, HEAD, "merge")]


def test_update_attempts_are_bounded():
    entry = flying(state="updating", update_requested_at=NOW - UPDATE_LANDING, update_attempts=MAX_UPDATE_ATTEMPTS)
    actions = step(make_queue(entry), make_pr(merge_base_sha=BASE2))
    assert kinds(actions) == ["Dequeue", "AdvanceToNext"]
    assert actions[0].reason_code == "update_failed"


def test_own_update_landing_unrecorded_is_accepted():
    """While updating, a new head that contains the base tip is Fleet's update (late webhook)."""
    entry = flying(state="updating", update_requested_at=NOW - timedelta(seconds=20), update_attempts=1)
    pr = make_pr(head_sha=NEW, checks=(check(sha=NEW, status="queued"),))
    actions = step(make_queue(entry), pr)
    assert actions == [AcceptHead(7, NEW, HEAD, "update"), WaitForChecks(7, NEW, NOW + timedelta(minutes=60))]


def test_waiting_gates_wait_until_the_ci_deadline():
    """Gates waiting on the head: wait, with the deadline ci_timeout after the head changed."""
    pr = make_pr(checks=(check(status="in_progress"),))
    assert step(make_queue(flying()), pr) == [WaitForChecks(7, HEAD, T0 + timedelta(minutes=60))]


def test_mergeability_being_computed_waits():
    assert kinds(step(make_queue(flying()), make_pr(mergeable=None))) == ["WaitForChecks"]


def test_ci_timeout_dequeues_naming_what_was_pending():
    pr = make_pr(checks=(check("slow-e2e", status="in_progress"),))
    actions = step(make_queue(flying()), pr, now=T0 + timedelta(minutes=60), config=make_config(ci_timeout="1h"))
    assert kinds(actions) == ["Dequeue", "AdvanceToNext"]
    assert actions[0].reason_code == "ci_timeout"
    assert actions[0].message == (
        "Removed from the merge queue: gates did not turn green within 1h00m on `hhhhhhhhhhhh` "
        "(still waiting for `slow-e2e`). `/queue` again to retry."
    )


def test_ci_timeout_without_any_check_reported():
    pr = make_pr(checks=())
    actions = step(make_queue(flying()), pr, now=T0 + timedelta(hours=2))
    assert actions[0].reason_code == "ci_timeout"
    assert "(still waiting for `checks`)" in actions[0].message


def test_failing_check_dequeues_naming_and_linking_it():
    pr = make_pr(checks=(check("lint", "failure", url="https://ci.example/42"), check("unit")))
    actions = step(make_queue(flying()), pr)
    assert actions == [Dequeue(
        7, "checks_failed",
        "Removed from the merge queue: check `lint` ([details](https://ci.example/42)) failed on "
        "`hhhhhhhhhhhh`. Fix it and `/queue` again.",
    ), ADVANCE]


def test_many_failing_checks_are_capped():
    pr = make_pr(checks=tuple(check(f"c{i}", "failure") for i in range(8)))
    message = step(make_queue(flying()), pr)[0].message
    assert "and 3 more" in message and message.count("`c") == 5


def test_conflict_dequeues():
    actions = step(make_queue(flying()), make_pr(mergeable=False, mergeable_state="dirty"))
    assert actions == [Dequeue(
        7, "conflict",
        "Removed from the merge queue: it has a merge conflict with `main`. Resolve it and `/queue` again.",
    ), ADVANCE]


def test_conflict_wins_over_behind():
    """A conflicting PR is not updated (update-branch would fail): dequeue."""
    actions = step(make_queue(flying()), make_pr(mergeable=False, merge_base_sha=BASE2))
    assert actions[0].reason_code == "conflict"


@pytest.mark.parametrize("pr_fields,gate", [
    (dict(labels=("do-not-merge",)), "labels"),
    (dict(linked_tasks=()), "linked_task"),
    (dict(reviews=()), None),
])
def test_non_check_gate_failures_dequeue_even_when_behind(pr_fields, gate):
    pr = make_pr(merge_base_sha=BASE2, **pr_fields)
    actions = step(make_queue(flying()), pr)
    if gate is None:
        assert kinds(actions) == ["UpdateBranch"]
        return
    assert actions[0].reason_code == "gates_failed"
    assert f"{gate.replace('_', chr(92) + '_')}:" in actions[0].message


def test_gates_failed_message_quotes_hostile_label_safely():
    hostile = "wip\n@everyone <b>"
    pr = make_pr(labels=(hostile,))
    verdict = evaluate_gates(pr, GatesConfig(blocking_labels=(hostile,)))
    message = step(make_queue(flying()), pr, verdict=verdict)[0].message
    assert message == (
        "Removed from the merge queue: gates failing — labels: blocking label: `wip @everyone <b>`. "
        "Fix it and `/queue` again."
    )


def test_required_approvals_fail_the_queue_entry():
    pr = make_pr()
    verdict = evaluate_gates(pr, GatesConfig(required_approvals=1))
    actions = step(make_queue(flying()), pr, verdict=verdict)
    assert actions[0].reason_code == "gates_failed"


def test_foreign_push_while_in_flight_dequeues():
    """Someone pushed while in flight: never merge the new head untested; dequeue by default."""
    pr = make_pr(head_sha=NEW)
    actions = step(make_queue(flying()), pr)
    assert actions == [Dequeue(
        7, "head_changed",
        "Removed from the merge queue: new commits were pushed while it was in flight "
        "(`hhhhhhhhhhhh` → `nnnnnnnnnnnn`). `/queue` again when it is ready.",
    ), ADVANCE]


@pytest.mark.parametrize("state", ["updating", "merging"])
def test_foreign_push_in_other_states_dequeues(state):
    """While updating, a new head that does not contain the base tip is not Fleet's update."""
    entry = flying(state=state, update_requested_at=NOW, update_attempts=1, attempts=1)
    actions = step(make_queue(entry), make_pr(head_sha=NEW, merge_base_sha=BASE2))
    assert actions[0].reason_code == "head_changed"


def test_foreign_push_with_requeue_on_push_retests_the_new_head():
    """requeue_on_push: accept the pushed head, restart the CI clock and re-test."""
    pr = make_pr(head_sha=NEW, checks=(check(sha=NEW, status="queued"),))
    actions = step(make_queue(flying()), pr, config=make_config(requeue_on_push=True))
    assert actions == [AcceptHead(7, NEW, HEAD, "push"), WaitForChecks(7, NEW, NOW + timedelta(minutes=60))]


def test_requeue_on_push_still_needs_green_on_the_new_head():
    pr = make_pr(head_sha=NEW)
    actions = step(make_queue(flying()), pr, config=make_config(requeue_on_push=True))
    assert actions[-1] == Merge(7, NEW, "squash", "Add thing (#7)", "Merged by Fleet from #7 by alice.")


def test_verdict_for_another_sha_is_never_merged():
    """A stale verdict (computed for an older head) counts as 'still waiting'."""
    pr = make_pr()
    stale = GateVerdict(NEW, (GateResult("checks", "passed", "ok"),))
    assert kinds(step(make_queue(flying()), pr, verdict=stale)) == ["WaitForChecks"]
    assert kinds(step(make_queue(flying()), pr, verdict=None)) == ["WaitForChecks"]


def test_green_exact_head_merges_with_sha_and_templates():
    config = make_config(merge_method="merge", commit_title="{title} [#{number}] by {author}", commit_message="{body}\n\nvia Fleet")
    actions = step(make_queue(flying()), make_pr(), config=config)
    assert actions == [Merge(7, HEAD, "merge", "Add thing [#7] by alice", "Does the thing.\n\nCloses #12\n\nvia Fleet")]


def test_crash_while_merging_retries_the_merge():
    """State merging but the PR is still open: merge again (same sha, bounded)."""
    entry = flying(state="merging", attempts=1)
    assert kinds(step(make_queue(entry), make_pr())) == ["Merge"]


def test_merge_attempts_are_bounded():
    entry = flying(state="merging", attempts=MAX_MERGE_ATTEMPTS)
    actions = step(make_queue(entry), make_pr())
    assert actions[0].reason_code == "merge_failed"


def test_only_the_in_flight_entry_is_stepped():
    """With an entry in flight, queued entries are never started."""
    queue = make_queue(make_entry(3, priority="high"), flying(7))
    assert "StartEntry" not in kinds(step(queue, make_pr(checks=(check(status="queued"),))))


# --- observe_push and transitions ---------------------------------------------------------

def test_observe_push_accepts_fleets_own_update():
    entry = flying(state="updating", update_requested_at=NOW, update_attempts=1)
    seen = observe_push(entry, before=HEAD, after=NEW, by_fleet=True, now=NOW)
    assert (seen.state, seen.expected_head_sha, seen.head_changed_at, seen.update_attempts) == ("waiting_checks", NEW, NOW, 0)
    assert seen.head_sha_at_start == HEAD


@pytest.mark.parametrize("state,before,by_fleet", [
    ("updating", HEAD, False), ("updating", BASE2, True), ("waiting_checks", HEAD, True),
])
def test_observe_push_leaves_other_pushes_to_decide_step(state, before, by_fleet):
    entry = flying(state=state, update_requested_at=NOW)
    assert observe_push(entry, before=before, after=NEW, by_fleet=by_fleet, now=NOW) == entry


TRANSITIONS = [
    (make_entry(), StartEntry(7, HEAD),
     dict(state="waiting_checks", started_at=NOW, head_sha_at_start=HEAD, expected_head_sha=HEAD, head_changed_at=NOW)),
    (flying(attempts=2, update_attempts=2, reevaluations=1), AcceptHead(7, NEW, HEAD, "push"),
     dict(state="waiting_checks", expected_head_sha=NEW, head_changed_at=NOW, attempts=0, update_attempts=0, reevaluations=0, head_sha_at_start=HEAD)),
    (flying(), UpdateBranch(7, HEAD, "merge"), dict(state="updating", update_requested_at=NOW, update_attempts=1)),
    (flying(state="updating"), WaitForChecks(7, HEAD, NOW), dict(state="waiting_checks")),
    (flying(state="updating", update_requested_at=T0), WaitForUpdate(7, HEAD, NOW), dict(state="updating", update_requested_at=T0)),
    (flying(), Merge(7, HEAD, "squash", "t", "m"), dict(state="merging", attempts=1)),
    (flying(state="merging"), MarkMerged(7, HEAD), dict(state="merged")),
    (flying(), Dequeue(7, "checks_failed", "x"), dict(state="failed")),
    (make_entry(), Dequeue(7, "user_request", "x", None), dict(state="dequeued")),
    (flying(state="updating", update_requested_at=T0), Retry(7, 1, timedelta(seconds=10), "500"), dict(update_requested_at=None)),
    (flying(state="merging", attempts=1), Retry(7, 1, timedelta(seconds=10), "500"), dict(state="merging", attempts=1)),
    (flying(), Reevaluate(7, "409"), dict(reevaluations=1)),
    (make_entry(), SetPriority(7, "high"), dict(priority="high")),
    (flying(), AdvanceToNext("o/r", "main"), dict(state="waiting_checks")),
    (flying(), Merge(8, HEAD, "squash", "t", "m"), dict(state="waiting_checks", attempts=0)),
]


@pytest.mark.parametrize("entry,action,expected", TRANSITIONS, ids=[type(t[1]).__name__ + str(i) for i, t in enumerate(TRANSITIONS)])
def test_transition(entry, action, expected):
    """Each action's effect on the entry's row (actions about another PR change nothing)."""
    after = transition(entry, action, NOW)
    assert {k: getattr(after, k) for k in expected} == expected


def test_new_entry_from_enqueue():
    entry = new_entry(EnqueueEntry(9, "high", "bob"), NOW)
    assert (entry.pr_number, entry.priority, entry.queued_by, entry.queued_at, entry.state) == (9, "high", "bob", NOW, "queued")


# --- GitHub's answer to the merge ---------------------------------------------------------

MERGE = Merge(7, HEAD, "squash", "Add thing (#7)", "")


def merge_result(code, message, **entry_fields):
    entry = flying(state="merging", attempts=1, **entry_fields)
    return decide_merge_result(MERGE, code, message, entry=entry, pr=make_pr(), merge_commit_sha="m" * 40)


def test_merge_200_records_closes_tasks_and_advances():
    assert merge_result(200, "Pull Request successfully merged") == [
        MarkMerged(7, HEAD, "m" * 40), CloseLinkedTasks(7, (12,)), ADVANCE,
    ]


@pytest.mark.parametrize("code,message", [
    (409, "Head branch was modified. Review and try the merge again."),
    (405, "Base branch was modified. Review and try the merge again."),
])
def test_merge_head_or_base_moved_is_reevaluated_once(code, message):
    """GitHub says something moved: re-evaluate (the step will update or dequeue), once."""
    assert kinds(merge_result(code, message)) == ["Reevaluate"]
    second = merge_result(code, message, reevaluations=1)
    assert kinds(second) == ["Dequeue", "AdvanceToNext"]
    assert second[0].reason_code == "merge_refused"


@pytest.mark.parametrize("code,message", [
    (405, "Pull Request is not mergeable"),
    (405, 'Required status check "ci" is expected.'),
    (422, "Validation Failed"),
    (404, "Not Found"),
    (403, "Resource not accessible by integration"),
])
def test_merge_refused_dequeues_quoting_github(code, message):
    actions = merge_result(code, message)
    assert actions == [Dequeue(
        7, "merge_refused",
        f"Removed from the merge queue: GitHub refused the merge of `hhhhhhhhhhhh` ({code}): `{message}`",
    ), ADVANCE]


def test_merge_refusal_message_is_quoted_safely():
    message = merge_result(422, "bad `x` @org/team <img>\nsecond line")[0].message
    assert message.endswith("(422): ``bad `x` @org/team <img> second line``")


@pytest.mark.parametrize("code,message", [(500, "boom"), (502, ""), (429, "slow down"), (403, "API rate limit exceeded")])
def test_merge_transient_errors_retry_with_backoff(code, message):
    """5xx and rate limits are transient: step again later (the step re-checks before merging)."""
    assert merge_result(code, message) == [Retry(7, 1, timedelta(seconds=10), f"merge answered {code}")]
    entry = flying(state="merging", attempts=2)
    again = decide_merge_result(MERGE, code, message, entry=entry, pr=make_pr())
    assert again[0].delay == timedelta(seconds=20)


def test_merge_retry_honours_retry_after():
    entry = flying(state="merging", attempts=1)
    actions = decide_merge_result(MERGE, 429, "", entry=entry, pr=make_pr(), retry_after=timedelta(minutes=2))
    assert actions[0].delay == timedelta(minutes=2)


def test_merge_transient_errors_are_bounded():
    entry = flying(state="merging", attempts=MAX_MERGE_ATTEMPTS)
    actions = decide_merge_result(MERGE, 503, "unavailable", entry=entry, pr=make_pr())
    assert kinds(actions) == ["Dequeue", "AdvanceToNext"]
    assert actions[0].reason_code == "github_error"


# --- GitHub's answer to update-branch -----------------------------------------------------

UPDATE = UpdateBranch(7, HEAD, "merge")


def update_result(code, message, **entry_fields):
    entry = flying(state="updating", update_requested_at=NOW, update_attempts=1, **entry_fields)
    return decide_update_result(UPDATE, code, message, entry=entry, pr=make_pr())


def test_update_accepted_waits_for_the_push():
    assert update_result(202, "Updating pull request branch.") == []


@pytest.mark.parametrize("message", ["expected head sha didn’t match current head ref.", "There are no new commits on the base branch."])
def test_update_stale_is_reevaluated_once(message):
    assert kinds(update_result(422, message)) == ["Reevaluate"]
    assert update_result(422, message, reevaluations=1)[0].reason_code == "update_failed"


def test_update_conflict_dequeues():
    actions = update_result(422, "merge conflict between base and head")
    assert actions[0].reason_code == "conflict"
    assert "`merge conflict between base and head`" in actions[0].message


def test_update_transient_error_retries():
    assert kinds(update_result(500, "oops")) == ["Retry"]


def test_update_forbidden_dequeues_quoting():
    actions = update_result(403, "Resource not accessible by integration")
    assert actions[0] == Dequeue(
        7, "update_failed",
        "Removed from the merge queue: GitHub refused to update the branch (403): `Resource not accessible by integration`",
    )


# --- commit templates ---------------------------------------------------------------------

@pytest.mark.parametrize("title", [
    "{0}", "{}", "{title}", "{number}", "{__class__.__mro__}", "{", "}", "{{x}}", "%s %d", "{body}",
])
def test_hostile_titles_never_crash_or_expand(title):
    """Braces in user text stay literal and are never expanded again."""
    pr = make_pr(title=title, body="BODY")
    assert commit_title(make_config(), pr) == f"{title} (#7)"
    assert render_commit_template("{title}|{body}", pr) == f"{title}|BODY"


@pytest.mark.parametrize("template,expected", [
    ("{title} (#{number})", "Add thing (#7)"),
    ("{unknown} {title}", "{unknown} Add thing"),
    ("{{title}}", "{Add thing}"),
    ("{author}: {title}", "alice: Add thing"),
    ("no placeholders", "no placeholders"),
])
def test_template_placeholders(template, expected):
    assert render_commit_template(template, make_pr()) == expected


def test_title_is_one_line_and_never_empty():
    pr = make_pr(title="first\nsecond\r\n  third")
    assert commit_title(make_config(), pr) == "first second third (#7)"
    assert commit_title(make_config(commit_title="{body}"), make_pr(body="a\nb")) == "a b"
    assert commit_title(make_config(commit_title="   "), make_pr()) == "Add thing (#7)"


def test_message_drops_html_comments_from_body():
    pr = make_pr(body="<!-- template hint -->Real text\n<!-- unterminated")
    assert commit_message(make_config(commit_message="{body}"), pr) == "Real text"


def test_default_message_never_copies_the_body():
    pr = make_pr(body="Closes #1\n\nsomething an outsider wrote")
    assert commit_message(make_config(), pr) == "Merged by Fleet from #7 by alice."


def test_message_that_renders_empty_falls_back_to_the_safe_default():
    """An empty message would let GitHub fill in its own default, possibly the PR body."""
    config = make_config(commit_message="{body}")
    assert commit_message(config, make_pr(body=None)) == "Merged by Fleet from #7 by alice."
    assert commit_message(config, make_pr(body="[skip ci]\nCo-authored-by: Eve <eve@example.com>")) == (
        "Merged by Fleet from #7 by alice."
    )


HOSTILE_BODY = (
    "Closes #1\n"
    "[skip ci]\n"
    "Fixes the thing [ci skip] quietly\n"
    "[no ci]\n[skip actions]\n[actions skip]\n[SKIP CI]\n[skip-ci]\n***NO_CI***\n"
    "skip-checks: true\nskip-checks:true\n"
    "Co-authored-by: Eve <eve@example.com>\n"
    "co-authored-by: Mallory <m@example.com>\n"
    "  Signed-off-by: Linus <torvalds@example.com>\n"
    "Reviewed-by: Maintainer <m@example.com>\n"
    "Keep this line: it is prose."
)


@pytest.mark.parametrize("template", ["{body}", "{title}\n\n{body}", "{body} via Fleet"])
def test_ci_tokens_and_trailers_in_the_body_never_reach_the_merge_commit(template):
    """Lines GitHub or CI act on are dropped from {body}; the rest of the body stays."""
    message = commit_message(make_config(commit_message=template), make_pr(body=HOSTILE_BODY))
    lowered = message.lower()
    for token in ("skip ci", "ci skip", "no ci", "skip actions", "actions skip", "skip-ci", "no_ci",
                  "skip-checks", "co-authored-by", "signed-off-by", "reviewed-by"):
        assert token not in lowered, (token, message)
    assert "Closes #1" in message and "Keep this line: it is prose." in message


def test_skip_ci_in_the_title_never_reaches_the_merge_commit():
    pr = make_pr(title="Add thing [skip ci] [CI SKIP]")
    assert commit_title(make_config(), pr) == "Add thing (#7)"
    assert commit_title(make_config(commit_title="   "), pr) == "Add thing (#7)"


# --- commands -----------------------------------------------------------------------------

@pytest.mark.parametrize("line,expected", [
    ("/queue", QueueCommand("queue")),
    ("  /merge  ", QueueCommand("merge")),
    ("/dequeue", QueueCommand("dequeue")),
    ("/priority high", QueueCommand("priority", "high")),
    ("/Priority LOW", QueueCommand("priority", "LOW")),
    ("/queued", None),
    ("please /queue", None),
    ("/priority high now", None),
])
def test_parse_queue_command(line, expected):
    assert parse_queue_command(line) == expected


def command(name, actor="bob", permission="write", *, pr=None, queue=None, config=None, arg=None):
    return decide_queue_command(QueueCommand(name, arg), actor, permission, pr or make_pr(),
                                queue or make_queue(), config or make_config())


QUEUE_PERMISSION_CASES = [
    ("write", "bob", True, True),
    ("maintain", "bob", True, True),
    ("admin", "bob", True, True),
    ("push", "bob", True, True),  # legacy name for write
    ("triage", "bob", True, False),
    ("read", "bob", True, False),
    ("none", "bob", True, False),
    (None, "bob", True, False),
    # The author needs write like anyone else: allow_authors no longer lets an outsider queue.
    ("read", "alice", True, False),
    ("read", "ALICE", True, False),
    ("none", "alice", True, False),
    (None, "alice", True, False),
    ("write", "alice", True, True),  # the author with write, allow_authors on
    ("admin", "ALICE", True, True),
    ("read", "alice", False, False),
    ("write", "alice", False, False),  # allow_authors off: four eyes, someone else must queue
    ("admin", "ALICE", False, False),
    ("write", "bob", False, True),
]


@pytest.mark.parametrize("name", ["queue", "merge"])
@pytest.mark.parametrize("permission,actor,allow_authors,accepted", QUEUE_PERMISSION_CASES)
def test_queue_permissions(name, permission, actor, allow_authors, accepted):
    """/queue and /merge need write; the author may use it only with write and allow_authors."""
    decision = command(name, actor, permission, config=make_config(allow_authors=allow_authors))
    assert decision.accepted is accepted
    if not accepted:
        assert decision.reply.startswith("Refused:") and decision.actions == ()


def test_queue_on_empty_queue_enqueues_and_kicks_the_queue():
    decision = command("queue")
    assert decision.actions == (EnqueueEntry(7, "normal", "bob"), ADVANCE)
    assert (decision.position, decision.length) == (1, 1)
    assert decision.reply == "Queued for `main`: in flight (merging next)."


def test_queue_position_behind_in_flight_and_equal_priority():
    queue = make_queue(flying(1), make_entry(2, priority="high"), make_entry(3), make_entry(4, priority="low"))
    decision = command("queue", queue=queue)
    assert decision.actions == (EnqueueEntry(7, "normal", "bob"),)  # something is in flight: no kick
    assert (decision.position, decision.length) == (4, 5)
    assert decision.reply == "Queued for `main`: position 4 of 5."


def test_queue_twice_is_acknowledged_with_position():
    queue = make_queue(flying(1), make_entry(7))
    decision = command("queue", queue=queue)
    assert decision.accepted and decision.actions == ()
    assert decision.reply == "Already queued for `main`: position 2 of 2."


@pytest.mark.parametrize("pr,reply", [
    (make_pr(state="closed"), "Refused: the pull request is not open."),
    (make_pr(merged=True, state="closed"), "Refused: the pull request is not open."),
    (make_pr(draft=True), "Refused: the pull request is a draft; mark it ready for review first."),
])
def test_queue_refuses_closed_and_draft(pr, reply):
    assert command("queue", pr=pr).reply == reply


def test_refusal_quotes_actor_without_mentioning():
    assert command("queue", "@evil`x", "read").reply == (
        "Refused: ``@evil`x`` needs write permission to queue this pull request."
    )


def test_four_eyes_refusal_names_the_setting():
    decision = command("queue", "alice", "admin", config=make_config(allow_authors=False))
    assert not decision.accepted and decision.actions == ()
    assert decision.reply == ("Refused: `alice` wrote this pull request and `queue.allow_authors` is false: "
                              "someone else with write permission must queue it.")


@pytest.mark.parametrize("permission,actor,accepted", [
    ("write", "bob", True), ("read", "bob", False), ("read", "alice", True),
])
def test_dequeue_permissions(permission, actor, accepted):
    """/dequeue: write, or the PR's author (always allowed to withdraw their own PR)."""
    queue = make_queue(make_entry(7))
    decision = decide_queue_command(QueueCommand("dequeue"), actor, permission, make_pr(), queue,
                                    make_config(allow_authors=False))
    assert decision.accepted is accepted


def test_dequeue_queued_entry():
    decision = command("dequeue", queue=make_queue(flying(1), make_entry(7)))
    assert decision.actions == (Dequeue(7, "user_request", "Removed from the merge queue by `bob`.", None),)


def test_dequeue_in_flight_entry_advances():
    decision = command("dequeue", queue=make_queue(flying(7), make_entry(1)))
    assert kinds(decision.actions) == ["Dequeue", "AdvanceToNext"]


def test_dequeue_not_queued_is_refused():
    assert command("dequeue").reply == "Refused: the pull request is not in the merge queue."


@pytest.mark.parametrize("permission,accepted", [
    ("admin", True), ("maintain", True), ("write", True), ("push", True), ("triage", False), ("read", False),
])
def test_priority_needs_write_as_the_command_table_says(permission, accepted):
    """/priority needs write per docs/agents.md and commands.COMMANDS (it demanded maintain)."""
    queue = make_queue(make_entry(7))
    assert COMMANDS["priority"].who == "write"
    decision = command("priority", permission=permission, queue=queue, arg="high")
    assert decision.accepted is accepted
    if not accepted:
        assert "needs write permission to change priority" in decision.reply


@pytest.mark.parametrize("name", ["queue", "dequeue", "priority"])
@pytest.mark.parametrize("permission", ["none", "read", "triage", "write", "maintain", "admin"])
def test_queue_commands_follow_the_command_table(name, permission):
    """One permission table for every command: the queue decides exactly as commands.command_allowed."""
    queue = make_queue(make_entry(7)) if name != "queue" else make_queue()
    decision = command(name, permission=permission, queue=queue, arg="high", actor="zed")
    refused_for_permission = not decision.accepted and "permission" in decision.reply
    assert refused_for_permission is (not command_allowed(COMMANDS[name], permission))


def test_priority_reorders_and_reports_new_position():
    queue = make_queue(flying(1), make_entry(2), make_entry(3), make_entry(7, queued_at=T0))
    decision = command("priority", permission="maintain", queue=queue, arg="HIGH")
    assert decision.actions == (SetPriority(7, "high"),)
    assert (decision.position, decision.length) == (2, 4)
    assert decision.reply == "Priority high: position 2 of 4."


def test_priority_unchanged_is_a_no_op():
    decision = command("priority", permission="admin", queue=make_queue(make_entry(7)), arg="normal")
    assert decision.accepted and decision.actions == ()


@pytest.mark.parametrize("arg", [None, "urgent", ""])
def test_priority_bad_argument(arg):
    decision = command("priority", permission="admin", queue=make_queue(make_entry(7)), arg=arg)
    assert not decision.accepted and "usage" in decision.reply


def test_priority_not_queued():
    assert not command("priority", permission="admin", arg="high").accepted


# --- properties ---------------------------------------------------------------------------

SHAS = [HEAD, NEW, BASE, BASE2]
STATES = ["queued", "updating", "waiting_checks", "merging", "merged", "failed", "dequeued"]


@st.composite
def entries(draw, number):
    state = draw(st.sampled_from(STATES))
    started = state in ("updating", "waiting_checks", "merging")
    return QueueEntry(
        pr_number=number,
        queued_at=T0 - timedelta(minutes=draw(st.integers(0, 100))),
        queued_by="x",
        priority=draw(st.sampled_from(["high", "normal", "low"])),
        state=state,
        head_sha_at_start=draw(st.sampled_from(SHAS)) if started else None,
        started_at=T0 if started else None,
        attempts=draw(st.integers(0, 4)),
        expected_head_sha=draw(st.sampled_from(SHAS)) if started else None,
        head_changed_at=T0 - timedelta(minutes=draw(st.integers(0, 120))) if started else None,
        update_requested_at=draw(st.none() | st.just(T0)),
        update_attempts=draw(st.integers(0, 4)),
        reevaluations=draw(st.integers(0, 2)),
    )


@st.composite
def queues(draw):
    numbers = draw(st.lists(st.integers(1, 9), unique=True, max_size=5))
    items = [draw(entries(n)) for n in numbers]
    # The store guarantees at most one in flight; keep the first, queue the rest.
    seen = False
    fixed = []
    for e in items:
        if e.in_flight and seen:
            e = replace(e, state="queued")
        seen = seen or e.in_flight
        fixed.append(e)
    return QueueSnapshot("o/r", "main", tuple(fixed))


@st.composite
def situations(draw):
    queue = draw(queues())
    current = current_entry(queue)
    pr = None
    if current is not None and draw(st.integers(0, 9)) > 0:
        head = draw(st.sampled_from(SHAS))
        checks = tuple(
            check(name, draw(st.sampled_from(["success", "failure", "neutral", "cancelled"])),
                  status=draw(st.sampled_from(["completed", "completed", "in_progress"])),
                  sha=draw(st.sampled_from([head, head, BASE2])))
            for name in draw(st.lists(st.sampled_from(["ci", "lint", "fleet/gates"]), max_size=3))
        )
        pr = make_pr(
            number=current.pr_number, head_sha=head, checks=checks,
            state=draw(st.sampled_from(["open", "open", "open", "closed"])),
            merged=draw(st.booleans()) and draw(st.booleans()),
            draft=draw(st.booleans()) and draw(st.booleans()),
            mergeable=draw(st.sampled_from([True, True, False, None])),
            mergeable_state=draw(st.sampled_from(["clean", "behind", "dirty", "unknown", "unstable"])),
            merge_base_sha=draw(st.sampled_from([BASE, BASE, BASE2, None])),
            labels=draw(st.sampled_from([(), (), ("wip",)])),
        )
    if pr is None:
        verdict = None
    else:
        verdict = draw(st.sampled_from(["real", "real", "forged-green", "none"]))
        if verdict == "real":
            verdict = evaluate_gates(pr, GatesConfig(min_checks=draw(st.integers(0, 2))))
        elif verdict == "forged-green":
            # A green verdict for an arbitrary sha: only usable when it is exactly the head.
            verdict = GateVerdict(draw(st.sampled_from(SHAS)), (GateResult("checks", "passed", "ok"),))
        else:
            verdict = None
    base = draw(st.sampled_from([BASE, BASE, BASE2, None]))
    config = make_config(requeue_on_push=draw(st.booleans()))
    now = T0 + timedelta(minutes=draw(st.integers(0, 180)))
    return queue, pr, verdict, base, config, now


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(situations())
def test_step_never_merges_anything_but_a_green_up_to_date_exact_head(situation):
    """Merge only for the head the verdict is green on, up to date with the base, carrying that sha;
    never start a second entry while one is in flight."""
    queue, pr, verdict, base, config, now = situation
    actions = decide_step(queue, pr, verdict, base, config, now)
    merges = [a for a in actions if isinstance(a, Merge)]
    starts = [a for a in actions if isinstance(a, StartEntry)]
    assert len(merges) <= 1 and len(starts) <= 1
    for merge in merges:
        assert pr is not None and verdict is not None
        assert verdict.conclusion == "success" and verdict.head_sha == merge.sha == pr.head_sha
        assert pr.mergeable_state != "behind" and pr.merge_base_sha == base is not None
        assert pr.state == "open" and not pr.merged and not pr.draft
        assert isinstance(actions[-1], Merge)  # nothing may follow the merge in the same step
    if starts:
        assert queue.in_flight() is None
        assert starts[0].pr == order_queue(queue.entries)[0].pr_number
    # Ending the in-flight entry always moves the queue on.
    if any(isinstance(a, (Dequeue, MarkMerged)) for a in actions):
        assert isinstance(actions[-1], AdvanceToNext)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_applying_steps_keeps_at_most_one_entry_in_flight(data):
    """Run many steps, applying each action's transition like the executor: never two in flight,
    and every merged entry was merged at a sha whose verdict was green."""
    queue = data.draw(queues())
    rows = {e.pr_number: e for e in queue.entries}
    now = T0
    for _ in range(12):
        snapshot = QueueSnapshot("o/r", "main", tuple(rows.values()))
        current = current_entry(snapshot)
        if current is None:
            break
        head = data.draw(st.sampled_from([current.expected_head_sha or HEAD, NEW]))
        pr = make_pr(number=current.pr_number, head_sha=head,
                     checks=(check(sha=head, conclusion=data.draw(st.sampled_from(["success", "failure"])),
                                   status=data.draw(st.sampled_from(["completed", "queued"]))),),
                     merge_base_sha=data.draw(st.sampled_from([BASE, BASE2])))
        verdict = evaluate_gates(pr, GatesConfig())
        actions = decide_step(snapshot, pr, verdict, BASE, make_config(), now)
        for action in actions:
            pr_number = getattr(action, "pr", None)
            if pr_number in rows:
                rows[pr_number] = transition(rows[pr_number], action, now)
            if isinstance(action, Merge):
                assert verdict.is_green_for(action.sha)
                # Pretend GitHub merged it.
                for follow in decide_merge_result(action, 200, "ok", entry=rows[pr_number], pr=pr):
                    rows[pr_number] = transition(rows[pr_number], follow, now)
        assert sum(1 for e in rows.values() if e.in_flight) <= 1
        now += timedelta(minutes=data.draw(st.integers(0, 90)))
