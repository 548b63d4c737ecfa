"""A GitHub error inside a queue step: a 4xx fails the entry with one comment naming the call and
status; 5xx and timeouts are retried with backoff up to MAX_STEP_FAILURES, then fail the same way.
(They used to raise out of the step, to be retried by the poll every 60 s forever, silently.)"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from app.queue.rules import decide_step_failure
from app.queue.state import (
    AdvanceToNext, Dequeue, MAX_STEP_FAILURES, QueueEntry, QueueSnapshot, Retry, transition,
)
from tests.test_e2e_merge_queue import (  # noqa: F401  (the settings fixture lifts write pacing)
    comments_text, merge_calls, open_task_pr, queue_rows, run_ci, settings,
)

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
QUEUE = QueueSnapshot("o/r", "main")
CALL = "GET /repos/o/r/compare/main...abc"


def _entry(failures: int = 0) -> QueueEntry:
    return QueueEntry(7, T0, "carol", state="waiting_checks", step_failures=failures)


@pytest.mark.parametrize("status", [404, 422, 410, 401])
def test_a_4xx_fails_the_entry_at_once_naming_call_and_status(status) -> None:
    actions = decide_step_failure(_entry(), QUEUE, CALL, status, "Not Found")
    assert [type(a) for a in actions] == [Dequeue, AdvanceToNext]
    dequeue = actions[0]
    assert dequeue.reason_code == "github_error"
    assert f"GitHub answered {status} to `{CALL}`" in dequeue.message


@pytest.mark.parametrize("status", [500, 502, 503, None])
def test_5xx_and_timeouts_back_off_then_fail(status) -> None:
    entry, delays = _entry(), []
    for _ in range(MAX_STEP_FAILURES):
        actions = decide_step_failure(entry, QUEUE, CALL, status, "boom")
        assert [type(a) for a in actions] == [Retry]
        delays.append(actions[0].delay)
        entry = transition(entry, actions[0], T0)
    assert delays == sorted(delays) and delays[0] < delays[-1]  # backoff grows
    assert entry.step_failures == MAX_STEP_FAILURES
    final = decide_step_failure(entry, QUEUE, CALL, status, "boom")
    assert [type(a) for a in final] == [Dequeue, AdvanceToNext]
    assert f"GitHub kept failing `{CALL}`" in final[0].message
    assert ("timed out" if status is None else f"answered {status}") in final[0].message


def test_rate_limit_waits_without_counting() -> None:
    actions = decide_step_failure(_entry(MAX_STEP_FAILURES), QUEUE, CALL, 403, "API rate limit exceeded")
    assert [type(a) for a in actions] == [Retry] and not actions[0].step_failure


def test_a_new_head_resets_the_count() -> None:
    from app.queue.state import AcceptHead
    assert transition(_entry(3), AcceptHead(7, "def", "abc", "pushed"), T0).step_failures == 0


def test_compare_404_in_a_step_fails_the_entry_with_one_comment(world, db_conn):
    world.sim.add_user("alice", "write")
    pr = open_task_pr(world, "gone")
    world.settle()
    run_ci(world)
    world.settle()
    world.sim.faults.fail_next(1, status=404, path_contains="/compare/")
    world.sim.comment(world.repo, pr, "/queue", author="alice")
    world.settle()
    row = queue_rows(db_conn)[0]
    assert (row["state"], row["outcome"]) == ("failed", "github_error")
    text = comments_text(world, pr)
    assert text.count("GitHub answered 404 to `GET /repos/octo/widgets/compare/") == 1
    assert merge_calls(world) == []


def test_a_timeout_is_named_by_its_call_and_counts_as_transient() -> None:
    import httpx
    from githubkit.exception import RequestError, RequestTimeout

    from app.queue.effects import call_failure

    request = httpx.Request("GET", "http://sim/repos/o/r/compare/main...abc")
    assert call_failure(RequestTimeout(httpx.ReadTimeout("slow", request=request))) == (
        "GET /repos/o/r/compare/main...abc", None, "RequestTimeout", None)
    assert call_failure(RequestError(httpx.ConnectError("refused")))[:2] == ("a GitHub request", None)
