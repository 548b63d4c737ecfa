"""The linked-task gate refuses work that is finished or someone else's: no duplicate merges."""
from __future__ import annotations

import pytest

from app.gates.rules import LinkedTask, evaluate_gates
from app.gates.check_run import md_code, render_check_run
from tests.test_gates import make_config, make_pr


def _verdict(**overrides):
    return evaluate_gates(make_pr(**overrides), make_config()).result("linked_task")


def test_closed_linked_task_fails() -> None:
    result = _verdict(task_states=(LinkedTask(12, "closed"),))
    assert (result.state, result.reason, result.names) == ("failing", "the linked task is already closed", ("#12",))


def test_task_held_by_another_agent_fails_naming_the_holder() -> None:
    result = _verdict(task_states=(LinkedTask(12, "open", "bob"),))
    assert result.state == "failing"
    assert result.names == ("bob",) and "#12" in result.reason


@pytest.mark.parametrize("task,author,head_ref,branch_agent", [
    (LinkedTask(12, "open", "alice"), "alice", "agent/12-topic", None),
    (LinkedTask(12, "open", "ALICE"), "alice", "agent/12-topic", None),
    (LinkedTask(12, "open", "bot", "agent-d"), "bot", "agent-d/12-topic", "agent-d"),
    (LinkedTask(12, "open", "bob", None, "shared/12"), "alice", "shared/12", None),  # the holder's branch
    (LinkedTask(12, "open"), "alice", "agent/12-topic", None),  # nobody holds it
])
def test_the_prs_own_agent_or_no_holder_passes(task, author, head_ref, branch_agent) -> None:
    result = _verdict(task_states=(task,), author=author, head_ref=head_ref, branch_agent=branch_agent)
    assert result.state == "passed"


def test_another_named_agent_on_the_same_account_fails() -> None:
    result = _verdict(task_states=(LinkedTask(12, "open", "bot", "agent-d"),), author="bot",
                      head_ref="agent-e/12-topic", branch_agent="agent-e")
    assert (result.state, result.names) == ("failing", ("bot:agent-d",))


def test_hostile_holder_name_is_quoted_in_the_check_run() -> None:
    """A login is user-controlled: rendered as a code span like other gate names, never as Markdown."""
    hostile = "evil`|<img src=x onerror=alert(1)>"
    verdict = evaluate_gates(make_pr(task_states=(LinkedTask(12, "open", hostile),)), make_config())
    summary = render_check_run(verdict).summary
    assert f"held by another agent: {md_code(hostile)}" in summary
    assert verdict.result("linked_task").names == (hostile,)


def test_unknown_task_state_is_not_judged() -> None:
    assert _verdict(task_states=()).state == "passed"
