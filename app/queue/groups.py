"""Merge groups (``queue.mode: groups``): pure decisions over one queue's groups, no I/O.

A group is the base tip (or the group ahead's head) plus one or more queued PRs merged in queue
order, pushed by Fleet to its own branch ``fleet/queue/<base>/<id>``. Up to ``queue.depth``
groups are under test at once, each built on the one ahead, so their CI runs in parallel. Only
the first group ever lands: when its required checks passed on its exact head, the base is
fast-forwarded to that head (never forced), so every commit the base points to passed the
required checks as that exact tree ("not rocket science"). A failed group of several PRs is
split (its PRs get a smaller ``batch_limit``, ``split_limit``) so the groups built from it next
test growing prefixes of it, until the failing PR is alone; that PR is dequeued naming the check
and the rest of its batch goes back to full-size groups. Whatever ends a group ends every group
behind it too (they were built on it); their PRs go back to the queue and are built again, in
order.

Lifecycle of a group::

    building --(branch pushed, PRs merged)--> testing --(first, checks passed)--> landing --> landed
        (resumed where it stopped)                 \\--(first, checks failed)--> failed

The executor (``queue.group_service``) records each intent before the GitHub call it leads to,
so a worker killed between any two steps leaves rows the next step recovers from.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Union

from app.gates.check_run import md_code
from app.gates.rules import GateResult, PullSnapshot
from app.repos.config import QueueConfig
from app.queue.messages import dequeue_action, group_checks_detail, group_timeout_detail, short_sha
from app.queue.rules import ended_entry
from app.queue.state import CloseLinkedTasks, Dequeue, MarkMerged, QueueSnapshot

GROUP_BRANCH_PREFIX = "fleet/queue/"
GroupState = Literal["building", "testing", "landing"]


def group_branch(base_ref: str, group_id: int) -> str:
    """Fleet's branch for a group (the counterpart of GitHub's ``gh-readonly-queue/...``)."""
    return f"{GROUP_BRANCH_PREFIX}{base_ref}/{group_id}"


def is_group_branch(name: str) -> bool:
    return name.startswith(GROUP_BRANCH_PREFIX)


# --- state ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QueueGroup:
    """One active group. ``pr_heads[i]`` is the head of ``prs[i]`` merged into it; ``head_sha``
    the group's tip once built; ``broken`` why it can no longer land (set by a webhook, e.g.
    someone deleted its branch)."""

    id: int
    prs: tuple[int, ...]
    pr_heads: tuple[str, ...]
    state: GroupState
    parent_sha: str | None = None
    head_sha: str | None = None
    tested_since: datetime | None = None
    broken: str | None = None
    built_count: int = 0  # while building: PRs merged into the branch so far
    carriers: tuple[str, ...] = ()  # per PR merged so far: its commit on the group
    trees: tuple[str, ...] = ()  # squashed groups, while building: the tree each merge produced
    squashed: bool = False


@dataclass(frozen=True)
class LandedPull:
    """A queued PR whose group landed; its entry is finished once GitHub says what it must.
    ``squashed``: the base carries it as Fleet's own commit ``carrier``, so GitHub will not mark
    the PR merged nor close its tasks: Fleet says so on the PR and closes both."""
    pr: int
    head_sha: str
    carrier: str
    group: int
    squashed: bool


@dataclass(frozen=True)
class GroupsView:
    """What the decision needs, read under the queue's lock (recorded state, no GitHub call).

    ``pulls``: the recorded PR of each active entry. ``gates``: Fleet's last published
    conclusion (``success``, ``failure``, ``waiting``) on that recorded head, an evaluation made
    on what GitHub said. ``first_checks``: the required-checks gate on the first group's head.
    ``left_branches``: ended groups whose branch may still exist."""

    queue: QueueSnapshot
    groups: tuple[QueueGroup, ...] = ()
    pulls: Mapping[int, PullSnapshot] = field(default_factory=dict)
    gates: Mapping[int, str] = field(default_factory=dict)
    first_checks: GateResult | None = None
    batch_limits: Mapping[int, int] = field(default_factory=dict)
    left_branches: tuple[int, ...] = ()
    retries_used: Mapping[int, int] = field(default_factory=dict)
    landed: Mapping[int, LandedPull] = field(default_factory=dict)


# --- actions ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildGroup:
    """Create the group's branch at ``after``'s head (None: the base tip) and merge each PR's
    head into it, in order. ``resume``: the group whose build stopped part-way (a worker killed,
    the write budget spent); it goes on from what it recorded."""
    prs: tuple[int, ...]
    heads: tuple[str, ...]
    after: int | None
    resume: int | None = None


@dataclass(frozen=True)
class LandGroup:
    """Re-check the group on GitHub, then fast-forward the base to ``head_sha``."""
    group: int
    head_sha: str


@dataclass(frozen=True)
class EndGroups:
    """End these groups (``failed``: the first one's checks failed; ``abandoned``: rebuilt);
    their branches are deleted after."""
    groups: tuple[int, ...]
    outcome: Literal["failed", "abandoned"]
    reason: str


@dataclass(frozen=True)
class SplitBatch:
    """A failed group of several PRs: test them again in groups of at most ``limit``."""
    prs: tuple[int, ...]
    limit: int


@dataclass(frozen=True)
class ClearBatchLimits:
    """The failing PR of a split batch was found: the rest of the batch (only suspects until now)
    goes back to groups of ``queue.batch_size``."""
    prs: tuple[int, ...]


@dataclass(frozen=True)
class RetryGroup:
    """A failed group within ``queue.retries``: count the retry; it is built again as it was."""
    prs: tuple[int, ...]


@dataclass(frozen=True)
class WaitForBatch:
    """``queue.batch_wait``: the next group would be smaller than ``batch_size`` while another is
    under test; decide again at ``until`` (or when something happens first)."""
    until: datetime


@dataclass(frozen=True)
class DeleteGroupBranch:
    group: int


@dataclass(frozen=True)
class GroupLanded:
    """The base now points at the group's head: record it (its PRs are merged on GitHub)."""
    group: int
    head_sha: str


@dataclass(frozen=True)
class AnnounceLanded:
    """One comment on a PR whose changes Fleet landed as its own commit (a squashed group)."""
    pr: int
    carrier: str
    group: int


@dataclass(frozen=True)
class ClosePull:
    """Close a PR that landed squashed (GitHub keeps it open: its head is not in the base)."""
    pr: int


@dataclass(frozen=True)
class FallBackToSerial:
    """The base refused Fleet's push: this queue runs serially, saying why."""
    reason: str


GroupAction = Union[BuildGroup, LandGroup, EndGroups, SplitBatch, ClearBatchLimits, RetryGroup, WaitForBatch,
                    DeleteGroupBranch, GroupLanded,
                    AnnounceLanded, ClosePull, FallBackToSerial, Dequeue, MarkMerged, CloseLinkedTasks]


# --- the decision -------------------------------------------------------------------------------

def decide_groups(view: GroupsView, config: QueueConfig, now: datetime) -> list[GroupAction]:
    """The next actions for one queue in group mode: clean up ended groups' branches, judge the
    groups in order (only the first may land or fail), then build at most one new group behind
    the ones kept. The executor applies them and decides again."""
    actions: list[GroupAction] = [DeleteGroupBranch(g) for g in view.left_branches]
    actions += finish_landed(view)
    kept: list[QueueGroup] = []
    for i, group in enumerate(view.groups):
        rest = tuple(g.id for g in view.groups[i:])
        trouble = group_trouble(group, view.queue, view.pulls, config)
        if trouble is not None:
            reason, dequeues = trouble
            actions += dequeues + [EndGroups(rest, "abandoned", reason)]
            break
        if group.state == "building":  # always the last group: builds go one at a time, in order
            actions.append(BuildGroup(group.prs, group.pr_heads, kept[-1].id if kept else None, group.id))
            return actions
        if i == 0:
            verdict = _judge_first(group, view, config, now)
            if verdict:
                actions += verdict
                if not isinstance(verdict[0], LandGroup):
                    break  # the first group failed: every group behind it was ended too
        kept.append(group)
    done = {a.pr for a in actions if isinstance(a, (Dequeue, MarkMerged))}
    return actions + _build_next(view, kept, done, config, _limits_after(view.batch_limits, actions), now)


def split_limit(size: int, depth: int) -> int:
    """The batch limit for the PRs of a failed group of ``size``. The ``depth`` groups built from
    them next are stacked, so they test growing prefixes of the batch on the same base: cut it in
    ``depth + 1`` near-equal parts, and never let the last prefix be the whole batch (that tree
    just failed). The first failing prefix holds the culprit; depth 1 halves the batch."""
    return max(1, min(round(size / (depth + 1)), (size - 1) // depth))


def _limits_after(limits: Mapping[int, int], actions: list[GroupAction]) -> Mapping[int, int]:
    """The batch limits once this decision's splits are applied: the group built right after a
    split must already be the smaller one, or the same PRs would be tested together again; after
    a culprit was found, its batch's other PRs are back to full size."""
    cleared = {pr for a in actions if isinstance(a, ClearBatchLimits) for pr in a.prs}
    splits = {pr: a.limit for a in actions if isinstance(a, SplitBatch) for pr in a.prs}
    if not (cleared or splits):
        return limits
    return {**{pr: limit for pr, limit in limits.items() if pr not in cleared}, **splits}


def finish_landed(view: GroupsView) -> list[GroupAction]:
    """Finish the entries of PRs whose group landed. Merged groups: GitHub marked the PRs merged
    and closed the tasks its closing keywords name; Fleet closes the rest. Squashed groups: Fleet
    comments once naming the commit, closes the PR and every linked task. The entry is finished
    last, so a worker killed on the way repeats only idempotent steps."""
    actions: list[GroupAction] = []
    for entry in view.queue.ordered():
        landed = view.landed.get(entry.pr_number)
        if landed is None:
            continue
        pr = view.pulls.get(entry.pr_number)
        tasks = tuple(pr.linked_tasks) if pr is not None else ()
        if landed.squashed:
            actions += [AnnounceLanded(landed.pr, landed.carrier, landed.group), ClosePull(landed.pr)]
        if tasks:
            actions.append(CloseLinkedTasks(landed.pr, tasks, github_closes=not landed.squashed))
        actions.append(MarkMerged(landed.pr, landed.head_sha, landed.carrier))
    return actions


def group_trouble(group: QueueGroup, queue: QueueSnapshot, pulls: Mapping[int, PullSnapshot],
                  config: QueueConfig) -> tuple[str, list[GroupAction]] | None:
    """Why ``group`` can no longer land as built (and the dequeues that go with it), or None.
    ``pulls`` may be the recorded PRs or, right before landing, the ones just read. A group
    already ``landing`` is past judging: its PRs turn merged by that very push, and landing it
    again is what finds out (the same fast-forward twice changes nothing)."""
    if group.state == "landing":
        return None
    if group.broken:
        return group.broken, []
    for number, head in zip(group.prs, group.pr_heads):
        pr = pulls.get(number)
        if queue.entry(number) is None:
            return f"#{number} left the queue", []
        if pr is None or pr.state != "open" or pr.merged or pr.draft or pr.base_ref != queue.base_ref:
            return f"#{number} changed", []  # the entry's own end is decided when building
        if pr.head_sha != head:
            reason = f"#{number} was pushed to ({short_sha(head)} → {short_sha(pr.head_sha)})"
            if config.requeue_on_push:
                return reason, []
            return reason, [dequeue_action(
                number, "head_changed",
                f"new commits were pushed while it was in a merge group ({short_sha(head)} → "
                f"{short_sha(pr.head_sha)}). `/queue` again when it is ready.")]
    return None


def _judge_first(group: QueueGroup, view: GroupsView, config: QueueConfig, now: datetime) -> list[GroupAction]:
    """Land, fail or wait (``[]``) for the first group, by its required checks."""
    behind = tuple(g.id for g in view.groups[1:])
    ahead_of_rest = [EndGroups(behind, "abandoned", f"the group ahead ({group.id}) failed")] if behind else []
    branch = group_branch(view.queue.base_ref, group.id)
    checks = view.first_checks
    if group.state == "landing" or (checks is not None and checks.state == "passed"):
        assert group.head_sha is not None
        return [LandGroup(group.id, group.head_sha)]
    if checks is not None and checks.state == "failing":
        failed = EndGroups((group.id,), "failed", f"checks failed on {group.head_sha}")
        if max(view.retries_used.get(pr, 0) for pr in group.prs) < config.retries:
            return [RetryGroup(group.prs), failed] + ahead_of_rest
        if len(group.prs) > 1:
            return [SplitBatch(group.prs, split_limit(len(group.prs), config.depth)), failed] + ahead_of_rest
        culprit = group.prs[0]
        detail = group_checks_detail(checks, branch, group.head_sha or "", view.queue.base_ref)
        suspects = tuple(pr for pr in view.batch_limits if pr != culprit)
        clear = [ClearBatchLimits(suspects)] if suspects else []
        return [dequeue_action(culprit, "checks_failed", detail), failed] + clear + ahead_of_rest
    started = group.tested_since or now
    if now - started >= config.ci_timeout:
        detail = group_timeout_detail(checks, branch, group.head_sha or "", config.ci_timeout)
        timed_out = EndGroups((group.id,), "failed", "checks did not report in time")
        return [dequeue_action(pr, "ci_timeout", detail) for pr in group.prs] + [timed_out] + ahead_of_rest
    return []


def _build_next(view: GroupsView, kept: list[QueueGroup], dequeued: set[int],
                config: QueueConfig, limits: Mapping[int, int], now: datetime) -> list[GroupAction]:
    """End what the record says can no longer merge, then one new group of the next eligible
    PRs in queue order, if there is room. A PR whose gates still wait does not hold up the PRs
    behind it."""
    grouped = {pr for g in kept for pr in g.prs}
    actions: list[GroupAction] = []
    batch: list[PullSnapshot] = []
    cap, full = config.batch_size, len(kept) >= config.depth
    for entry in view.queue.ordered():
        number = entry.pr_number
        pr = view.pulls.get(number)
        if number in grouped or number in dequeued or pr is None:
            continue
        ended = ended_entry(entry, pr, view.queue)
        if ended:
            actions += ended
            continue
        gates = view.gates.get(number)
        if gates == "failure":
            actions.append(dequeue_action(pr, "gates_failed", (
                f"gates failing on {short_sha(pr.head_sha)} (see {md_code('fleet/gates', in_table=False)} "
                "on the pull request). Fix it and `/queue` again.")))
            continue
        if gates != "success" or full:
            continue
        limit = min(cap, limits.get(number, config.batch_size))
        if batch and len(batch) >= limit:
            full = True  # it starts the next group; the PRs after it keep their order behind it
            continue
        cap = limit
        batch.append(pr)
        full = len(batch) >= cap
    if batch and len(batch) < cap and kept and config.batch_wait:
        since = kept[-1].tested_since
        if since is not None and now < since + config.batch_wait:
            return actions + [WaitForBatch(since + config.batch_wait)]
    if batch:
        actions.append(BuildGroup(tuple(p.number for p in batch), tuple(p.head_sha for p in batch),
                                  kept[-1].id if kept else None))
    return actions


# --- GitHub's answers ---------------------------------------------------------------------------

def decide_land_result(group: QueueGroup, status: int, message: str, active: tuple[int, ...]) -> list[GroupAction]:
    """What to do with GitHub's answer to fast-forwarding the base to the group's head.
    ``active``: every active group, first to last. A 5xx is raised by the caller (the step
    backs off and lands again: the intent is recorded)."""
    assert group.head_sha is not None
    if status in (200, 201):
        return [GroupLanded(group.id, group.head_sha)]  # its entries are finished by finish_landed
    lowered = message.lower()
    if status == 422 and "fast forward" in lowered:
        return [EndGroups(active, "abandoned", "the base branch moved")]
    return [FallBackToSerial(f"GitHub refused Fleet's push to the base ({status}: {message})"[:300]),
            EndGroups(active, "abandoned", "the queue fell back to serial")]


def group_pr_conflict(number: int, base_ref: str, group_id: int) -> Dequeue:
    """A PR that does not merge cleanly on top of the base and the PRs ahead of it."""
    return dequeue_action(number, "conflict", (
        f"it has a merge conflict with {md_code(base_ref, in_table=False)} plus the pull requests "
        f"queued ahead of it (merge group {md_code(group_branch(base_ref, group_id), in_table=False)}). "
        "Resolve it and `/queue` again."))
