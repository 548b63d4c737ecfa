"""Who works on tasks: an agent is a GitHub login, or a named agent on a shared login."""
from __future__ import annotations

import re
from dataclasses import dataclass

# A named agent (``/claim as NAME``, ``agent-d/123-...`` branches): GitHub-login-like, 39 at most.
AGENT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,38}")


@dataclass(frozen=True, eq=False)
class AgentId:
    """An agent identity: ``login``, or ``login:name`` for a named agent on a shared account.

    Compared case-insensitively, like GitHub logins.
    """

    login: str
    name: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.login.lower(), (self.name or "").lower())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AgentId) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __str__(self) -> str:
        return f"{self.login}:{self.name}" if self.name else self.login

    def same_account(self, login: str) -> bool:
        return self.login.lower() == login.lower()

    @classmethod
    def parse(cls, text: str) -> AgentId:
        """Inverse of ``str()``: ``login`` or ``login:name``."""
        login, _, name = text.partition(":")
        return cls(login, name or None)
