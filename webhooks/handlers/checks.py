"""check_run.*, check_suite.* and status: CI results per exact SHA."""
from __future__ import annotations

from app.queue import scheduling
from app.tasks import pulls as pull_state
from app.gates.rules import OWN_CHECK_NAME
from webhooks.context import EventContext, ensure_repo
from app.github.models import CheckRunEvent, CheckSuiteEvent, StatusEvent

def _is_own(run_name: str) -> bool:
    # Fleet's own check run must not trigger evaluations of itself (an infinite loop otherwise).
    return run_name == OWN_CHECK_NAME


def check_run_completed(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    run = ctx.parse(CheckRunEvent).check_run
    pull_state.upsert_check_run(ctx.conn, repo.id, run)
    if _is_own(run.name):
        return
    scheduling.schedule_gates(ctx, repo, pull_state.prs_for_sha(ctx.conn, repo.id, run.head_sha))
    scheduling.step_group_queues(ctx, repo, run.head_sha)


def check_run_created(ctx: EventContext) -> None:
    """A check run started: recorded, so the gates know CI is still running on that head without
    asking GitHub (``gates.service.recorded_verdict``). Nothing to evaluate until it completes."""
    repo = ensure_repo(ctx)
    pull_state.upsert_check_run(ctx.conn, repo.id, ctx.parse(CheckRunEvent).check_run)


def check_run_rerequested(ctx: EventContext) -> None:
    """The re-run button on ``fleet/gates`` re-evaluates the PR's gates."""
    repo = ensure_repo(ctx)
    run = ctx.parse(CheckRunEvent).check_run
    pull_state.upsert_check_run(ctx.conn, repo.id, run)
    scheduling.schedule_gates(ctx, repo, pull_state.prs_for_sha(ctx.conn, repo.id, run.head_sha), force=True)


def check_suite_changed(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    suite = ctx.parse(CheckSuiteEvent).check_suite
    scheduling.schedule_gates(ctx, repo, pull_state.prs_for_sha(ctx.conn, repo.id, suite.head_sha),
                          force=ctx.delivery.action == "rerequested")


def status_changed(ctx: EventContext) -> None:
    repo = ensure_repo(ctx)
    event = ctx.parse(StatusEvent)
    pull_state.upsert_status(ctx.conn, repo.id, event.sha, event.context, event.state, event.target_url,
                             event.id, event.updated_at)
    scheduling.schedule_gates(ctx, repo, pull_state.prs_for_sha(ctx.conn, repo.id, event.sha))
    scheduling.step_group_queues(ctx, repo, event.sha)
