"""create, delete and push: branches, their task links, lease renewal and config reloads."""
from __future__ import annotations

from datetime import datetime, timezone

from app.claims import service as claim_service
from app.status import service as status_service
from app.repos import reload as config_service
from app.tasks import pulls as pull_state
from app.repos.config import CONFIG_PATH
from app.tasks.refs import branch_task
from app.enqueue import enqueue_step
from app.github.identity import is_bot
from app.queue import group_store
from app.queue.groups import is_group_branch
from webhooks.context import EventContext, ensure_repo
from app.github.models import PushEvent, RefEvent

ZERO_SHA = "0" * 40


def ref_created(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    event = ctx.parse(RefEvent)
    if event.ref_type == "branch" and not is_group_branch(event.ref):
        pull_state.upsert_branch(ctx.conn, repo.id, event.ref, None, repo.config, event.sender.login if event.sender else None)


def ref_deleted(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    event = ctx.parse(RefEvent)
    if event.ref_type == "branch" and is_group_branch(event.ref):
        _group_branch_changed(ctx, repo.id, event.ref, "its branch was deleted")
    elif event.ref_type == "branch":
        pull_state.delete_branch(ctx.conn, repo.id, event.ref)


def _group_branch_changed(ctx: EventContext, repo_id: int, branch: str, what: str) -> None:
    """Someone else deleted or pushed to a merge group's branch: the group cannot land as it was
    tested; its queue rebuilds it. (Fleet's own pushes are while building; its deletions come
    after the group ended.)"""
    group_id = group_store.group_id_of_branch(branch)
    base = group_store.break_group(ctx.conn, repo_id, group_id, what) if group_id is not None else None
    if base is not None:
        ctx.defer(lambda: enqueue_step(repo_id, base))


def pushed(ctx: EventContext) -> None:
    """A push moves a branch: record it, renew the pusher's lease on the linked task, and
    reload the config when it changed on the default branch."""
    repo = ensure_repo(ctx)
    event = ctx.parse(PushEvent)
    if not event.ref.startswith("refs/heads/"):
        return
    branch = event.ref.removeprefix("refs/heads/")
    if is_group_branch(branch):
        if event.sender and not is_bot(event.sender.login) and not (event.deleted or event.after == ZERO_SHA):
            _group_branch_changed(ctx, repo.id, branch, f"someone pushed to its branch ({event.sender.login})")
        return
    if event.deleted or event.after == ZERO_SHA:
        pull_state.delete_branch(ctx.conn, repo.id, branch)
        return
    pusher = event.sender.login if event.sender else None
    number = pull_state.upsert_branch(ctx.conn, repo.id, branch, event.after, repo.config, pusher)
    if number is not None and pusher:
        link = branch_task(branch, repo.config.tasks.branch_patterns)
        # `agent-d/123-…` names the agent, unless the prefix is just the pusher's own login.
        name = link.agent if link and link.agent and link.agent.lower() != pusher.lower() else None
        claim_service.on_activity(ctx, repo, number, pusher, "push", sha=event.after, branch=branch, agent_name=name)
    if branch == repo.default_branch and _touches_config(event):
        _reload_config(ctx, repo)
    _step_queue_of_base(ctx, repo.id, branch)


def _reload_config(ctx: EventContext, repo) -> None:
    gh = ctx.github(repo.full_name)
    broken = config_service.reload(ctx.conn, gh, repo)
    group_store.clear_fallbacks(ctx.conn, repo.id)  # a new config may allow groups again
    if broken is not None:
        status_service.report_config_error(ctx.conn, gh, repo, ctx.settings.github_api_url,
                                           datetime.now(timezone.utc), *broken)


ACTIVE_QUEUE = "SELECT 1 FROM queue_entries WHERE repo_id = %s AND base_ref = %s AND finished_at IS NULL LIMIT 1"


def _step_queue_of_base(ctx: EventContext, repo_id: int, branch: str) -> None:
    """The base of an active merge queue moved: the in-flight PR may now be behind."""
    if ctx.conn.execute(ACTIVE_QUEUE, (repo_id, branch)).fetchone() is None:
        return
    ctx.defer(lambda: enqueue_step(repo_id, branch))


def _touches_config(event: PushEvent) -> bool:
    # A forced push may list no commits; reload then too rather than keep a stale config.
    if event.forced or not event.commits:
        return True
    return any(CONFIG_PATH in (*c.added, *c.modified, *c.removed) for c in event.commits)
