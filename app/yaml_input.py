"""Loading YAML a repository or a user wrote (``.github/fleet.yml``, ``fleet plan apply`` plans).

``yaml.safe_load`` expands aliases: a 16 KB file of ``*anchor`` references became 20 MB of JSON,
and a 1 MB file kills the worker. Fleet's files never need anchors, so any anchor or alias is
refused, as are files over a size cap and collections nested deeper than MAX_YAML_DEPTH.
"""
from __future__ import annotations

from typing import Any

import yaml

from app.input_limits import MAX_YAML_DEPTH


class RefusedYaml(yaml.YAMLError):
    """Valid YAML that Fleet will not load; ``problem`` says why, ``problem_mark`` where."""

    def __init__(self, problem: str, mark: yaml.Mark | None = None):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and deep nesting while composing, before any
    value is built."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise RefusedYaml("aliases are not allowed", event.start_mark)
        if self._depth >= MAX_YAML_DEPTH:
            raise RefusedYaml(f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def size_problem(text: str, max_bytes: int) -> str | None:
    """Why ``text`` is too large to parse, or None."""
    size = len(text.encode("utf-8", errors="replace"))
    if size <= max_bytes:
        return None
    return f"the file is {size:,} bytes; at most {max_bytes // 1024} KiB ({max_bytes:,} bytes) is read"


def load_untrusted_yaml(text: str) -> Any:
    """Parse ``text`` like ``yaml.safe_load`` without anchors or aliases.

    Raises yaml.YAMLError (RefusedYaml for what is refused). The caller checks the size first.
    """
    loader = _NoAliasLoader(text)
    try:
        return loader.get_single_data()
    except (ValueError, RecursionError) as exc:
        # e.g. an integer past Python's 4,300-digit conversion limit: bad input, not a crash.
        raise RefusedYaml(f"a value cannot be read ({type(exc).__name__})") from None
    finally:
        loader.dispose()
