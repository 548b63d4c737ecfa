"""``app.enqueue.enqueue_unique``: at most one job waiting per key, a slot free for the next one
while others run, and a job whose data expired never listed twice."""
from __future__ import annotations

from datetime import timedelta

from rq.job import JobStatus

from app import runtime
from app.enqueue import SLOTS, enqueue_unique

FUNC = "bench.bench_processing.noop"


def _set_status(job_id: str, status: JobStatus) -> None:
    job = runtime.queue().fetch_job(job_id)
    job.set_status(status)


def test_one_job_waits_per_key_and_the_next_takes_a_free_slot_while_others_run(settings):
    first = enqueue_unique(FUNC, ("a",), "k1")
    assert first == "k1-0"
    assert enqueue_unique(FUNC, ("a",), "k1") is None  # one is waiting: it will read the newest state
    assert runtime.queue().job_ids == ["k1-0"]
    _set_status(first, JobStatus.STARTED)
    assert enqueue_unique(FUNC, ("a",), "k1") == "k1-1"
    _set_status("k1-1", JobStatus.STARTED)
    assert enqueue_unique(FUNC, ("a",), "k1") == "k1-2"
    _set_status("k1-2", JobStatus.STARTED)
    assert enqueue_unique(FUNC, ("a",), "k1") is None  # every slot runs
    _set_status("k1-1", JobStatus.FINISHED)
    assert enqueue_unique(FUNC, ("a",), "k1") == "k1-1"  # a finished one's slot is used again
    assert enqueue_unique(FUNC, ("b",), "k2") == "k2-0"  # keys are independent
    assert SLOTS == 3


def test_a_job_scheduled_for_later_counts_as_waiting(settings):
    assert enqueue_unique(FUNC, ("a",), "later", delay=timedelta(seconds=30)) == "later-0"
    assert enqueue_unique(FUNC, ("a",), "later") is None


def test_a_listed_job_whose_data_expired_is_not_listed_twice(settings):
    queue = runtime.queue()
    assert enqueue_unique(FUNC, ("a",), "gone") == "gone-0"
    runtime.redis_client().delete(queue.fetch_job("gone-0").key)  # its hash expired, its id still listed
    assert enqueue_unique(FUNC, ("a",), "gone") == "gone-0"
    assert queue.job_ids == ["gone-0"]
