"""Gates I/O layer (filled in by the gates work)."""
from __future__ import annotations


def on_pull_event(ctx, repo, event) -> None:
    return None


def schedule(ctx, repo, numbers, force: bool = False) -> None:
    return None
