"""Task state (blocked → ready → claimed → review → queued → done), the labels that show it,
dependency cycles, and which ready task ``/next`` hands out.

Pure functions over ``TaskSnapshot``s built by the caller from the database.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from app.tasks.agents import AgentId
from app.tasks.refs import PRIORITY_NORMAL, TaskRef

TaskState = Literal["blocked", "ready", "claimed", "review", "queued", "done"]
DependencyState = Literal["open", "closed", "unknown"]


@dataclass(frozen=True)
class Dependency:
    """A task this one depends on, and whether it is closed (``unknown``: not fetched / no access)."""

    ref: TaskRef
    state: DependencyState = "unknown"


@dataclass(frozen=True)
class TaskSnapshot:
    """One task as the database knows it.

    ``holder`` is the agent with an open claim (None when unclaimed), ``open_prs`` the numbers of
    open pull requests linked to it, ``queued`` whether one of them is in the merge queue.
    ``priority`` comes from ``task_refs.parse_priority`` (lower is more urgent).
    """

    repo: str
    number: int
    title: str = ""
    state: Literal["open", "closed"] = "open"
    labels: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    holder: AgentId | None = None
    dependencies: tuple[Dependency, ...] = ()
    open_prs: tuple[int, ...] = ()
    queued: bool = False
    priority: int = PRIORITY_NORMAL
    estimate_hours: float | None = None
    is_task: bool = True

    @property
    def ref(self) -> TaskRef:
        return TaskRef.of(self.repo, self.number)

    @property
    def open_blockers(self) -> tuple[TaskRef, ...]:
        """Dependencies not known to be closed (a task never blocks itself)."""
        return tuple(d.ref for d in self.dependencies if d.state != "closed" and d.ref != self.ref)


def task_state(task: TaskSnapshot) -> TaskState:
    """The task's place in the lifecycle.

    Closed → done. Otherwise the furthest the work has got wins: queued (a linked PR is in the
    merge queue), review (a linked PR is open), claimed (held). An unclaimed task is ready when
    every dependency is closed, blocked otherwise (including dependencies of unknown state).
    """
    if task.state == "closed":
        return "done"
    if task.queued:
        return "queued"
    if task.open_prs:
        return "review"
    if task.holder is not None:
        return "claimed"
    return "blocked" if task.open_blockers else "ready"


# --- Labels ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSpec:
    name: str
    color: str
    description: str


FLEET_LABELS: dict[TaskState, LabelSpec] = {
    "ready": LabelSpec("fleet:ready", "0e8a16", "Fleet: open, unclaimed, every dependency closed"),
    "blocked": LabelSpec("fleet:blocked", "b60205", "Fleet: waiting for an open dependency"),
    "claimed": LabelSpec("fleet:claimed", "fbca04", "Fleet: claimed by an agent (leased)"),
    "review": LabelSpec("fleet:review", "1d76db", "Fleet: a linked pull request is open"),
    "queued": LabelSpec("fleet:queued", "5319e7", "Fleet: a linked pull request is in the merge queue"),
}
FLEET_LABEL_NAMES = frozenset(spec.name for spec in FLEET_LABELS.values())


@dataclass(frozen=True)
class AddLabel:
    task: TaskRef
    name: str


@dataclass(frozen=True)
class RemoveLabel:
    task: TaskRef
    name: str


@dataclass(frozen=True)
class CreateLabel:
    """Create a repository label Fleet needs (only when it is missing)."""

    name: str
    color: str
    description: str


LabelAction = AddLabel | RemoveLabel | CreateLabel


def desired_label(task: TaskSnapshot) -> str | None:
    """The one Fleet state label the task should carry (none once done, or if it is no task)."""
    if not task.is_task:
        return None
    spec = FLEET_LABELS.get(task_state(task))  # type: ignore[call-overload]
    return spec.name if spec else None


def label_actions(task: TaskSnapshot, current_labels: Iterable[str]) -> list[LabelAction]:
    """Add the state label and remove stale Fleet state labels; nothing when already right.

    Only Fleet's own state labels are ever touched, compared case-insensitively.
    """
    current = {label.lower(): label for label in current_labels}
    want = desired_label(task)
    actions: list[LabelAction] = []
    for lower, label in sorted(current.items()):
        if lower in FLEET_LABEL_NAMES and lower != want:
            actions.append(RemoveLabel(task.ref, label))
    if want is not None and want not in current:
        actions.append(AddLabel(task.ref, want))
    return actions


def missing_label_actions(repo_labels: Iterable[str], only: Iterable[str] | None = None) -> list[CreateLabel]:
    """Create whichever Fleet labels (of ``only``, when given) the repository does not have yet."""
    have = {label.lower() for label in repo_labels}
    wanted = None if only is None else set(only)
    return [CreateLabel(s.name, s.color, s.description) for s in FLEET_LABELS.values()
            if s.name not in have and (wanted is None or s.name in wanted)]


# --- Dependency cycles -------------------------------------------------------------------------

Node = TypeVar("Node", bound=Hashable)


def find_cycles(graph: Mapping[Node, Sequence[Node]]) -> list[list[Node]]:
    """Every dependency cycle in ``graph`` (task → tasks it depends on), never looping.

    Iterative Tarjan: each strongly connected component with more than one task, or a task that
    depends on itself, is one cycle, listed in the order its members were reached, rotated to start
    at its smallest member when members are orderable. Cycles are returned in a stable order.
    """
    index: dict[Node, int] = {}
    low: dict[Node, int] = {}
    on_stack: set[Node] = set()
    stack: list[Node] = []
    components: list[list[Node]] = []
    counter = 0
    children_of: dict[Node, list[Node]] = {}

    nodes = list(dict.fromkeys([*graph, *(n for targets in graph.values() for n in targets)]))
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[Node, int]] = [(root, 0)]
        while work:
            node, child_pos = work.pop()
            if child_pos == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            children = children_of.setdefault(node, list(graph.get(node, ())))
            advanced = False
            while child_pos < len(children):
                child = children[child_pos]
                child_pos += 1
                if child not in index:
                    work.append((node, child_pos))
                    work.append((child, 0))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            if low[node] == index[node]:
                component: list[Node] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                component.reverse()
                if len(component) > 1 or node in graph.get(node, ()):
                    components.append(_rotate(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    try:
        return sorted(components, key=lambda c: c[0])  # type: ignore[arg-type, return-value]
    except TypeError:
        return components


def _rotate(cycle: list[Node]) -> list[Node]:
    try:
        start = cycle.index(min(cycle))  # type: ignore[type-var]
    except TypeError:
        return cycle
    return cycle[start:] + cycle[:start]


# --- /next -------------------------------------------------------------------------------------


def pick_next(tasks: Iterable[TaskSnapshot], agent: AgentId) -> TaskSnapshot | None:
    """The ready task ``/next`` gives ``agent``: most urgent priority first, then lowest number.

    Tasks assigned on GitHub to another account (an assignment Fleet has not turned into a claim)
    are skipped, so ``/next`` never hands out work someone appears to be doing.
    """
    candidates = [
        t for t in tasks
        if t.is_task
        and task_state(t) == "ready"
        and all(agent.same_account(a) for a in t.assignees)
    ]
    return min(candidates, key=lambda t: (t.priority, t.repo.lower(), t.number), default=None)
