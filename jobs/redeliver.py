"""Ask GitHub to redeliver webhooks that failed and were never stored.

GitHub never retries failed deliveries by itself; following its recommendation, deliveries are
grouped by GUID and redelivered only when no attempt succeeded and Fleet has not stored it.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from app import db, deliveries, runtime
from app.github.evidence import EvidenceRecorder

log = logging.getLogger("fleet.redeliver")
WINDOW = timedelta(hours=72)


def redeliver_failed(max_pages: int = 10) -> list[str]:
    """Request redelivery of failed, unstored deliveries from the last three days; returns GUIDs."""
    settings = runtime.settings()
    gh = runtime.github_clients().app()
    attempts: dict[str, list[dict]] = {}
    cutoff = datetime.now(timezone.utc) - WINDOW
    cursor = None
    for _ in range(max_pages):
        kwargs = {"per_page": 100}
        if cursor:
            kwargs["cursor"] = cursor
        resp = gh.rest.apps.list_webhook_deliveries(**kwargs)
        page = resp.json()
        for item in page:
            attempts.setdefault(item["guid"], []).append(item)
        cursor = _next_cursor(resp.headers.get("link", ""))
        if not cursor or not page or _older_than(page[-1], cutoff):
            break
    failed = {
        guid: items for guid, items in attempts.items()
        if not any(i.get("status") == "OK" for i in items) and not any(_older_than(i, cutoff) for i in items)
    }
    if not failed:
        return []
    evidence = EvidenceRecorder(settings.database_url)
    with db.connect(settings.database_url, autocommit=True) as conn:
        stored = deliveries.known(conn, list(failed))
    requested = []
    for guid, items in failed.items():
        if guid in stored:
            continue
        latest = max(items, key=lambda i: i.get("delivered_at") or "")
        try:
            gh.rest.apps.redeliver_webhook_delivery(latest["id"])
            evidence.record("redeliver", guid, "ok", 202, delivery_attempt=latest["id"])
            requested.append(guid)
        except Exception as exc:
            evidence.record("redeliver", guid, "error", None, message=str(exc)[:300])
    evidence.close()
    if requested:
        log.info("redelivery requested", extra={"count": len(requested)})
    return requested


def _older_than(item: dict, cutoff: datetime) -> bool:
    delivered = item.get("delivered_at")
    if not delivered:
        return False
    return datetime.fromisoformat(delivered.replace("Z", "+00:00")) < cutoff


def _next_cursor(link: str) -> str | None:
    from urllib.parse import parse_qs, urlparse

    for part in link.split(","):
        if 'rel="next"' in part:
            url = part.split(";")[0].strip().strip("<>")
            values = parse_qs(urlparse(url).query).get("cursor")
            return values[0] if values else None
    return None
