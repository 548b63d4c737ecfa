"""GitHub's write budget per installation: who may spend it, and what happens when it is spent.

GitHub allows about 80 content-creating requests a minute and 500 an hour per installation
(``FLEET_WRITES_PER_MINUTE`` / ``_HOUR``). Fleet shares that budget between every worker through
Redis and splits it by *write class*: each class may fill the window only up to its ceiling, so
the top of every window stays free for the writes an agent is waiting for (claim verdicts,
merges). A write without a slot never waits: ``BudgetSpent`` says when a slot frees and the job
layer re-schedules the job for then (``jobs/deferral.py``), so a worker never sleeps for budget.

A 403/429 with ``Retry-After`` (or an exhausted primary limit) marks the installation spent until
then, for every class and every process: GitHub itself said stop.
"""
from __future__ import annotations

import contextvars
import enum
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

log = logging.getLogger(__name__)


class WriteClass(enum.Enum):
    """Write priorities, highest first. The value is the share (percent) of the per-minute budget
    the class may fill (``HOUR_SHARE`` for the hour); what lies above a class's ceiling is its
    reserve for the classes above it."""

    # Claim verdicts (unassign, refusal comment, the accepted-claim signal, the answer to /claim
    # and /next): an agent waits for each, doing nothing.
    VERDICT = 100
    # Merges and update-branch. Below verdicts: once the queue no longer waited on its check run,
    # merges took the verdicts' whole reserve under a spent budget and a claim went 20 s without
    # a verdict (tests/test_e2e_claim_race.py); a tenth of every window is the verdicts' alone.
    MERGE = 90
    # fleet/gates check runs, queue and command replies; also every write nobody classified.
    # 30 % of every window stays for verdicts: 8 agents racing for tasks at once needed about 1.7
    # writes per verdict (measured by the race test), 20 of GitHub's 80 a minute; on a loaded
    # machine (the suite on two processes) they made more refusals and 12 claims needed more than
    # 20 writes, so a claim went 20 s without a verdict. 70 % leaves them 24.
    QUEUE = 70
    # The status issue (body edits, creation, pinning): with state labels off (the default) it is
    # where people and agents see ready work, so it ranks above them; its own pace is
    # ``status.min_interval``.
    STATUS = 60
    # fleet:* state labels (``tasks.manage_labels``).
    LABELS = 50


# Share (percent) of the hourly budget each class may fill. Bursts are smoothed by the minute
# shares above; over the hour the status issue must keep moving (it is how people and agents see
# state without labels) and its own rate is bounded by ``status.min_interval``: at 40 % of the
# minute and the hour it froze once 200 writes of the hour were spent, in the first busy minutes
# of a fleet (``fleet demo`` at GitHub's limits: no status edit in a 3-minute run).
HOUR_SHARE: dict[WriteClass, int] = {
    WriteClass.VERDICT: 100, WriteClass.MERGE: 95, WriteClass.QUEUE: 90, WriteClass.STATUS: 85, WriteClass.LABELS: 70,
}

DEFAULT_CLASS = WriteClass.QUEUE
_current: contextvars.ContextVar[WriteClass] = contextvars.ContextVar("fleet_write_class", default=DEFAULT_CLASS)


def current_class() -> WriteClass:
    return _current.get()


@contextmanager
def writing(write_class: WriteClass) -> Iterator[None]:
    """Writes made inside this block spend the budget as ``write_class``."""
    token = _current.set(write_class)
    try:
        yield
    finally:
        _current.reset(token)


def ceiling(write_class: WriteClass, budget: int, *, hourly: bool = False) -> int:
    """How much of a window of ``budget`` writes the class may fill (at least one write)."""
    share = HOUR_SHARE[write_class] if hourly else write_class.value
    return max(1, math.floor(budget * share / 100))


class BudgetSpent(RuntimeError):
    """No write slot for this class now; ``retry_at`` (epoch seconds) is when one frees.

    Not a githubkit exception on purpose: githubkit's retry loop must not catch (and sleep on) it.
    """

    def __init__(self, installation_id: int, write_class: WriteClass, retry_at: float, reason: str):
        wait = max(retry_at - time.time(), 0.0)
        super().__init__(f"GitHub write budget of installation {installation_id} spent for "
                         f"{write_class.name} writes ({reason}); next slot in {wait:.0f}s")
        self.installation_id = installation_id
        self.write_class = write_class
        self.retry_at = retry_at
        self.reason = reason


# Atomic take-a-slot over *rolling* windows, the way GitHub counts (a fixed clock minute would let
# 80 writes at :59 and 80 more at :00 through, and GitHub answers the second burst with 403s).
# Each window is a sorted set of this installation's writes scored by time. First GitHub's own
# stop, then the class's ceiling in both windows, and only then the write is counted in both, so
# concurrent workers never over-commit a window.
# KEYS: minute log, hour log, spent-until, sequence. ARGV: minute ceiling, hour ceiling, now,
# minute span, hour span (seconds).
# Returns {1} (slot taken), {0, "minute"|"hour", time of the write that must age out} (ceiling
# reached) or {-1, spent_until}. PEEK_SLOT decides the same way and counts nothing.
SLOT_RULE = """
local now = tonumber(ARGV[3])
local spent = redis.call('GET', KEYS[3])
if spent and tonumber(spent) > now then return {-1, spent} end
local function free_at(key, span, limit)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - span)
  local n = redis.call('ZCARD', key)
  if n < limit then return nil end
  -- the write whose ageing out brings the window back under the ceiling; its time is returned
  -- as Redis wrote it (Lua's tostring would round it to 14 digits: an earlier free-at)
  local oldest = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
  return oldest[2]
end
local m = free_at(KEYS[1], tonumber(ARGV[4]), tonumber(ARGV[1]))
if m then return {0, 'minute', m} end
local h = free_at(KEYS[2], tonumber(ARGV[5]), tonumber(ARGV[2]))
if h then return {0, 'hour', h} end
"""
TAKE_SLOT = SLOT_RULE + """
local id = ARGV[3] .. ':' .. redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[1], now, id); redis.call('EXPIRE', KEYS[1], 120)
redis.call('ZADD', KEYS[2], now, id); redis.call('EXPIRE', KEYS[2], 7200)
redis.call('EXPIRE', KEYS[4], 7200)
return {1}
"""
PEEK_SLOT = SLOT_RULE + "return {1}\n"

# The pacer's windows are a little longer than GitHub's: a slot is taken before its request leaves,
# and the request reaches GitHub up to a moment later (measured: 81 writes within one of GitHub's
# rolling minutes with exactly 60 s here, and the 403 that answered the 81st paused every
# repository of the installation for a minute).
WINDOW_MARGIN_SECONDS = 2
WINDOW_SECONDS = {"minute": 60 + WINDOW_MARGIN_SECONDS, "hour": 3600 + WINDOW_MARGIN_SECONDS}

# Keeps the later of two spent-until marks (two workers can see two rate-limit answers).
MARK_SPENT = """
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > old then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 1
"""


class WriteBudget:
    """One installation's shared write budget in Redis."""

    def __init__(self, redis_client: redis.Redis, installation_id: int, per_minute: int, per_hour: int,
                 namespace: str = "fleet", clock: Callable[[], float] = time.time):
        self.redis = redis_client
        self.installation_id = installation_id
        self.per_minute = per_minute
        self.per_hour = per_hour
        self.namespace = namespace
        self.clock = clock

    def _key(self, suffix: str) -> str:
        return f"{self.namespace}:writes:{self.installation_id}:{suffix}"

    def take(self, write_class: WriteClass | None = None) -> None:
        """Count one write of ``write_class`` (the current class by default), or raise BudgetSpent."""
        self._slot(TAKE_SLOT, write_class or current_class())

    def _slot(self, script: str, write_class: WriteClass) -> None:
        """Run one of the slot scripts; BudgetSpent when the class has no slot now."""
        result = self.redis.eval(
            script, 4, self._key("minute"), self._key("hour"), self._key("spent-until"), self._key("seq"),
            ceiling(write_class, self.per_minute), ceiling(write_class, self.per_hour, hourly=True),
            repr(self.clock()), WINDOW_SECONDS["minute"], WINDOW_SECONDS["hour"],
        )
        if int(result[0]) == 1:
            return
        detail = _text(result[1])
        if int(result[0]) == -1:
            raise BudgetSpent(self.installation_id, write_class, float(detail), "GitHub asked to wait")
        free_at = float(_text(result[2])) + WINDOW_SECONDS[detail]
        raise BudgetSpent(self.installation_id, write_class, free_at, f"{detail} ceiling reached")

    def mark_spent(self, until: float) -> None:
        """GitHub said stop until ``until`` (epoch seconds): no class writes before then."""
        ttl = max(int(until - self.clock()) + 5, 5)
        self.redis.eval(MARK_SPENT, 1, self._key("spent-until"), repr(until), ttl)
        log.warning("GitHub rate limit: installation %s paused for %.0fs", self.installation_id, until - self.clock())

    def free_at(self, write_class: WriteClass) -> float | None:
        """When a write of ``write_class`` would find a slot (epoch seconds); None: it would now.
        Only a look, nothing is counted: a caller about to read a lot for one write (the merge
        queue's step) asks first and defers without reading (``take`` still decides)."""
        try:
            self._slot(PEEK_SLOT, write_class)
        except BudgetSpent as spent:
            return spent.retry_at
        return None

    def spent_until(self) -> float | None:
        value = self.redis.get(self._key("spent-until"))
        if value is None or float(value) <= self.clock():
            return None
        return float(value)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
