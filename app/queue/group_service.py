"""Merge groups, I/O side: read one queue's groups and recorded PRs, ask ``groups.decide_groups``
what to do and apply it. Runs inside ``queue.service.step`` with the queue's advisory lock held.

Crash safety: a group's row is inserted (``building``) before its branch is created, its progress
recorded after every merge into it, and it is marked ``landing`` before the base is moved. A step
that finds a group still ``building`` goes on from what it recorded; one that finds it ``landing``
lands it again (GitHub answers the same fast-forward twice with nothing to do). Ended groups' branches are deleted by the next step that sees them, so
no group branch outlives its group. Decisions read only what webhooks recorded; GitHub is read
right before a landing (the group's checks and each PR, on the exact SHAs).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import psycopg

from app import enqueue
from app.gates import service as gate_service
from app.gates import store as gate_store
from app.gates.check_run import md_code
from app.gates.rules import OWN_CHECK_NAME, PullSnapshot, gate_checks
from app.github.gateway import GitHubRefused, RepoGateway
from app.github.models import PullRequest
from app.github.write_budget import BudgetSpent, WriteClass, writing
from app.queue import effects
from app.queue import group_store
from app.queue import store as queue_store
from app.queue.groups import (
    AnnounceLanded, BuildGroup, ClosePull, DeleteGroupBranch, EndGroups, FallBackToSerial, GroupAction, GroupLanded, GroupsView,
    ClearBatchLimits, LandGroup, QueueGroup, RetryGroup, SplitBatch, WaitForBatch, decide_groups, decide_land_result, group_branch, group_pr_conflict,
    group_trouble,
)
from app.queue.messages import commit_message, commit_title, dequeue_action, short_sha
from app.replies import marker
from app.github import held_writes
from app.queue.state import CloseLinkedTasks, Dequeue, MarkMerged, transition
from app.repos.registry import Repo
from app.tasks import pulls as pull_state

log = logging.getLogger("fleet.queue.groups")

MAX_ROUNDS = 12  # decisions per step job; more work is left to the next job
# Actions that write to GitHub: the step asks the pacer for a MERGE slot before any of them.
_WRITES = (BuildGroup, LandGroup, DeleteGroupBranch)
# After these the queue is decided again at once (a group ended, landed or was built).
_REDECIDE = (BuildGroup, EndGroups, GroupLanded)


def groups_mode(conn: psycopg.Connection, repo: Repo, base_ref: str) -> bool:
    """True when this queue runs as merge groups: configured so, with a merge method groups can
    carry, and the base never refused Fleet's push."""
    if repo.config.queue.groups_refused() is not None:
        return False
    return group_store.serial_fallback(conn, repo.id, base_ref) is None


class GroupStepper:
    def __init__(self, conn: psycopg.Connection, gh: RepoGateway, repo: Repo, base_ref: str,
                 now: Callable[[], datetime]):
        self.conn, self.gh, self.repo, self.base_ref, self.now = conn, gh, repo, base_ref, now
        self.applied: list[str] = []

    def run(self) -> list[str]:
        for _ in range(MAX_ROUNDS):
            view = self._view()
            actions = decide_groups(view, self.repo.config.queue, self.now())
            if not actions:
                return self.applied
            if any(isinstance(a, _WRITES) for a in actions):
                self._defer_without_a_merge_slot()
            log.info("queue groups step", extra={"repo": self.repo.full_name, "base": self.base_ref,
                                                  "actions": [type(a).__name__ for a in actions]})
            if not self._apply(view, actions):
                return self.applied
        enqueue.enqueue_step(self.repo.id, self.base_ref)  # more to do: another job continues
        return self.applied

    def _defer_without_a_merge_slot(self) -> None:
        free_at = self.gh.write_slot_free_at(WriteClass.MERGE)
        if free_at is not None:
            raise BudgetSpent(self.repo.installation_id or 0, WriteClass.MERGE, free_at, "no merge slot yet")

    # -- reading ---------------------------------------------------------------------------

    def _view(self) -> GroupsView:
        queue = queue_store.load_queue(self.conn, self.repo.id, self.repo.full_name, self.base_ref)
        groups = group_store.active_groups(self.conn, self.repo.id, self.base_ref)
        pulls: dict[int, PullSnapshot] = {}
        gates: dict[int, str] = {}
        for entry in queue.entries:
            pr = gate_store.pull_snapshot(self.conn, self.repo.id, self.repo.full_name, entry.pr_number, checks=())
            if pr is None:
                continue
            pulls[pr.number] = pr
            run = gate_store.gate_run(self.conn, self.repo.id, pr.head_sha)
            if run is not None:
                gates[pr.number] = run.conclusion
        first_checks = None
        if groups and groups[0].head_sha:
            first_checks = self._checks_on(groups[0], gate_store.check_results(self.conn, self.repo.id, groups[0].head_sha))
        limits, retries = group_store.entry_marks(self.conn, self.repo.id, self.base_ref)
        return GroupsView(queue, groups, pulls, gates, first_checks, limits,
                          group_store.left_branches(self.conn, self.repo.id, self.base_ref), retries,
                          group_store.landed_pulls(self.conn, self.repo.id, self.base_ref))

    def _checks_on(self, group: QueueGroup, checks):
        """The required-checks gate on the group's head (Fleet's own ``fleet/gates`` excluded)."""
        assert group.head_sha is not None
        head = PullSnapshot(self.repo.full_name, 0, group.head_sha, self.base_ref,
                            group_branch(self.base_ref, group.id), "", checks=checks)
        return gate_checks(head, self.repo.config.gates)

    # -- applying --------------------------------------------------------------------------

    def _apply(self, view: GroupsView, actions: list[GroupAction]) -> bool:
        """Apply in order; True when the queue should be decided again at once."""
        again = False
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            self.applied.append(type(action).__name__)
            again = again or isinstance(action, _REDECIDE)
            if isinstance(action, DeleteGroupBranch):
                self._delete_branch(action.group)
            elif isinstance(action, EndGroups):
                group_store.end_groups(self.conn, action.groups, action.outcome, action.reason, self.now())
                pending[:0] = [DeleteGroupBranch(g) for g in action.groups]
            elif isinstance(action, SplitBatch):
                group_store.set_batch_limit(self.conn, self.repo.id, action.prs, action.limit)
            elif isinstance(action, ClearBatchLimits):
                group_store.set_batch_limit(self.conn, self.repo.id, action.prs, None)
            elif isinstance(action, WaitForBatch):
                enqueue.enqueue_step(self.repo.id, self.base_ref, delay=max(action.until - self.now(), timedelta(0)))
            elif isinstance(action, RetryGroup):
                group_store.count_retry(self.conn, self.repo.id, action.prs)
            elif isinstance(action, Dequeue):
                self._dequeue(view, action)
            elif isinstance(action, MarkMerged):
                self._mark_merged(view, action)
            elif isinstance(action, CloseLinkedTasks):
                effects.close_linked_tasks(self.gh, self.repo, action, view.pulls.get(action.pr))
            elif isinstance(action, BuildGroup):
                self._build(view, action)
            elif isinstance(action, LandGroup):
                landed = self._land(view, action)
                if landed is None:
                    return False  # waits: the re-check found the checks not finished on GitHub
                pending[:0] = landed
            elif isinstance(action, GroupLanded):
                group_store.end_groups(self.conn, (action.group,), "landed", f"base at {action.head_sha}", self.now())
                self.gh.evidence.record("queue_group_landed", self.base_ref, "ok", None, sha=action.head_sha,
                                        group=action.group)
                pending.insert(0, DeleteGroupBranch(action.group))
            elif isinstance(action, AnnounceLanded):
                self._announce_landed(action)
            elif isinstance(action, ClosePull):
                pr = view.pulls.get(action.pr)
                if pr is None or pr.state == "open":
                    self.gh.update_issue(action.pr, state="closed")
            elif isinstance(action, FallBackToSerial):
                group_store.fall_back(self.conn, self.repo.id, self.base_ref, action.reason)
                log.warning("merge queue fell back to serial", extra={"repo": self.repo.full_name,
                                                                      "base": self.base_ref, "reason": action.reason})
            else:  # pragma: no cover - a new action without an executor is a programming error
                raise TypeError(f"no executor for {action!r}")
        return again

    def _dequeue(self, view: GroupsView, action: Dequeue) -> None:
        entry = view.queue.entry(action.pr)
        if entry is None:
            return
        entry = transition(entry, action, self.now())
        if queue_store.finish_entry(self.conn, self.repo.id, entry, self.now(), action.reason_code, action.message):
            pr = view.pulls.get(action.pr)
            effects.announce_dequeue(self.conn, self.gh, self.repo, action, entry, pr)
            if pr is not None:  # its green fleet/gates was only recorded while it was queued
                enqueue.enqueue_evaluation(self.repo.id, pr.number, pr.head_sha)

    def _mark_merged(self, view: GroupsView, action: MarkMerged) -> None:
        entry = view.queue.entry(action.pr)
        if entry is None:
            return
        queue_store.finish_entry(self.conn, self.repo.id, transition(entry, action, self.now()), self.now(), "merged",
                                 f"merged {action.sha}", action.merge_commit_sha)
        self.gh.evidence.record("queue_merged", f"#{action.pr}", "ok", None, sha=action.sha,
                                merge_commit_sha=action.merge_commit_sha, base_ref=self.base_ref)

    def _delete_branch(self, group_id: int) -> None:
        with writing(WriteClass.MERGE):
            self.gh.delete_branch(group_branch(self.base_ref, group_id))
        group_store.branch_deleted(self.conn, group_id)

    def _build(self, view: GroupsView, action: BuildGroup) -> None:
        """Build a group, or go on with one whose build stopped part-way: create its branch on
        the base tip (or the group ahead), merge each PR's head into it, recording progress after
        every merge, so a killed worker or a spent write budget repeats at most the call in
        flight. A PR that conflicts there is dequeued and the rest go on. A squashed group then
        gets one commit per PR, with the tree its merge produced, and its branch moves there."""
        group = self._group_to_build(view, action)
        if group is None:
            return
        branch = group_branch(self.base_ref, group.id)
        assert group.parent_sha is not None
        with writing(WriteClass.MERGE):
            if group.head_sha is None:  # the branch is recorded as created by setting the head
                self._create_branch(branch, group.parent_sha)
                group = replace(group, head_sha=group.parent_sha)
                group_store.note_built(self.conn, group)
            while group.built_count < len(group.prs):
                group = self._merge_next(view, branch, group)
                group_store.note_built(self.conn, group)
            if group.prs and group.squashed:
                group = self._squash(view, branch, group)
        if not group.prs:
            group_store.end_groups(self.conn, (group.id,), "abandoned", "no pull request merged cleanly", self.now())
            return
        group_store.mark_built(self.conn, group, self.now())

    def _merge_next(self, view: GroupsView, branch: str, group: QueueGroup) -> QueueGroup:
        """Merge the next PR's head into the group's branch: the group after it (a PR that
        conflicts there is dequeued and dropped)."""
        i = group.built_count
        number, head = group.prs[i], group.pr_heads[i]
        message = f"{commit_title(self.repo.config.queue, view.pulls[number])}\n\nMerge group {group.id} of {self.base_ref}."
        try:
            merged = self.gh.merge_into(branch, head, message)
        except GitHubRefused as exc:
            if exc.status != 409:
                raise
            self._dequeue(view, group_pr_conflict(number, self.base_ref, group.id))
            return replace(group, prs=group.prs[:i] + group.prs[i + 1:], pr_heads=group.pr_heads[:i] + group.pr_heads[i + 1:])
        if merged is None:  # already contained: a killed worker merged it; ask GitHub where the branch is
            tip = self.gh.branch_tip(branch) or group.head_sha or ""
            merged = (tip, self.gh.commit_tree(tip) if group.squashed else "")
        tip, tree = merged
        return replace(group, head_sha=tip, built_count=i + 1, carriers=group.carriers[:i] + (tip,),
                       trees=group.trees[:i] + (tree,))

    def _squash(self, view: GroupsView, branch: str, group: QueueGroup) -> QueueGroup:
        """One commit per PR on the parent, each with the tree its merge produced (so the last has
        the group's tree), then the branch moved there: what CI tests is what lands."""
        tip, carriers = group.parent_sha or "", []
        config = self.repo.config.queue
        for number, tree in zip(group.prs, group.trees):
            pr = view.pulls[number]
            tip = self.gh.create_commit(f"{commit_title(config, pr)}\n\n{commit_message(config, pr)}", tree, tip)
            carriers.append(tip)
        self.gh.force_branch(branch, tip)
        return replace(group, head_sha=tip, carriers=tuple(carriers))

    def _group_to_build(self, view: GroupsView, action: BuildGroup) -> QueueGroup | None:
        """The group being resumed, or a new one recorded on the base tip or the group ahead."""
        if action.resume is not None:
            return next(g for g in view.groups if g.id == action.resume)
        ahead = next((g for g in view.groups if g.id == action.after), None)
        parent = ahead.head_sha if ahead is not None else self.gh.branch_tip(self.base_ref)
        if parent is None:
            for number in action.prs:
                self._dequeue(view, dequeue_action(number, "base_changed", (
                    f"its base branch {md_code(self.base_ref, in_table=False)} does not exist. "
                    "`/queue` again once it points at an existing branch.")))
            return None
        squashed = self.repo.config.queue.merge_method == "squash"
        group_id = group_store.insert_group(self.conn, self.repo.id, self.base_ref, action.prs, action.heads, parent,
                                            squashed)
        return QueueGroup(group_id, action.prs, action.heads, "building", parent, squashed=squashed)

    def _create_branch(self, branch: str, sha: str) -> None:
        """Create the group's branch; one already there is the one a killed worker created."""
        try:
            self.gh.create_branch(branch, sha)
        except GitHubRefused as exc:
            if exc.status != 422 or "already exists" not in exc.message.lower():
                raise

    def _merge_one(self, view: GroupsView, branch: str, group_id: int, number: int, head: str) -> str | None | bool:
        """Merge one PR's head into the group: the new tip, None when already contained, False
        when it conflicts (the PR is dequeued)."""
        pr = view.pulls[number]
        message = f"{commit_title(self.repo.config.queue, pr)}\n\nMerge group {group_id} of {self.base_ref}."
        try:
            return self.gh.merge_into(branch, head, message)
        except GitHubRefused as exc:
            if exc.status != 409:
                raise
        self._dequeue(view, group_pr_conflict(number, self.base_ref, group_id))
        return False

    def _land(self, view: GroupsView, action: LandGroup) -> list[GroupAction] | None:
        """Re-check on GitHub (the group's checks on its exact head, each PR's head), then
        fast-forward the base. Returns the follow-up actions, or None to wait."""
        group = next(g for g in view.groups if g.id == action.group)
        if group.state != "landing":
            checks = self._checks_on(group, gate_service.read_checks(self.conn, self.gh, self.repo, action.head_sha))
            if checks.state != "passed":
                return None if checks.state == "waiting" else []  # a failure: recorded, decided next round
            fresh = {n: self._read_pull(n) for n in group.prs}
            trouble = group_trouble(group, view.queue, {n: p for n, p in fresh.items() if p is not None},
                                    self.repo.config.queue)
            if trouble is not None:
                reason, dequeues = trouble
                return dequeues + [EndGroups(tuple(g.id for g in view.groups), "abandoned", reason)]
            if self.repo.config.queue.gates_before_merge:
                self._publish_gates(group, checks)
            group_store.mark_landing(self.conn, group.id)
        try:
            with writing(WriteClass.MERGE):
                self.gh.fast_forward(self.base_ref, action.head_sha)
            status, message = 200, ""
        except GitHubRefused as exc:
            status, message = exc.status, exc.message
        return decide_land_result(replace(group, state="landing"), status, message, tuple(g.id for g in view.groups))

    def _publish_gates(self, group: QueueGroup, checks) -> None:
        """``fleet/gates`` on the group's head, green, right before landing it: for branch
        protection that requires it on every commit the base moves to (one write per group)."""
        prs = ", ".join(f"#{n}" for n in group.prs)
        with writing(WriteClass.MERGE):
            self.gh.create_check_run({
                "name": OWN_CHECK_NAME, "head_sha": group.head_sha, "status": "completed", "conclusion": "success",
                "output": {"title": f"Merge group {group.id}: {checks.reason}",
                           "summary": f"The base {md_code(self.base_ref, in_table=False)} plus {prs}, in queue order; "
                                      "every PR's own gates were green on the head merged here."},
            })

    def _announce_landed(self, action: AnnounceLanded) -> None:
        """The PR's changes are on the base as Fleet's own commit: say which, once."""
        key = marker({"queue": "landed", "pr": action.pr, "commit": action.carrier, "group": action.group})
        body = (f"Merged by Fleet into {md_code(self.base_ref, in_table=False)} as {short_sha(action.carrier)}, "
                f"squashed, with merge group {action.group}: its required checks passed on exactly that tree. "
                f"GitHub shows this pull request as closed, not merged, because its own commits are not on "
                f"{md_code(self.base_ref, in_table=False)}.\n\n{key}")
        held_writes.comment(self.conn, self.gh, self.repo.id, action.pr, body, marker=key, look_first=True)

    def _read_pull(self, number: int) -> PullSnapshot | None:
        """The PR as GitHub has it now, recorded on the way."""
        raw = gate_service.read_pull(self.gh, number)
        if raw is None:
            return None
        pull_state.upsert_pull(self.conn, self.repo.id, self.repo.full_name, PullRequest.model_validate(raw),
                               self.repo.config)
        return gate_store.pull_snapshot(self.conn, self.repo.id, self.repo.full_name, number, checks=())


def wind_down(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, base_ref: str,
              now: Callable[[], datetime]) -> None:
    """A queue that runs serially now (configured so, or fallen back): end any group left from
    group mode and delete the branches of ended groups. Two queries when there is nothing."""
    active = group_store.active_groups(conn, repo.id, base_ref)
    if active:
        group_store.end_groups(conn, tuple(g.id for g in active), "abandoned", "the queue runs serially", now())
    for group_id in group_store.left_branches(conn, repo.id, base_ref):
        with writing(WriteClass.MERGE):
            gh.delete_branch(group_branch(base_ref, group_id))
        group_store.branch_deleted(conn, group_id)
