"""Writes that can wait are held, not the deliveries behind them (app/github/held_writes.py, jobs/outbox.py).

With the installation's budget spent for replies (the QUEUE class's share of the minute), a
command's reply or reaction is stored with the state change and sent later in order, and the
repository's next delivery -- a claim, whose verdict an agent is waiting for -- is processed at
once instead of waiting a minute behind the reply.
"""
from __future__ import annotations

from githubkit import GitHub

from app import runtime
from app.github.write_budget import WriteClass
from jobs.outbox import flush_held_writes, sweep_held_writes
from tests.test_write_deferral import (  # noqa: F401  (two_installations is a fixture)
    assign, claim_of, fill_window, labels_of, run_scheduled_now, scheduled_functions, two_installations,
)


def held(db_conn) -> list[dict]:
    return db_conn.execute("SELECT kind, number, body, write_class, attempts FROM held_writes ORDER BY id").fetchall()


def statuses(db_conn, repo: str) -> list[tuple[str, str]]:
    rows = db_conn.execute("SELECT event, status FROM deliveries WHERE repo_full_name = %s ORDER BY received_at",
                           (repo,)).fetchall()
    return [(r["event"], r["status"]) for r in rows]


def repo_id(db_conn, world) -> int:
    return db_conn.execute("SELECT id FROM repositories WHERE full_name = %s", (world.repo,)).fetchone()["id"]


def clear_window(world) -> None:
    runtime.redis_client().delete(f"{runtime.settings().queue_name}:writes:{world.installation_id}:minute")


def fleet_replies(world, number: int) -> list[str]:
    return [c["body"] for c in world.comments(number) if c["user"]["login"].endswith("[bot]")]


def thumbs_up(world, number: int, comment_id: int) -> int:
    [found] = [c for c in world.comments(number) if c["id"] == comment_id]
    return found["reactions"]["+1"]


def test_a_reply_without_budget_is_held_and_the_next_claim_is_decided_at_once(two_installations, db_conn):
    w = two_installations
    asked, wanted = w.sim.open_issue(w.repo, "Asked about"), w.sim.open_issue(w.repo, "Wanted")
    w.settle()
    fill_window(w.installation_id, WriteClass.QUEUE)
    w.sim.comment(w.repo, asked, "/help", author="alice")
    w.settle()
    assign(w, w.repo, "bob", wanted)

    # Neither delivery waits: the reply is held, the claim decided and its verdict written.
    assert all(status == "processed" for _, status in statuses(db_conn, w.repo)[-2:])
    assert [(h["kind"], h["number"], h["write_class"]) for h in held(db_conn)] == [("comment", asked, "QUEUE")]
    assert claim_of(db_conn, w.repo, wanted) == "bob" and "fleet:claimed" in labels_of(w, wanted)
    assert fleet_replies(w, asked) == []
    assert "jobs.outbox.flush_held_writes" in scheduled_functions()

    run_scheduled_now()  # the slot has not freed yet: the flush waits again, nothing is lost
    assert len(held(db_conn)) == 1 and fleet_replies(w, asked) == []
    assert "jobs.outbox.flush_held_writes" in scheduled_functions()

    clear_window(w)
    run_scheduled_now()
    [reply] = fleet_replies(w, asked)
    assert "/claim" in reply  # the /help text
    assert held(db_conn) == []


def test_held_writes_keep_their_order_and_a_reaction_waits_with_them(two_installations, db_conn):
    w = two_installations
    n = w.sim.open_issue(w.repo, "Busy")
    w.settle()
    assign(w, w.repo, "alice", n)
    fill_window(w.installation_id, WriteClass.QUEUE)
    w.sim.comment(w.repo, n, "/help", author="alice")
    progress = w.sim.comment(w.repo, n, "/unblock #99", author="alice")  # acknowledged by a reaction
    w.sim.comment(w.repo, n, "/frobnicate", author="alice")
    w.settle()
    assert [h["kind"] for h in held(db_conn)] == ["comment", "reaction", "comment"]

    clear_window(w)
    assert flush_held_writes(repo_id(db_conn, w)) == 3
    replies = fleet_replies(w, n)
    assert len(replies) == 2 and "/claim" in replies[0] and "frobnicate" in replies[1]
    assert thumbs_up(w, n, progress) == 1
    assert flush_held_writes(repo_id(db_conn, w)) == 0  # nothing twice


def test_a_held_reply_github_refuses_is_dropped_and_the_next_one_still_goes(two_installations, db_conn):
    w = two_installations
    gone, kept = w.sim.open_issue(w.repo, "Deleted soon"), w.sim.open_issue(w.repo, "Kept")
    w.settle()
    fill_window(w.installation_id, WriteClass.QUEUE)
    w.sim.comment(w.repo, gone, "/help", author="alice")
    w.sim.comment(w.repo, kept, "/help", author="alice")
    w.settle()
    assert [h["number"] for h in held(db_conn)] == [gone, kept]
    w.sim.delete_issue(w.repo, gone)  # GitHub answers 410 from now on
    w.settle()

    clear_window(w)
    assert flush_held_writes(repo_id(db_conn, w)) == 2
    assert held(db_conn) == [] and len(fleet_replies(w, kept)) == 1
    refused = db_conn.execute("SELECT count(*) AS n FROM evidence WHERE action = 'comment' AND outcome = 'refused' "
                              "AND target = %s", (f"#{gone}",)).fetchone()
    assert refused["n"] == 1


def test_a_send_interrupted_after_github_took_it_is_not_posted_twice(two_installations, db_conn):
    w = two_installations
    n = w.sim.open_issue(w.repo, "Crash")
    w.settle()
    fill_window(w.installation_id, WriteClass.QUEUE)
    w.sim.comment(w.repo, n, "/help", author="alice")
    w.settle()
    [row] = db_conn.execute("SELECT id, body FROM held_writes").fetchall()
    # A worker posted it and died before deleting the row (its attempt was counted first).
    clear_window(w)
    owner, name = w.repo.split("/")
    gh = GitHub(w.sim.installation_token(w.installation_id), base_url=w.sim.url + "/", http_cache=False)
    gh.rest.issues.create_comment(owner, name, n, body=row["body"])
    db_conn.execute("UPDATE held_writes SET attempts = 1 WHERE id = %s", (row["id"],))

    assert flush_held_writes(repo_id(db_conn, w)) == 1
    assert len(fleet_replies(w, n)) == 1 and held(db_conn) == []


def test_the_scheduler_sweep_finds_held_writes_whose_flush_was_never_scheduled(two_installations, db_conn):
    w = two_installations
    n = w.sim.open_issue(w.repo, "Redis lost the job")
    w.settle()
    fill_window(w.installation_id, WriteClass.QUEUE)
    w.sim.comment(w.repo, n, "/help", author="alice")
    w.settle()
    registry = runtime.queue().scheduled_job_registry
    for job_id in registry.get_job_ids():  # Redis lost the scheduled flush
        registry.remove(job_id, delete_job=True)
    assert "jobs.outbox.flush_held_writes" not in scheduled_functions()

    assert sweep_held_writes() == [repo_id(db_conn, w)]
    clear_window(w)
    run_scheduled_now()
    assert len(fleet_replies(w, n)) == 1 and held(db_conn) == []


def test_verdicts_are_never_held(two_installations, db_conn):
    """A claim's refusal is the verdict an agent waits for: with the whole budget spent the
    delivery is deferred (and decided again later), never answered out of a held row."""
    from tests.test_write_deferral import lift, spend

    w = two_installations
    n = w.sim.open_issue(w.repo, "Wanted")
    w.settle()
    assign(w, w.repo, "alice", n)
    spend(w, w.installation_id)
    w.sim.comment(w.repo, n, "/claim", author="bob")
    w.settle()
    assert statuses(db_conn, w.repo)[-1] == ("issue_comment", "deferred")
    deferred = db_conn.execute("SELECT id FROM deliveries WHERE status = 'deferred'").fetchone()["id"]
    assert held(db_conn) == []
    lift(w, w.installation_id)
    run_scheduled_now()
    # That delivery itself (the reply's own issue_comment webhook may arrive after it, still unprocessed).
    assert db_conn.execute("SELECT status FROM deliveries WHERE id = %s", (deferred,)).fetchone()["status"] == "processed"
    assert any("alice" in body for body in fleet_replies(w, n))


def test_doctor_counts_held_writes_and_warns_when_nothing_sends_them(two_installations, db_conn, database_url):
    from app.cli.doctor import run_checks
    from tests.test_parked_deliveries import env_for

    w = two_installations
    assert {c.name: c for c in run_checks(env_for(database_url))}["held writes"].message == "none"
    n = w.sim.open_issue(w.repo, "Waiting")
    w.settle()
    fill_window(w.installation_id, WriteClass.QUEUE)
    w.sim.comment(w.repo, n, "/help", author="alice")
    w.settle()
    check = {c.name: c for c in run_checks(env_for(database_url))}["held writes"]
    assert check.level == "ok" and check.message.startswith("1 waiting for the write budget")

    db_conn.execute("UPDATE held_writes SET held_at = now() - interval '2 hours'")
    check = {c.name: c for c in run_checks(env_for(database_url))}["held writes"]
    assert check.level == "warn" and "fleet scheduler" in check.fix
