"""claims.store.snapshots: each task's open pull requests, whether one of its PRs is queued, and its
holder, read in one pass over the repository's links (not one subquery per task)."""
from __future__ import annotations

import random

from app.claims import store as claim_store

REPO = 41


def _setup(conn) -> None:
    conn.execute("INSERT INTO repositories (id, full_name) VALUES (%s, 'octo/widgets'), (42, 'octo/other')", (REPO,))


def _task(conn, number: int, repo: int = REPO, deleted: bool = False) -> None:
    conn.execute("INSERT INTO tasks (repo_id, number, title, deleted_at) VALUES (%s, %s, 't', "
                 "CASE WHEN %s THEN now() END)", (repo, number, deleted))


def _pr(conn, number: int, links: list[int], state: str = "open", repo: int = REPO) -> None:
    conn.execute("INSERT INTO pull_requests (repo_id, number, state, linked_tasks, base_ref) "
                 "VALUES (%s, %s, %s, %s, 'main')", (repo, number, state, links))


def _queue(conn, pr: int, base: str = "main", finished: bool = False) -> None:
    conn.execute("INSERT INTO queue_entries (repo_id, base_ref, pr_number, finished_at) "
                 "VALUES (%s, %s, %s, CASE WHEN %s THEN now() END)", (REPO, base, pr, finished))


def _by_number(conn, numbers=None) -> dict[int, tuple]:
    return {t.number: (list(t.open_prs), t.queued, str(t.holder) if t.holder else None)
            for t in claim_store.snapshots(conn, REPO, "octo/widgets", numbers)}


def test_open_prs_queued_and_holder_per_task(db_conn):
    _setup(db_conn)
    for n in (1, 2, 3, 4, 5):
        _task(db_conn, n)
    _task(db_conn, 6, deleted=True)
    _task(db_conn, 1, repo=42)
    _pr(db_conn, 10, [1, 2])
    _pr(db_conn, 11, [1])
    _pr(db_conn, 12, [3], state="closed")     # closed: not an open PR ...
    _queue(db_conn, 12)                       # ... but still in the queue
    _queue(db_conn, 11, finished=True)        # an earlier, finished entry of #11 ...
    _queue(db_conn, 11)                       # ... and its active one: #1 counted once
    _pr(db_conn, 13, [4], state="closed")
    _queue(db_conn, 13, finished=True)        # finished: not queued
    _pr(db_conn, 14, [5, 6])
    _pr(db_conn, 10, [2], repo=42)            # another repository's PR linking #2 there
    db_conn.execute("INSERT INTO agents (id, login) VALUES ('agent-a', 'agent-a')")
    db_conn.execute("INSERT INTO claims (repo_id, number, agent_id, login, claimed_by, claimed_at, lease_expires_at, "
                    "last_activity_at) VALUES (%s, 2, 'agent-a', 'agent-a', 'agent-a', now(), now(), now())", (REPO,))

    assert _by_number(db_conn) == {
        1: ([10, 11], True, None),
        2: ([10], False, "agent-a"),
        3: ([], True, None),
        4: ([], False, None),
        5: ([14], False, None),
    }
    assert _by_number(db_conn, [2, 3, 6]) == {2: ([10], False, "agent-a"), 3: ([], True, None)}
    assert _by_number(db_conn, []) == {}


def test_matches_a_direct_reading_on_random_repositories(db_conn):
    """The set-based query agrees with the definition: a task's open PRs are the open PRs that link
    it; it is queued when an unfinished queue entry's PR (any state) links it."""
    _setup(db_conn)
    rng = random.Random(16)
    tasks = range(1, 31)
    for n in tasks:
        _task(db_conn, n)
    prs = {}
    for number in range(100, 140):
        links = rng.sample(list(tasks) + [99], rng.randint(0, 3))
        state = rng.choice(["open", "open", "closed"])
        prs[number] = (links, state)
        _pr(db_conn, number, links, state)
    queued_prs = set()
    for number in rng.sample(sorted(prs), 12):
        finished = rng.random() < 0.3
        _queue(db_conn, number, finished=finished)
        if not finished:
            queued_prs.add(number)
    expected = {n: (sorted(p for p, (links, state) in prs.items() if n in links and state == "open"),
                    any(n in prs[p][0] for p in queued_prs), None) for n in tasks}
    got = _by_number(db_conn)
    assert {n: (sorted(v[0]), v[1], v[2]) for n, v in got.items()} == expected
    some = rng.sample(list(tasks), 7)
    got_some = _by_number(db_conn, some)
    assert {n: (sorted(v[0]), v[1], v[2]) for n, v in got_some.items()} == {n: expected[n] for n in some}
