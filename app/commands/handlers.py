"""Slash commands in new issue and PR comments: parse, check permission, run, acknowledge.

Success is acknowledged with a reaction; a refusal or error gets one reply comment (several
refused commands in one comment share it). Fleet never reacts to its own comments.

Anyone can comment, and every answer is a write against the installation's budget (GitHub allows
80 content-creating requests a minute). So an outsider (below triage permission) gets at most one
answer, reply or reaction, per issue per ``OUTSIDER_REPLY_INTERVAL``; beyond that Fleet stays
silent and logs why. Their commands still run (a refused claim is still refused), and none of
them forces a write: ``/gates`` from a non-writer re-publishes only what changed.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from app.queue import scheduling
from app.queue.state import QUEUE_ACK_DELAY
from app.claims import service as claim_service
from app.claims import store as claim_store
from app.claims import rules as claims
from app.claims import leases as claims_leases
from app.claims import waiting
from app.commands import parse as commands
from app.github import permissions
from app.tasks import readiness
from app import replies
from app.commands import replies as command_replies
from app.status import service as status_service
from app.tasks import store as task_state
from app.github.identity import is_bot
from app.claims.apply import Effects, apply, sync_labels
from app.repos.registry import Repo
from app.tasks.refs import TaskRef, parse_ref
from app.github.write_budget import DEFAULT_CLASS, WriteClass, writing
from app.event_scope import EventScope
from app.github.models import IssueCommentEvent


OUTSIDER_REPLY_INTERVAL = timedelta(minutes=10)
# Below this repository permission a commenter is an outsider (triage can already label and close).
COLLABORATOR_PERMISSION: permissions.Permission = "triage"

LAST_OUTSIDER_REPLY = "SELECT last_reply_at FROM outsider_replies WHERE repo_id = %s AND number = %s"
RECORD_OUTSIDER_REPLY = """
INSERT INTO outsider_replies (repo_id, number, last_reply_at) VALUES (%s, %s, %s)
ON CONFLICT (repo_id, number) DO UPDATE SET last_reply_at = EXCLUDED.last_reply_at
"""

Answer = Literal["reply", "react", "react_later", "none"]


@dataclass
class CommandRun:
    """One comment's commands being handled: who, where, and the replies gathered."""

    ctx: EventScope
    repo: Repo
    event: IssueCommentEvent
    effects: Effects
    where: commands.Where
    login: str
    _permission: str | None = None
    replies: list[str] = field(default_factory=list)
    succeeded: int = 0
    # Accepted, but another answer will likely come soon (a merge): a reaction only if it does not.
    acknowledge_later: bool = False

    @property
    def number(self) -> int:
        return self.event.issue.number

    @property
    def task(self) -> TaskRef:
        return TaskRef.of(self.repo.full_name, self.number)

    @property
    def permission(self) -> str:
        if self._permission is None:
            self._permission = permissions.permission(self.ctx.conn, self.ctx.github(self.repo.full_name), self.repo.id, self.login)
        return self._permission

    @property
    def order_key(self) -> claims.OrderKey:
        return claims.comment_order_key(self.event.comment.created_at, self.event.comment.id)


def where_of(ctx: EventScope, repo: Repo, event: IssueCommentEvent) -> commands.Where:
    if event.issue.is_pull_request:
        return "pr"
    issue = event.issue
    if status_service.is_status_issue(ctx.conn, repo.id, issue.number, issue.user.login if issue.user else None,
                                      (label.name for label in issue.labels), issue.body):
        return "status"
    return "issue"


def on_comment(ctx: EventScope, repo: Repo, event: IssueCommentEvent) -> None:
    login = event.comment.user.login
    if is_bot(login) or (event.comment.user.type == "Bot" and replies.parse_marker(event.comment.body)):
        return  # our own replies (and other bots' markers) never trigger anything
    run = CommandRun(ctx, repo, event, claim_service.effects_for(ctx, repo), where_of(ctx, repo, event), login)
    _renew_on_comment(run)
    found = commands.parse_commands(event.comment.body)
    for command in found:
        _run_one(run, command)
    # The answer to /claim and /next is (part of) the claim verdict an agent waits for: it is
    # written out of the verdicts' reserve, like the verdict label itself.
    verdict = any(command.name in VERDICT_COMMANDS for command in found)
    with writing(WriteClass.VERDICT if verdict else DEFAULT_CLASS):
        _answer(run)


# Commands whose answer is a claim verdict (``app.github.write_budget``: the highest write class).
VERDICT_COMMANDS = frozenset({"claim", "next"})


def decide_answer(*, has_replies: bool, succeeded: bool, collaborator: bool,
                  last_outsider_reply: datetime | None, now: datetime,
                  acknowledge_later: bool = False) -> tuple[Answer, str]:
    """How Fleet answers a comment's commands, and why: replies (refusals, errors, /help) as one
    comment, else a reaction for success, written later (``react_later``) when the only success
    is one whose outcome usually answers first (``/queue``). Collaborators always get it;
    outsiders only when nobody outside was answered on this issue within ``OUTSIDER_REPLY_INTERVAL``."""
    wanted: Answer = ("reply" if has_replies else "react" if succeeded
                      else "react_later" if acknowledge_later else "none")
    if wanted == "none":
        return "none", "nothing_to_say"
    if collaborator:
        return wanted, "collaborator"
    if last_outsider_reply is not None and now - last_outsider_reply < OUTSIDER_REPLY_INTERVAL:
        return "none", "outsider_throttled"
    return wanted, "outsider"


def _answer(run: CommandRun) -> None:
    """Post the gathered replies (or the success reaction) as ``decide_answer`` says."""
    if not run.replies and not run.succeeded and not run.acknowledge_later:
        return  # nothing to write: no permission lookup either
    collaborator = permissions.has_permission(run.permission, COLLABORATOR_PERMISSION)
    last = None if collaborator else _last_outsider_reply(run)
    answer, why = decide_answer(has_replies=bool(run.replies), succeeded=bool(run.succeeded),
                                collaborator=collaborator, last_outsider_reply=last, now=run.effects.now,
                                acknowledge_later=run.acknowledge_later)
    if answer == "reply":
        run.effects.comment(run.number, "\n\n---\n\n".join(run.replies))
    elif answer == "react":
        run.effects.react(run.number, run.event.comment.id, "+1")
    elif answer == "react_later":
        run.effects.react_later(run.number, run.event.comment.id, QUEUE_ACK_DELAY)
    if why == "outsider":
        run.ctx.conn.execute(RECORD_OUTSIDER_REPLY, (run.repo.id, run.number, run.effects.now))
    elif why == "outsider_throttled":
        run.ctx.log.info("outsider answer withheld", extra={
            "issue": run.number, "login": run.login, "permission": run.permission,
            "withheld": "reply" if run.replies else "reaction", "last_answer_at": last.isoformat() if last else None,
            "reason": f"commenters below {COLLABORATOR_PERMISSION} get one answer per issue per "
                      f"{int(OUTSIDER_REPLY_INTERVAL.total_seconds() // 60)} min",
        })


def _last_outsider_reply(run: CommandRun) -> datetime | None:
    row = run.ctx.conn.execute(LAST_OUTSIDER_REPLY, (run.repo.id, run.number)).fetchone()
    return row["last_reply_at"] if row else None


def _renew_on_comment(run: CommandRun) -> None:
    if run.where == "issue":
        claim_service.on_activity(run.ctx, run.repo, run.number, run.login, "comment")
    elif run.where == "pr":
        row = run.ctx.conn.execute(
            "SELECT linked_tasks FROM pull_requests WHERE repo_id = %s AND number = %s", (run.repo.id, run.number)
        ).fetchone()
        for number in (row["linked_tasks"] if row else []):
            claim_service.on_activity(run.ctx, run.repo, number, run.login, "comment", pr_number=run.number)


def _run_one(run: CommandRun, command: commands.Command) -> None:
    if command.unknown:
        run.replies.append(command_replies.unknown_command(command))
        return
    if command.error:
        run.replies.append(command_replies.command_error(command))
        return
    spec = commands.COMMANDS[command.name]
    if run.where not in spec.where:
        run.replies.append(command_replies.command_not_here(command, run.where))
        return
    if spec.who in ("write", "maintain") and not commands.command_allowed(spec, run.permission):
        run.replies.append(command_replies.command_not_allowed(command, spec.who, run.login))
        return
    HANDLERS[command.name](run, command)


def _record(run: CommandRun, decision_ok: bool, reply_text: str | None = None) -> None:
    if reply_text:
        run.replies.append(reply_text)
    if decision_ok:
        run.succeeded += 1


def _apply_claim_actions(run: CommandRun, actions: tuple[claims.Action, ...] | list[claims.Action],
                         origin: int | None = None) -> bool:
    """Apply actions; refusal comments are gathered into this comment's single reply
    (and re-targeted to ``origin`` when the decision was about another task)."""
    refused = False
    others = []
    for action in actions:
        if isinstance(action, claims.Comment):
            run.replies.append(action.body)
            refused = True
        else:
            others.append(action)
    apply(run.effects, others, claimed_by=run.login)
    return not refused


def cmd_claim(run: CommandRun, command: commands.Command) -> None:
    """/claim [as NAME]: the commenter (or the named agent) claims this task."""
    agent = claims.AgentId(run.login, command.agent_name)
    request = claim_service.build_request(run.ctx, run.repo, run.effects, task=run.task, claimant=agent,
                                          assigner=run.login, source="command", order_key=run.order_key)
    decision = claim_service.decide_request(run.ctx, run.repo, run.effects, request)
    ok = _apply_claim_actions(run, decision.actions)
    # The verdict (assignment + fleet:claimed) is the answer; only a named agent sharing an account
    # also needs the reaction, which says the claim is this comment's name.
    _record(run, ok and agent.name is not None)
    sync_labels(run.effects, [run.number])


def cmd_release(run: CommandRun, command: commands.Command) -> None:
    """/release [as NAME]: the holder (or a maintainer) gives the task back."""
    agent = claims.AgentId(run.login, command.agent_name)
    holder = claim_store.open_claim(run.ctx.conn, run.repo.id, run.number)
    perm = run.permission if holder is not None and not holder.agent.same_account(run.login) else None
    ok = _apply_claim_actions(run, claims_leases.decide_release(holder, run.task, agent, perm))
    _record(run, ok)
    sync_labels(run.effects, [run.number])


def cmd_next(run: CommandRun, command: commands.Command) -> None:
    """/next [as NAME]: claim the most urgent ready task for the commenter (``app.claims.waiting``
    when none is ready yet)."""
    agent = claims.AgentId(run.login, command.agent_name)
    tasks = claim_store.snapshots(run.ctx.conn, run.repo.id, run.repo.full_name)
    picked = readiness.pick_next(tasks, agent)
    if picked is None:
        # Nothing ready: wait in line, unanswered, for the next task to become ready (the
        # assignment is the answer); told at once only when nothing may become ready.
        if not (permissions.can_be_assigned(run.ctx.conn, run.effects.gh, run.repo.id, agent.login)
                and waiting.wait_in_line(run.ctx.conn, run.repo, agent, number=run.number,
                                         comment_id=run.event.comment.id,
                                         comment_created_at=run.event.comment.created_at,
                                         now=run.effects.now, tasks=tasks)):
            run.replies.append(replies.next_none(agent=agent, repo=run.repo.full_name))
        return
    request = claim_service.build_request(run.ctx, run.repo, run.effects, task=picked.ref, claimant=agent,
                                          assigner=run.login, source="next", order_key=run.order_key)
    decision = claim_service.decide_request(run.ctx, run.repo, run.effects, request)
    # The verdict is the answer (the agent looks for the task assigned to it carrying fleet:claimed);
    # only a named agent sharing an account gets a reply naming it and the task.
    if _apply_claim_actions(run, decision.actions) and decision.claim is not None and agent.name is not None:
        run.replies.append(replies.claim_accepted(
            task=picked.ref, repo=run.repo.full_name, agent=agent, expires_at=decision.claim.expires_at,
            now=run.effects.now, title=picked.title, command="next"))
    sync_labels(run.effects, [picked.number])


def cmd_progress(run: CommandRun, command: commands.Command) -> None:
    """/progress N [note]: recorded on the claim and the task; renews the lease."""
    agent = claims.AgentId(run.login)
    holder = claim_store.open_claim(run.ctx.conn, run.repo.id, run.number)
    perm = None if holder is not None and claims_leases.is_holder_activity(holder, run.login) else run.permission
    actions = claims_leases.decide_progress(holder, run.task, agent, perm, command.percent or 0, command.note,
                                     run.effects.now, run.repo.config.claims)
    ok = _apply_claim_actions(run, actions)
    if ok:
        run.ctx.conn.execute(
            "UPDATE tasks SET progress = %s, progress_note = %s WHERE repo_id = %s AND number = %s",
            (command.percent, command.note or None, run.repo.id, run.number),
        )
    # Recorded and shown in the status issue; a reaction to every lease renewal would spend the
    # write budget on nothing an agent waits for. A refusal still replies.
    _record(run, False)


def _set_blockers(run: CommandRun, command: commands.Command, present: bool) -> None:
    for text in command.args:
        ref = parse_ref(text, run.repo.full_name)
        if ref is not None:
            task_state.set_dependency(run.ctx.conn, run.repo.id, run.number, ref, "command", present)
    claim_service.report_cycles(run.ctx, run.repo, run.effects, run.number)
    sync_labels(run.effects, [run.number])
    _record(run, True)


def cmd_block(run: CommandRun, command: commands.Command) -> None:
    """/block #N...: maintainers add blockers."""
    _set_blockers(run, command, True)


def cmd_unblock(run: CommandRun, command: commands.Command) -> None:
    """/unblock #N...: maintainers remove blockers added by /block."""
    _set_blockers(run, command, False)


def cmd_help(run: CommandRun, command: commands.Command) -> None:
    """/help: the commands usable here, with who may use them."""
    run.replies.append(command_replies.help_reply(run.where))


def cmd_gates(run: CommandRun, command: commands.Command) -> None:
    """/gates: re-evaluate the PR's gates. A writer's re-publishes even when nothing changed;
    anyone else's publishes only a change (else any commenter could make Fleet write at will)."""
    force = permissions.has_permission(run.permission, "write")
    scheduling.schedule_gates(run.ctx, run.repo, [run.number], force=force)
    run.succeeded += 1


def cmd_pull_request(run: CommandRun, command: commands.Command) -> None:
    """/queue, /dequeue, /priority: handled by the merge queue."""
    from app.queue import service as queue_service

    queue_service.on_command(run, command)


HANDLERS: dict[str, Callable[[CommandRun, commands.Command], None]] = {
    "claim": cmd_claim,
    "release": cmd_release,
    "next": cmd_next,
    "progress": cmd_progress,
    "block": cmd_block,
    "unblock": cmd_unblock,
    "help": cmd_help,
    "queue": cmd_pull_request,
    "dequeue": cmd_pull_request,
    "priority": cmd_pull_request,
    "gates": cmd_gates,
}
