"""Benchmark: render the status body for a large repository.

Run ``python -m bench.bench_status`` from the project root. It builds a snapshot of 10,000 tasks,
20 epics, 50 agents and 3 merge queues (plus 30 days of hourly progress snapshots) and prints the
median render time over several runs and the body size.
"""
from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone

from app.repos.config import StatusConfig
from app.status.render import render_status
from app.status.rows import (
    AgentRow, BODY_LIMIT, ClaimRow, EpicRow, MergeQueue, QueueEntry, StatusSnapshot, TaskRow,
)
from app.status.velocity import ProgressPoint

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
STATES = ("ready", "blocked", "claimed", "review", "queued", "done")
QUEUE_STATES = ("updating", "waiting_checks", "merging", "failed")


def build_snapshot(tasks: int = 10_000, epics: int = 20, agents: int = 50, queues: int = 3,
                   title_len: int = 60) -> StatusSnapshot:
    """A deterministic large snapshot; ``title_len`` lets tests make every title huge."""
    url = "https://github.com/acme/widgets"
    epic_rows = [EpicRow(str(e + 1), f"Epic {e + 1}: " + "platform work " * 3, f"{url}/milestone/{e + 1}")
                 for e in range(epics)]
    agent_ids = [f"agent-{a:02d}" if a % 3 else f"bot-account:agent-{a:02d}" for a in range(agents)]
    task_rows = []
    for n in range(1, tasks + 1):
        state = STATES[n % len(STATES)]
        title = (f"Task {n} | implement <feature> for @team " + "x" * title_len)[: max(title_len, 1)]
        task_rows.append(TaskRow(
            number=n, title=title, state=state, url=f"{url}/issues/{n}", epic=str(n % epics + 1),
            estimate_hours=float(n % 13 + 1), priority=n % 4,
            holder=agent_ids[n % agents] if state in ("claimed", "review", "queued", "done") else None,
            closed_at=NOW - timedelta(minutes=n) if state == "done" else None,
            blocked_by=(n - 1, n - 2) if state == "blocked" and n > 2 else (),
        ))
    agent_rows = [
        AgentRow(id=a, claims=(ClaimRow(i * 6 + 2, NOW + timedelta(minutes=i * 7 - 60)),
                               ClaimRow(i * 6 + 8, NOW + timedelta(hours=3))),
                 last_activity_at=NOW - timedelta(minutes=i * 3), tasks_done=i * 4, hours_done=i * 21.5)
        for i, a in enumerate(agent_ids)
    ]
    queue_rows = [
        MergeQueue(base, tuple(
            QueueEntry(position=p + 1, pr=20_000 + q * 100 + p, title=f"Merge work item {p}",
                       author=agent_ids[p % agents], state=QUEUE_STATES[p % 4],
                       queued_at=NOW - timedelta(minutes=5 * p + 1), url=f"{url}/pull/{20_000 + q * 100 + p}")
            for p in range(15)))
        for q, base in enumerate(("main", "release/2.0", "develop")[:queues])
    ]
    total = sum(t.estimate_hours or 0 for t in task_rows)
    progress = [ProgressPoint(NOW - timedelta(hours=h), total * 0.4 - h * 9.0, total) for h in range(30 * 24)]
    progress += [ProgressPoint(NOW - timedelta(hours=h), 100 - h * 0.4, 400, epic=e.id)
                 for e in epic_rows for h in range(0, 30 * 24, 6)]
    return StatusSnapshot(repo="acme/widgets", generated_at=NOW, tasks=task_rows, epics=epic_rows,
                          agents=agent_rows, queues=queue_rows, progress=progress)


def main(argv: list[str] | None = None) -> None:
    """Print the median render time and the body size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--title-len", type=int, default=60, help="characters per task title")
    args = parser.parse_args(argv)
    snapshot = build_snapshot(tasks=args.tasks, title_len=args.title_len)
    config = StatusConfig()
    times, body = [], ""
    for _ in range(args.runs):
        start = time.perf_counter()
        body = render_status(snapshot, config)
        times.append(time.perf_counter() - start)
    print(f"tasks={args.tasks:,} epics=20 agents=50 queues=3 snapshots={len(snapshot.progress):,}")
    print(f"render median {statistics.median(times) * 1000:.1f} ms over {args.runs} runs "
          f"(min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms)")
    print(f"body {len(body):,} characters, {len(body.encode('utf-8')):,} UTF-8 bytes "
          f"(limit {BODY_LIMIT:,})")


if __name__ == "__main__":
    main()
