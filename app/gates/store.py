"""What the gates read and write in Postgres: ``PullSnapshot`` from the recorded PR, review,
check-run and commit-status rows, and ``gate_runs`` (Fleet's ``fleet/gates`` check run per head).

Plain SQL in named functions; no GitHub calls and no decisions here.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg

from app.gates.rules import CheckResult, PullSnapshot, Review

PULL = "SELECT * FROM pull_requests WHERE repo_id = %s AND number = %s"
REVIEWS = "SELECT reviewer, state, commit_id, submitted_at FROM reviews WHERE repo_id = %s AND pr_number = %s ORDER BY submitted_at NULLS FIRST, id"
CHECK_RUNS = """
SELECT id, name, status, conclusion, head_sha, url, app_slug, started_at FROM check_runs
WHERE repo_id = %s AND head_sha = %s ORDER BY id
"""
STATUSES = "SELECT context, state, sha, target_url, status_id, gh_updated_at FROM commit_statuses WHERE repo_id = %s AND sha = %s"

GATE_RUN = "SELECT check_run_id, digest, conclusion, pr_number, evaluated_at FROM gate_runs WHERE repo_id = %s AND head_sha = %s"
UPSERT_GATE_RUN = """
INSERT INTO gate_runs (repo_id, head_sha, pr_number, check_run_id, digest, conclusion, evaluated_at)
VALUES (%s, %s, %s, %s, %s, %s, now())
ON CONFLICT (repo_id, head_sha) DO UPDATE SET pr_number = EXCLUDED.pr_number,
    check_run_id = coalesce(EXCLUDED.check_run_id, gate_runs.check_run_id),
    digest = EXCLUDED.digest, conclusion = EXCLUDED.conclusion, evaluated_at = now()
"""
# The first evaluation of a head that is still waiting: the safety poll re-reads it after a silence.
NOTE_WAITING = """
INSERT INTO gate_runs (repo_id, head_sha, pr_number, conclusion, evaluated_at) VALUES (%s, %s, %s, 'waiting', now())
ON CONFLICT (repo_id, head_sha) DO NOTHING
"""
# Open PRs whose gates were never published on their head, or still wait after `older_than` s.
STALE_GATES = """
SELECT p.repo_id, p.number, p.head_sha FROM pull_requests p
JOIN repositories r ON r.id = p.repo_id AND r.removed_at IS NULL
LEFT JOIN gate_runs g ON g.repo_id = p.repo_id AND g.head_sha = p.head_sha
WHERE p.state = 'open' AND p.head_sha IS NOT NULL
  AND (g.head_sha IS NULL OR (g.conclusion = 'waiting' AND g.evaluated_at < now() - make_interval(secs => %s)))
ORDER BY g.evaluated_at NULLS FIRST
LIMIT %s
"""


# --- pull request snapshots ------------------------------------------------------------------

def check_results(conn: psycopg.Connection, repo_id: int, sha: str) -> tuple[CheckResult, ...]:
    """Recorded check runs and commit statuses on exactly ``sha``."""
    runs = [
        CheckResult(r["name"], "check_run", r["status"], r["conclusion"], r["head_sha"], r["url"], r["app_slug"],
                    r["started_at"], r["id"])
        for r in conn.execute(CHECK_RUNS, (repo_id, sha)).fetchall()
    ]
    statuses = [
        CheckResult.from_status(s["context"], s["state"], s["sha"], s["target_url"], updated_at=s["gh_updated_at"],
                                id=s["status_id"])
        for s in conn.execute(STATUSES, (repo_id, sha)).fetchall()
    ]
    return tuple(runs + statuses)


def reviews(conn: psycopg.Connection, repo_id: int, pr_number: int) -> tuple[Review, ...]:
    return tuple(
        Review(r["reviewer"], r["state"], r["commit_id"], r["submitted_at"])
        for r in conn.execute(REVIEWS, (repo_id, pr_number)).fetchall()
    )


def pull_snapshot(conn: psycopg.Connection, repo_id: int, full_name: str, number: int,
                  checks: tuple[CheckResult, ...] | None = None) -> PullSnapshot | None:
    """The PR as recorded, with its reviews and the checks on its head (``checks`` overrides
    the recorded ones, e.g. with a fresh list from GitHub)."""
    row = conn.execute(PULL, (repo_id, number)).fetchone()
    if row is None or not row["head_sha"]:
        return None
    head = row["head_sha"]
    return PullSnapshot(
        repo=full_name, number=number, head_sha=head, base_ref=row["base_ref"] or "", head_ref=row["head_ref"] or "",
        author=row["author"] or "", title=row["title"], body=row["body"], draft=row["draft"],
        state="open" if row["state"] == "open" else "closed", merged=row["merged"], mergeable=row["mergeable"],
        mergeable_state=row["mergeable_state"] or "unknown", labels=tuple(row["labels"]),
        linked_tasks=tuple(row["linked_tasks"]), changed_files=row["changed_files"] or 0,
        additions=row["additions"] or 0, deletions=row["deletions"] or 0,
        reviews=reviews(conn, repo_id, number),
        checks=check_results(conn, repo_id, head) if checks is None else checks,
        merge_commit_sha=row["merge_commit_sha"],
    )


# --- gate runs -------------------------------------------------------------------------------

@dataclass(frozen=True)
class GateRun:
    check_run_id: int | None
    digest: str | None
    conclusion: str
    pr_number: int
    evaluated_at: datetime | None = None  # when GitHub was last asked about this head


def gate_run(conn: psycopg.Connection, repo_id: int, head_sha: str) -> GateRun | None:
    row = conn.execute(GATE_RUN, (repo_id, head_sha)).fetchone()
    return GateRun(row["check_run_id"], row["digest"], row["conclusion"], row["pr_number"],
                   row["evaluated_at"]) if row else None


def store_gate_run(conn: psycopg.Connection, repo_id: int, head_sha: str, pr_number: int,
                   check_run_id: int | None, digest: str | None, conclusion: str) -> None:
    conn.execute(UPSERT_GATE_RUN, (repo_id, head_sha, pr_number, check_run_id, digest, conclusion))


def note_waiting(conn: psycopg.Connection, repo_id: int, head_sha: str, pr_number: int) -> None:
    """Record that ``head_sha`` was seen waiting (once: later evaluations from recorded state do not
    reset the clock that ``stale_gates`` reads)."""
    conn.execute(NOTE_WAITING, (repo_id, head_sha, pr_number))


def stale_gates(conn: psycopg.Connection, older_than: float, limit: int = 50) -> list[tuple[int, int, str]]:
    """(repo_id, number, head_sha) of open PRs whose gates should be evaluated again."""
    return [(r["repo_id"], r["number"], r["head_sha"]) for r in conn.execute(STALE_GATES, (older_than, limit)).fetchall()]
