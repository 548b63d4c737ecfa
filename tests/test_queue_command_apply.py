"""The executor of queue commands: every action the decision returns is carried out or raises."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from app.queue import service as queue_service
from app.queue.state import AdvanceToNext, StartEntry
from app.repos.config import RepoConfig
from tests.test_merge_queue import make_pr


def _ctx(db_conn):
    deferred: list = []
    return SimpleNamespace(conn=db_conn, defer=deferred.append), deferred


def _repo():
    return SimpleNamespace(id=987654, full_name="o/r", config=RepoConfig())


def test_advance_to_next_is_applied_as_a_step(db_conn) -> None:
    """AdvanceToNext (which /dequeue of the in-flight PR returns) steps the queue; it was dropped."""
    ctx, deferred = _ctx(db_conn)
    queue_service._apply_command(ctx, _repo(), make_pr(), (AdvanceToNext("o/r", "main"),), "bob")
    assert len(deferred) == 1


def test_an_action_without_executor_raises(db_conn) -> None:
    ctx, deferred = _ctx(db_conn)
    with pytest.raises(TypeError, match="no executor for queue command action StartEntry"):
        queue_service._apply_command(ctx, _repo(), make_pr(), (StartEntry(7, "abc"),), "bob")
    assert deferred == []
