"""Label catch-up: ``fleet:*`` state labels whose writes found the label share of the write budget
spent (``claim_actions.defer_label_sync``) are brought up to date here, from Postgres, once the
budget has room again. Only real changes are written, so a run with nothing to do costs nothing."""
from __future__ import annotations

from datetime import datetime, timezone

from app import db, runtime
from app.repos import registry as repositories
from app.claims.apply import Effects, sync_labels
from app.github.evidence import EvidenceRecorder
from app.repos.registry import REPO_LOCK

# Open tasks, and closed ones still carrying a state label Fleet must take off.
LABELLED_TASKS = """
SELECT number FROM tasks
WHERE repo_id = %s AND (state = 'open' OR EXISTS (SELECT 1 FROM unnest(labels) l WHERE l LIKE 'fleet:%%'))
ORDER BY number
"""


def sync_repo_labels(repo_id: int) -> int:
    """Write the label changes the repository's tasks are owed; returns how many tasks were looked at.
    If the budget is spent again, ``sync_labels`` schedules this job once more."""
    settings = runtime.settings()
    now = datetime.now(timezone.utc)
    with db.transaction(settings.database_url) as conn:
        conn.execute(REPO_LOCK, (repo_id,))
        repo = repositories.get(conn, repo_id)
        if repo is None or repo.installation_id is None or repo.archived:
            return 0
        evidence = EvidenceRecorder(settings.database_url, repo_id=repo_id, repo_full_name=repo.full_name)
        gh = runtime.repo_gateway(repo.installation_id, repo.full_name, evidence)
        numbers = [row["number"] for row in conn.execute(LABELLED_TASKS, (repo_id,)).fetchall()]
        sync_labels(Effects(conn, repo, gh, now, dedupe=f"labels:{now.isoformat()}"), numbers)
        return len(numbers)
