"""Shared test builders for pure decisions: a check result and a pull request snapshot that pass
every default gate. Each test module fixes its own head SHA (and whatever it is about) on top."""
from __future__ import annotations

from app.gates.rules import CheckResult, PullSnapshot


def check(name: str = "ci", conclusion: str | None = "success", *, sha: str, status: str = "completed",
          kind: str = "check_run", app: str = "github-actions", url: str | None = None, started=None,
          id: int | None = None) -> CheckResult:
    """A check on ``sha``; the conclusion counts only once it completed, as on GitHub."""
    return CheckResult(name, kind, status, conclusion if status == "completed" else None, sha, url, app, started, id)


def make_pr(*, head_sha: str, **overrides) -> PullSnapshot:
    """A green, mergeable PR #7 for task #12 on ``head_sha``; tests override one thing."""
    defaults = dict(
        repo="o/r", number=7, head_sha=head_sha, base_ref="main", head_ref="agent/12-topic",
        author="alice", title="Add thing", body="Closes #12", mergeable=True,
        mergeable_state="clean", linked_tasks=(12,), checks=(check(sha=head_sha),),
    )
    defaults.update(overrides)
    return PullSnapshot(**defaults)
