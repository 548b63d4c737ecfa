"""Merge groups, the pure decisions (``app.queue.groups``): what to build, land, split, retry or
dequeue for every shape of a queue's groups, with no database and no GitHub."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.gates.rules import GateResult, PullSnapshot
from app.queue.groups import (
    AnnounceLanded, ClosePull, LandedPull, BuildGroup, DeleteGroupBranch, EndGroups, FallBackToSerial, GroupLanded, GroupsView, LandGroup, QueueGroup,
    ClearBatchLimits, RetryGroup, SplitBatch, WaitForBatch, decide_groups, decide_land_result, group_branch, split_limit,
)
from app.queue.state import CloseLinkedTasks, Dequeue, MarkMerged, QueueEntry, QueueSnapshot
from app.repos.config import QueueConfig

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
PASSED = GateResult("checks", "passed", "1 required check passed")
WAITING = GateResult("checks", "waiting", "waiting for checks (1 running)", ("tests",))
FAILING = GateResult("checks", "failing", "1 check failed", ("tests",), "https://ci/1")


def head(n: int, version: int = 0) -> str:
    return f"{n:02d}{version:02d}".ljust(40, "a")


def pr(n: int, **overrides) -> PullSnapshot:
    fields = dict(repo="o/r", number=n, head_sha=head(n), base_ref="main", head_ref=f"a/{n}-x", author="alice",
                  title=f"PR {n}", linked_tasks=(100 + n,))
    fields.update(overrides)
    return PullSnapshot(**fields)


def entry(n: int) -> QueueEntry:
    return QueueEntry(n, NOW - timedelta(minutes=60 - n), "alice")


def group(gid: int, prs: tuple[int, ...], state="testing", **overrides) -> QueueGroup:
    fields = dict(parent_sha="b" * 40, head_sha=f"{gid:040d}", tested_since=NOW - timedelta(minutes=1))
    fields.update(overrides)
    return QueueGroup(gid, prs, tuple(head(n) for n in prs), state, **fields)


def view(prs=(1, 2, 3, 4), groups=(), gates=None, pulls=None, **overrides) -> GroupsView:
    pulls = pulls if pulls is not None else {n: pr(n) for n in prs}
    gates = gates if gates is not None else {n: "success" for n in prs}
    return GroupsView(QueueSnapshot("o/r", "main", tuple(entry(n) for n in prs)), tuple(groups), pulls, gates,
                      **overrides)


def config(**overrides) -> QueueConfig:
    return QueueConfig(**{"mode": "groups", "merge_method": "merge", **overrides})


def kinds(actions) -> list[str]:
    return [type(a).__name__ for a in actions]


# --- building ---------------------------------------------------------------------------------

def test_an_empty_queue_does_nothing():
    assert decide_groups(view(prs=()), config(), NOW) == []


def test_the_first_group_is_built_on_the_base_tip_in_queue_order():
    assert decide_groups(view(), config(batch_size=2), NOW) == [BuildGroup((1, 2), (head(1), head(2)), None)]


def test_the_next_group_is_built_on_the_last_one_kept_until_depth():
    groups = [group(10, (1,)), group(11, (2,))]
    assert decide_groups(view(groups=groups, first_checks=WAITING), config(depth=3), NOW) == [
        BuildGroup((3,), (head(3),), 11)]
    groups.append(group(12, (3,)))
    assert decide_groups(view(groups=groups, first_checks=WAITING), config(depth=3), NOW) == []


def test_a_pr_whose_gates_still_wait_does_not_hold_up_those_behind_it():
    gates = {1: "waiting", 2: "success", 3: None, 4: "success"}
    assert decide_groups(view(gates=gates), config(batch_size=4), NOW) == [
        BuildGroup((2, 4), (head(2), head(4)), None)]


def test_a_pr_whose_gates_failed_is_dequeued_not_grouped():
    actions = decide_groups(view(gates={1: "failure", 2: "success", 3: "success", 4: "success"}), config(), NOW)
    assert kinds(actions) == ["Dequeue", "BuildGroup"]
    assert actions[0].pr == 1 and actions[0].reason_code == "gates_failed"
    assert actions[1].prs == (2,)


def test_a_split_limit_caps_the_group_and_keeps_queue_order():
    """PR 2 came from a failed batch (limit 1): the group takes PR 1 only, not PRs 1, 3, 4."""
    actions = decide_groups(view(batch_limits={2: 1, 3: 1}), config(batch_size=4), NOW)
    assert actions == [BuildGroup((1,), (head(1),), None)]
    actions = decide_groups(view(prs=(2, 3, 4), batch_limits={2: 1, 3: 1}), config(batch_size=4), NOW)
    assert actions == [BuildGroup((2,), (head(2),), None)]


def test_batch_wait_holds_a_small_group_while_another_is_under_test():
    """queue.batch_wait 10s, batch 4: PR 2 alone waits for company until the group ahead has been
    under test 10 s; then it goes alone. A full batch, or an idle queue, builds at once."""
    wait = timedelta(seconds=10)
    ahead = group(10, (1,), tested_since=NOW - timedelta(seconds=4))
    small = view(prs=(1, 2), groups=[ahead], first_checks=WAITING)
    assert decide_groups(small, config(batch_size=4, batch_wait=wait), NOW) == [WaitForBatch(NOW + timedelta(seconds=6))]
    later = replace_group(ahead, tested_since=NOW - timedelta(seconds=11))
    assert decide_groups(view(prs=(1, 2), groups=[later], first_checks=WAITING), config(batch_size=4, batch_wait=wait),
                         NOW) == [BuildGroup((2,), (head(2),), 10)]
    full = view(prs=(1, 2, 3, 4, 5), groups=[ahead], first_checks=WAITING)
    assert decide_groups(full, config(batch_size=4, batch_wait=wait), NOW)[-1].prs == (2, 3, 4, 5)
    assert decide_groups(view(prs=(2,)), config(batch_size=4, batch_wait=wait), NOW) == [BuildGroup((2,), (head(2),), None)]
    assert decide_groups(small, config(batch_size=4), NOW) == [BuildGroup((2,), (head(2),), 10)]  # default: at once


def replace_group(g: QueueGroup, **changes) -> QueueGroup:
    from dataclasses import replace

    return replace(g, **changes)


def test_prs_that_merged_closed_or_moved_elsewhere_leave_the_queue_when_it_builds():
    pulls = {1: pr(1, merged=True, state="closed"), 2: pr(2, state="closed"), 3: pr(3, base_ref="dev"), 4: pr(4)}
    actions = decide_groups(view(pulls=pulls), config(), NOW)
    assert kinds(actions) == ["MarkMerged", "CloseLinkedTasks", "Dequeue", "Dequeue", "BuildGroup"]
    assert [a.reason_code for a in actions if isinstance(a, Dequeue)] == ["closed", "base_changed"]


def test_ended_groups_branches_are_deleted_first():
    assert decide_groups(view(prs=(), left_branches=(3, 4)), config(), NOW) == [
        DeleteGroupBranch(3), DeleteGroupBranch(4)]


# --- the first group ----------------------------------------------------------------------------

def test_the_first_group_lands_when_its_required_checks_passed():
    groups = [group(10, (1,)), group(11, (2,))]
    actions = decide_groups(view(groups=groups, first_checks=PASSED), config(depth=2), NOW)
    assert actions == [LandGroup(10, groups[0].head_sha)]


def test_a_group_interrupted_while_landing_lands_again():
    groups = [group(10, (1,), state="landing")]
    assert decide_groups(view(groups=groups, first_checks=WAITING), config(depth=1), NOW)[0] == LandGroup(
        10, groups[0].head_sha)


def test_only_the_first_group_is_judged():
    """A later group's failure may be the fault of one ahead: it waits until it is first."""
    groups = [group(10, (1,)), group(11, (2,))]
    assert decide_groups(view(groups=groups, first_checks=WAITING), config(depth=2), NOW) == []


def test_a_failed_pr_alone_is_dequeued_naming_the_check_and_its_group_and_the_rest_rebuilt():
    groups = [group(10, (1,)), group(11, (2,)), group(12, (3,))]
    actions = decide_groups(view(groups=groups, first_checks=FAILING), config(depth=3), NOW)
    assert kinds(actions) == ["Dequeue", "EndGroups", "EndGroups", "BuildGroup"]
    dequeue = actions[0]
    assert dequeue.pr == 1 and dequeue.reason_code == "checks_failed"
    assert "`tests`" in dequeue.message and group_branch("main", 10) in dequeue.message
    assert actions[1] == EndGroups((10,), "failed", f"checks failed on {groups[0].head_sha}")
    assert actions[2].groups == (11, 12) and actions[2].outcome == "abandoned"
    assert actions[3] == BuildGroup((2,), (head(2),), None)  # rebuilt on the base tip, in order


@pytest.mark.parametrize("depth, limit", [(1, 2), (2, 1), (3, 1)])
def test_a_failed_batch_is_split_so_the_next_groups_test_prefixes_of_it(depth, limit):
    """Depth 1 halves the batch; depth 2 tests {1} and {1, 2} (never {1, 2} and {1, 2, 3, 4}:
    the stacked second half would test the whole batch, which just failed, again)."""
    groups = [group(10, (1, 2, 3, 4))]
    actions = decide_groups(view(groups=groups, first_checks=FAILING), config(batch_size=4, depth=depth), NOW)
    failed = EndGroups((10,), "failed", f"checks failed on {groups[0].head_sha}")
    assert actions[:2] == [SplitBatch((1, 2, 3, 4), limit), failed]
    assert not any(isinstance(a, Dequeue) for a in actions)
    assert actions[2:] == [BuildGroup((1, 2, 3, 4)[:limit], tuple(head(n) for n in (1, 2, 3, 4)[:limit]), None)]


@pytest.mark.parametrize("size, depth, limit", [(4, 1, 2), (4, 2, 1), (8, 2, 3), (8, 1, 4), (2, 2, 1), (20, 3, 5)])
def test_split_limits(size, depth, limit):
    assert split_limit(size, depth) == limit


@given(st.integers(2, 20), st.integers(1, 10))
def test_the_groups_after_a_split_never_test_the_failed_batch_again(size, depth):
    limit = split_limit(size, depth)
    assert 1 <= limit < size and (limit * depth < size or limit == 1)


def test_when_the_culprit_is_found_the_rest_of_its_batch_goes_back_to_full_groups():
    """Batch {1, 2, 3, 4} failed and was split to singles; {1} landed; {2} fails alone: PR 2 is
    dequeued and PRs 3 and 4 are no longer suspects: they go in one group with PR 5 again."""
    groups = [group(11, (2,)), group(12, (3,))]
    actions = decide_groups(view(prs=(2, 3, 4, 5), groups=groups, first_checks=FAILING, batch_limits={2: 1, 3: 1, 4: 1}),
                            config(batch_size=4, depth=2), NOW)
    assert kinds(actions) == ["Dequeue", "EndGroups", "ClearBatchLimits", "EndGroups", "BuildGroup"]
    assert actions[0].pr == 2 and actions[2] == ClearBatchLimits((3, 4))
    assert actions[4].prs == (3, 4, 5)


def test_a_failed_group_within_retries_is_built_again_as_it_was():
    groups = [group(10, (1, 2))]
    actions = decide_groups(view(groups=groups, first_checks=FAILING), config(batch_size=2, retries=1), NOW)
    assert kinds(actions) == ["RetryGroup", "EndGroups", "BuildGroup"]
    assert actions[0] == RetryGroup((1, 2)) and actions[2].prs == (1, 2)
    used = decide_groups(view(groups=groups, first_checks=FAILING, retries_used={1: 1}),
                         config(batch_size=2, retries=1), NOW)
    assert kinds(used)[0] == "SplitBatch"


def test_a_group_whose_checks_never_report_times_out_saying_ci_may_not_run_on_groups():
    groups = [group(10, (1, 2), tested_since=NOW - timedelta(minutes=61))]
    actions = decide_groups(view(groups=groups, first_checks=WAITING), config(batch_size=2), NOW)
    dequeues = [a for a in actions if isinstance(a, Dequeue)]
    assert [(d.pr, d.reason_code) for d in dequeues] == [(1, "ci_timeout"), (2, "ci_timeout")]
    assert "fleet/queue/**" in dequeues[0].message


# --- trouble in a group ---------------------------------------------------------------------------

def test_a_push_to_a_grouped_pr_dequeues_it_and_rebuilds_from_its_group():
    groups = [group(10, (1,)), group(11, (2,)), group(12, (3,))]
    pulls = {n: pr(n) for n in (1, 2, 3, 4)}
    pulls[2] = pr(2, head_sha=head(2, 1))
    actions = decide_groups(view(groups=groups, pulls=pulls, first_checks=WAITING), config(depth=3), NOW)
    assert kinds(actions) == ["Dequeue", "EndGroups", "BuildGroup"]
    assert actions[0].pr == 2 and actions[0].reason_code == "head_changed"
    assert actions[1].groups == (11, 12)
    assert actions[2] == BuildGroup((3,), (head(3),), 10)


def test_with_requeue_on_push_the_pushed_pr_stays_queued_and_waits_for_its_new_gates():
    groups = [group(10, (1,))]
    pulls = {1: pr(1, head_sha=head(1, 1)), 2: pr(2)}
    actions = decide_groups(view(prs=(1, 2), groups=groups, pulls=pulls, gates={1: None, 2: "success"}),
                            config(requeue_on_push=True), NOW)
    assert kinds(actions) == ["EndGroups", "BuildGroup"] and actions[1].prs == (2,)


def test_a_pr_that_left_the_queue_or_a_broken_group_ends_it_and_those_behind():
    groups = [group(10, (1,)), group(11, (9,))]  # 9 is no longer queued
    actions = decide_groups(view(groups=groups, first_checks=WAITING), config(depth=2), NOW)
    assert actions[0] == EndGroups((11,), "abandoned", "#9 left the queue")
    actions = decide_groups(view(groups=[group(10, (1,), broken="its branch was deleted")]), config(depth=1), NOW)
    assert kinds(actions) == ["EndGroups", "BuildGroup"] and actions[0].groups == (10,)


def test_a_group_whose_build_stopped_part_way_is_resumed_not_rebuilt():
    groups = [group(10, (1,)), group(11, (2, 3), state="building", built_count=1)]
    actions = decide_groups(view(groups=groups, first_checks=PASSED), config(depth=3, batch_size=2), NOW)
    assert actions == [LandGroup(10, groups[0].head_sha), BuildGroup((2, 3), (head(2), head(3)), 10, 11)]
    pulls = {n: pr(n) for n in (1, 2, 3, 4)}
    pulls[3] = pr(3, head_sha=head(3, 1))  # but a push to a PR in it still ends it
    actions = decide_groups(view(groups=groups, pulls=pulls, first_checks=WAITING), config(depth=3, batch_size=2), NOW)
    assert kinds(actions)[:2] == ["Dequeue", "EndGroups"] and actions[1].groups == (11,)


# --- GitHub's answer to the landing ---------------------------------------------------------------

def test_a_landed_group_is_recorded_then_its_entries_are_finished_as_github_needs():
    g = group(10, (1, 2))
    assert decide_land_result(g, 200, "", (10, 11)) == [GroupLanded(10, g.head_sha)]
    merged = {1: LandedPull(1, head(1), "m1", 10, False), 2: LandedPull(2, head(2), "m2", 10, False)}
    actions = decide_groups(view(prs=(1, 2, 3), landed=merged), config(), NOW)
    assert actions == [CloseLinkedTasks(1, (101,)), MarkMerged(1, head(1), "m1"), CloseLinkedTasks(2, (102,)),
                       MarkMerged(2, head(2), "m2"), BuildGroup((3,), (head(3),), None)]


def test_a_squashed_landing_is_announced_once_the_pr_closed_and_every_task_closed_by_fleet():
    squashed = {1: LandedPull(1, head(1), "s1", 10, True)}
    actions = decide_groups(view(prs=(1,), landed=squashed), config(merge_method="squash"), NOW)
    assert actions == [AnnounceLanded(1, "s1", 10), ClosePull(1), CloseLinkedTasks(1, (101,), github_closes=False),
                       MarkMerged(1, head(1), "s1")]


def test_a_base_that_moved_rebuilds_everything_and_a_refusal_falls_back_to_serial():
    g = group(10, (1,))
    assert decide_land_result(g, 422, "Update is not a fast forward", (10, 11)) == [
        EndGroups((10, 11), "abandoned", "the base branch moved")]
    refused = decide_land_result(g, 422, "Protected branch update failed for refs/heads/main.", (10,))
    assert isinstance(refused[0], FallBackToSerial) and "Protected branch" in refused[0].reason
    assert refused[1] == EndGroups((10,), "abandoned", "the queue fell back to serial")


# --- invariants over any queue ------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(0, 8), depth=st.integers(1, 4), batch=st.integers(1, 4),
    gates=st.lists(st.sampled_from(["success", "waiting", "failure", None]), min_size=8, max_size=8),
    built=st.integers(0, 3), checks=st.sampled_from([PASSED, WAITING, FAILING, None]),
)
def test_decisions_keep_order_depth_and_never_land_anything_but_the_first_green_group(n, depth, batch, gates, built, checks):
    prs = tuple(range(1, n + 1))
    groups, taken = [], 0
    for gid in range(built):
        if taken >= n:
            break
        groups.append(group(20 + gid, (prs[taken],)))
        taken += 1
    v = view(prs=prs, groups=groups, gates={p: gates[p - 1] for p in prs}, first_checks=checks if groups else None)
    actions = decide_groups(v, config(depth=depth, batch_size=batch), NOW)
    lands = [a for a in actions if isinstance(a, LandGroup)]
    assert len(lands) <= 1
    if lands:
        assert lands[0].group == groups[0].id and checks is PASSED
    builds = [a for a in actions if isinstance(a, BuildGroup)]
    assert len(builds) <= 1
    for b in builds:
        assert 1 <= len(b.prs) <= batch
        assert list(b.prs) == sorted(b.prs)  # queue order
        assert all(v.gates.get(p) == "success" for p in b.prs)
        ended = {g for a in actions if isinstance(a, EndGroups) for g in a.groups}
        kept = [g for g in groups if g.id not in ended]
        assert len(kept) < depth
        assert b.after == (kept[-1].id if kept else None)
        assert not set(b.prs) & {p for g in kept for p in g.prs}
