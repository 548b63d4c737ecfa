"""The status issue body: golden renderings, hostile input, the size budget, and edit coalescing.

Golden files live in ``tests/golden/status_*.md``. After an intended change to the rendering,
regenerate them with ``FLEET_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_status_table.py`` and
review the diff like any other change.
"""
from __future__ import annotations

import dataclasses
import os
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.repos.config import StatusConfig
from app.status.render import body_changed, content_digest, render_status, should_edit
from app.status.rows import (
    AgentRow, BODY_LIMIT, ClaimRow, EpicRow, MARKER, MergeQueue, QueueEntry, StatusSnapshot,
    TaskRow,
)
from app.status.sections import burndown_series, progress_bar
from app.status.velocity import ProgressPoint

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 11, 25, 15, 30, tzinfo=timezone.utc)
URL = "https://github.com/acme/rocket"


def task(number: int, state: str = "ready", **kw) -> TaskRow:
    """A task with defaults; each test overrides what its rule is about."""
    kw.setdefault("title", f"Task {number}")
    kw.setdefault("url", f"{URL}/issues/{number}")
    kw.setdefault("estimate_hours", 8.0)
    return TaskRow(number=number, state=state, **kw)  # type: ignore[arg-type]


def realistic_snapshot() -> StatusSnapshot:
    """Three epics, tasks in every state, three agents (two sharing an account), one queue."""
    ago = lambda **kw: NOW - timedelta(**kw)  # noqa: E731
    tasks = [
        task(1, "done", title="Postgres schema and migrations", epic="1", estimate_hours=24, priority=0,
             holder="alice", closed_at=ago(days=6)),
        task(2, "done", title="Webhook ingest with signature checks", epic="1", estimate_hours=20, priority=0,
             holder="bot-account:agent-a", closed_at=ago(days=3, hours=2)),
        task(3, "done", title="RQ worker and handler registry", epic="1", estimate_hours=24, priority=0,
             holder="bot-account:agent-b", closed_at=ago(hours=20)),
        task(4, "queued", title="GitHub simulator over HTTP", epic="1", estimate_hours=48, priority=0,
             holder="alice"),
        task(5, "claimed", title="Backfill and reconciliation", epic="1", estimate_hours=16, priority=1,
             holder="bot-account:agent-a"),
        task(6, "review", title="Task model and readiness", epic="2", estimate_hours=20, priority=0,
             holder="bot-account:agent-b"),
        task(7, "blocked", title="Dependency parsing", epic="2", estimate_hours=16, priority=1, blocked_by=(6,)),
        task(8, "ready", title="Slash command framework", epic="2", estimate_hours=24, priority=0),
        task(9, "blocked", title="Leases and heartbeats", epic="2", estimate_hours=24, priority=1,
             blocked_by=(6, 8)),
        task(10, "ready", title="Repository config in .github/fleet.yml", epic="2", estimate_hours=12, priority=1),
        task(11, "ready", title="Render the status body", epic="3", estimate_hours=24, priority=1),
        task(12, "ready", title="Velocity, ETA and burndown", epic="3", estimate_hours=12, priority=2),
        task(13, "ready", title="Import a YAML plan", epic="3", estimate_hours=None, priority=2),
        task(14, "done", title="Write the README", estimate_hours=4, priority=3, holder="alice",
             closed_at=ago(hours=2, minutes=10)),
        task(15, "ready", title="Nice-to-have: dark mode for the dashboard", estimate_hours=6, priority=3),
    ]
    epics = [
        EpicRow("3", "Status issue and plan import", f"{URL}/milestone/3"),
        EpicRow("1", "Foundation: webhooks to Postgres", f"{URL}/milestone/1"),
        EpicRow("2", "Claims, leases and commands", f"{URL}/milestone/2"),
    ]
    agents = [
        AgentRow("bot-account:agent-b", (ClaimRow(6, NOW + timedelta(hours=3, minutes=5)),), ago(minutes=12), 1, 24),
        AgentRow("alice", (ClaimRow(4, NOW + timedelta(minutes=50)),), ago(minutes=3), 2, 28),
        AgentRow("bot-account:agent-a", (ClaimRow(5, NOW - timedelta(minutes=7)),), ago(hours=4, minutes=7), 1, 20),
    ]
    queues = [MergeQueue("main", (
        QueueEntry(2, 41, "Backfill open issues on install", "bot-account", "waiting_checks", ago(minutes=9),
                   f"{URL}/pull/41"),
        QueueEntry(1, 40, "GitHub simulator over HTTP", "alice", "updating", ago(minutes=26), f"{URL}/pull/40"),
    ))]
    progress = []
    for day in range(9, -1, -1):  # one snapshot a day at 06:00, scope grew by 12 h four days ago
        at = datetime(2026, 11, 25 - day, 6, 0, tzinfo=timezone.utc)
        done = {9: 0, 8: 0, 7: 24, 6: 24, 5: 24, 4: 24, 3: 44, 2: 44, 1: 44, 0: 72}[day]
        total = 270 if day > 4 else 282
        progress.append(ProgressPoint(at, done, total))
        epic1 = {9: 0, 8: 0, 7: 24, 6: 24, 5: 24, 4: 24, 3: 44, 2: 44, 1: 44, 0: 68}[day]
        progress.append(ProgressPoint(at, epic1, 132, epic="1"))
    return StatusSnapshot(repo="acme/rocket", generated_at=NOW, tasks=tasks, epics=epics, agents=agents,
                          queues=queues, progress=progress)


def check_golden(name: str, body: str) -> None:
    path = GOLDEN / f"status_{name}.md"
    if os.environ.get("FLEET_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(body, encoding="utf-8")
    assert path.exists(), f"{path} missing: run with FLEET_UPDATE_GOLDEN=1"
    assert body == path.read_text(encoding="utf-8"), f"{path.name} differs; FLEET_UPDATE_GOLDEN=1 regenerates it"


def test_golden_realistic() -> None:
    """A realistic repository renders exactly as reviewed in tests/golden/status_realistic.md."""
    check_golden("realistic", render_status(realistic_snapshot(), StatusConfig()))


def test_golden_empty() -> None:
    """A repository Fleet has only just seen renders every section with a friendly empty line."""
    check_golden("empty", render_status(StatusSnapshot("acme/empty", NOW), StatusConfig()))


def test_configuration_warning_is_shown_under_the_note() -> None:
    """No required checks configured: the status issue says loudly that any green check merges."""
    from app.gates.rules import NO_REQUIRED_CHECKS_WARNING

    body = render_status(StatusSnapshot("acme/empty", NOW, warnings=(NO_REQUIRED_CHECKS_WARNING,)), StatusConfig())
    lines = body.splitlines()
    at = lines.index("> [!WARNING]")
    assert lines[at + 1] == ("> No required checks are configured: any green check lets a PR merge. "
                             "Set `gates.required_checks` in .github/fleet.yml.")
    assert at < lines.index("## Overall")
    assert "[!WARNING]" not in render_status(StatusSnapshot("acme/empty", NOW), StatusConfig())


def test_rendering_is_deterministic_whatever_the_input_order() -> None:
    """Rows are sorted, so the order Postgres returns them in does not change the body."""
    snap = realistic_snapshot()
    rng = random.Random(5)
    shuffled = dataclasses.replace(
        snap,
        tasks=rng.sample(list(snap.tasks), len(snap.tasks)),
        epics=rng.sample(list(snap.epics), len(snap.epics)),
        agents=rng.sample(list(snap.agents), len(snap.agents)),
        progress=rng.sample(list(snap.progress), len(snap.progress)),
    )
    assert render_status(shuffled, StatusConfig()) == render_status(snap, StatusConfig())


def test_marker_sections_and_limits() -> None:
    """The hidden marker comes first; ready and recent lists honour the config limits."""
    body = render_status(realistic_snapshot(), StatusConfig(ready_limit=2, recent_limit=1))
    assert body.startswith(MARKER + "\n")
    ready = section(body, "Ready to claim")
    assert "[#8]" in ready and "[#10]" in ready and "[#11]" not in ready
    assert "_… and 4 more ready tasks_" in ready
    recent = section(body, "Recently completed")
    assert "[#14]" in recent and "[#3]" not in recent


def test_burndown_chart_and_table_show_the_same_numbers() -> None:
    """The mermaid chart GitHub renders (xychart-beta) plots the numbers listed in the table."""
    body = render_status(realistic_snapshot(), StatusConfig())
    chart = re.search(r"```mermaid\nxychart-beta\n(.*?)```", body, re.S)
    assert chart
    line = re.search(r"line \[(.*)\]", chart.group(1)).group(1)
    plotted = [float(v) for v in line.split(", ")]
    table = section(body, "Burndown")
    listed = [float(m) for m in re.findall(r"^\| 2026-\d\d-\d\d \| [\d.]+ \| [\d.]+ \| ([\d.]+) \|$", table, re.M)]
    assert plotted == list(reversed(listed)) and len(plotted) == 10
    series = burndown_series(realistic_snapshot().progress, NOW.date())
    assert [total - done for _, done, total in series] == plotted


def test_progress_bar_rounds_down() -> None:
    """The bar never shows 100% before everything is done."""
    assert progress_bar(4, 10) == "▓▓▓▓░░░░░░ 40%"
    assert progress_bar(999, 1000) == "▓▓▓▓▓▓▓▓▓░ 99%"
    assert progress_bar(10, 10) == "▓▓▓▓▓▓▓▓▓▓ 100%"
    assert progress_bar(0, 0) == "░░░░░░░░░░ 0%"


# --- hostile content -------------------------------------------------------------------------

LIVE_MENTION = re.compile(r"(?<![\w`])@[A-Za-z0-9_-]")


def section(body: str, heading: str) -> str:
    return body.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def unescaped_pipes(line: str) -> int:
    count, i = 0, 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        count += line[i] == "|"
        i += 1
    return count


def assert_body_safe(body: str) -> None:
    """Every table keeps its column count, no line joins a table, no HTML, no live mention."""
    assert len(body.encode("utf-8")) <= BODY_LIMIT
    lines = body.split("\n")
    in_fence, columns, prev = False, None, ""
    for line in lines:
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if line.startswith("|"):
            pipes = unescaped_pipes(line)
            if columns is None:
                columns = pipes
            assert pipes == columns, f"row has {pipes - 1} cells, header {columns - 1}: {line[:200]!r}"
        else:
            # A non-blank line straight after a table row would be parsed as another row.
            assert not (prev.startswith("|") and line.strip()), line[:200]
            columns = None
        visible = re.sub(r"`[^`]*`", "", re.sub(r"\\.", "", line))  # code spans render literally
        if not line.startswith("<!-- fleet:"):
            assert "<" not in visible, line[:200]
        assert not LIVE_MENTION.search(visible), line[:200]
        prev = line
    assert body.count("\r") == 0 and "\u2028" not in body and "\u2029" not in body
    assert "\x02" not in body and "\x03" not in body  # the clock markers never reach GitHub


HOSTILE_TEXT = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(list("|\\`@<>&\n\r*_[]~# a\u2028\u202e\x00")), max_size=300),
    st.sampled_from([
        "@everyone | <script>alert(1)</script>", "`@octocat`", "a\\|b", "x\n| --- |\n| y",
        "<!-- fleet:status v1 -->", "```mermaid", "@org/team please look", "&#64;admin", "x" * 100_000,
    ]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(titles=st.lists(HOSTILE_TEXT, min_size=1, max_size=6), names=st.lists(HOSTILE_TEXT, min_size=1, max_size=4))
def test_hostile_titles_and_logins_never_break_the_body(titles: list[str], names: list[str]) -> None:
    """Pipes, newlines, HTML, backticks, @mentions and 100k-character strings in titles, epic
    titles, agent ids, authors and branch names cannot break a table, inject markup or ping anyone."""
    tasks = [task(i + 1, state, title=t, epic="e", holder=names[i % len(names)], closed_at=NOW,
                  blocked_by=(99,) if state == "blocked" else ())
             for i, t in enumerate(titles) for state in ("ready", "done", "blocked")]
    snap = StatusSnapshot(
        repo=names[0], generated_at=NOW, tasks=tasks,
        epics=[EpicRow("e", titles[0], "javascript:alert(1)"), EpicRow("f", titles[-1], f"{URL}/milestone/2")],
        agents=[AgentRow(n, (ClaimRow(1, NOW),), NOW) for n in names],
        queues=[MergeQueue(n, (QueueEntry(1, 7, titles[0], n, "failed", NOW),)) for n in names],
        progress=[ProgressPoint(NOW - timedelta(days=2), 0, 10), ProgressPoint(NOW, 5, 10)],
    )
    assert_body_safe(render_status(snap, StatusConfig()))


def test_ten_thousand_tasks_with_huge_titles_fit() -> None:
    """10,000 tasks with 100k-character titles, hundreds of agents, epics and queued PRs still
    give a body under the limit, with the longest sections folded and saying how many rows hide."""
    huge = "|@everyone <b>`" * 7_000
    tasks = [task(n, ("ready", "done", "blocked", "claimed")[n % 4], title=huge, epic=str(n % 300),
                  holder=f"{huge}{n % 400}", closed_at=NOW - timedelta(minutes=n)) for n in range(1, 10_001)]
    snap = StatusSnapshot(
        repo="acme/big", generated_at=NOW, tasks=tasks,
        epics=[EpicRow(str(e), huge, f"{URL}/milestone/{e}") for e in range(300)],
        agents=[AgentRow(f"{huge}{a}", tuple(ClaimRow(c, NOW) for c in range(40)), NOW) for a in range(400)],
        queues=[MergeQueue(f"{huge}{q}", tuple(QueueEntry(p, p, huge, huge, "merging", NOW) for p in range(500)))
                for q in range(3)],
        progress=[ProgressPoint(NOW - timedelta(days=d), 100 - d, 50_000) for d in range(60)],
    )
    body = render_status(snap, StatusConfig(ready_limit=100, recent_limit=100))
    assert_body_safe(body)
    assert len(body.encode("utf-8")) > 50_000  # the budget is used, not wasted
    folds = re.findall(r"^_… and ([\d,]+) more (\w[\w ]*)_$", body, re.M)
    kinds = {kind for _, kind in folds}
    assert {"epics", "agents", "pull requests", "ready tasks"} <= kinds
    assert "## Burndown" in body and "xychart-beta" in body  # small sections are kept whole


# --- coalescing edits ------------------------------------------------------------------------


def test_body_changed_ignores_line_endings_only() -> None:
    """GitHub may hand back CRLF line endings; that is not a change."""
    assert not body_changed("a\r\nb\n", "a\nb")
    assert body_changed("a\nb", "a\nc")
    assert body_changed(None, "a")


def test_should_edit_coalesces_bursts() -> None:
    """A changed body is written at most once per min_interval; an unchanged one never."""
    old = render_status(realistic_snapshot(), StatusConfig())
    snap = realistic_snapshot()
    new = render_status(dataclasses.replace(snap, tasks=[*snap.tasks, task(99)]), StatusConfig())
    interval = timedelta(seconds=30)
    assert should_edit(NOW, NOW, interval, old, old) is False
    assert should_edit(None, NOW, interval, None, new) is True
    assert should_edit(NOW - timedelta(seconds=10), NOW, interval, old, new) == timedelta(seconds=20)
    assert should_edit(NOW - timedelta(seconds=30), NOW, interval, old, new) is True


def test_clock_only_changes_wait_longer() -> None:
    """When only relative times moved ("12m ago" → "13m ago") the edit waits for clock_interval."""
    snap = realistic_snapshot()
    old = render_status(snap, StatusConfig())
    later = render_status(dataclasses.replace(snap, generated_at=NOW + timedelta(minutes=2)), StatusConfig())
    assert old != later and content_digest(old) == content_digest(later)
    interval = timedelta(seconds=30)
    assert should_edit(NOW, NOW + timedelta(minutes=2), interval, old, later) == timedelta(minutes=8)
    assert should_edit(NOW, NOW + timedelta(minutes=10), interval, old, later) is True
    # A body written by hand (no digest) is replaced on the normal interval.
    assert should_edit(NOW, NOW + timedelta(minutes=1), interval, "hand-written", later) is True


def test_burst_of_500_events_gives_a_handful_of_edits() -> None:
    """500 state changes over 2 minutes, each followed by a render, produce at most 5 edits."""
    snap = realistic_snapshot()
    body, last_edit, edits, pending = None, None, 0, None
    for i in range(500):
        now = NOW + timedelta(seconds=i * 0.24)
        new = render_status(dataclasses.replace(snap, generated_at=now, tasks=[*snap.tasks, task(100 + i)]),
                            StatusConfig())
        decision = should_edit(last_edit, now, timedelta(seconds=30), body, new)
        if decision is True:
            body, last_edit, edits = new, now, edits + 1
        elif isinstance(decision, timedelta):
            pending = decision
    assert 1 <= edits <= 5 and pending is not None


def test_a_queue_in_group_mode_says_its_mode_and_which_prs_are_in_a_group() -> None:
    snap = StatusSnapshot(repo="acme/rocket", generated_at=NOW, queues=[
        MergeQueue("main", (QueueEntry(1, 40, "First", "alice", "in_group", NOW, f"{URL}/pull/40"),
                            QueueEntry(2, 41, "Second", "bob", "queued", NOW, f"{URL}/pull/41")),
                   mode="merge groups (depth 3, batch size 1)"),
        MergeQueue("release", (QueueEntry(1, 42, "Third", "carol", "queued", NOW, f"{URL}/pull/42"),),
                   mode="serial: GitHub refused Fleet's push to the base (422: <b>Protected</b> | x)"),
        MergeQueue("dev", (QueueEntry(1, 43, "Fourth", "dave", "queued", NOW, f"{URL}/pull/43"),)),
    ])
    body = render_status(snap, StatusConfig())
    assert "Mode: merge groups \\(depth 3, batch size 1\\)" in body  # Markdown-escaped parentheses
    assert "| testing in a merge group |" in body
    assert "Mode: serial: GitHub refused Fleet's push to the base \\(422:" in body
    assert "<b>" not in body
    assert body.count("Mode:") == 2  # a serially configured queue says nothing new
    assert_body_safe(body)
