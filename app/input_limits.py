"""How much of what a repository sends Fleet reads: every cap on tenant-supplied input.

Parsing is linear-time by construction (no backtracking regex sees user text, tenant regexes run
on RE2); these caps bound the constant. Anything beyond a cap is ignored (text) or refused with a
ConfigError naming the cap (configuration, plans), never an exception in a worker.
"""
from __future__ import annotations

# GitHub refuses issue, PR and comment bodies over 65,536 characters: anything longer is not a
# real body, and only this much of one is parsed.
MAX_BODY_CHARS = 65_536
# Commands, references and estimates are looked for only in a body's first lines...
MAX_LINES = 1_000
# ...and only in the first characters of each line: a 60,000-character line is not prose.
MAX_LINE_CHARS = 4_096
# Git allows longer ref names, but no branch linked to a task is this long; only this much of a
# branch name is matched against `tasks.branch_patterns`.
MAX_BRANCH_CHARS = 255
# `tasks.branch_patterns`: how many patterns, and how long each may be.
MAX_BRANCH_PATTERNS = 20
MAX_BRANCH_PATTERN_CHARS = 500
# `.github/fleet.yml` is a few hundred bytes in practice; a larger file is refused unparsed.
MAX_CONFIG_BYTES = 64 * 1024
# A `fleet plan apply` file carries issue bodies, so it may be larger than a config file.
MAX_PLAN_BYTES = 1024 * 1024
# Nesting of YAML collections in those files (a config is 3 deep, a plan 4); deeper is refused
# before PyYAML's recursive composer can hit Python's recursion limit.
MAX_YAML_DEPTH = 20
