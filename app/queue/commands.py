"""``/queue``, ``/merge``, ``/dequeue`` and ``/priority`` on a pull request: who may run them
(the one command table decides) and what they do to the queue (pure).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from app.commands.parse import COMMANDS, command_allowed
from app.github.permissions import PERMISSION_RANK
from app.gates.rules import PullSnapshot
from app.gates.check_run import md_code
from app.repos.config import QueueConfig
from app.queue.messages import DEQUEUE_PREFIX
from app.queue.state import (
    Action, AdvanceToNext, Dequeue, EnqueueEntry, PRIORITY_RANK, QueueSnapshot, SetPriority,
    positions,
)


# --- commands -----------------------------------------------------------------------------

CommandName = Literal["queue", "merge", "dequeue", "priority"]
_COMMAND = re.compile(r"^/(queue|merge|dequeue|priority)(?:\s+(\S+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class QueueCommand:
    name: CommandName
    arg: str | None = None


@dataclass(frozen=True)
class CommandDecision:
    """Accept or refuse a command; ``reply`` is one Markdown-safe line to acknowledge it."""

    accepted: bool
    reply: str
    position: int | None = None
    length: int | None = None
    actions: tuple[Action, ...] = ()


def parse_queue_command(line: str) -> QueueCommand | None:
    """``/queue``, ``/merge``, ``/dequeue``, ``/priority high`` on a line of their own."""
    match = _COMMAND.match(line.strip())
    if match is None:
        return None
    return QueueCommand(match.group(1).lower(), match.group(2))  # type: ignore[arg-type]


def _allowed(name: str, permission: str | None, *, is_author: bool = False) -> bool:
    """The command table (``commands.COMMANDS``) decides who may run a queue command: one
    permission rule for the command, the label and ``queue.auto``."""
    return command_allowed(COMMANDS[name], permission, is_author=is_author)


def _needs(name: str) -> str:
    """``write permission`` and the like: holder/author commands are also open to write."""
    who = COMMANDS[name].who
    return f"{who if who in PERMISSION_RANK else 'write'} permission"


def _is_author(actor: str, pr: PullSnapshot) -> bool:
    return actor.lower() == pr.author.lower()


def queue_refusal(actor: str, actor_permission: str | None, pr: PullSnapshot, config: QueueConfig) -> str | None:
    """Why ``actor`` may not queue ``pr`` (one Markdown-safe line), or None when they may.
    The one rule for every way of queueing: command, label and ``queue.auto``."""
    who = md_code(actor, in_table=False)
    if not _allowed("queue", actor_permission):
        return f"Refused: {who} needs {_needs('queue')} to queue this pull request."
    if _is_author(actor, pr) and not config.allow_authors:
        return (f"Refused: {who} wrote this pull request and `queue.allow_authors` is false: "
                "someone else with write permission must queue it.")
    return None


def _position_text(position: int, length: int) -> str:
    return "in flight (merging next)" if position == 1 else f"position {position} of {length}"


def decide_queue_command(
    cmd: QueueCommand,
    actor: str,
    actor_permission: str | None,
    pr: PullSnapshot,
    queue: QueueSnapshot,
    config: QueueConfig,
) -> CommandDecision:
    """Accept or refuse ``/queue`` (alias ``/merge``), ``/dequeue`` and ``/priority``.

    Permissions (GitHub's ``permission`` or ``role_name``): queueing always needs write; with
    ``allow_authors`` false the author may not queue their own PR even with write (someone else
    must: four eyes). Who may run each command is ``commands.COMMANDS``' table: dequeue needs
    write or being the PR's author, priority write. ``queue`` must be the PR's base-branch queue.
    """
    who = md_code(actor, in_table=False)
    existing = queue.entry(pr.number)
    where = md_code(queue.base_ref, in_table=False)

    if cmd.name in ("queue", "merge"):
        refusal = queue_refusal(actor, actor_permission, pr, config)
        if refusal is not None:
            return CommandDecision(False, refusal)
        if pr.merged or pr.state != "open":
            return CommandDecision(False, "Refused: the pull request is not open.")
        if pr.draft:
            return CommandDecision(False, "Refused: the pull request is a draft; mark it ready for review first.")
        if existing is not None:
            pos = positions(queue)[pr.number]
            length = len(queue.ordered())
            return CommandDecision(True, f"Already queued for {where}: {_position_text(pos, length)}.", pos, length)
        enqueue = EnqueueEntry(pr.number, "normal", actor)
        ahead = [e for e in queue.ordered() if e.in_flight or PRIORITY_RANK[e.priority] <= PRIORITY_RANK["normal"]]
        pos, length = len(ahead) + 1, len(queue.ordered()) + 1
        kick = () if queue.in_flight() is not None else (AdvanceToNext(queue.repo, queue.base_ref),)
        return CommandDecision(True, f"Queued for {where}: {_position_text(pos, length)}.", pos, length, (enqueue, *kick))

    if cmd.name == "dequeue":
        if not _allowed("dequeue", actor_permission, is_author=_is_author(actor, pr)):
            return CommandDecision(False, f"Refused: {who} needs {_needs('dequeue')} to dequeue this pull request.")
        if existing is None:
            return CommandDecision(False, "Refused: the pull request is not in the merge queue.")
        dequeue = Dequeue(pr.number, "user_request", f"{DEQUEUE_PREFIX} by {who}.", None)
        tail = (AdvanceToNext(queue.repo, queue.base_ref),) if existing.in_flight else ()
        return CommandDecision(True, f"{DEQUEUE_PREFIX} by {who}.", None, None, (dequeue, *tail))

    # priority
    if not _allowed("priority", actor_permission):
        return CommandDecision(False, f"Refused: {who} needs {_needs('priority')} to change priority.")
    wanted = (cmd.arg or "").lower()
    if wanted not in PRIORITY_RANK:
        return CommandDecision(False, "Refused: usage is `/priority high`, `/priority normal` or `/priority low`.")
    if existing is None:
        return CommandDecision(False, "Refused: the pull request is not in the merge queue.")
    changed = replace(existing, priority=wanted)  # type: ignore[arg-type]
    after = replace(queue, entries=tuple(changed if e is existing else e for e in queue.entries))
    pos, length = positions(after)[pr.number], len(after.ordered())
    actions = () if existing.priority == wanted else (SetPriority(pr.number, wanted),)  # type: ignore[arg-type]
    return CommandDecision(True, f"Priority {wanted}: {_position_text(pos, length)}.", pos, length, actions)
