"""The merge queue's text: commit titles and messages from the repository's templates (safe for
commits), and the one-line, Markdown-safe reasons a PR left the queue (pure).
"""
from __future__ import annotations

import re
from datetime import timedelta

from app.durations import format_duration
from app.gates.rules import GateResult, GateVerdict, PullSnapshot
from app.gates.check_run import md_code, md_gate_reason, md_link, md_names, md_text
from app.repos.config import QueueConfig
from app.queue.state import Dequeue, FAILED_LABEL, GITHUB_MESSAGE_LIMIT, ReasonCode


# --- commit templates ---------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(title|number|author|body)\}")
_HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)
# Words in a commit message that GitHub Actions (and other CIs) obey: on the base branch they
# would skip the checks of the merged code. GitHub's list plus the common spellings of others.
_SKIP_CI = re.compile(
    r"\[\s*(?:skip[\s_-]*ci|ci[\s_-]*skip|no[\s_-]*ci|skip[\s_-]*actions|actions[\s_-]*skip)\s*\]"
    r"|skip-checks\s*:\s*true|\*\*\*NO_CI\*\*\*",
    re.IGNORECASE,
)
# Git trailers that credit or vouch for someone (Co-authored-by, Signed-off-by, Reviewed-by...):
# GitHub attributes the commit to whoever they name, so the PR body must not supply them.
_TRAILER = re.compile(r"^\s*[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)*-by\s*:", re.IGNORECASE)


def commit_safe_body(body: str | None) -> str:
    """The PR body for a merge commit: HTML comments (PR templates' hints) dropped, and every
    line that GitHub or CI would act on (``[skip ci]``-family tokens, ``*-by:`` trailers)."""
    text = _HTML_COMMENT.sub("", body or "")
    kept = [line for line in text.splitlines() if not _SKIP_CI.search(line) and not _TRAILER.match(line)]
    return "\n".join(kept).strip()


def commit_safe_title(title: str) -> str:
    """The PR title on one line, without ``[skip ci]``-family tokens."""
    return " ".join(_SKIP_CI.sub(" ", title).split())


def render_commit_template(template: str, pr: PullSnapshot) -> str:
    """Replace ``{title}``, ``{number}``, ``{author}``, ``{body}`` in one pass.

    Never ``str.format``: other braces (in the template or in substituted PR text) stay as they
    are and are not expanded again. The PR's text is made commit-safe first (``commit_safe_body``).
    """
    values = {
        "title": commit_safe_title(pr.title),
        "number": str(pr.number),
        "author": pr.author,
        "body": commit_safe_body(pr.body),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def commit_title(config: QueueConfig, pr: PullSnapshot) -> str:
    """The merge commit title: one line, falling back to GitHub's style when it renders empty."""
    title = " ".join(render_commit_template(config.commit_title, pr).split())
    return title or f"{commit_safe_title(pr.title) or 'Merge pull request'} (#{pr.number})"


def commit_message(config: QueueConfig, pr: PullSnapshot) -> str:
    """The merge commit message, never empty: without one GitHub fills in its own default,
    which may be the PR body (the repository's squash-message setting)."""
    message = render_commit_template(config.commit_message, pr).strip()
    return message or render_commit_template(QueueConfig.model_fields["commit_message"].default, pr)


# --- dequeue messages (one line, Markdown-safe) -------------------------------------------

DEQUEUE_PREFIX = "Removed from the merge queue"


def short_sha(sha: str | None) -> str:
    return md_code((sha or "?")[:12], in_table=False)


def quote_github(message: str | None) -> str:
    """GitHub's error message, quoted inertly."""
    return md_code(message or "no message", GITHUB_MESSAGE_LIMIT, in_table=False)


def dequeue_action(pr: PullSnapshot | int, code: ReasonCode, detail: str) -> Dequeue:
    number = pr if isinstance(pr, int) else pr.number
    label = None if code == "user_request" else FAILED_LABEL
    return Dequeue(number, code, f"{DEQUEUE_PREFIX}: {detail}", label)


def failing_checks_detail(verdict: GateVerdict, sha: str) -> str:
    return f"{_named_checks(verdict.result('checks'))} failed on {short_sha(sha)}. Fix it and `/queue` again."


def _named_checks(checks: GateResult) -> str:
    """``check `a` (details)`` or ``checks `a`, `b` and 3 more``: the first five, linked."""
    shown = []
    for name in checks.names[:5]:
        url = next((c.url for c in checks.checks if c.name == name and c.url), None)
        link = md_link("details", url)
        shown.append(f"{md_code(name, in_table=False)}" + (f" ({link})" if link else ""))
    if len(checks.names) > 5:
        shown.append(f"and {len(checks.names) - 5} more")
    if not shown:
        return "the required checks"
    noun = "check" if len(checks.names) == 1 else "checks"
    return f"{noun} {', '.join(shown)}"


def gates_detail(verdict: GateVerdict) -> str:
    parts = [f"{md_text(r.gate)}: {md_gate_reason(r, in_table=False)}" for r in verdict.failing]
    return "gates failing — " + "; ".join(parts) + ". Fix it and `/queue` again."


def timeout_detail(verdict: GateVerdict | None, sha: str, timeout: timedelta) -> str:
    pending = ""
    if verdict is not None and verdict.head_sha == sha:
        names = tuple(n for r in verdict.waiting for n in (r.names or (r.gate,)))
        if names:
            pending = f" (still waiting for {md_names(names, in_table=False, limit=5)})"
    return (
        f"gates did not turn green within {format_duration(timeout)} on {short_sha(sha)}{pending}. "
        "`/queue` again to retry."
    )


def group_checks_detail(checks: GateResult, branch: str, sha: str, base_ref: str) -> str:
    """A PR alone in a merge group whose required checks failed: name the checks and the group."""
    return (f"{_named_checks(checks)} failed on its merge group "
            f"{md_code(branch, in_table=False)} ({short_sha(sha)}: {md_code(base_ref, in_table=False)} plus "
            "the pull requests ahead of it, then this one). Fix it and `/queue` again.")


def group_timeout_detail(checks: GateResult | None, branch: str, sha: str, timeout: timedelta) -> str:
    """The required checks never finished on a merge group: most often CI does not run on
    Fleet's group branches at all."""
    pending = ""
    if checks is not None and checks.names:
        pending = f" (still waiting for {md_names(checks.names, in_table=False, limit=5)})"
    return (f"required checks did not finish within {format_duration(timeout)} on its merge group "
            f"{md_code(branch, in_table=False)} ({short_sha(sha)}){pending}. Does CI run on pushes to "
            f"{md_code('fleet/queue/**', in_table=False)}? `/queue` again to retry.")
