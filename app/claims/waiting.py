"""Agents in line for ``/next``: asked when nothing was ready, answered by the assignment.

A ``/next`` that found nothing ready used to be answered at once with ``no_ready_task``, and the
agent asked again later: in a fleet of 16 that was the largest write after the merges themselves
(1.7-1.9 refusal comments per merged task, measured in ``bench/RESULTS.md``), each saying what the
last one said. Now the request waits in line (``next_waiters``) for ``claims.next_wait``, and
costs nothing while it waits: when a processed delivery of the repository may have made a task
ready (a task closed, released, unblocked, opened; a lease expiring unassigns, which is a
delivery too), ``serve`` hands the ready tasks to the agents that have waited longest, each the
task ``/next`` would have picked for it. The assignment and ``fleet:claimed`` are the answer, as
for a ``/next`` that found a task at once. A request nothing was found for within
``claims.next_wait`` gets the one ``no_ready_task`` reply (``expire``).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import psycopg

from app import replies
from app.claims import rules as claims
from app.claims import service as claim_service
from app.claims import store as claim_store
from app.claims.apply import Effects, apply, sync_labels
from app.event_scope import EventScope
from app.github.gateway import GitHubRefused
from app.github.write_budget import WriteClass, writing
from app.repos.registry import Repo
from app.tasks import readiness
from app.tasks.readiness import TaskSnapshot
from app.tasks.refs import TaskRef

# One GitHub account's named agents (``/next as NAME``) that may wait at once: names are free
# text, so without a bound one commenter could fill the table.
MAX_WAITING_PER_ACCOUNT = 50

WAITER_COLUMNS = "login, agent_name, number, comment_id, comment_created_at, asked_at, expires_at"
WAITERS = f"""
SELECT {WAITER_COLUMNS} FROM next_waiters WHERE repo_id = %s ORDER BY asked_at, comment_id
"""
ANY_WAITER = "SELECT 1 FROM next_waiters WHERE repo_id = %s LIMIT 1"
WAITING_OF_ACCOUNT = "SELECT count(*) AS n FROM next_waiters WHERE repo_id = %s AND lower(login) = lower(%s)"
# A second /next while waiting keeps the first one's place in line (and its deadline).
ADD_WAITER = f"""
INSERT INTO next_waiters (repo_id, {WAITER_COLUMNS})
VALUES (%(repo_id)s, %(login)s, %(agent_name)s, %(number)s, %(comment_id)s, %(comment_created_at)s,
        %(asked_at)s, %(expires_at)s)
ON CONFLICT (repo_id, lower(login), agent_name) DO NOTHING
"""
EXPIRED = f"""
SELECT w.repo_id, r.installation_id, {", ".join("w." + c.strip() for c in WAITER_COLUMNS.split(","))}
FROM next_waiters w JOIN repositories r ON r.id = w.repo_id
WHERE w.expires_at <= %s
ORDER BY w.repo_id, w.asked_at, w.comment_id
"""


@dataclass(frozen=True)
class Waiter:
    """One agent's unanswered ``/next``: who, the comment (on issue ``number``), and until when."""

    agent: claims.AgentId
    number: int
    comment_id: int
    comment_created_at: datetime | None
    asked_at: datetime
    expires_at: datetime

    @property
    def order_key(self) -> claims.OrderKey:
        return claims.comment_order_key(self.comment_created_at, self.comment_id)

    @classmethod
    def from_row(cls, row: dict) -> "Waiter":
        return cls(claims.AgentId(row["login"], row["agent_name"] or None), row["number"], row["comment_id"],
                   row["comment_created_at"], row["asked_at"], row["expires_at"])


# --- decisions (pure) ----------------------------------------------------------------------------


def may_wait(tasks: Iterable[TaskSnapshot], agent: claims.AgentId, waiting_of_account: int) -> bool:
    """Whether a ``/next`` that found nothing ready waits in line rather than being told so now:
    only while some task may still become ready (a blocked one, or one another agent holds and
    may release), and within the account's bound."""
    if waiting_of_account >= MAX_WAITING_PER_ACCOUNT:
        return False
    return any(t.is_task and (readiness.task_state(t) == "blocked"
                              or readiness.task_state(t) == "claimed" and t.holder != agent) for t in tasks)


def match(waiters: Sequence[Waiter], tasks: Iterable[TaskSnapshot]) -> list[tuple[Waiter, TaskSnapshot]]:
    """Who gets which ready task: the longest-waiting agent first, each the task ``/next`` would
    pick for it (``readiness.pick_next``), no task twice. Agents nothing suits keep waiting."""
    left = list(tasks)
    pairs = []
    for waiter in waiters:
        picked = readiness.pick_next(left, waiter.agent)
        if picked is not None:
            pairs.append((waiter, picked))
            left = [t for t in left if t.number != picked.number]
    return pairs


# --- I/O -----------------------------------------------------------------------------------------


def wait_in_line(conn: psycopg.Connection, repo: Repo, agent: claims.AgentId, *, number: int, comment_id: int,
                 comment_created_at: datetime | None, now: datetime, tasks: Sequence[TaskSnapshot]) -> bool:
    """Put ``agent``'s ``/next`` in line; False when it should be answered now instead."""
    waiting = conn.execute(WAITING_OF_ACCOUNT, (repo.id, agent.login)).fetchone()["n"]
    if not may_wait(tasks, agent, waiting):
        return False
    conn.execute(ADD_WAITER, {
        "repo_id": repo.id, "login": agent.login, "agent_name": agent.name or "", "number": number,
        "comment_id": comment_id, "comment_created_at": comment_created_at, "asked_at": now,
        "expires_at": now + repo.config.claims.next_wait,
    })
    return True


def waiters(conn: psycopg.Connection, repo_id: int) -> list[Waiter]:
    return [Waiter.from_row(row) for row in conn.execute(WAITERS, (repo_id,)).fetchall()]


def forget(conn: psycopg.Connection, repo_id: int, waiter: Waiter) -> None:
    """Take ``waiter`` out of line without an answer."""
    claim_store.leave_line(conn, repo_id, waiter.agent)


@writing(WriteClass.VERDICT)  # each assignment is the verdict the agent waits for
def serve(ctx: EventScope, repo: Repo) -> int:
    """Hand the ready tasks to the agents waiting in line (under the repository's lock, inside the
    delivery's transaction); returns how many were served. One indexed query when nobody waits."""
    if ctx.conn.execute(ANY_WAITER, (repo.id,)).fetchone() is None:
        return 0
    tasks = claim_store.snapshots(ctx.conn, repo.id, repo.full_name)
    pairs = match(waiters(ctx.conn, repo.id), tasks)
    if not pairs:
        return 0
    # Replies of their own dedupe run: the delivery's own handler may reply on the same issue.
    effects = replace(claim_service.effects_for(ctx, repo), dedupe=f"{ctx.delivery.id}:next-line")
    for waiter, task in pairs:
        try:
            with ctx.conn.transaction():  # a savepoint: a refused write undoes only this agent's turn
                _serve_one(ctx, repo, effects, waiter, task)
        except GitHubRefused as exc:
            # The delivery that made the task ready is processed regardless; the agent leaves the
            # line (an answer it cannot get now, e.g. no longer assignable) and may ask again.
            forget(ctx.conn, repo.id, waiter)
            ctx.log.warning("waiting /next not served: %s", exc, extra={"agent": str(waiter.agent),
                                                                        "task": task.number})
    return len(pairs)


def _serve_one(ctx: EventScope, repo: Repo, effects: Effects, waiter: Waiter, task: TaskSnapshot) -> None:
    """Claim ``task`` for the waiting agent as its ``/next`` would have. The decision is made again
    here (the WIP limit, the allow-list); a refusal is the answer to the ``/next``, posted where it
    was asked, and the agent leaves the line either way."""
    forget(ctx.conn, repo.id, waiter)
    request = claim_service.build_request(ctx, repo, effects, task=task.ref, claimant=waiter.agent,
                                          assigner=waiter.agent.login, source="next", order_key=waiter.order_key)
    decision = claim_service.decide_request(ctx, repo, effects, request)
    asked_on = TaskRef.of(repo.full_name, waiter.number)
    apply(effects, [replace(a, task=asked_on) if isinstance(a, claims.Comment) else a for a in decision.actions],
          claimed_by=waiter.agent.login)
    if decision.outcome == "accept" and decision.claim is not None and waiter.agent.name is not None:
        # The assignment names the account only: a named agent learns its task from the reply.
        effects.comment(waiter.number, replies.claim_accepted(
            task=task.ref, repo=repo.full_name, agent=waiter.agent, expires_at=decision.claim.expires_at,
            now=effects.now, title=task.title, command="next"))
    ctx.log.info("waiting /next served", extra={"agent": str(waiter.agent), "task": task.number,
                                                "outcome": decision.outcome, "reason": decision.reason,
                                                "waited_s": round((effects.now - waiter.asked_at).total_seconds(), 1)})
    sync_labels(effects, [task.number])


def expired(conn: psycopg.Connection, now: datetime) -> list[tuple[int, int | None, Waiter]]:
    """(repo id, installation id, waiter) for every request in line past its ``claims.next_wait``."""
    return [(row["repo_id"], row["installation_id"], Waiter.from_row(row)) for row in conn.execute(EXPIRED, (now,))]


def expire(effects: Effects, waiter: Waiter) -> None:
    """Answer a request nothing was found for within ``claims.next_wait``: the one reply it costs."""
    forget(effects.conn, effects.repo.id, waiter)
    waited = effects.now - waiter.asked_at
    effects.comment(waiter.number, replies.next_none(agent=waiter.agent, repo=effects.repo.full_name,
                                                     waited_s=int(waited.total_seconds())))
