"""Render a GateVerdict as the ``fleet/gates`` check run, and safe Markdown for Fleet's text.

Everything that comes from users or other apps (check names, labels, logins, branch names,
GitHub's own error messages, URLs) goes through ``md_text``, ``md_code`` or ``md_link`` so it
cannot break the table, inject HTML, ping people with ``@login`` or reference issues.
Output stays within GitHub's 65,535-character limit for ``output.summary`` and ``output.text``.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from app.gates.rules import OWN_CHECK_NAME, CheckResult, GateResult, GateVerdict
from app.markdown import cell, plain, truncate

OUTPUT_LIMIT = 65_535  # GitHub's limit for output.summary / output.text
# Measured in UTF-8 bytes: never fewer than the characters or UTF-16 units GitHub may count.
NAME_LIMIT = 100
REASON_LIMIT = 300
NAMES_PER_ROW = 10
URL_LIMIT = 2_000

ICONS = {"passed": "✅", "failing": "❌", "waiting": "⏳"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def md_text(text: str, limit: int = REASON_LIMIT) -> str:
    """Untrusted text as inert Markdown: Fleet's one sanitiser (``markdown_safety.cell``)."""
    return cell(text, limit)


def md_code(text: str, limit: int = NAME_LIMIT, *, in_table: bool = True) -> str:
    """Untrusted text as an inline code span (no HTML, links or mentions inside code).

    The fence is longer than any backtick run in the text; in a table ``|`` is escaped, which
    GFM resolves before parsing the code span.
    """
    text = truncate(plain(text), limit)
    if not text:
        return "(empty)"
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith(("`", " ")) or text.endswith(("`", " ")):
        text = f" {text} "
    if in_table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def safe_url(url: str | None) -> str | None:
    """An http(s) URL made safe for a Markdown link destination, or None."""
    if not url or len(url) > URL_LIMIT or _CONTROL.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    # Percent-encode whatever could end the destination or start a title/HTML.
    return quote(url, safe=":/?#[]@!$&*+,;=%-._~")


def md_link(label: str, url: str | None) -> str:
    """``[label](url)`` with a safe URL, or "" when the URL is unusable. ``label`` is escaped."""
    href = safe_url(url)
    if href is None:
        return ""
    return f"[{md_text(label, NAME_LIMIT)}]({href})"


def md_names(names: tuple[str, ...], *, in_table: bool = True, limit: int = NAMES_PER_ROW) -> str:
    """Comma-separated code spans, at most ``limit`` of them and "and N more"."""
    shown = [md_code(n, in_table=in_table) for n in names[:limit]]
    if len(names) > limit:
        shown.append(f"and {len(names) - limit} more")
    return ", ".join(shown)


def md_gate_reason(result: GateResult, *, in_table: bool = True) -> str:
    """A gate's reason with its subjects quoted: ``2 checks failed: `ci`, `lint```."""
    reason = md_text(result.reason)
    if result.names:
        reason = f"{reason}: {md_names(result.names, in_table=in_table)}"
    notes = [f"{md_text(n.reason)}: {md_names(n.names, in_table=in_table)}" for n in result.notes]
    return "; ".join([reason, *notes])


def md_warning(text: str) -> str:
    """One of Fleet's own warnings (``gates.config_warnings``) as a Markdown line."""
    return f"> [!WARNING]\n> {text}"


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def fit_lines(lines: list[str], limit: int = OUTPUT_LIMIT, note: str = "… (truncated)") -> str:
    """Join lines, dropping whole lines from the end (and adding ``note``) to stay within limit."""
    text = "\n".join(lines)
    if _size(text) <= limit:
        return text
    budget = limit - _size(note) - 2
    kept, used = [], 0
    for line in lines:
        cost = _size(line) + 1
        if used + cost > budget:
            break
        kept.append(line)
        used += cost
    return "\n".join(kept + ["", note])


# --- the fleet/gates check run ------------------------------------------------------------

@dataclass(frozen=True)
class CheckRunFields:
    """What to send when creating or updating the ``fleet/gates`` check run on ``head_sha``."""

    name: str
    head_sha: str
    status: str  # in_progress | completed
    conclusion: str | None  # success | failure, None while in progress
    title: str
    summary: str
    text: str
    details_url: str | None = None
    seen: str = ""  # the summary without what may change unseen (the queue position)

    def output(self) -> dict:
        return {"title": self.title, "summary": self.summary, "text": self.text}

    def create_payload(self) -> dict:
        """Body for ``POST /repos/{o}/{r}/check-runs``."""
        return {"name": self.name, "head_sha": self.head_sha, **self.update_payload()}

    def update_payload(self) -> dict:
        """Body for ``PATCH /repos/{o}/{r}/check-runs/{id}`` (update in place, never duplicate)."""
        payload: dict = {"status": self.status, "output": self.output()}
        if self.conclusion is not None:
            payload["conclusion"] = self.conclusion
        if self.details_url:
            payload["details_url"] = self.details_url
        return payload

    @property
    def digest(self) -> str:
        """Fingerprint of what a reader sees change: status, conclusion, title and the gates'
        summary. Not the per-check detail (``text``), which moves with every check event, nor the
        queue position: both are brought up to date whenever the run is written anyway."""
        seen = {"name": self.name, "head_sha": self.head_sha, "status": self.status, "conclusion": self.conclusion,
                "title": self.title, "summary": self.seen or self.summary, "details_url": self.details_url}
        blob = json.dumps(seen, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def render_title(verdict: GateVerdict) -> str:
    """Short plain-text title; gate names only (never user text)."""
    failing = [r.gate for r in verdict.failing]
    waiting = [r.gate for r in verdict.waiting]
    if failing:
        noun = "gate" if len(failing) == 1 else "gates"
        return f"{len(failing)} {noun} failing: {', '.join(failing)}"
    if waiting:
        return f"Waiting: {', '.join(waiting)}"
    return f"All {len(verdict.results)} gates passed"


def render_summary(
    verdict: GateVerdict, *, queue_position: int | None = None, queue_length: int | None = None
) -> str:
    """Markdown summary: a headline and one table row per gate (icon, gate, reason, link)."""
    sha = md_code(verdict.head_sha[:12], in_table=False)
    lines = [f"**{md_text(render_title(verdict))}** on {sha}", ""]
    for warning in verdict.warnings:
        lines += [md_warning(warning), ""]
    if queue_position is not None:
        of = f" of {queue_length}" if queue_length is not None else ""
        lines += [f"Merge queue position: {queue_position}{of}", ""]
    lines += ["| | Gate | Result | Details |", "|---|---|---|---|"]
    for result in verdict.results:
        link = md_link("details", result.link) if result.link else ""
        lines.append(f"| {ICONS[result.state]} | {md_text(result.gate)} | {md_gate_reason(result)} | {link} |")
    return fit_lines(lines)


def _check_row(check: CheckResult) -> str:
    outcome = check.conclusion or check.status
    link = md_link("details", check.url) if check.url else ""
    source = md_code(check.app_slug) if check.app_slug else ""
    kind = "status" if check.kind == "status" else "check run"
    return f"| {ICONS[check.state]} | {md_code(check.name)} | {kind} | {source} | {md_text(outcome, 40)} | {link} |"


def render_text(verdict: GateVerdict) -> str:
    """Markdown detail: every check considered on the head, worst first."""
    if not verdict.checks:
        return f"No checks reported on {md_code(verdict.head_sha[:12], in_table=False)} yet."
    severity = {"failing": 0, "waiting": 1, "passed": 2}
    checks = sorted(verdict.checks, key=lambda c: (severity[c.state], c.name))
    header = [
        f"Checks on {md_code(verdict.head_sha[:12], in_table=False)} (latest run of each):",
        "",
        "| | Check | Kind | App | Outcome | Link |",
        "|---|---|---|---|---|---|",
    ]
    rows = [_check_row(c) for c in checks]
    return fit_lines(header + rows, note=f"… and more checks ({len(rows)} in total)")


def render_check_run(
    verdict: GateVerdict,
    *,
    name: str = OWN_CHECK_NAME,
    details_url: str | None = None,
    queue_position: int | None = None,
    queue_length: int | None = None,
) -> CheckRunFields:
    """The ``fleet/gates`` check run for ``verdict``: in progress while any gate waits,
    completed with failure if any gate fails, else completed with success."""
    conclusion = verdict.conclusion
    status = "in_progress" if conclusion == "waiting" else "completed"
    return CheckRunFields(
        name=name,
        head_sha=verdict.head_sha,
        status=status,
        conclusion=None if conclusion == "waiting" else conclusion,
        title=render_title(verdict),
        summary=render_summary(verdict, queue_position=queue_position, queue_length=queue_length),
        text=render_text(verdict),
        details_url=safe_url(details_url),
        seen=render_summary(verdict),
    )
