"""Fleet's answers to commands it could not run (unknown, malformed, not allowed, wrong place)
and to ``/help``; the reply format itself lives in ``app/replies.py``."""
from __future__ import annotations

from app.commands.parse import Command, Where, render_help, who_text
from app.replies import code, marker, reply


def _quote(command: Command) -> str:
    return code(command.raw_line, 60)


def unknown_command(command: Command) -> str:
    """An unknown ``/word``: the nearest command, and ``/help``."""
    hint = f"did you mean `/{command.suggestion}`? " if command.suggestion else ""
    sentence = f"{_quote(command)} is not a Fleet command; {hint}`/help` lists them."
    return reply(sentence, {"command": command.name[:32], "result": "unknown", "suggestion": command.suggestion})


def command_error(command: Command) -> str:
    """Arguments that do not fit the command's grammar."""
    sentence = f"{_quote(command)} was not understood: {command.error or 'bad arguments'}."
    return reply(sentence, {"command": command.name, "result": "error", "reason": "bad_arguments"})


def command_not_allowed(command: Command, who: str, login: str) -> str:
    """Someone without the needed permission ran a command."""
    needed = who_text(who)  # type: ignore[arg-type]
    sentence = f"{code(login)} cannot use `/{command.name}` here: it needs {needed}."
    return reply(sentence, {"command": command.name, "result": "refused", "reason": "permission", "who": who})


def command_not_here(command: Command, context: Where) -> str:
    """A command used where it does not apply (``/queue`` on an issue, ``/claim`` on a PR)."""
    place = {"issue": "an issue", "pr": "a pull request", "status": "the status issue"}[context]
    sentence = f"`/{command.name}` does not work on {place}; `/help` lists the commands that do."
    return reply(sentence, {"command": command.name, "result": "refused", "reason": "wrong_place", "where": context})


def help_reply(context: Where) -> str:
    """The ``/help`` answer: a table of commands usable here, then the marker."""
    return f"Fleet commands usable here:\n\n{render_help(context)}\n\n{marker({'command': 'help', 'result': 'ok'})}"
