"""Deferring a job whose GitHub writes found the budget spent: RQ runs it again when a slot
frees (the worker runs RQ's scheduler, ``fleet worker``), and the worker goes on with other work
meanwhile instead of sleeping."""
from __future__ import annotations

import time
from datetime import datetime, timezone

from githubkit.exception import RateLimitExceeded

from app.github.write_budget import BudgetSpent

# A deferred job runs this long after the slot frees, so jobs deferred to one window boundary
# do not all start in the same instant and a later one lands behind an earlier one.
DEFER_MARGIN = 1.0


def deferral_time(exc: BaseException) -> float | None:
    """When the job should run again (epoch seconds) if ``exc`` means "write budget spent" or
    "GitHub rate limit", wherever it sits in the exception chain; None for any other error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BudgetSpent):
            return current.retry_at
        if isinstance(current, RateLimitExceeded):
            return time.time() + current.retry_after.total_seconds()
        current = current.__cause__ or current.__context__
    return None


def run_at(retry_at: float) -> datetime:
    return datetime.fromtimestamp(max(retry_at, time.time()) + DEFER_MARGIN, tz=timezone.utc)
