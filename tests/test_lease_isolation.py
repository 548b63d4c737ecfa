"""The lease clock across tenants (security review: "one repository stops the lease clock for
everyone"): a failing repository is logged, backed off and never holds up the others; claims
GitHub can no longer serve are ended with a reason instead of failing every tick."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app import runtime
from app.github.client import RetryPolicy
from app.sandbox.simulator.openapi import WebhookValidator
from jobs import leases
from jobs.leases import backoff_delay, check_leases, refusal_reason

OTHER = "octo/broken"


def claim(world, repo, title, login="alice"):
    number = world.sim.open_issue(repo, title)
    world.settle()
    owner, name = repo.split("/")
    gh = world.agent(login)
    gh.rest.issues.add_assignees(owner, name, number, assignees=[login])
    world.settle()
    return number


def open_claim(db_conn, repo, number):
    return db_conn.execute(
        "SELECT c.released_at, c.release_reason FROM claims c JOIN repositories r ON r.id = c.repo_id"
        " WHERE r.full_name = %s AND c.number = %s ORDER BY c.id DESC LIMIT 1", (repo, number)).fetchone()


def fleet_comments(world, repo, number):
    return [c.body for c in world.sim.world.repo(repo).issues[number].comments if c.user.login == "fleet[bot]"]


@pytest.fixture
def two_repos(world):
    w = world
    w.sim.add_user("alice", "write")
    w.sim.create_repo(OTHER)
    w.sim.install([OTHER])  # same account: the same installation
    w.settle()
    return w


@pytest.fixture
def quick_retries(monkeypatch):
    """GitHub's 5xx answers are retried as often as ever, backing off from 10 ms instead of 250 ms
    (the suite would otherwise sleep 1.75 s per failing call)."""
    monkeypatch.setattr(RetryPolicy.__init__, "__defaults__", (3, 0.01, RetryPolicy().max_wait, None))
    runtime.github_clients.cache_clear()  # clients built before (the world's) take the new policy


def emitted_match_the_official_schema(world, event, action):
    """The simulator's new events are what GitHub sends (the vendored official schema)."""
    found = [e for e in world.sim.events if e.event == event and e.payload.get("action") == action]
    assert found
    for e in found:
        assert WebhookValidator.load().validate(event, e.payload) == []


def expired():
    """A moment after every lease of this test has run out (the default lease is hours)."""
    return datetime.now(timezone.utc) + timedelta(days=30)


def test_a_failing_repository_does_not_stop_the_others_and_backs_off(two_repos, db_conn, caplog, quick_retries):
    w = two_repos
    bad = claim(w, OTHER, "In the failing repository")
    good = claim(w, w.repo, "In a healthy repository")
    w.sim.faults.fail_next(1000, status=502, path_contains=f"/repos/{OTHER}/")
    at = expired()
    assert check_leases(at.isoformat()) == {"warned": 0, "released": 1, "ended": 0, "failed": 1, "waits_answered": 0}
    assert open_claim(db_conn, w.repo, good)["release_reason"] == "expired"
    assert open_claim(db_conn, OTHER, bad)["released_at"] is None
    assert any(getattr(r, "repo", None) == OTHER for r in caplog.records), "the failure names the repository"
    backoff = db_conn.execute("SELECT failures, retry_at FROM lease_backoff").fetchone()
    assert backoff["failures"] == 1 and backoff["retry_at"] == at + backoff_delay(1)

    # While backing off, the repository is not even tried: no GitHub call goes to it.
    calls = len(w.sim.calls(path_contains=f"/repos/{OTHER}/"))
    assert check_leases((at + timedelta(seconds=10)).isoformat())["failed"] == 0
    assert len(w.sim.calls(path_contains=f"/repos/{OTHER}/")) == calls

    # Still failing after the wait: the wait doubles.
    assert check_leases((at + backoff_delay(1)).isoformat())["failed"] == 1
    assert db_conn.execute("SELECT failures FROM lease_backoff").fetchone()["failures"] == 2

    # GitHub recovers: the claim is released on the next due attempt and the backoff forgotten.
    w.sim.faults.clear()
    later = at + backoff_delay(1) + backoff_delay(2)
    assert check_leases(later.isoformat())["released"] == 1
    assert open_claim(db_conn, OTHER, bad)["release_reason"] == "expired"
    assert db_conn.execute("SELECT count(*) AS n FROM lease_backoff").fetchone()["n"] == 0


def test_a_rate_limited_repository_waits_at_least_what_github_says(two_repos, db_conn):
    """A Retry-After defers the lease checks (not a failure: no backoff grows). GitHub's limit is
    the installation's, so the other repository of the same installation waits too."""
    w = two_repos
    claim(w, OTHER, "Rate limited")
    good = claim(w, w.repo, "Fine")
    w.sim.faults.rate_limit_next(1000, retry_after=3600, path_contains=f"/repos/{OTHER}/")
    at = expired()
    assert check_leases(at.isoformat())["failed"] == 0
    rows = db_conn.execute("SELECT failures, retry_at FROM lease_backoff").fetchall()
    assert rows and all(r["failures"] == 0 and r["retry_at"] >= at + timedelta(minutes=59) for r in rows)
    assert open_claim(db_conn, w.repo, good)["release_reason"] is None
    w.sim.faults.clear()


def test_an_exception_in_one_repository_does_not_stop_the_others(two_repos, db_conn, monkeypatch):
    w = two_repos
    claim(w, OTHER, "Crashes")
    good = claim(w, w.repo, "Fine")
    real = leases._check_claim

    def crash_in_other(conn, repo, gh, number, now):
        if repo.full_name == OTHER:
            raise ValueError("unexpected")
        return real(conn, repo, gh, number, now)

    monkeypatch.setattr(leases, "_check_claim", crash_in_other)
    assert check_leases(expired().isoformat())["failed"] == 1
    assert open_claim(db_conn, w.repo, good)["release_reason"] == "expired"


def test_an_archived_repository_ends_its_claims_without_writing(two_repos, db_conn):
    """GitHub answers 403 "Repository was archived so is read-only." to every write."""
    w = two_repos
    first = claim(w, OTHER, "One")
    second = claim(w, OTHER, "Two")
    w.sim.pause_deliveries()  # Fleet learns of the archiving from GitHub's 403, not the webhook
    w.sim.archive_repo(OTHER)
    assert check_leases(expired().isoformat()) == {"warned": 0, "released": 0, "ended": 2, "failed": 0, "waits_answered": 0}
    for number in (first, second):
        assert open_claim(db_conn, OTHER, number)["release_reason"] == "repository-archived"
        assert fleet_comments(w, OTHER, number) == []
    assert db_conn.execute("SELECT archived FROM repositories WHERE full_name = %s", (OTHER,)).fetchone()["archived"]
    assert db_conn.execute("SELECT count(*) AS n FROM lease_backoff").fetchone()["n"] == 0
    assert check_leases(expired().isoformat())["failed"] == 0
    w.sim.resume_deliveries()
    w.settle()
    emitted_match_the_official_schema(w, "repository", "archived")


@pytest.mark.parametrize("webhook", [False, True], ids=["learned-from-410", "learned-from-issues.deleted"])
def test_a_deleted_task_ends_its_claim(two_repos, db_conn, webhook):
    w = two_repos
    n = claim(w, w.repo, "Deleted later")
    if not webhook:
        w.sim.pause_deliveries()
    w.sim.delete_issue(w.repo, n)
    if webhook:
        w.settle()
    calls = len(w.sim.calls())
    assert check_leases(expired().isoformat()) == {"warned": 0, "released": 0, "ended": 1, "failed": 0, "waits_answered": 0}
    assert open_claim(db_conn, w.repo, n)["release_reason"] == "task-deleted"
    if webhook:  # known from Postgres: not one GitHub call
        assert len(w.sim.calls()) == calls
    w.sim.resume_deliveries()
    w.settle()
    emitted_match_the_official_schema(w, "issues", "deleted")


def test_removed_repository_and_suspended_installation_end_claims_without_github(two_repos, db_conn):
    w = two_repos
    removed = claim(w, OTHER, "Removed from the installation")
    kept = claim(w, w.repo, "Installation suspended")
    w.sim.remove_repos(w.installation_id, [OTHER])
    w.settle()
    db_conn.execute("UPDATE installations SET suspended_at = now() WHERE id = %s", (w.installation_id,))
    calls = len(w.sim.calls())
    assert check_leases(datetime.now(timezone.utc).isoformat())["ended"] == 2  # not even due yet
    assert len(w.sim.calls()) == calls
    assert open_claim(db_conn, OTHER, removed)["release_reason"] == "repository-removed"
    assert open_claim(db_conn, w.repo, kept)["release_reason"] == "installation-suspended"


@pytest.mark.parametrize(("status", "message", "reason"), [
    (410, "This issue was deleted", "task-deleted"),
    (404, "Not Found", "task-unreachable"),
    (403, "Repository was archived so is read-only.", "repository-archived"),
    (403, "API rate limit exceeded for installation ID 1.", None),
    (403, "Resource not accessible by integration", None),
    (502, "Server Error", None),
    (422, "Validation Failed", None),
])
def test_refusal_reason(status, message, reason):
    assert refusal_reason(status, message) == reason


def test_backoff_doubles_and_is_capped():
    assert [backoff_delay(n).total_seconds() for n in (1, 2, 3)] == [20, 40, 80]
    assert backoff_delay(50) == leases.BACKOFF_MAX
    assert backoff_delay(1, timedelta(hours=1)) == timedelta(hours=1)
