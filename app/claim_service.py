"""Claims I/O layer (filled in by the claims work): reacts to issue events and activity."""
from __future__ import annotations


def on_issue_event(ctx, repo, event) -> None:
    return None


def on_activity(ctx, repo, number, login, kind, **detail) -> None:
    return None


def on_pull_event(ctx, repo, event) -> None:
    return None
