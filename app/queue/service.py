"""The merge queue, I/O side: commands and PR events change ``queue_entries``; ``step`` moves a
queue forward (one RQ job per (repo, base), serialised by a Postgres advisory lock).

``step`` reads the in-flight PR from GitHub (head, mergeable, checks, merge base), evaluates
its gates on exactly that head, asks ``merge_queue.decide_step`` what to do and applies the
actions in order. Each intent (updating, merging) is committed *before* the GitHub call, so a
worker killed at any point leaves a row the next step can resume from; before any merge the PR
is re-read from GitHub, so a PR that already merged is recorded, never merged again.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import psycopg
from githubkit.exception import RequestError

from app.claims import service as claim_service
from app.github.models import PullRequest
from app.tasks import pulls as pull_state
from app.gates import store as gate_store
from app.event_scope import EventScope
from app import enqueue
from app import db, runtime
from app.gates import service as gate_service
from app.github import held_writes
from app.github import permissions
from app.queue import effects
from app.queue import group_service
from app.queue import store as queue_store
from app.repos import registry as repositories
from app.github.identity import bot_login, is_bot
from app.github.evidence import EvidenceRecorder
from app.gates.check_run import md_code
from app.gates.rules import GateVerdict, PullSnapshot, evaluate_gates
from app.github.gateway import GitHubRefused, RepoGateway
from app.queue.commands import QueueCommand, decide_queue_command
from app.queue.rules import (
    decide_merge_result, decide_step, decide_step_failure, decide_update_result, waits_quietly,
)
from app.queue.state import (
    AcceptHead, Action, AdvanceToNext, CloseLinkedTasks, Dequeue, EnqueueEntry, MarkMerged, Merge,
    QueueEntry, Reevaluate, Retry, SetPriority, StartEntry, UPDATE_LANDING, UpdateBranch,
    WaitForChecks, WaitForUpdate, current_entry, new_entry, observe_push, transition,
)
from app.replies import marker
from app.repos.registry import Repo
from app.github.write_budget import BudgetSpent, WriteClass, writing

log = logging.getLogger("fleet.queue")

MAX_ROUNDS = 12  # decisions per step job (each merge advances to the next PR in the same job)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- commands (inside a delivery, repo lock held) --------------------------------------------

def on_command(run, command) -> None:
    """/queue (/merge), /dequeue and /priority on a pull request (/gates: command_service)."""
    ctx, repo = run.ctx, run.repo
    pr = _recorded_pull(ctx, repo, run.number)
    if pr is None:
        run.replies.append("Refused: Fleet cannot read this pull request right now; try again in a minute.")
        return
    cmd = QueueCommand(command.name, command.args[0] if command.args else None)
    decision = _decide(ctx.conn, repo, cmd, run.login, lambda: run.permission, pr)
    _apply_command(ctx, repo, pr, decision.actions, run.login)
    if decision.accepted and any(isinstance(a, EnqueueEntry) for a in decision.actions):
        # Queued: the merge (or the dequeue reply) answers it; a 👍 only if it still waits
        # after QUEUE_ACK_DELAY (its place is in the status issue and the API meanwhile).
        run.acknowledge_later = True
        return
    if decision.accepted:
        run.succeeded += 1
        return
    data = {"command": command.name, "pr": run.number, "result": "refused"}
    run.replies.append(f"{decision.reply}\n\n{marker(data)}")


def _recorded_pull(ctx: EventScope, repo: Repo, number: int) -> PullSnapshot | None:
    pr = gate_store.pull_snapshot(ctx.conn, repo.id, repo.full_name, number, checks=())
    if pr is None:  # never seen by a webhook: read it once
        raw = gate_service.read_pull(ctx.github(repo.full_name), number)
        if raw is None:
            return None
        pull_state.upsert_pull(ctx.conn, repo.id, repo.full_name, PullRequest.model_validate(raw), repo.config)
        pr = gate_store.pull_snapshot(ctx.conn, repo.id, repo.full_name, number, checks=())
    return pr


def _decide(conn, repo: Repo, cmd: QueueCommand, actor: str, permission: Callable[[], str], pr: PullSnapshot):
    found = queue_store.active_entry(conn, repo.id, pr.number)
    base = found[0] if found else pr.base_ref
    queue = queue_store.load_queue(conn, repo.id, repo.full_name, base)
    config = repo.config.queue
    is_author = actor.lower() == pr.author.lower()
    # Queueing always needs write; only an author's /dequeue is settled without asking GitHub.
    needs_permission = not (is_author and cmd.name == "dequeue")
    return decide_queue_command(cmd, actor, permission() if needs_permission else None, pr, queue, config)


def _apply_command(ctx: EventScope, repo: Repo, pr: PullSnapshot, actions, actor: str) -> None:
    """Apply a queue command's actions; an action without an executor here raises (a new
    action must never be dropped silently)."""

    now = _now()
    found = queue_store.active_entry(ctx.conn, repo.id, pr.number)
    for action in actions:
        if isinstance(action, EnqueueEntry):
            queue_store.insert_entry(ctx.conn, repo.id, pr.base_ref, new_entry(action, now))
            found = queue_store.active_entry(ctx.conn, repo.id, pr.number)
        elif isinstance(action, SetPriority):
            if found:
                queue_store.save_entry(ctx.conn, repo.id, transition(found[1], action, now))
        elif isinstance(action, Dequeue):
            if found:
                queue_store.finish_entry(ctx.conn, repo.id, transition(found[1], action, now), now,
                                         action.reason_code, action.message)
                # In merge groups its green fleet/gates was only recorded while queued: write it now.
                ctx.defer(lambda: enqueue.enqueue_evaluation(repo.id, pr.number, pr.head_sha))
            label = repo.config.queue.label
            if found and label and label.lower() in (name.lower() for name in pr.labels):
                ctx.github(repo.full_name).remove_label(pr.number, label)
        elif isinstance(action, AdvanceToNext):
            pass  # the step enqueued below, after every command, is the advance
        else:
            raise TypeError(f"no executor for queue command action {action!r}")
    base = found[0] if found else pr.base_ref
    # Whatever the command changed, the queue's next step decides from the new rows.
    ctx.defer(lambda: enqueue.enqueue_step(repo.id, base))
    if any(isinstance(action, (EnqueueEntry, Dequeue)) for action in actions):
        ctx.defer(lambda: effects.relabel_linked_tasks(repo))


# --- pull request events (inside a delivery) ------------------------------------------------

def on_pull_event(ctx: EventScope, repo: Repo, event) -> None:
    """The ``fleet:queue`` label queues and dequeues; a push to the in-flight PR is recorded
    (Fleet's own update is accepted); anything that may unblock or end the in-flight entry
    steps its queue."""

    action = ctx.delivery.action or ""
    pr = event.pull_request
    sender = event.sender.login if event.sender else ""
    label = repo.config.queue.label
    if action in ("labeled", "unlabeled") and label and event.label and event.label.name.lower() == label.lower() \
            and sender and not is_bot(sender):
        _label_command(ctx, repo, pr.number, "queue" if action == "labeled" else "dequeue", sender)
    found = queue_store.active_entry(ctx.conn, repo.id, pr.number)
    if found is None:
        return
    base, entry = found
    if action == "synchronize" and entry.in_flight and event.before and event.after:
        seen = observe_push(entry, before=event.before, after=event.after, by_fleet=is_bot(sender), now=_now())
        if seen != entry:
            queue_store.save_entry(ctx.conn, repo.id, seen)
    if action in ("synchronize", "closed", "converted_to_draft", "edited", "reopened", "ready_for_review"):
        ctx.defer(lambda: enqueue.enqueue_step(repo.id, base))


def _label_command(ctx: EventScope, repo: Repo, number: int, name: str, sender: str) -> None:
    pr = _recorded_pull(ctx, repo, number)
    if pr is None:
        return
    if name == "dequeue" and queue_store.active_entry(ctx.conn, repo.id, number) is None:
        return  # removing the label from a PR that is not queued says nothing
    decision = _decide(ctx.conn, repo, QueueCommand(name), sender, lambda: permissions.permission(ctx.conn, ctx.github(repo.full_name), repo.id, sender), pr)
    _apply_command(ctx, repo, pr, decision.actions, sender)
    if decision.accepted:
        return  # the label itself says it; only a refusal needs words
    data = {"command": f"label:{name}", "pr": number, "result": "refused"}
    claim_service.effects_for(ctx, repo).comment(number, f"{decision.reply}\n\n{marker(data)}")


# --- automatic queueing (in the gates job) --------------------------------------------------

def auto_queue(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, pr: PullSnapshot) -> bool:
    """``queue.auto``: queue a PR whose gates are green on its head, unless it already left the
    queue on that head (a failure must not loop) or its author lacks write permission (an
    outsider's PR waits for someone with write to ``/queue`` it; said once per PR).
    Returns True when it was queued."""
    if queue_store.active_entry(conn, repo.id, pr.number) is not None:
        return False
    if queue_store.left_queue_on_head(conn, repo.id, pr.number, pr.head_sha):
        return False
    author_permission = permissions.permission(conn, gh, repo.id, pr.author)
    if not permissions.has_write(author_permission):
        log.info("not auto-queued: author lacks write", extra={"repo": repo.full_name, "pr": pr.number})
        key = marker({"command": "auto", "pr": pr.number, "result": "refused"})
        held_writes.comment(conn, gh, repo.id, pr.number,
                            f"Gates are green, but the pull request was not queued automatically: its author "
                            f"{md_code(pr.author, in_table=False)} has no write permission. Someone with write "
                            f"permission can `/queue` it.\n\n{key}", marker=key, look_first=True)
        return False
    if not queue_store.insert_entry(conn, repo.id, pr.base_ref, new_entry(EnqueueEntry(pr.number, "normal", bot_login()), _now())):
        return False
    log.info("auto-queued", extra={"repo": repo.full_name, "pr": pr.number})  # no comment: success is silent
    effects.relabel_linked_tasks(repo)
    return True


# --- the step --------------------------------------------------------------------------------

def step(repo_id: int, base_ref: str, *, now: Callable[[], datetime] = _now, job_id: str | None = None,
         gateway: RepoGateway | None = None) -> list[str]:
    """Move one queue forward as far as it can go now; returns the names of the actions applied.

    Holds the queue's advisory lock throughout, so workers on any machine step a queue one at a
    time; each decision is committed before the GitHub call it leads to.
    """
    settings = runtime.settings()
    with db.pooled(settings.database_url) as conn:
        repo = repositories.get(conn, repo_id)
        if repo is None or repo.installation_id is None:
            return []
        evidence = EvidenceRecorder(settings.database_url, repo_id=repo.id, repo_full_name=repo.full_name, job_id=job_id)
        gh = gateway or runtime.repo_gateway(repo.installation_id, repo.full_name, evidence)
        try:
            with db.advisory_lock(settings.database_url, queue_store.queue_lock_key(repo.id, base_ref)):
                if group_service.groups_mode(conn, repo, base_ref):
                    return group_service.GroupStepper(conn, gh, repo, base_ref, now).run()
                group_service.wind_down(conn, gh, repo, base_ref, now)
                return _Stepper(conn, gh, repo, base_ref, now).run()
        finally:
            evidence.close()


class _Stepper:
    def __init__(self, conn: psycopg.Connection, gh: RepoGateway, repo: Repo, base_ref: str,
                 now: Callable[[], datetime]):
        self.conn, self.gh, self.repo, self.base_ref, self.now = conn, gh, repo, base_ref, now
        self.applied: list[str] = []

    def run(self) -> list[str]:
        for _ in range(MAX_ROUNDS):
            queue = queue_store.load_queue(self.conn, self.repo.id, self.repo.full_name, self.base_ref)
            entry = current_entry(queue)
            if entry is None or self._waits_quietly(entry):
                return self.applied
            self._defer_without_a_merge_slot()
            try:
                pr, base_tip, verdict = self._read(entry)
                now = self.now()
                actions = decide_step(queue, pr, verdict, base_tip, self.repo.config.queue, now)
                self._publish(pr, verdict, actions)
            except (RequestError, GitHubRefused) as exc:
                # Never a silent retry-forever: a 4xx fails the entry naming the call, 5xx and
                # timeouts back off up to MAX_STEP_FAILURES (merge_queue.decide_step_failure).
                call, status, message, retry_after = effects.call_failure(exc)
                log.warning("queue step call failed", extra={"repo": self.repo.full_name, "pr": entry.pr_number,
                                                               "call": call, "status": status})
                now = self.now()
                actions = decide_step_failure(entry, queue, call, status, message, retry_after=retry_after)
                if not self._apply(entry, None, actions, now):
                    return self.applied
                continue
            log.info("queue step", extra={"repo": self.repo.full_name, "base": self.base_ref, "pr": entry.pr_number,
                                          "actions": [type(a).__name__ for a in actions]})
            if not self._apply(entry, pr, actions, now):
                return self.applied

        enqueue.enqueue_step(self.repo.id, self.base_ref)  # more to do: another job continues
        return self.applied

    def _defer_without_a_merge_slot(self) -> None:
        """A step that is not just waiting reads pull, checks, status and compare to decide a
        merge or an update. With no MERGE slot free, the write would defer the step and it would
        read them all again: ask the pacer first and defer until the slot, reading once then.
        (A dequeue waits for the slot too: while MERGE has none, its reply would only be held.)"""
        free_at = self.gh.write_slot_free_at(WriteClass.MERGE)
        if free_at is not None:
            raise BudgetSpent(self.repo.installation_id or 0, WriteClass.MERGE, free_at, "no merge slot yet")

    def _waits_quietly(self, entry: QueueEntry) -> bool:
        """Still waiting for checks by the recorded state: no GitHub read, nothing to change."""
        if entry.state not in ("waiting_checks", "updating") or entry.expected_head_sha is None:
            return False
        known = gate_store.gate_run(self.conn, self.repo.id, entry.expected_head_sha)
        recorded, verdict = gate_service.recorded_verdict(self.conn, self.gh, self.repo, entry.pr_number)
        return waits_quietly(entry, recorded, verdict, known.evaluated_at if known else None,
                             self.repo.config.queue, self.now())

    def _read(self, entry: QueueEntry) -> tuple[PullSnapshot | None, str | None, GateVerdict | None]:
        """The in-flight PR as GitHub has it now, its base tip and its gates on exactly that head."""
        pr, base_tip = gate_service.read_snapshot(self.conn, self.gh, self.repo, entry.pr_number, merge_base=True)
        verdict = None
        if pr is not None and pr.state == "open" and not pr.merged:
            # Evaluated on exactly the head just read: this is the re-check right before a merge.
            verdict = evaluate_gates(pr, self.repo.config.gates)
        return pr, base_tip, verdict

    def _publish(self, pr: PullSnapshot | None, verdict: GateVerdict | None, actions: list[Action]) -> None:
        """``fleet/gates`` on the head the queue dequeues (it says why), and on the head it merges
        only with ``queue.gates_before_merge`` (a branch protection that requires the run);
        never on a head it is about to update or still waits on."""
        merging = self.repo.config.queue.gates_before_merge and any(isinstance(a, Merge) for a in actions)
        if pr is None or verdict is None or not (merging or any(isinstance(a, Dequeue) for a in actions)):
            return
        place = queue_store.queue_place(self.conn, self.repo.id, self.repo.full_name, pr.number)
        try:
            gate_service.publish(self.conn, self.gh, self.repo, pr, verdict, queue_place=place)
        except BudgetSpent:
            if merging:
                raise  # branch protection needs the run: the step waits for a slot
            # A dequeue does not wait for budget: its reply says why; the run is only the echo.
            log.info("fleet/gates of a dequeued head not written: no budget", extra={
                "repo": self.repo.full_name, "pr": pr.number, "sha": pr.head_sha})

    # Returns True when the queue should be decided again at once.
    def _apply(self, entry: QueueEntry, pr: PullSnapshot | None, actions: list[Action], now: datetime) -> bool:
        pending = list(actions)
        again = False
        while pending:
            action = pending.pop(0)
            self.applied.append(type(action).__name__)
            if isinstance(action, (StartEntry, AcceptHead, WaitForChecks, WaitForUpdate)):
                entry = transition(entry, action, now)
                if not self._save(entry, getattr(action, "deadline", None)):
                    return False
            elif isinstance(action, UpdateBranch):
                before, entry = entry, transition(entry, action, now)
                if not self._save(entry, now + UPDATE_LANDING):
                    return False
                code, message, retry_after, _ = self._verdict_call(
                    before, lambda: self.gh.update_branch(action.pr, action.expected_head_sha))
                assert pr is not None
                pending[:0] = decide_update_result(action, code, message, entry=entry, pr=pr, retry_after=retry_after)
            elif isinstance(action, Merge):
                before, entry = entry, transition(entry, action, now)
                if not self._save(entry, None):
                    return False  # a person dequeued it a moment ago: never merge it now
                code, message, retry_after, body = self._verdict_call(before, lambda: self.gh.merge_pull(
                    action.pr, action.sha, action.method, action.title, action.message))
                assert pr is not None
                pending[:0] = decide_merge_result(action, code, message, entry=entry, pr=pr,
                                                  merge_commit_sha=body.get("sha"), retry_after=retry_after)
            elif isinstance(action, MarkMerged):
                entry = transition(entry, action, now)
                queue_store.finish_entry(self.conn, self.repo.id, entry, now, "merged", f"merged {action.sha}",
                                         action.merge_commit_sha)
                self.gh.evidence.record("queue_merged", f"#{action.pr}", "ok", None, sha=action.sha,
                                        merge_commit_sha=action.merge_commit_sha, base_ref=self.base_ref)
            elif isinstance(action, CloseLinkedTasks):
                effects.close_linked_tasks(self.gh, self.repo, action, pr)
            elif isinstance(action, Dequeue):
                entry = transition(entry, action, now)
                if queue_store.finish_entry(self.conn, self.repo.id, entry, now, action.reason_code, action.message):
                    effects.announce_dequeue(self.conn, self.gh, self.repo, action, entry, pr)
            elif isinstance(action, Reevaluate):
                entry = transition(entry, action, now)
                self._save(entry, None)
                again = True
            elif isinstance(action, AdvanceToNext):
                again = True
            elif isinstance(action, Retry):
                entry = transition(entry, action, now)
                self._save(entry, now + action.delay)

                enqueue.enqueue_step(self.repo.id, self.base_ref, delay=action.delay)
            else:  # pragma: no cover - a new action without an executor is a programming error
                raise TypeError(f"no executor for {action!r}")
        return again

    def _verdict_call(self, before: QueueEntry, call: Callable[[], object]) -> tuple[int, str, timedelta | None, dict]:
        """A merge or update-branch call, second only to claim verdicts in the write budget. When
        the budget is spent the call was never made: the entry goes back to how it was (no attempt
        used) and the job defers."""
        try:
            with writing(WriteClass.MERGE):
                return effects.call_answer(call)
        except BudgetSpent:
            self._save(before, None)
            raise

    def _save(self, entry: QueueEntry, wake_at: datetime | None) -> bool:
        return queue_store.save_entry(self.conn, self.repo.id, entry, wake_at)
