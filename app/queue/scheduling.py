"""After a PR, a review or a check changed (inside a delivery): which gate evaluations and which
merge-queue steps to run. Both are RQ jobs enqueued by name once the delivery has committed."""
from __future__ import annotations

from collections.abc import Iterable

from app import enqueue
from app.event_scope import EventScope
from app.github.identity import bot_login
from app.queue import group_store
from app.queue import store as queue_store
from app.repos.registry import Repo

# Actions after which the gates (or the PR's place in the queue) may have changed.
RE_EVALUATE = {"opened", "edited", "synchronize", "reopened", "ready_for_review", "converted_to_draft",
               "labeled", "unlabeled"}


# --- scheduling (inside a delivery) ----------------------------------------------------------

def on_pull_event(ctx: EventScope, repo: Repo, event) -> None:
    """pull_request.*: re-evaluate the gates on the new state (after the merge queue reacted)."""
    if ctx.delivery.action in RE_EVALUATE and event.pull_request.state == "open":
        schedule_gates(ctx, repo, [event.pull_request.number])


def schedule_gates(ctx: EventScope, repo: Repo, numbers: Iterable[int], force: bool = False) -> None:
    """Evaluate the gates of these PRs in a job once this delivery has committed; step the queue
    of any of them that is queued (a check finishing may let it merge)."""

    wanted = sorted(set(numbers))
    if not wanted or _own_suite(ctx):
        return
    rows = ctx.conn.execute(
        "SELECT number, head_sha FROM pull_requests WHERE repo_id = %s AND number = ANY(%s) AND state = 'open'",
        (repo.id, wanted),
    ).fetchall()
    heads = {r["number"]: r["head_sha"] for r in rows}
    queues, queued = set(), set()
    for number in wanted:
        found = queue_store.active_entry(ctx.conn, repo.id, number)
        if found is not None:
            queues.add(found[0])
            if not force and repo.config.queue.mode != "groups":
                # A queued PR's fleet/gates is the serial queue's: its step evaluates and publishes
                # the head it merges (or dequeues); a run on a head it will update is a wasted write.
                # Merge groups take PRs whose gates are green on their own head: evaluate those.
                queued.add(number)
    for number, sha in heads.items():
        if number not in queued:
            ctx.defer(lambda n=number, s=sha: enqueue.enqueue_evaluation(repo.id, n, s, force=force))
    for base in sorted(queues):
        ctx.defer(lambda b=base: enqueue.enqueue_step(repo.id, b))


def step_group_queues(ctx: EventScope, repo: Repo, sha: str) -> None:
    """A check or status on a merge group's head: step the queues whose group it is."""
    for base in group_store.bases_with_group_head(ctx.conn, repo.id, sha):
        ctx.defer(lambda b=base: enqueue.enqueue_step(repo.id, b))


def _own_suite(ctx) -> bool:
    # Completing fleet/gates completes Fleet's own check suite: evaluating again would only
    # find what was just published.
    if ctx.delivery.event != "check_suite":
        return False
    suite = ctx.delivery.payload.get("check_suite") or {}
    slug = (suite.get("app") or {}).get("slug")
    return bool(slug) and f"{slug}[bot]".lower() == bot_login().lower()
