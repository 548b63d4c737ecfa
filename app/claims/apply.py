"""Applying the actions that claims and readiness rules return: SQL first, then GitHub.

The job's transaction commits only after every GitHub call succeeded; if one fails the job is
retried and the rules decide again from the same rows. Comments carry a dedupe marker so a
retry never posts the same reply twice.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from app import runtime
from app.claims import store as claim_store
from app.claims import rules as claims
from app.github import held_writes
from app.replies import marker
from app.tasks import readiness
from app.github.gateway import RepoGateway
from app.repos.registry import Repo
from app.github.write_budget import BudgetSpent, WriteClass, writing


@dataclass
class Effects:
    """Where actions land: the locked transaction, the repository and its GitHub gateway.

    ``dedupe`` names this decision run (a delivery id, or a lease deadline); ``retrying`` says a
    previous run may already have posted comments.
    """

    conn: psycopg.Connection
    repo: Repo
    gh: RepoGateway
    now: datetime
    dedupe: str
    retrying: bool = False
    _comments: int = 0

    def comment(self, number: int, body: str) -> None:
        """Post a reply; below the verdicts' write class it is held when the budget is spent
        (``app/github/held_writes.py``) instead of holding up the delivery."""
        self._comments += 1
        # JSON like every other marker, so "the text between the markers is JSON" stays true.
        key = marker({"dedupe": f"{self.dedupe}:{number}:{self._comments}"})
        held_writes.comment(self.conn, self.gh, self.repo.id, number, f"{body}\n{key}", marker=key,
                            look_first=self.retrying)

    def react(self, number: int, comment_id: int, content: str = "+1") -> None:
        held_writes.react(self.conn, self.gh, self.repo.id, number, comment_id, content)

    def react_later(self, number: int, comment_id: int, delay: timedelta, content: str = "+1") -> None:
        held_writes.react_later(self.conn, self.repo.id, number, comment_id, delay, content)


@writing(WriteClass.VERDICT)  # claim verdicts go first, out of the budget's reserve
def apply(effects: Effects, actions: Iterable[claims.Action], claimed_by: str | None = None) -> None:
    conn, repo_id = effects.conn, effects.repo.id
    for action in actions:
        if isinstance(action, claims.CreateClaim):
            claim_store.create(conn, repo_id, action.claim, claimed_by)
        elif isinstance(action, claims.RenewClaim):
            claim_store.update(conn, repo_id, action.claim, None)
        elif isinstance(action, claims.WarnLease):
            claim_store.update(conn, repo_id, action.claim, effects.now)
        elif isinstance(action, claims.ReleaseClaim):
            claim_store.end(conn, repo_id, action.claim, action.reason, effects.now)
            if action.reason != "displaced":  # the winner takes the verdict over as it stands
                withdraw_verdict(effects, action.claim.task.number)
        elif isinstance(action, claims.CompleteClaim):
            claim_store.end(conn, repo_id, action.claim, "completed", effects.now)
        elif isinstance(action, claims.Assign):
            effects.gh.add_assignees(action.task.number, [action.login])
        elif isinstance(action, claims.Unassign):
            effects.gh.remove_assignees(action.task.number, [action.login])
        elif isinstance(action, claims.GrantVerdict):
            write_verdict(effects, action.task.number)
        elif isinstance(action, claims.Comment):
            effects.comment(action.task.number, action.body)
        else:  # pragma: no cover - a new action type without an executor is a programming error
            raise TypeError(f"no executor for {action!r}")


# The verdict: this label on the task while the agent is assigned means "the claim is yours, start".
VERDICT_LABEL = readiness.FLEET_LABELS["claimed"].name
RECORD_LABEL = """
UPDATE tasks SET labels = array_append(labels, %(label)s)
WHERE repo_id = %(repo_id)s AND number = %(number)s AND NOT (lower(%(label)s) = ANY(SELECT lower(l) FROM unnest(labels) l))
"""
FORGET_LABEL = """
UPDATE tasks SET labels = ARRAY(SELECT l FROM unnest(labels) l WHERE lower(l) <> lower(%(label)s))
WHERE repo_id = %(repo_id)s AND number = %(number)s
RETURNING true
"""


def write_verdict(effects: Effects, number: int) -> None:
    """The positive claim verdict, Fleet's highest-priority write: one ``POST .../labels`` adding
    ``fleet:claimed`` (``sync_labels`` then only takes ``fleet:ready`` off, a lower-class write).
    Written whether or not ``tasks.manage_labels`` is on: it is the signal agents wait for.
    The one call site of the verdict write (the write pacer's class wraps it here)."""
    ensure_fleet_labels(effects.gh, effects.repo)
    effects.gh.add_labels(number, [VERDICT_LABEL])
    effects.conn.execute(RECORD_LABEL, {"label": VERDICT_LABEL, "repo_id": effects.repo.id, "number": number})


def withdraw_verdict(effects: Effects, number: int) -> None:
    """A released task loses the verdict. With ``tasks.manage_labels`` on, ``sync_labels`` moves
    the state label anyway; with it off the verdict label is the only one Fleet set, so it goes."""
    if effects.repo.config.tasks.manage_labels or effects.gh is None:
        return  # no gateway: the repository is gone or archived, nothing on GitHub can change
    row = effects.conn.execute("SELECT labels FROM tasks WHERE repo_id = %s AND number = %s",
                               (effects.repo.id, number)).fetchone()
    if row and VERDICT_LABEL in (label.lower() for label in row["labels"]):
        effects.gh.remove_label(number, VERDICT_LABEL)
        effects.conn.execute(FORGET_LABEL, {"label": VERDICT_LABEL, "repo_id": effects.repo.id, "number": number})


_labels_ready: set[int] = set()


def ensure_fleet_labels(gh: RepoGateway, repo: Repo) -> None:
    """Create the labels Fleet writes (with colours and descriptions) once per repository and
    process: all state labels with ``tasks.manage_labels``, else only the verdict."""
    if repo.id in _labels_ready:
        return
    only = None if repo.config.tasks.manage_labels else {VERDICT_LABEL}
    for action in readiness.missing_label_actions(gh.labels(), only=only):
        gh.create_label(action.name, action.color, action.description)
    _labels_ready.add(repo.id)


@writing(WriteClass.LABELS)
def sync_labels(effects: Effects, numbers: Iterable[int]) -> None:
    """Make the ``fleet:*`` label of each task match its state, touching only real changes."""
    if not effects.repo.config.tasks.manage_labels:
        return
    wanted = sorted(set(numbers))
    if not wanted:
        return
    tasks = claim_store.snapshots(effects.conn, effects.repo.id, effects.repo.full_name, wanted)
    for task in tasks:
        # Non-tasks go through too: an issue that stopped being a task (say it gained
        # fleet:status after its opened event) must lose the state label it was given.
        changes = readiness.label_actions(task, task.labels)
        if not changes:
            continue
        try:
            _write_labels(effects, task, changes)
        except BudgetSpent as exc:
            # Labels are derived from Postgres and rank below verdicts: when their share of the
            # budget is spent they catch up later, and the delivery (with its verdict) goes on.
            defer_label_sync(effects.repo.id, exc.retry_at)
            return


def _write_labels(effects: Effects, task: readiness.TaskSnapshot, changes) -> None:
    ensure_fleet_labels(effects.gh, effects.repo)
    done = []
    try:
        for change in changes:
            if isinstance(change, readiness.AddLabel):
                effects.gh.add_labels(task.number, [change.name])
            elif isinstance(change, readiness.RemoveLabel):
                effects.gh.remove_label(task.number, change.name)
            done.append(change)
    finally:
        _record_labels(effects.conn, effects.repo.id, task, done)


def defer_label_sync(repo_id: int, retry_at: float) -> None:
    """Bring the repository's labels up to date once the label class has budget again."""
    runtime.schedule_catch_up("jobs.labels.sync_repo_labels", repo_id, "labels", retry_at)


def _record_labels(conn: psycopg.Connection, repo_id: int, task: readiness.TaskSnapshot, changes) -> None:
    """Reflect Fleet's own label edits at once; the labeled/unlabeled webhooks confirm them later."""
    labels = set(task.labels)
    for change in changes:
        if isinstance(change, readiness.AddLabel):
            labels.add(change.name)
        elif isinstance(change, readiness.RemoveLabel):
            labels.discard(change.name)
    conn.execute("UPDATE tasks SET labels = %s WHERE repo_id = %s AND number = %s", (sorted(labels), repo_id, task.number))
