"""Tenant-supplied branch patterns (``tasks.branch_patterns``), compiled once, with RE2.

RE2 never backtracks: a match costs time linear in the branch name whatever the pattern, so
``^(?P<number>(\\d+)+)x$`` (2.3 s with Python's ``re`` on a 26-character branch, ×4 per two more
characters) returns at once. Patterns RE2 refuses (backreferences, lookaround) are refused when the
configuration is parsed; the pattern size and the branch length are capped (``app.input_limits``),
which bounds every match.
"""
from __future__ import annotations

import functools
from typing import Any

import re2

from app.input_limits import MAX_BRANCH_CHARS, MAX_BRANCH_PATTERN_CHARS, MAX_BRANCH_PATTERNS

# RE2 would log every refused pattern to stderr; the ConfigError says it instead. max_mem bounds
# the compiled program (and its DFA cache) per pattern.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False
_OPTIONS.max_mem = 8 << 20


class BranchPatternError(ValueError):
    """A branch pattern Fleet will not run; the message says why."""


@functools.lru_cache(maxsize=1024)
def compile_branch_pattern(pattern: str) -> Any:
    """The RE2 program for ``pattern`` (cached: every push and PR event matches with it).

    Raises BranchPatternError when it is too long, RE2 refuses it, or it has no ``number`` group.
    """
    if len(pattern) > MAX_BRANCH_PATTERN_CHARS:
        raise BranchPatternError(f"longer than {MAX_BRANCH_PATTERN_CHARS} characters")
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        reason = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise BranchPatternError(f"not a pattern RE2 accepts ({reason})") from None
    if "number" not in compiled.groupindex:
        raise BranchPatternError("it has no `(?P<number>...)` group")
    return compiled


def check_branch_patterns(patterns: tuple[str, ...]) -> tuple[str, ...]:
    """``patterns`` unchanged when every one compiles; ValueError naming the first that does not."""
    if len(patterns) > MAX_BRANCH_PATTERNS:
        raise ValueError(f"at most {MAX_BRANCH_PATTERNS} patterns, got {len(patterns)}")
    for pattern in patterns:
        try:
            compile_branch_pattern(pattern)
        except BranchPatternError as exc:
            shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
            raise ValueError(f"pattern `{shown}`: {exc}") from None
    return patterns


def match_branch(name: str, pattern: str) -> dict[str, str | None] | None:
    """The named groups of ``pattern``'s first match in branch ``name``, or None.

    None too for a name longer than MAX_BRANCH_CHARS and for a pattern Fleet will not run (a
    configuration stored before patterns were checked).
    """
    if len(name) > MAX_BRANCH_CHARS:
        return None
    try:
        compiled = compile_branch_pattern(pattern)
    except BranchPatternError:
        return None
    match = compiled.search(name)
    return match.groupdict() if match else None
