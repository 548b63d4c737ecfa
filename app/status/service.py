"""The status issue, I/O side: find or create it (never two), pin it, and rewrite its body from
Postgres state, coalescing bursts into at most one edit per ``status.min_interval``."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

from app import replies
from app.repos import registry as repositories
from app.repos.config import ConfigError
from app.status import snapshot as status_snapshot
from app.status import render as status_table
from app.status import rows as status_rows
from app.github.identity import is_bot
from app.github.gateway import GitHubRefused, RepoGateway
from app.repos.config import STATUS_LABEL_NAME
from app.repos.registry import Repo
from app.github.write_budget import WriteClass, writing

STATUS_LABEL = (STATUS_LABEL_NAME, "ededed", "Fleet: the auto-updated status issue of this repository")

GET_ROW = "SELECT * FROM status_issues WHERE repo_id = %s FOR UPDATE"
RECORDED_NUMBER = "SELECT issue_number FROM status_issues WHERE repo_id = %s"
UPSERT_ROW = """
INSERT INTO status_issues (repo_id, issue_number, node_id, pinned) VALUES (%s, %s, %s, %s)
ON CONFLICT (repo_id) DO UPDATE SET issue_number = EXCLUDED.issue_number, node_id = EXCLUDED.node_id,
    pinned = EXCLUDED.pinned
"""
RECORD_EDIT = """
UPDATE status_issues SET body = %s, body_hash = %s, last_edit_at = %s, edits = edits + 1 WHERE repo_id = %s
"""


@dataclass(frozen=True)
class Outcome:
    """What an update did: ``edited``, ``created``, ``unchanged``, ``wait`` (a real change: retry
    after ``wait``) or ``clocks`` (only relative times moved: the periodic refresh writes them)."""

    result: str
    issue_number: int | None = None
    wait: timedelta | None = None


@writing(WriteClass.STATUS)
def update(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, api_url: str, now: datetime) -> Outcome:
    """Render the body and write it if it changed and the interval allows. Caller holds the repo lock."""
    if not repo.config.status.enabled:
        return Outcome("disabled")
    body = status_table.render_status(status_snapshot.load(conn, repo, api_url, now), repo.config.status)
    row = conn.execute(GET_ROW, (repo.id,)).fetchone()
    if row is None or row["issue_number"] is None:
        number = _find_or_create(conn, gh, repo, body)
        conn.execute(RECORD_EDIT, (body, status_table.content_digest(body), now, repo.id))
        return Outcome("created", number)
    decision = status_table.should_edit(row["last_edit_at"], now, repo.config.status.min_interval, row["body"], body)
    if isinstance(decision, timedelta):
        if status_table.content_digest(row["body"]) == status_table.content_digest(body):
            return Outcome("clocks", row["issue_number"], decision)
        return Outcome("wait", row["issue_number"], decision)
    if not decision:
        return Outcome("unchanged", row["issue_number"])
    try:
        gh.update_issue(row["issue_number"], body=body)
    except GitHubRefused as exc:
        if exc.status not in (404, 410):
            raise
        # Deleted or transferred by someone: start a new one next time.
        conn.execute("DELETE FROM status_issues WHERE repo_id = %s", (repo.id,))
        return Outcome("wait", None, timedelta(seconds=1))
    conn.execute(RECORD_EDIT, (body, status_table.content_digest(body), now, repo.id))
    return Outcome("edited", row["issue_number"])


@writing(WriteClass.STATUS)
def ensure_issue(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, api_url: str, now: datetime) -> int:
    """The status issue's number, creating (and recording) it first if needed."""
    row = conn.execute(GET_ROW, (repo.id,)).fetchone()
    if row is not None and row["issue_number"] is not None:
        return row["issue_number"]
    body = status_table.render_status(status_snapshot.load(conn, repo, api_url, now), repo.config.status)
    number = _find_or_create(conn, gh, repo, body)
    conn.execute(RECORD_EDIT, (body, status_table.content_digest(body), now, repo.id))
    return number


def report_config_error(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, api_url: str, now: datetime,
                        error: ConfigError, sha: str | None) -> None:
    """One comment per broken version of ``.github/fleet.yml``, on the status issue (created if needed)."""
    number = ensure_issue(conn, gh, repo, api_url, now)
    marker = f"<!-- fleet:config-error={sha} -->"
    body = replies.config_invalid(message=str(error), key=error.key, line=error.line) + "\n" + marker
    gh.comment(number, body, dedupe_marker=marker)
    repositories.mark_config_reported(conn, repo.id, sha)


def made_by_fleet(author: str | None, labels: Iterable[str], body: str | None) -> bool:
    """An issue Fleet opened as a status issue: its author is Fleet's own login, it carries the
    ``fleet:status`` label and the status marker. Anyone with triage can label an issue, and
    anyone can paste the marker, so neither alone makes an issue Fleet's."""
    return is_bot(author) and STATUS_LABEL[0] in set(labels) and status_rows.MARKER in (body or "")


def is_status_issue(conn: psycopg.Connection, repo_id: int, number: int, author: str | None,
                    labels: Iterable[str], body: str | None) -> bool:
    """Whether issue ``number`` is this repository's status issue: the one recorded, or one
    Fleet made (its row may have been lost in a crash, see ``_find_or_create``)."""
    row = conn.execute(RECORDED_NUMBER, (repo_id,)).fetchone()
    return (row is not None and row["issue_number"] == number) or made_by_fleet(author, labels, body)


def _find_or_create(conn: psycopg.Connection, gh: RepoGateway, repo: Repo, body: str) -> int:
    """Adopt an open status issue Fleet made (a crash may have created one without recording
    it), else create it; then pin it where GitHub allows. An issue someone else labelled
    fleet:status is never adopted: Fleet would rewrite their text and pin it."""
    existing = [
        i for i in gh.open_issues_labelled(STATUS_LABEL[0])
        if "pull_request" not in i
        and made_by_fleet((i.get("user") or {}).get("login"), (l["name"] for l in i.get("labels", [])), i.get("body"))
    ]
    if existing:
        issue = min(existing, key=lambda i: i["number"])
        gh.update_issue(issue["number"], body=body)
    else:
        gh.create_label(*STATUS_LABEL)
        issue = gh.create_issue(repo.config.status.title, body, labels=[STATUS_LABEL[0]])
    pinned = repo.config.status.pin and _pin(gh, issue.get("node_id"))
    conn.execute(UPSERT_ROW, (repo.id, issue["number"], issue.get("node_id"), pinned))
    return issue["number"]


def _pin(gh: RepoGateway, node_id: str | None) -> bool:
    """GraphQL ``pinIssue``; refusals (three pins already, no permission) are logged, not fatal."""
    if not node_id:
        return False
    return gh.pin_issue(node_id)
