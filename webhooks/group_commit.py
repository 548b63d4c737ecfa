"""Group commit for ingest: deliveries arriving together are stored in one INSERT and one commit.

A request thread hands its delivery in. If no batch is being written, it becomes the writer for
everything waiting (its own delivery included); otherwise it sleeps until its delivery is written
or it is handed the writer's turn: once its batch is committed, the writer hands the turn to the
oldest waiting request, which writes whatever gathered meanwhile as the next batch while the
writer raises its batch's lanes' flags in Redis and then wakes its requests. Nobody waits for a
timer: a lone delivery is written at once, and under load a batch is as large as the requests
that arrived during the previous commit.
Each request still answers only after the commit that holds its delivery, so a 202 keeps meaning
"durably stored".
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from app import deliveries

log = logging.getLogger("fleet.ingest")

# A batch stops growing at either bound (large payloads are rare but GitHub allows 25 MB).
MAX_BATCH = 64
MAX_BATCH_BYTES = 8 * 1024 * 1024


@dataclass
class _Waiting:
    delivery: deliveries.Delivery
    text: str
    done: bool = False  # set by the writer after everything else, before the wake-up
    fresh: bool = False
    queued: bool = False
    error: BaseException | None = None
    woken: threading.Event = field(init=False, default_factory=threading.Event)


class GroupCommit:
    """Stores deliveries for many threads of one process; ``connection`` gives a pooled
    autocommit connection (a context manager). ``then_queue`` is called by the writer with a
    batch's new deliveries once they are committed (one call, so one Redis round trip, per batch);
    it returns whether they are queued."""

    def __init__(self, connection: Callable, then_queue: Callable[[list[deliveries.Delivery]], bool]):
        self._connection = connection
        self._then_queue = then_queue
        self._lock = threading.Lock()
        self._waiting: list[_Waiting] = []
        self._writing = False

    def store(self, delivery: deliveries.Delivery, text: str) -> tuple[bool, bool]:
        """Store one delivery: (new, queued); new is False when its GUID was stored before.
        Raises what storing raised."""
        me = _Waiting(delivery, text)
        with self._lock:
            self._waiting.append(me)
            writer = not self._writing
            self._writing = True
        if not writer:
            me.woken.wait()  # done, or handed the writer's turn
        while not me.done:
            with self._lock:
                batch = self._take()
            stored = self._insert(batch)  # raises nothing
            if any(w is me for w in batch):
                self._hand_on()  # the next batch's INSERT overlaps this batch's Redis round trip
            try:
                self._queue(stored)
            finally:  # whatever happened, nobody may wait for this batch forever
                self._finish(batch)
        if me.error is not None:
            raise me.error
        return me.fresh, me.queued

    def _hand_on(self) -> None:
        """Give the writer's turn to the oldest waiting request, if any."""
        with self._lock:
            after = self._waiting[0] if self._waiting else None
            self._writing = after is not None
        if after is not None:
            after.woken.set()

    @staticmethod
    def _finish(batch: list[_Waiting]) -> None:
        for w in batch:
            w.done = True  # before the wake-up: its thread reads what was set
            w.woken.set()

    def _take(self) -> list[_Waiting]:
        batch, size = [], 0
        while self._waiting and len(batch) < MAX_BATCH and (not batch or size + len(self._waiting[0].text) <= MAX_BATCH_BYTES):
            size += len(self._waiting[0].text)
            batch.append(self._waiting.pop(0))
        return batch

    def _insert(self, batch: list[_Waiting]) -> list[_Waiting]:
        """Store the batch in one INSERT and commit; the requests whose delivery is new. Raises
        nothing: a request whose delivery was not stored holds the error."""
        try:
            with self._connection() as conn:
                try:
                    fresh = deliveries.store_many(conn, [(w.delivery, w.text) for w in batch])
                except psycopg.errors.DataError:
                    fresh = None  # one payload Postgres cannot hold: find it, store the others
                if fresh is None:
                    self._write_one_by_one(conn, batch)
                else:
                    _settle(batch, fresh)
        except BaseException as exc:  # the database went away: every request of the batch says so
            for w in batch:
                w.error = w.error or exc
        return [w for w in batch if w.fresh and w.error is None]

    def _queue(self, stored: list[_Waiting]) -> None:
        if not stored:
            return
        try:
            queued = self._then_queue([w.delivery for w in stored])
        except Exception:  # stored all the same: the sweeper queues them
            log.exception("deliveries stored but not queued")
            queued = False
        for w in stored:
            w.queued = queued

    @staticmethod
    def _write_one_by_one(conn, batch: list[_Waiting]) -> None:
        for w in batch:
            try:
                w.fresh = deliveries.store(conn, w.delivery, w.text)
            except psycopg.errors.DataError as exc:
                w.error = exc


def _settle(batch: list[_Waiting], fresh: set[str]) -> None:
    """Each new id is new for its first request only (GitHub may send one delivery twice at once)."""
    for w in batch:
        w.fresh = w.delivery.id in fresh
        fresh.discard(w.delivery.id)
