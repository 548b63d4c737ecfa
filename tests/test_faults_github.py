"""Fault injection on the GitHub side: 502s, slow answers and client timeouts, 403 rate limits
with Retry-After, and out-of-order, duplicate and lost webhooks.

One scenario (agents claiming tasks with dependencies, /next, /release, a push and a PR) runs
twice on fresh simulators: once clean, once with faults injected at every step. Fleet must end
in the same final state (claim holders, ``fleet:*`` labels, assignees, Fleet's replies), with no
reply posted twice. Jobs that fail because of a fault are retried the way production does it
without waiting for production's back-off: the sweeper re-enqueues failed deliveries and the
redelivery sweep asks GitHub for the lost ones.
"""
from __future__ import annotations

import pprint
import time
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest

from app import db, runtime
from app.claims import apply as claim_actions
from app.github.client import GitHubClients, RetryPolicy
from app.replies import parse_marker
from jobs.redeliver import redeliver_failed
from jobs.sweeper import sweep_deliveries
from tests.conftest import TABLES
from tests.github_env import STATE_LABELS_YML, GitHubWorld, start_world

Fault = Callable[[GitHubWorld, dict], None]
NO_FAULT: Fault = lambda world, n: None
NONE = (NO_FAULT, NO_FAULT)
RETRY_PAUSE = 0.8  # > (simulated delay - client timeout) of the timeout faults below


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    """A failed delivery may run again after RETRY_PAUSE instead of production's back-off."""
    monkeypatch.setattr("app.deliveries.RETRY_AFTER_SECONDS", (RETRY_PAUSE / 2,) * 4)


def recover(world: GitHubWorld, rounds: int = 12) -> int:
    """Settle; then redeliver lost webhooks and re-run failed deliveries until all is quiet."""
    for i in range(rounds):
        world.settle()
        if _failed_deliveries(world):
            # RQ would retry after 2 s; a request the client gave up on (timeout) is still being
            # completed by GitHub for a moment. Retrying before it lands cannot see its effect.
            time.sleep(RETRY_PAUSE)
        again = redeliver_failed() + sweep_deliveries(grace=0)
        if not again:
            return i
    raise AssertionError("Fleet did not recover within the retry bound")


def _failed_deliveries(world: GitHubWorld) -> int:
    with db.connect(world.settings.database_url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) AS n FROM deliveries WHERE status = 'failed'").fetchone()["n"]


def step(world: GitHubWorld, n: dict, faults: tuple[Fault, Fault], action: Callable[[], None]) -> None:
    """Webhook faults go in before the action (they apply to the webhooks it causes); REST faults
    after its webhooks reached Fleet and before Fleet works on them (so they hit Fleet's calls,
    not the agent's own)."""
    before, after = faults
    before(world, n)
    action()
    assert world.sim.wait_idle(timeout=15)
    after(world, n)
    recover(world)


def scenario(world: GitHubWorld, faults: dict[str, tuple[Fault, Fault]]) -> dict:
    """Run the scenario, injecting ``faults[name]`` before the step called ``name``."""
    sim, repo = world.sim, world.repo
    f = lambda name: faults.get(name, NONE)
    for login in ("alice", "bob", "carol"):
        sim.add_user(login, "write")
    sim.set_file(repo, ".github/fleet.yml", STATE_LABELS_YML + "status:\n  enabled: false\n")
    world.settle()
    n: dict[str, int] = {}

    def open_all() -> None:
        n["A"] = sim.open_issue(repo, "A: foundation")
        n["B"] = sim.open_issue(repo, "B: needs A", body=f"Depends on #{n['A']}")
        n["C"] = sim.open_issue(repo, "C: independent")
        n["D"] = sim.open_issue(repo, "D: urgent", labels=["priority:high"])
        n["E"] = sim.open_issue(repo, "E: needs C", body=f"Blocked by #{n['C']}")

    step(world, n, f("open"), open_all)
    step(world, n, f("claim_a"), lambda: world.assign("alice", n["A"]))
    step(world, n, f("claim_blocked"), lambda: world.assign("bob", n["B"]))
    step(world, n, f("next"), lambda: sim.comment(repo, n["C"], "/next", author="carol"))
    step(world, n, f("claim_c"), lambda: sim.comment(repo, n["C"], "/claim", author="bob"))
    step(world, n, f("taken"), lambda: world.assign("carol", n["C"]))

    def work_on_a() -> None:
        sim.push(repo, f"alice/{n['A']}-foundation", {"a.txt": "a\n"}, author="alice")
        n["PR"] = sim.open_pr(repo, f"alice/{n['A']}-foundation", "Foundation", body=f"Closes #{n['A']}",
                              author="alice")

    step(world, n, f("pr"), work_on_a)
    step(world, n, f("release"), lambda: sim.comment(repo, n["D"], "/release", author="carol"))
    step(world, n, f("close_a"), lambda: sim.update_issue(repo, n["A"], state="closed"))
    step(world, n, f("claim_b"), lambda: world.assign("bob", n["B"]))
    return snapshot(world, n)


def snapshot(world: GitHubWorld, n: dict) -> dict:
    """Everything observable about the scenario's tasks, keyed by scenario name."""
    state = {}
    with db.connect(world.settings.database_url, autocommit=True) as conn:
        for name, number in sorted(n.items()):
            issue = world.sim.issue(world.repo, number)
            holder = conn.execute("SELECT agent_id FROM claims WHERE number = %s AND released_at IS NULL",
                                  (number,)).fetchone()
            replies = []
            for c in world.comments(number):
                if c["user"]["login"] != "fleet[bot]":
                    continue
                m = parse_marker(c["body"]) or {}
                replies.append((m.get("command"), m.get("result"), m.get("reason")))
            state[name] = {
                "state": issue["state"],
                "holder": holder["agent_id"] if holder else None,
                "assignees": sorted(a["login"] for a in issue["assignees"]),
                "labels": sorted(label["name"] for label in issue["labels"] if label["name"].startswith("fleet:")),
                "replies": replies,
            }
        bad = conn.execute("SELECT id, event, action, status, last_error FROM deliveries "
                           "WHERE status NOT IN ('processed', 'ignored')").fetchall()
    state["unfinished deliveries"] = bad
    return state


def fresh_world(settings) -> GitHubWorld:
    with db.connect(settings.database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    runtime.configure(settings)
    runtime.queue().empty()
    claim_actions._labels_ready.clear()  # Fleet's labels exist in the previous simulator only
    from app.wsgi import create_app

    apps = []

    def factory(s):
        apps.append(create_app(s))
        return apps[-1]

    world = start_world(settings, factory)
    world._apps = apps  # type: ignore[attr-defined]
    return world


def close_world(world: GitHubWorld) -> None:
    world.fleet.stop()
    world.sim.stop()
    for app in world._apps:  # type: ignore[attr-defined]
        app.config["FLEET_POOL"].close()
    assert world.sim.violations == []


def run(settings, faults: dict[str, tuple[Fault, Fault]]) -> tuple[dict, GitHubWorld]:
    world = fresh_world(settings)
    try:
        return scenario(world, faults), world
    finally:
        close_world(world)


@pytest.fixture
def short_timeouts(monkeypatch):
    """GitHub calls time out after 1 s instead of 15 s, so a slow answer becomes a timeout, and
    the inline retry backoff for 5xx starts at 0.1 s instead of 1 s (the policy is unchanged)."""
    original = GitHubClients._common

    def common(self):
        options = original(self)
        options["timeout"] = httpx.Timeout(1.0, connect=1.0)
        return options

    monkeypatch.setattr(GitHubClients, "_common", common)
    monkeypatch.setattr(RetryPolicy.__init__, "__defaults__", (3, 0.1, RetryPolicy().max_wait, None))


# -- the faults, one or more per step ------------------------------------------------------------

def shuffled_and_duplicated(world, n):
    world.sim.faults.shuffle_webhooks(window=5, seed=11)  # the five issues arrive out of order
    world.sim.faults.duplicate_next_webhooks(3)


def bad_gateway_on_labels(world, n):
    world.sim.faults.fail_next(2, status=502, path_contains="/labels")


def rate_limited_unassign(world, n):
    world.sim.faults.rate_limit_next(1, retry_after=1, path_contains=f"/issues/{n['B']}/assignees")


def comment_post_times_out(world, n):
    # The POST reaches GitHub and succeeds after the client gave up: a retry must not repost.
    world.sim.faults.delay_next(1, seconds=1.4, path_contains="/comments", method="POST")


def bad_gateway_on_comment(world, n):
    world.sim.faults.fail_next(1, status=502, path_contains="/comments", method="POST")
    world.sim.faults.fail_next(1, status=502, path_contains="/assignees/bob", method="GET")


def slow_reads(world, n):
    world.sim.faults.delay_next(2, seconds=0.5, method="GET")


def lost_webhooks(world, n):
    world.sim.faults.drop_next_webhooks(2)  # the push and create are never delivered (redelivered)


def secondary_limit_on_everything(world, n):
    world.sim.faults.rate_limit_next(1, retry_after=1)


def label_post_times_out(world, n):
    world.sim.faults.delay_next(1, seconds=1.4, path_contains="/labels", method="POST")


def bad_gateway_on_label_post(world, n):
    world.sim.faults.fail_next(1, status=502, path_contains="/labels", method="POST")


def stop_shuffling(world, n):
    world.sim.faults.shuffle_webhooks(0)


def duplicate_one(world, n):
    world.sim.faults.duplicate_next_webhooks(1)


def reorder_three(world, n):
    world.sim.faults.shuffle_webhooks(window=3, seed=5)


# step -> (before the action: webhook faults, after its webhooks arrived: REST faults)
FAULTS: dict[str, tuple[Fault, Fault]] = {
    "open": (shuffled_and_duplicated, NO_FAULT),
    "claim_a": (stop_shuffling, bad_gateway_on_labels),
    "claim_blocked": (NO_FAULT, rate_limited_unassign),
    "next": (NO_FAULT, comment_post_times_out),
    "claim_c": (NO_FAULT, bad_gateway_on_comment),
    "taken": (duplicate_one, slow_reads),
    "pr": (lost_webhooks, NO_FAULT),
    "release": (NO_FAULT, secondary_limit_on_everything),
    "close_a": (reorder_three, bad_gateway_on_label_post),
    "claim_b": (stop_shuffling, label_post_times_out),
}


def test_same_final_state_with_and_without_github_faults(settings, short_timeouts):
    settings = replace(settings, writes_per_minute=100_000, writes_per_hour=1_000_000)
    clean, _ = run(settings, {})
    # The scenario means something: claims held, refused, released and completed.
    assert clean["A"]["state"] == "closed" and clean["A"]["holder"] is None
    assert clean["B"]["holder"] == "bob" and clean["B"]["labels"] == ["fleet:claimed"]
    assert clean["D"]["holder"] is None and clean["D"]["labels"] == ["fleet:ready"]
    assert clean["C"]["holder"] is None or clean["C"]["holder"] == "bob"
    assert clean["E"]["labels"] == ["fleet:blocked"] or clean["C"]["holder"] is None
    assert clean["unfinished deliveries"] == []

    faulty, world = run(settings, FAULTS)
    differences = {k: {"clean": clean.get(k), "faulty": faulty.get(k)}
                   for k in sorted(set(clean) | set(faulty)) if clean.get(k) != faulty.get(k)}
    assert not differences, pprint.pformat(differences, width=110)
    # ... and the faults really happened.
    statuses = {q.status for q in world.sim.requests}
    assert {502, 403} <= statuses, statuses
    assert any(d.status == "timed out" for d in world.sim.deliveries)
    assert any(d.redelivery for d in world.sim.deliveries)
    assert world.sim.faults._rest == []  # every REST fault was consumed by a Fleet call
