"""What issue and PR text says about tasks: dependencies, closing references, estimates,
priorities, and which task a branch belongs to.

All functions are pure and never raise on user text. Lines in code blocks, blockquotes and HTML
comments are ignored (the same regions as for slash commands), so quoting an example
``Depends on #1`` does not create a dependency.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.repos.branch_patterns import match_branch
from app.prose import prose_lines
from app.tasks.agents import AGENT_NAME_RE
from app.repos.config import TasksConfig

# One day of estimated work is a working day, not 24 hours.
HOURS_PER_DAY = 8.0

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})"
_REPO = r"[A-Za-z0-9._-]{1,100}"
# "#12", "owner/repo#12", or an issue/pull URL on github.com.
_REF = (
    rf"(?:https?://github\.com/(?P<url_owner>{_OWNER})/(?P<url_repo>{_REPO})/(?:issues|pull)/(?P<url_number>\d{{1,9}})"
    rf"|(?:(?P<owner>{_OWNER})/(?P<repo>{_REPO}))?#(?P<number>\d{{1,9}}))(?![\w/])"
)
_REF_RE = re.compile(_REF)
# The same shape without group names, for patterns that repeat it.
_ANY_REF = re.sub(r"\?P<\w+>", "?:", _REF)
_BACKTICKS = re.compile(r"`+")


@dataclass(frozen=True, order=True)
class TaskRef:
    """An issue (or PR) by repository and number. ``str()`` gives ``owner/repo#N``."""

    owner: str
    repo: str
    number: int

    @property
    def repo_full_name(self) -> str:
        return f"{self.owner}/{self.repo}"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.repo}#{self.number}"

    def short(self, repo_full_name: str) -> str:
        """``#N`` inside ``repo_full_name``, ``owner/repo#N`` elsewhere."""
        return f"#{self.number}" if self.repo_full_name.lower() == repo_full_name.lower() else self.full_name

    def __str__(self) -> str:
        return self.full_name

    @classmethod
    def of(cls, repo_full_name: str, number: int) -> TaskRef:
        owner, _, repo = repo_full_name.partition("/")
        return cls(owner, repo, number)


def _ref_from_match(match: re.Match[str], repo_full_name: str) -> TaskRef | None:
    if match["url_number"]:
        owner, repo, number = match["url_owner"], match["url_repo"], int(match["url_number"])
    else:
        owner, repo, number = match["owner"], match["repo"], int(match["number"])
    if number <= 0:
        return None
    if owner is None or f"{owner}/{repo}".lower() == repo_full_name.lower():
        # Same repository: keep one spelling so refs compare equal however they were written.
        return TaskRef.of(repo_full_name, number)
    return TaskRef(owner, repo, number)


def parse_ref(text: str, repo_full_name: str) -> TaskRef | None:
    """Parse one reference (``#12``, ``owner/repo#12`` or an issue URL); None if it is not one."""
    match = _REF_RE.fullmatch(text.strip())
    return _ref_from_match(match, repo_full_name) if match else None


def _without_code_spans(line: str) -> str:
    """``line`` with each inline code span replaced by a space.

    As in CommonMark, a run of N backticks opens a span closed by the next run of exactly N; an
    opener without a closer is literal text. Done over the runs, not with ``(`+).*?\1``, which
    backtracks cubically on a line of backticks.
    """
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(line)]
    if len(runs) < 2:
        return line
    next_same: list[int | None] = [None] * len(runs)
    last_of_length: dict[int, int] = {}
    for i in range(len(runs) - 1, -1, -1):
        length = runs[i][1] - runs[i][0]
        next_same[i] = last_of_length.get(length)
        last_of_length[length] = i
    parts, kept_from, i = [], 0, 0
    while i < len(runs):
        closer = next_same[i]
        if closer is None:
            i += 1
            continue
        parts += [line[kept_from:runs[i][0]], " "]
        kept_from = runs[closer][1]
        i = closer + 1
    parts.append(line[kept_from:])
    return "".join(parts)


def _text_lines(body: str | None) -> Iterable[str]:
    if not body:
        return
    for _, line in prose_lines(body):
        yield _without_code_spans(line)


# Whitespace is matched possessively (``\s*+``) and never by two adjacent quantifiers: every
# pattern here sees user text, and ``\s+:?\s*`` before a failing ref tries every split of a
# whitespace run (quadratic: 84 s on "Closes" + 60,000 spaces + "x").
_SEPARATOR = r"(?:\s*+(?:,|&|\band\b)\s*+|\s++)"
_DEPENDENCY_RE = re.compile(
    rf"\b(?:depends\s++on|blocked\s++by)\s*+(?::\s*+)?(?P<refs>{_ANY_REF}(?:{_SEPARATOR}{_ANY_REF})*+)",
    re.IGNORECASE,
)


def _unique(refs: Iterable[TaskRef]) -> list[TaskRef]:
    return list(dict.fromkeys(refs))


def parse_dependencies(body: str | None, repo_full_name: str) -> list[TaskRef]:
    """Tasks this body says it depends on, in order of first mention, without duplicates.

    Understands ``Depends on #12``, ``Blocked by #12, #14``, ``depends on owner/repo#7``,
    ``blocked by: #3 and #4`` anywhere in a line, any case.
    """
    refs: list[TaskRef] = []
    for line in _text_lines(body):
        for match in _DEPENDENCY_RE.finditer(line):
            for ref_match in _REF_RE.finditer(match["refs"]):
                ref = _ref_from_match(ref_match, repo_full_name)
                if ref is not None:
                    refs.append(ref)
    return _unique(refs)


_CLOSING_KEYWORD_THEN_REF = re.compile(
    rf"(?<![\w-])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?::\s*+|\s++(?::\s*+)?)(?P<ref>{_REF})", re.IGNORECASE
)


def parse_closing_refs(body: str | None, repo_full_name: str) -> list[TaskRef]:
    """Issues a PR body closes by GitHub's keywords (close/closes/closed, fix/fixes/fixed,
    resolve/resolves/resolved), each followed by ``#N`` or ``owner/repo#N``, optional colon.

    Like GitHub, each reference needs its own keyword: ``Closes #1, #2`` closes only #1.
    """
    refs: list[TaskRef] = []
    for line in _text_lines(body):
        for match in _CLOSING_KEYWORD_THEN_REF.finditer(line):
            ref_match = _REF_RE.match(match["ref"])
            ref = _ref_from_match(ref_match, repo_full_name) if ref_match else None
            if ref is not None:
                refs.append(ref)
    return _unique(refs)


def closing_numbers(body: str | None, repo_full_name: str) -> set[int]:
    """Issue numbers of this repository that the body names with a closing keyword."""
    return {ref.number for ref in parse_closing_refs(body, repo_full_name)
            if ref.repo_full_name.lower() == repo_full_name.lower()}


def closed_by_github(body: str | None, repo_full_name: str, base_ref: str, default_branch: str) -> set[int]:
    """Issue numbers of this repository that GitHub closes itself when a PR with this body merges
    into ``base_ref``: those named with a closing keyword, and only on the default branch."""
    return closing_numbers(body, repo_full_name) if base_ref == default_branch else set()


_UNIT_HOURS = {
    "m": 1 / 60, "min": 1 / 60, "mins": 1 / 60, "minute": 1 / 60, "minutes": 1 / 60,
    "h": 1.0, "hr": 1.0, "hrs": 1.0, "hour": 1.0, "hours": 1.0,
    "d": HOURS_PER_DAY, "day": HOURS_PER_DAY, "days": HOURS_PER_DAY,
}
_AMOUNT = r"(?P<amount>\d{1,5}(?:\.\d{1,3})?)\s*(?P<unit>[a-z]{0,7})"
_ESTIMATE_LABEL = re.compile(rf"estimate\s*:\s*{_AMOUNT}", re.IGNORECASE)
_ESTIMATE_LINE = re.compile(rf"^\s*(?:[-*]\s+)?\**estimate\**\s*:\**\s*{_AMOUNT}\b", re.IGNORECASE)


def _hours(match: re.Match[str] | None) -> float | None:
    if match is None:
        return None
    unit = match["unit"].lower() or "h"  # a bare number is hours
    if unit not in _UNIT_HOURS:
        return None
    hours = float(match["amount"]) * _UNIT_HOURS[unit]
    return hours if hours > 0 else None


def parse_estimate(labels: Iterable[str], body: str | None) -> float | None:
    """Estimated hours of work, or None.

    An ``estimate:8h`` / ``estimate:2d`` / ``estimate:90m`` label wins over an ``Estimate: 6 h``
    line in the body. A day is ``HOURS_PER_DAY`` (8) hours of work; a bare number is hours.
    """
    for label in labels:
        hours = _hours(_ESTIMATE_LABEL.fullmatch(label.strip()))
        if hours is not None:
            return hours
    for line in _text_lines(body):
        hours = _hours(_ESTIMATE_LINE.match(line))
        if hours is not None:
            return hours
    return None


PRIORITY_CRITICAL, PRIORITY_HIGH, PRIORITY_NORMAL, PRIORITY_LOW = 0, 1, 2, 3
_PRIORITY_NAMES = {
    "critical": PRIORITY_CRITICAL, "p0": PRIORITY_CRITICAL,
    "high": PRIORITY_HIGH, "p1": PRIORITY_HIGH,
    "medium": PRIORITY_NORMAL, "normal": PRIORITY_NORMAL, "p2": PRIORITY_NORMAL,
    "low": PRIORITY_LOW, "p3": PRIORITY_LOW,
}
_PRIORITY_LABEL = re.compile(r"priority\s*[:/]\s*(?P<name>\w+)", re.IGNORECASE)


def parse_priority(labels: Iterable[str]) -> int:
    """Sortable priority from ``priority:*`` labels: lower is more urgent.

    critical/p0 → 0, high/p1 → 1, medium/normal/p2 → 2 (the default), low/p3 → 3. With several
    priority labels the most urgent wins.
    """
    found = [
        _PRIORITY_NAMES[m["name"].lower()]
        for label in labels
        if (m := _PRIORITY_LABEL.fullmatch(label.strip())) and m["name"].lower() in _PRIORITY_NAMES
    ]
    return min(found, default=PRIORITY_NORMAL)


@dataclass(frozen=True)
class BranchLink:
    """A branch that belongs to a task: issue ``number``, and the agent ``agent`` if named."""

    branch: str
    number: int
    agent: str | None = None


def branch_task(branch: str, patterns: Sequence[str]) -> BranchLink | None:
    """Link a branch name to a task using the configured regexes (first match wins).

    Group ``number`` is the issue number; an optional group ``agent`` names the agent, kept only
    when it is a valid agent name. Patterns run on RE2 (``app.repos.branch_patterns``: linear time,
    compiled once); ones it refuses are skipped, as are names over MAX_BRANCH_CHARS.
    """
    name = branch.removeprefix("refs/heads/")
    for pattern in patterns:
        groups = match_branch(name, pattern)
        if groups is None:
            continue
        number = groups.get("number")
        if not number or not number.isascii() or not number.isdigit() or int(number) <= 0:
            continue
        agent = groups.get("agent")
        if agent is not None and not AGENT_NAME_RE.fullmatch(agent):
            agent = None
        return BranchLink(name, int(number), agent)
    return None


def is_task(labels: Iterable[str], tasks_config: TasksConfig) -> bool:
    """Whether an open issue with these labels is a task under the repo's config (case-insensitive)."""
    names = {label.lower() for label in labels}
    if names & {label.lower() for label in tasks_config.exclude_labels}:
        return False
    if tasks_config.include_labels:
        return bool(names & {label.lower() for label in tasks_config.include_labels})
    return True
