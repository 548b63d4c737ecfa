"""Talking to GitHub: retries only where safe, rate limits honoured, writes paced, every
mutation recorded as evidence — against the simulator's injected faults."""
from __future__ import annotations

import time

import httpx
import pytest
import redis

from app.github.evidence import EvidenceRecorder
from app.github.client import RetryPolicy, WritePacer
from app.github.write_budget import WINDOW_SECONDS, BudgetSpent, WriteClass, ceiling
from app.github.gateway import GitHubRefused, RepoGateway
from tests.conftest import REDIS_URL


@pytest.fixture
def gh(world):
    """The gateway Fleet uses for octo/widgets, with fast retries."""
    from app import runtime

    clients = runtime.github_clients()
    clients.retry = RetryPolicy(attempts=3, base_delay=0.01)
    clients._installations.clear()
    evidence = EvidenceRecorder(world.settings.database_url, repo_full_name=world.repo)
    yield RepoGateway(clients.installation(world.installation_id), world.repo, evidence)
    evidence.close()


def evidence_rows(db_conn):
    return db_conn.execute("SELECT action, outcome, status_code FROM evidence ORDER BY id").fetchall()


def test_reads_are_retried_through_5xx(world, gh):
    n = world.sim.open_issue(world.repo, "Flaky read")
    world.sim.faults.fail_next(2, status=502, path_contains=f"/issues/{n}", method="GET")
    assert gh.issue(n)["title"] == "Flaky read"


def test_reads_give_up_after_bounded_retries(world, gh):
    from githubkit.exception import RequestFailed

    n = world.sim.open_issue(world.repo, "Down")
    world.sim.faults.fail_next(10, status=503, path_contains=f"/issues/{n}", method="GET")
    with pytest.raises(RequestFailed):
        gh.issue(n)
    world.sim.faults.clear()


def test_rate_limit_waits_for_retry_after_then_succeeds(world, gh):
    n = world.sim.open_issue(world.repo, "Limited")
    world.sim.faults.rate_limit_next(1, retry_after=1, path_contains=f"/issues/{n}")
    started = time.monotonic()
    assert gh.issue(n)["number"] == n
    assert time.monotonic() - started >= 0.9


def test_comment_post_is_not_blindly_retried_and_marker_prevents_duplicates(world, gh, db_conn):
    """A 5xx on POST is not repeated by the client; the marker lookup finds nothing, so the
    error surfaces (the job retries later and the marker then prevents a duplicate)."""
    from githubkit.exception import RequestFailed

    n = world.sim.open_issue(world.repo, "Comment me")
    world.sim.faults.fail_next(1, status=502, path_contains=f"/issues/{n}/comments", method="POST")
    with pytest.raises(RequestFailed):
        gh.comment(n, "hello <!-- fleet:dedupe=x -->", dedupe_marker="<!-- fleet:dedupe=x -->")
    posts = [c for c in world.sim.calls("POST", f"/issues/{n}/comments")]
    assert len(posts) == 1
    assert gh.comment(n, "hello <!-- fleet:dedupe=x -->", dedupe_marker="<!-- fleet:dedupe=x -->") is not None
    assert gh.comment(n, "hello <!-- fleet:dedupe=x -->", dedupe_marker="<!-- fleet:dedupe=x -->") is None
    bodies = [c["body"] for c in world.comments(n)]
    assert bodies.count("hello <!-- fleet:dedupe=x -->") == 1
    outcomes = [(r["action"], r["outcome"]) for r in evidence_rows(db_conn) if r["action"] == "comment"]
    assert outcomes == [("comment", "error"), ("comment", "ok"), ("comment", "skipped-duplicate")]


def test_refused_mutation_is_recorded_and_raised_with_githubs_message(world, gh, db_conn):
    with pytest.raises(GitHubRefused) as info:
        gh.update_issue(99999, title="nope")
    assert info.value.status == 404
    assert evidence_rows(db_conn)[-1]["outcome"] == "refused"


def _request(method: str) -> httpx.Request:
    return httpx.Request(method, "http://127.0.0.1/x")


def test_write_pacer_refuses_writes_beyond_the_minute_budget_at_once(queue_namespace):
    client = redis.Redis.from_url(REDIS_URL)
    pacer = WritePacer(client, installation_id=424242, per_minute=20, per_hour=100, namespace=queue_namespace)
    for _ in range(ceiling(WriteClass.QUEUE, 20)):  # unmarked writes are QUEUE writes (14 of 20)
        with pacer.acquire(_request("POST")):
            pass
    with pytest.raises(BudgetSpent) as info:
        with pacer.acquire(_request("POST")):
            pass
    assert 0 < info.value.retry_at - time.time() <= WINDOW_SECONDS["minute"]
    with pacer.acquire(_request("GET")):
        pass  # reads are never paced


def test_write_pacer_defers_for_the_hour_instead_of_failing(queue_namespace):
    client = redis.Redis.from_url(REDIS_URL)
    pacer = WritePacer(client, installation_id=434343, per_minute=100, per_hour=1, namespace=queue_namespace)
    written = time.time()
    with pacer.acquire(_request("POST")):
        pass
    with pytest.raises(BudgetSpent) as info:
        with pacer.acquire(_request("POST")):
            pass
    assert info.value.reason == "hour ceiling reached"
    # an hour (and the pacer's margin) after that write
    assert written + WINDOW_SECONDS["hour"] <= info.value.retry_at <= time.time() + WINDOW_SECONDS["hour"]


def test_write_pacer_without_redis_lets_writes_through():
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    pacer = WritePacer(down, 1, 1, 1)
    with pacer.acquire(_request("POST")):
        pass


def test_a_dedupe_marker_counts_only_in_fleets_own_comments_on_any_page(world, gh, db_conn):
    """Anyone can paste a marker: an outsider's copy never suppresses Fleet's comment. Fleet's own
    copy is found even after 100 other comments (the second page)."""
    world.sim.add_user("mallory", "none")
    n = world.sim.open_issue(world.repo, "Crowded")
    marker = "<!-- fleet:dedupe=delivery-1:1:1 -->"
    for i in range(100):
        world.sim.comment(world.repo, n, f"spam {i} {marker}", author="mallory")
    assert gh.comment(n, f"the real one {marker}", dedupe_marker=marker) is not None
    assert gh.comment(n, f"the real one {marker}", dedupe_marker=marker) is None
    outcomes = [r["outcome"] for r in evidence_rows(db_conn) if r["action"] == "comment"]
    assert outcomes == ["ok", "skipped-duplicate"]




def test_calls_share_one_kept_alive_connection_and_a_fork_gets_its_own_pool(world, gh, monkeypatch):
    """githubkit opens and closes an httpx client per call; through Fleet's transport the calls of a
    process still share one kept-alive connection (against GitHub, one TLS handshake instead of one
    per call). A forked process never reuses its parent's connections."""
    from app.github import client as github_client

    ports: list[str] = []
    app = world.sim._server.app

    def recording(environ, start_response):
        ports.append(environ["REMOTE_PORT"])
        return app(environ, start_response)

    monkeypatch.setattr(world.sim._server, "app", recording)
    n = world.sim.open_issue(world.repo, "Kept alive")
    for _ in range(5):
        assert gh.issue(n)["title"] == "Kept alive"
    assert len(ports) >= 5 and len(set(ports)) == 1

    parent_pool = github_client._kept_alive._current()
    monkeypatch.setattr(github_client.os, "getpid", lambda: -1)
    assert github_client._kept_alive._current() is not parent_pool
    assert gh.issue(n)["title"] == "Kept alive"
    assert ports[-1] not in ports[:-1]


def test_the_simulator_keeps_connections_alive_and_a_stop_ends_them():
    """As GitHub does, one connection serves request after request (GET and POST alike); once
    stopped, a connection kept alive before is not answered any more."""
    from app.sandbox.simulator.simulator import Simulator

    sim = Simulator(webhook_secret="s").start()
    sim.create_repo("o/r")
    with httpx.Client(headers={"Authorization": f"Bearer {sim.user_token('octocat')}"}) as client:
        assert client.get(f"{sim.url}/repos/o/r").status_code == 200
        created = client.post(f"{sim.url}/repos/o/r/issues", json={"title": "Kept"})
        assert created.status_code == 201
        assert client.get(f"{sim.url}/repos/o/r/issues/{created.json()['number']}").json()["title"] == "Kept"
        assert len(client._transport._pool.connections) == 1
        sim.stop()
        with pytest.raises(httpx.TransportError):
            client.get(f"{sim.url}/repos/o/r")


def test_an_idle_kept_alive_connection_is_let_go_without_an_error_line(monkeypatch, caplog):
    from app.sandbox.simulator.simulator import Simulator, _QuietHandler

    monkeypatch.setattr(_QuietHandler, "timeout", 0.2)
    sim = Simulator(webhook_secret="s").start()
    try:
        sim.create_repo("o/r")
        with caplog.at_level("INFO"), httpx.Client() as client:
            assert client.get(f"{sim.url}/repos/o/r").status_code == 200
            assert len(client._transport._pool.connections) == 1
            deadline = time.monotonic() + 5
            while sim._server.live_connections and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not sim._server.live_connections  # the simulator let the idle one go
        assert not [r for r in caplog.records if "timed out" in r.getMessage()]
    finally:
        sim.stop()
