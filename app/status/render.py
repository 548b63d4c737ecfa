"""Render the status issue body from a snapshot of Fleet's state (pure: no I/O, no clock).

The caller loads a ``StatusSnapshot`` from Postgres, calls ``render_status`` and writes the body
to GitHub when ``should_edit`` says so. Rendering is deterministic: rows are sorted, and every
relative time is measured from ``snapshot.generated_at``, so the same snapshot always gives the
same body and golden tests are stable.

Relative times ("12m ago", "1h05m left") change on every render even when nothing else does. They
are rendered through ``sections._clock`` so the body can carry a digest of everything *except* them (the
``fleet:digest`` marker at the end): ``should_edit`` edits at most once per ``min_interval`` for
real changes, and only every ``clock_interval`` when just the clocks moved. This keeps a busy
repository well under GitHub's content-creation limits (500 writes per hour).

The body stays under GitHub's 65,536-character limit (measured in UTF-8 bytes, the strictest
reading): sections are budgeted, and the longest are folded first with an "… and N more" line.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from app.repos.config import StatusConfig
from app.status.rows import BODY_LIMIT, CLOCK_INTERVAL, StatusSnapshot, BUDGET
from app.status.sections import (
    CLOCK_CLOSE, CLOCK_OPEN, CLOCK_SPAN, DIGEST, Totals, agents_section, burndown, epics_section,
    fold, natural, overview, queue_sections, ready_section, recent_section, size, utc,
    velocity_section,
)


# --- public API --------------------------------------------------------------------------------


def render_status(snapshot: StatusSnapshot, config: StatusConfig) -> str:
    """The full status issue body for ``snapshot``: deterministic, under ``BODY_LIMIT``."""
    now = utc(snapshot.generated_at)
    epics = sorted(snapshot.epics, key=lambda e: (natural(e.id), e.id))
    epic_ids = {e.id for e in epics}
    epic_titles = {e.id: e.title for e in epics}
    overall = Totals()
    totals: dict[str | None, Totals] = {}
    by_state: dict[str, int] = {}
    urls: dict[int, str] = {}
    for task in snapshot.tasks:
        overall.add(task)
        key = task.epic if task.epic in epic_ids else None
        (totals.get(key) or totals.setdefault(key, Totals())).add(task)
        by_state[task.state] = by_state.get(task.state, 0) + 1
        if task.url:
            urls[task.number] = task.url

    fixed = overview(snapshot, overall, by_state)
    sections = [
        epics_section(epics, totals),
        agents_section(snapshot, now, urls),
        ready_section(snapshot.tasks, epic_titles, config.ready_limit),
        *queue_sections(snapshot, now),
        recent_section(snapshot.tasks, epic_titles, now, config.recent_limit),
        velocity_section(snapshot, epics, totals, overall, now),
        burndown(snapshot, now),
    ]
    shown = fold(size(fixed) + 2, sections, BUDGET)
    body = "\n\n".join([fixed, *(s.render(n) for s, n in zip(sections, shown))]) + "\n"
    stable = CLOCK_SPAN.sub("~", body)
    body = body.replace(CLOCK_OPEN, "").replace(CLOCK_CLOSE, "")
    digest = hashlib.sha256(stable.encode("utf-8")).hexdigest()[:16]
    body += f"\n<!-- fleet:digest {digest} -->\n"
    if size(body) > BODY_LIMIT:  # cannot happen with the budget above; never send a body GitHub rejects
        raise AssertionError(f"status body is {size(body)} bytes, over {BODY_LIMIT}")
    return body


def _normalise(body: str | None) -> str:
    return (body or "").replace("\r\n", "\n").rstrip()


def body_changed(old: str | None, new: str) -> bool:
    """True when ``new`` differs from the body on GitHub (line endings and trailing space ignored)."""
    return _normalise(old) != _normalise(new)


def content_digest(body: str | None) -> str | None:
    """The digest of the body without its relative times, or None for a body Fleet did not render."""
    match = DIGEST.search(body or "")
    return match.group(1) if match else None


def should_edit(
    last_edit_at: datetime | None,
    now: datetime,
    min_interval: timedelta,
    old_body: str | None,
    new_body: str,
    clock_interval: timedelta = CLOCK_INTERVAL,
) -> bool | timedelta:
    """Decide whether to write ``new_body`` now.

    Returns False when there is nothing to write, True to edit now, or a (positive) timedelta: the
    body changed but the last edit was too recent, so try again after that delay (coalescing a
    burst of events into one edit). Real changes wait at most ``min_interval`` since the last
    edit; changes to relative times alone wait ``max(min_interval, clock_interval)``.
    Callers must test ``isinstance(result, timedelta)`` before truthiness.
    """
    if not body_changed(old_body, new_body):
        return False
    if last_edit_at is None or old_body is None:
        return True
    interval = min_interval
    old_digest = content_digest(old_body)
    if old_digest is not None and old_digest == content_digest(new_body):
        interval = max(min_interval, clock_interval)
    wait = utc(last_edit_at) + interval - utc(now)
    return True if wait <= timedelta(0) else wait
