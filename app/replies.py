"""The text of every comment Fleet writes about tasks, claims and commands.

Each reply is one short sentence for people and agents, then a hidden marker an agent (and Fleet
itself) can parse::

    `alice` cannot claim #12: it is blocked by #10.

    <!-- fleet:{"blockers":[10],"command":"claim","reason":"blocked","result":"refused","task":12} -->

Logins and other identifiers are written in backticks, never as live ``@mentions``; any text a
user supplied (titles, notes) goes through ``neutralize`` first.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from app.durations import format_duration
from app.input_limits import MAX_BODY_CHARS
from app.markdown import cell, plain
from app.tasks.refs import TaskRef

if TYPE_CHECKING:  # claims imports this module to build its comments
    from app.claims.rules import Claim
    from app.tasks.agents import AgentId

MARKER_PREFIX = "fleet:"
TITLE_LIMIT = 80
NOTE_LIMIT = 200
# Only the opening is a regex; the end is found with str.find (see parse_marker).
_MARKER_OPEN = re.compile(r"<!--\s*+fleet:")


# --- Markers -----------------------------------------------------------------------------------


def marker(data: Mapping[str, Any]) -> str:
    """A hidden HTML comment carrying ``data`` as compact JSON with sorted keys.

    ``--`` (which could end the comment early), ``<`` and ``>`` never appear literally: they are
    written as JSON ``\\u`` escapes, which ``parse_marker`` reads back unchanged.
    """
    text = json.dumps(dict(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    # Outside strings JSON never has "-" twice in a row, so this only touches string contents.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e")
    while "--" in text:
        text = text.replace("--", "-\\u002d")
    return f"<!-- {MARKER_PREFIX}{text} -->"


def parse_marker(comment_body: str | None) -> dict[str, Any] | None:
    """The data of the first Fleet marker in a comment, or None.

    A marker proves nothing by itself (anyone can paste one): check the comment's author is the
    App's bot before trusting it.
    """
    if not comment_body:
        return None
    # Linear in the body: a lazy ``<!--\s*fleet:(.*?)\s*-->`` rescans to the end from every
    # unclosed opener. Each ``-->`` closes the last opener before it (an earlier one, e.g. a user's
    # pasted ``<!--fleet:`` quoted in the reply, would swallow the real marker), and each stretch
    # of text is searched once forwards and once backwards.
    text = comment_body[:MAX_BODY_CHARS]
    pos = 0
    while (close := text.find("-->", pos)) != -1:
        opening = _last_opener(text, pos, close)
        if opening is not None:
            try:
                data = json.loads(text[opening:close])
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
        pos = close + 3
    return None


def _last_opener(text: str, start: int, end: int) -> int | None:
    """Where the data of the last marker opener in ``text[start:end]`` begins, if there is one."""
    at = text.rfind("<!--", start, end)
    while at != -1:
        if (opening := _MARKER_OPEN.match(text, at, end)) is not None:
            return opening.end()
        at = text.rfind("<!--", start, at)
    return None


def reply(sentence: str, data: Mapping[str, Any]) -> str:
    """One sentence, a blank line, the marker."""
    return f"{sentence}\n\n{marker(data)}"


# --- Safe text ---------------------------------------------------------------------------------


def neutralize(text: str | None, limit: int = TITLE_LIMIT) -> str:
    """User text made safe to echo: Fleet's one sanitiser (``markdown_safety.cell``)."""
    return cell(text, limit)


def code(text: str | None, limit: int = 100) -> str:
    """An identifier (login, agent, branch, SHA) in backticks: never a mention, never HTML."""
    flat = plain((text or "").replace("`", "'"))[:limit]
    return f"`{flat or '?'}`"


def _ref(ref: TaskRef, repo: str) -> str:
    return ref.short(repo)


def _refs(refs: Iterable[TaskRef], repo: str) -> str:
    return ", ".join(_ref(r, repo) for r in refs)


def _ref_data(ref: TaskRef, repo: str) -> int | str:
    """Markers name same-repo tasks by number, others as ``owner/repo#N``."""
    return ref.number if ref.repo_full_name.lower() == repo.lower() else ref.full_name


def _agent(agent: AgentId) -> str:
    return code(str(agent))


def _when(moment: datetime, now: datetime) -> str:
    left = moment - now
    return "now" if left.total_seconds() <= 0 else f"in {format_duration(left)}"


# --- Claims ------------------------------------------------------------------------------------


def claim_refused(
    reason: str,
    *,
    task: TaskRef,
    repo: str,
    agent: AgentId,
    command: str = "claim",
    holder: AgentId | None = None,
    blockers: Sequence[TaskRef] = (),
    open_claims: Sequence[TaskRef] = (),
    elsewhere: int = 0,
    limit: int | None = None,
    assigner: str | None = None,
    detail: str | None = None,
) -> str:
    """Why a claim (self-assignment, ``/claim`` or ``/next``) was refused, and what to do instead."""
    t, who = _ref(task, repo), _agent(agent)
    data: dict[str, Any] = {
        "command": command, "result": "refused", "reason": reason,
        "task": _ref_data(task, repo), "agent": str(agent),
    }
    if reason == "blocked":
        data["blockers"] = [_ref_data(r, repo) for r in blockers]
        sentence = f"{who} cannot claim {t}: it is blocked by {_refs(blockers, repo)}; claim it once they are closed, or use `/next`."
    elif reason == "taken":
        data["holder"] = str(holder) if holder else None
        sentence = f"{t} is already claimed by {_agent(holder) if holder else 'another agent'} (first claim wins); use `/next` to get a ready task."
    elif reason == "wip_limit":
        # ``open_claims`` are this repository's; claims elsewhere are only counted, never named.
        data["claims"] = [_ref_data(r, repo) for r in open_claims]
        data["elsewhere"] = elsewhere
        data["limit"] = limit
        counted = who if detail == "per_name" or agent.name is None else f"{code(agent.login)} (all its agents together)"
        listed = [_refs(open_claims, repo)] if open_claims else []
        listed += [f"{elsewhere} in other repositories"] if elsewhere else []
        sentence = (f"{counted} already holds {len(open_claims) + elsewhere} claim(s) ({', '.join(listed)}), "
                    f"the limit of {limit}; finish or `/release` one first.")
    elif reason == "maintainer_required":
        data["assigner"] = assigner
        sentence = f"{code(assigner)} cannot assign {t} to {who}: assigning someone else needs write access, so {who} should self-assign or comment `/claim`."
    elif reason == "not_allowed":
        data["detail"] = detail
        why = {
            "not_assignable": "GitHub cannot assign this account here",
            "named_agents_disabled": "named agents (`as NAME`) are turned off in `.github/fleet.yml`",
        }.get(detail or "", "only the accounts in `claims.allow` of `.github/fleet.yml` may claim tasks")
        sentence = f"{who} may not claim {t}: {why}."
    elif reason == "closed":
        sentence = f"{t} is closed, so it cannot be claimed; use `/next` to get a ready task."
    elif reason == "not_a_task":
        sentence = f"{t} is not a task (its labels exclude it), so it cannot be claimed."
    else:
        sentence = f"{who} cannot claim {t} ({code(reason)})."
    return reply(sentence, data)


def claim_displaced(*, task: TaskRef, repo: str, agent: AgentId, winner: AgentId) -> str:
    """Told to a holder whose claim lost to an earlier one that arrived late."""
    sentence = f"{_agent(winner)} claimed {_ref(task, repo)} first by GitHub's event order, so the claim of {_agent(agent)} was undone; use `/next` to get a ready task."
    return reply(sentence, {
        "command": "claim", "result": "displaced", "task": _ref_data(task, repo),
        "agent": str(agent), "holder": str(winner),
    })


def claim_accepted(*, task: TaskRef, repo: str, agent: AgentId, expires_at: datetime, now: datetime,
                   title: str | None = None, command: str = "claim") -> str:
    """A claim went through (used for ``/next``, where the agent needs to learn which task)."""
    what = _ref(task, repo) + (f" ({neutralize(title)})" if title else "")
    sentence = f"{_agent(agent)} now holds {what}; the lease ends {_when(expires_at, now)} unless renewed by activity."
    return reply(sentence, {
        "command": command, "result": "accepted", "task": _ref_data(task, repo), "agent": str(agent),
        "expires_at": expires_at.isoformat(),
    })


def next_none(*, agent: AgentId, repo: str, reason: str = "no_ready_task", waited_s: int | None = None) -> str:
    """``/next`` found nothing to hand out: at once (nothing may become ready), or after waiting
    in line for ``claims.next_wait`` (``waited_s``)."""
    if waited_s is None:
        sentence = f"There is no ready task for {_agent(agent)} and none waiting to become ready; try again later."
        return reply(sentence, {"command": "next", "result": "refused", "reason": reason, "agent": str(agent)})
    sentence = (f"No task became ready for {_agent(agent)} in the {format_duration(timedelta(seconds=waited_s))} "
                "this `/next` waited in line; ask again to wait again.")
    return reply(sentence, {"command": "next", "result": "refused", "reason": reason, "agent": str(agent),
                            "waited_s": waited_s})


def release_refused(reason: str, *, task: TaskRef, repo: str, agent: AgentId, holder: AgentId | None = None) -> str:
    """``/release`` by someone who does not hold the task."""
    t = _ref(task, repo)
    if reason == "not_held":
        sentence = f"{t} is not claimed, so there is nothing to release."
    else:
        sentence = f"{t} is held by {_agent(holder) if holder else 'another agent'}, not {_agent(agent)}; only the holder or someone with write access can release it."
    data = {"command": "release", "result": "refused", "reason": reason, "task": _ref_data(task, repo), "agent": str(agent)}
    if holder is not None:
        data["holder"] = str(holder)
    return reply(sentence, data)


def progress_refused(*, task: TaskRef, repo: str, agent: AgentId, holder: AgentId | None) -> str:
    """``/progress`` by someone who does not hold the task."""
    t = _ref(task, repo)
    if holder is None:
        sentence = f"{t} is not claimed; claim it (self-assign or `/claim`) before reporting progress."
    else:
        sentence = f"{t} is held by {_agent(holder)}, so progress from {_agent(agent)} was not recorded."
    return reply(sentence, {
        "command": "progress", "result": "refused", "reason": "not_holder", "task": _ref_data(task, repo),
        "agent": str(agent), "holder": str(holder) if holder else None,
    })


def lease_warning(*, claim: Claim, repo: str, now: datetime) -> str:
    """Sent once per lease when most of it has passed without activity."""
    t = _ref(claim.task, repo)
    sentence = f"{_agent(claim.agent)}, your claim on {t} expires {_when(claim.expires_at, now)}: push, comment or `/progress` to keep it, or `/release` it."
    return reply(sentence, {
        "command": "lease", "result": "warning", "task": _ref_data(claim.task, repo), "agent": str(claim.agent),
        "expires_at": claim.expires_at.isoformat(),
    })


def lease_expired(*, claim: Claim, repo: str) -> str:
    """The handoff note left when a lease runs out: where the work stands for the next agent."""
    parts = []
    if claim.branch:
        parts.append(f"branch {code(claim.branch)}")
    if claim.head_sha:
        parts.append(f"last push {code(claim.head_sha[:12])}")
    if claim.pr_number:
        parts.append(f"PR #{claim.pr_number}")
    if claim.progress is not None:
        note = f" {neutralize(claim.progress_note, NOTE_LIMIT)}" if claim.progress_note else ""
        parts.append(f"progress {claim.progress}%{note}")
    handoff = "; ".join(parts) if parts else "no branch, PR or progress was recorded"
    sentence = f"The claim of {_agent(claim.agent)} on {_ref(claim.task, repo)} expired and the task is ready again (handoff: {handoff})."
    return reply(sentence, {
        "command": "lease", "result": "released", "reason": "expired", "task": _ref_data(claim.task, repo),
        "agent": str(claim.agent), "branch": claim.branch, "sha": claim.head_sha, "pr": claim.pr_number,
        "progress": claim.progress,
    })


# --- Tasks -------------------------------------------------------------------------------------


def cycle_found(*, cycle: Sequence[TaskRef], repo: str) -> str:
    """A dependency cycle that involves this task; none of its tasks can become ready."""
    path = " → ".join(_ref(r, repo) for r in [*cycle, cycle[0]]) if cycle else "?"
    sentence = f"These tasks depend on each other in a cycle, so none of them can become ready: {path}."
    return reply(sentence, {"command": "dependencies", "result": "cycle", "cycle": [_ref_data(r, repo) for r in cycle]})


def pr_task_held(*, pr_number: int, task: TaskRef, repo: str, holder: AgentId, author: AgentId) -> str:
    """A PR links to a task somebody else holds."""
    sentence = f"This pull request is linked to {_ref(task, repo)}, which {_agent(holder)} holds, not {_agent(author)}; coordinate before continuing."
    return reply(sentence, {
        "command": "link", "result": "warning", "reason": "held_by_other", "task": _ref_data(task, repo),
        "pr": pr_number, "holder": str(holder), "agent": str(author),
    })


def config_invalid(*, message: str, key: str | None, line: int | None) -> str:
    """A broken ``.github/fleet.yml``: Fleet keeps using the last good one."""
    where = " ".join(p for p in (f"key {code(key)}" if key else "", f"line {line}" if line else "") if p)
    sentence = f"`.github/fleet.yml` is invalid{f' ({where})' if where else ''}: {neutralize(message, NOTE_LIMIT)}; Fleet keeps using the last valid configuration."
    return reply(sentence, {"command": "config", "result": "error", "key": key, "line": line})
