"""Slash commands in issue and PR comments: finding them, parsing their arguments, `/help`.

A command is a line that starts with ``/`` (after optional indentation) in the *prose* of a
comment: lines inside fenced or indented code blocks, blockquotes and HTML comments never count,
so quoting someone's ``/claim`` does not claim anything. The Markdown structure comes from
markdown-it-py, not from hand-written rules.

Everything here is pure: text in, frozen dataclasses out.
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal


# The caps on parsed text live with every other input cap; re-exported for existing callers.
from app.github.permissions import has_permission
from app.tasks.agents import AGENT_NAME_RE
from app.prose import prose_lines

MAX_COMMANDS = 10


Where = Literal["issue", "pr", "status"]
Who = Literal["anyone", "holder", "author", "write", "maintain"]


# --- Commands ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One slash command found in a comment.

    ``args`` are normalised by the command's grammar (see ``COMMANDS``); ``error`` is set when
    they do not fit it, ``unknown`` when the name is not a command (``suggestion`` is the nearest
    known name, if any is close).
    """

    name: str
    args: tuple[str, ...]
    raw_line: str
    line_no: int
    unknown: bool = False
    suggestion: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.unknown and self.error is None

    @property
    def agent_name(self) -> str | None:
        """The NAME of ``/claim as NAME``, ``/release as NAME``, ``/next as NAME``."""
        if self.name in ("claim", "release", "next") and self.args:
            return self.args[0]
        return None

    @property
    def percent(self) -> int | None:
        """The number of ``/progress N``."""
        return int(self.args[0]) if self.name == "progress" and self.ok else None

    @property
    def note(self) -> str:
        """The free text after ``/progress N``."""
        return self.args[1] if self.name == "progress" and len(self.args) > 1 else ""


ArgParser = Callable[[str, str], tuple[tuple[str, ...], str | None]]


@dataclass(frozen=True)
class CommandSpec:
    """What a command is: its name, aliases, where and by whom it may be used, and its help."""

    name: str
    syntax: str
    help: str
    where: frozenset[Where]
    who: Who
    parse: ArgParser
    aliases: tuple[str, ...] = ()


# Argument grammars. Each takes (command name, text after the name) and returns
# (normalised args, error message or None).


def _no_args(name: str, rest: str) -> tuple[tuple[str, ...], str | None]:
    # Trailing prose after an argument-less command is tolerated ("/help please").
    return (), None


def _as_name(name: str, rest: str) -> tuple[tuple[str, ...], str | None]:
    words = rest.split()
    if not words:
        return (), None
    if words[0].lower() == "as" and len(words) == 2 and AGENT_NAME_RE.fullmatch(words[1]):
        return (words[1],), None
    return (), f"/{name} takes no argument or `as NAME` (letters, digits, `-`, `_`, `.`; at most 39)"


def _progress(name: str, rest: str) -> tuple[tuple[str, ...], str | None]:
    parts = rest.strip().split(None, 1)
    error = "/progress needs a number 0-100, e.g. `/progress 40 tests pass`"
    if not parts:
        return (), error
    number = parts[0].rstrip("%")
    if not number.isascii() or not number.isdigit() or int(number) > 100:
        return (), error
    note = " ".join(parts[1].split()) if len(parts) > 1 else ""
    return ((str(int(number)), note) if note else (str(int(number)),)), None


_REF_ARG = re.compile(r"(?:(?P<repo>[A-Za-z0-9-]+/[A-Za-z0-9._-]+))?#(?P<number>[0-9]{1,9})")


def _refs(name: str, rest: str) -> tuple[tuple[str, ...], str | None]:
    words = [w for w in re.split(r"[\s,]+", rest) if w and w.lower() != "and"]
    refs = []
    for word in words:
        match = _REF_ARG.fullmatch(word)
        if not match or int(match["number"]) == 0:
            return (), f"/{name} needs issue references, e.g. `/{name} #12 #14`"
        refs.append(word)
    if not refs:
        return (), f"/{name} needs issue references, e.g. `/{name} #12 #14`"
    return tuple(dict.fromkeys(refs)), None


def _priority(name: str, rest: str) -> tuple[tuple[str, ...], str | None]:
    words = rest.split()
    if len(words) == 1 and words[0].lower() in ("high", "normal", "low"):
        return (words[0].lower(),), None
    return (), "/priority needs one of `high`, `normal`, `low`"


_ISSUE: frozenset[Where] = frozenset({"issue"})
_PR: frozenset[Where] = frozenset({"pr"})

COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("claim", "/claim [as NAME]", "Claim this task (same rules as self-assigning).", _ISSUE, "anyone", _as_name),
        CommandSpec("release", "/release [as NAME]", "Give this task back; it becomes ready again.", _ISSUE, "holder", _as_name),
        CommandSpec("next", "/next [as NAME]", "Assign yourself the highest-priority ready task.", frozenset({"issue", "status"}), "anyone", _as_name),
        CommandSpec("progress", "/progress <0-100> [note]", "Record progress on your task; renews your lease.", _ISSUE, "holder", _progress),
        CommandSpec("block", "/block #N...", "Mark this task as blocked by the given issues.", _ISSUE, "write", _refs),
        CommandSpec("unblock", "/unblock #N...", "Remove the given blockers from this task.", _ISSUE, "write", _refs),
        CommandSpec("help", "/help", "List the commands usable here.", frozenset({"issue", "pr", "status"}), "anyone", _no_args),
        CommandSpec("queue", "/queue", "Add this pull request to the merge queue (see `queue.allow_authors`).", _PR, "write", _no_args, aliases=("merge",)),
        CommandSpec("dequeue", "/dequeue", "Take this pull request out of the merge queue.", _PR, "author", _no_args),
        CommandSpec("priority", "/priority high|normal|low", "Set this pull request's place in the merge queue.", _PR, "write", _priority),
        CommandSpec("gates", "/gates", "Show which merge gates pass and which do not.", _PR, "anyone", _no_args),
    )
}
_ALIASES: dict[str, str] = {alias: spec.name for spec in COMMANDS.values() for alias in (spec.name, *spec.aliases)}

# "/name" followed by whitespace or the end of the line: "/usr/bin/env" and "//" are not commands.
_COMMAND_LINE = re.compile(r"[ \t]*/(?P<name>[A-Za-z][A-Za-z0-9_-]{0,31})(?:[ \t]+(?P<rest>.*))?\Z")


def suggest(name: str) -> str | None:
    """The known command (or alias) closest to ``name``, or None when nothing is close."""
    match = difflib.get_close_matches(name.lower(), list(_ALIASES), n=1, cutoff=0.6)
    return _ALIASES[match[0]] if match else None


def parse_command_line(line: str, line_no: int = 1) -> Command | None:
    """Parse one line; None when it is not a command line."""
    match = _COMMAND_LINE.match(line)
    if not match:
        return None
    typed = match["name"].lower()
    rest = (match["rest"] or "").strip()
    raw = line.strip()
    canonical = _ALIASES.get(typed)
    if canonical is None:
        return Command(typed, tuple(rest.split()[:10]), raw, line_no, unknown=True, suggestion=suggest(typed))
    args, error = COMMANDS[canonical].parse(canonical, rest)
    return Command(canonical, args, raw, line_no, error=error)


def parse_commands(body: str | None, max_commands: int = MAX_COMMANDS) -> list[Command]:
    """Every command in a comment body, in order, at most ``max_commands``.

    Never raises on any text; lines in code blocks, blockquotes and HTML comments are ignored, as
    is everything past ``MAX_LINES`` lines or ``MAX_BODY_CHARS`` characters.
    """
    if not body or max_commands <= 0 or "/" not in body:
        return []
    found: list[Command] = []
    for line_no, line in prose_lines(body):
        command = parse_command_line(line, line_no)
        if command is not None:
            found.append(command)
            if len(found) >= max_commands:
                break
    return found


def command_allowed(
    spec: CommandSpec, permission: str | None, *, is_holder: bool = False, is_author: bool = False
) -> bool:
    """Whether someone with repo ``permission`` may run ``spec``.

    Holder and author commands are also open to anyone with write permission, so a maintainer
    can always act on someone else's task or pull request.
    """
    if spec.who == "anyone":
        return True
    if spec.who == "holder":
        return is_holder or has_permission(permission, "write")
    if spec.who == "author":
        return is_author or has_permission(permission, "write")
    return has_permission(permission, spec.who)


_WHO_TEXT: dict[Who, str] = {
    "anyone": "anyone",
    "holder": "the task's holder, or write access",
    "author": "the PR's author, or write access",
    "write": "write access",
    "maintain": "maintain access",
}


def who_text(who: Who) -> str:
    return _WHO_TEXT[who]


def render_help(context: Where) -> str:
    """A Markdown table of the commands usable in ``context`` (``issue``, ``pr`` or ``status``)."""
    rows = ["| Command | Who may use it | What it does |", "| --- | --- | --- |"]
    for spec in COMMANDS.values():
        if context not in spec.where:
            continue
        syntax = spec.syntax.replace("|", "\\|")
        if spec.aliases:
            syntax += " (also " + ", ".join(f"/{a}" for a in spec.aliases) + ")"
        rows.append(f"| `{syntax}` | {_WHO_TEXT[spec.who]} | {spec.help} |")
    return "\n".join(rows)
