"""The audit trail: every call Fleet makes that changes GitHub, with its outcome.

Evidence is written on its own autocommit (pooled) connection so it survives the rollback of the
job transaction that triggered it: the GitHub side effect happened either way. Its commits do not
wait for the disk (``db.pooled(durable=False)``): recording is best effort already (a failure is
logged, never raised), and in a burst every GitHub write's row waited for an fsync of its own. A
Postgres crash can lose the last few hundred milliseconds of rows; nothing decides on them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import PoolTimeout

from app import db

log = logging.getLogger(__name__)

INSERT_EVIDENCE = """
INSERT INTO evidence (repo_id, repo_full_name, delivery_id, job_id, action, target, outcome, status_code, detail)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


@dataclass
class EvidenceRecorder:
    database_url: str
    repo_id: int | None = None
    repo_full_name: str | None = None
    delivery_id: str | None = None
    job_id: str | None = None

    def record(self, action: str, target: str, outcome: str, status_code: int | None = None, **detail: Any) -> None:
        """Append one evidence row; a failure to record is logged, never raised."""
        try:
            with db.pooled(self.database_url, durable=False) as conn:
                conn.execute(
                    INSERT_EVIDENCE,
                    (
                        self.repo_id, self.repo_full_name, self.delivery_id, self.job_id,
                        action, target, outcome, status_code, Jsonb(detail),
                    ),
                )
        except (psycopg.Error, PoolTimeout) as exc:
            log.error("evidence not recorded", extra={"action": action, "error": str(exc)})

    def close(self) -> None:
        """Nothing to release: connections come from the process pool (kept for callers)."""
