"""Task states, Fleet's state labels, dependency cycles and /next."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.tasks.agents import AgentId
from app.tasks.readiness import (
    FLEET_LABELS,
    AddLabel,
    CreateLabel,
    Dependency,
    RemoveLabel,
    TaskSnapshot,
    desired_label,
    find_cycles,
    label_actions,
    missing_label_actions,
    pick_next,
    task_state,
)
from app.tasks.refs import TaskRef

REPO = "acme/widgets"


def create_task(number: int = 1, **overrides: object) -> TaskSnapshot:
    return replace(TaskSnapshot(repo=REPO, number=number), **overrides)


def dep(number: int, state: str) -> Dependency:
    return Dependency(TaskRef.of(REPO, number), state)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "state"),
    [
        ({}, "ready"),
        ({"dependencies": (dep(2, "closed"),)}, "ready"),
        ({"dependencies": (dep(2, "closed"), dep(3, "open"))}, "blocked"),
        ({"dependencies": (dep(2, "unknown"),)}, "blocked"),
        ({"dependencies": (dep(1, "open"),)}, "ready"),  # a task never blocks itself
        ({"holder": AgentId("a")}, "claimed"),
        ({"holder": AgentId("a"), "dependencies": (dep(3, "open"),)}, "claimed"),
        ({"holder": AgentId("a"), "open_prs": (9,)}, "review"),
        ({"open_prs": (9,)}, "review"),
        ({"open_prs": (9,), "queued": True}, "queued"),
        ({"state": "closed", "holder": AgentId("a"), "open_prs": (9,)}, "done"),
    ],
)
def test_task_state(overrides: dict, state: str) -> None:
    """ready → claimed → review → queued → done, plus blocked for unclaimed tasks with open deps."""
    assert task_state(create_task(**overrides)) == state


def test_fleet_labels_have_colours_and_descriptions() -> None:
    """Every non-final state has a label with a 6-hex-digit colour and a description."""
    assert set(FLEET_LABELS) == {"ready", "blocked", "claimed", "review", "queued"}
    for spec in FLEET_LABELS.values():
        assert spec.name.startswith("fleet:") and len(spec.color) == 6 and int(spec.color, 16) >= 0
        assert 0 < len(spec.description) <= 100  # GitHub's limit for label descriptions


def test_label_actions_only_on_real_change() -> None:
    """No action when the right label is already there; swap when the state changes."""
    ref = TaskRef.of(REPO, 1)
    assert label_actions(create_task(), ["bug", "fleet:ready"]) == []
    assert label_actions(create_task(), ["bug", "Fleet:Ready"]) == []
    assert label_actions(create_task(), ["bug"]) == [AddLabel(ref, "fleet:ready")]
    assert label_actions(create_task(holder=AgentId("a")), ["fleet:ready"]) == [
        RemoveLabel(ref, "fleet:ready"), AddLabel(ref, "fleet:claimed"),
    ]
    assert label_actions(create_task(state="closed"), ["fleet:review", "fleet:queue"]) == [RemoveLabel(ref, "fleet:review")]
    assert label_actions(create_task(is_task=False), ["fleet:blocked"]) == [RemoveLabel(ref, "fleet:blocked")]
    # Duplicated state labels are cleaned up too, and labels that only look similar are left alone.
    assert label_actions(create_task(), ["fleet:ready", "fleet:blocked", "fleet:status", "fleet:queue"]) == [
        RemoveLabel(ref, "fleet:blocked"),
    ]


_states = st.builds(
    lambda closed, held, prs, queued, dep_state: create_task(
        state="closed" if closed else "open",
        holder=AgentId("a") if held else None,
        open_prs=(5,) if prs else (),
        queued=queued,
        dependencies=(dep(2, dep_state),),
    ),
    st.booleans(), st.booleans(), st.booleans(), st.booleans(), st.sampled_from(["open", "closed", "unknown"]),
)


@settings(max_examples=100, deadline=None)
@given(_states, st.lists(st.sampled_from([s.name for s in FLEET_LABELS.values()] + ["bug", "fleet:queue"]), max_size=6))
def test_applying_label_actions_converges(task: TaskSnapshot, current: list[str]) -> None:
    """After applying the actions once, the task carries exactly its state label and nothing more changes."""
    labels = set(current)
    for action in label_actions(task, current):
        if isinstance(action, AddLabel):
            labels.add(action.name)
        else:
            labels.discard(action.name)
    fleet = {label for label in labels if label in {s.name for s in FLEET_LABELS.values()}}
    want = desired_label(task)
    assert fleet == ({want} if want else set())
    assert {"bug", "fleet:queue"} & set(current) <= labels
    assert label_actions(task, labels) == []


def test_missing_label_actions() -> None:
    """Only labels the repository lacks are created."""
    created = missing_label_actions(["fleet:ready", "FLEET:BLOCKED", "bug"])
    assert [c.name for c in created] == ["fleet:claimed", "fleet:review", "fleet:queued"]
    assert all(isinstance(c, CreateLabel) and c.color for c in created)
    assert missing_label_actions([s.name for s in FLEET_LABELS.values()]) == []


@pytest.mark.parametrize(
    ("graph", "cycles"),
    [
        ({}, []),
        ({1: [2], 2: [3], 3: []}, []),
        ({1: [2], 2: [1]}, [[1, 2]]),
        ({2: [1], 1: [2]}, [[1, 2]]),
        ({1: [1]}, [[1]]),
        ({1: [2], 2: [3], 3: [1], 4: [5], 5: [4], 6: [1]}, [[1, 2, 3], [4, 5]]),
        ({1: [2, 3], 2: [3], 3: [1]}, [[1, 2, 3]]),
        ({1: [99]}, []),  # dependencies on unknown tasks are fine
    ],
)
def test_find_cycles(graph: dict[int, list[int]], cycles: list[list[int]]) -> None:
    """Every cycle is found once, as a strongly connected group, rotated to its smallest member."""
    assert find_cycles(graph) == cycles


def test_find_cycles_on_a_long_chain_does_not_recurse() -> None:
    """Deep graphs do not hit Python's recursion limit."""
    graph = {i: [i + 1] for i in range(20_000)}
    assert find_cycles(graph) == []
    graph[20_000] = [0]
    (cycle,) = find_cycles(graph)
    assert len(cycle) == 20_001 and cycle[0] == 0


def test_find_cycles_with_task_refs() -> None:
    """Works on TaskRefs, including cross-repository dependencies."""
    a, b = TaskRef.of(REPO, 1), TaskRef("other", "repo", 2)
    graph = {a: [b], b: [a]}
    assert find_cycles(graph) == [[a, b]]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.integers(0, 12), st.lists(st.integers(0, 12), max_size=4), max_size=12))
def test_find_cycles_matches_reachability(graph: dict[int, list[int]]) -> None:
    """A node is in a reported cycle exactly when it can reach itself; nothing is reported twice."""

    def reaches_itself(start: int) -> bool:
        seen, todo = set(), list(graph.get(start, []))
        while todo:
            node = todo.pop()
            if node == start:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, []))
        return False

    found = [n for cycle in find_cycles(graph) for n in cycle]
    assert len(found) == len(set(found))
    nodes = set(graph) | {n for targets in graph.values() for n in targets}
    assert set(found) == {n for n in nodes if reaches_itself(n)}


def test_pick_next_prefers_priority_then_lowest_number() -> None:
    """/next gives the most urgent ready task, the lowest number among equals."""
    tasks = [
        create_task(5, priority=2),
        create_task(3, priority=2),
        create_task(9, priority=1),
        create_task(1, priority=0, holder=AgentId("x")),  # claimed
        create_task(2, priority=0, dependencies=(dep(7, "open"),)),  # blocked
        create_task(4, priority=0, state="closed"),
        create_task(6, priority=0, is_task=False),
        create_task(8, priority=0, assignees=("someone",)),  # assigned outside Fleet
    ]
    agent = AgentId("bot", "a")
    assert pick_next(tasks, agent).number == 9
    assert pick_next([t for t in tasks if t.number != 9], agent).number == 3
    assert pick_next([create_task(8, assignees=("BOT",))], agent).number == 8
    assert pick_next([], agent) is None
