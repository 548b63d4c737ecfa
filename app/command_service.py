"""Slash-command I/O layer (filled in by the claims work)."""
from __future__ import annotations


def on_comment(ctx, repo, event) -> None:
    return None
