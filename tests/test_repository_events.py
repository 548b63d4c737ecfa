"""Repositories renamed, transferred, deleted and re-created, archived, made private (security
review: "renamed or re-created repositories"): the rows follow GitHub, claims Fleet can no longer
serve end, and one bad repository never fails a whole installation_repositories event."""
from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import httpx
import pytest

from app.repos import registry as repositories
from app.sandbox.simulator.openapi import WebhookValidator
from tests.conftest import drain
from tests.test_ingest import post, sign

EXAMPLES = Path(__file__).parent / "fixtures" / "webhook_examples"


def labels(world, repo, number):
    return sorted(l["name"] for l in world.sim.issue(repo, number)["labels"])


def repo_row(db_conn, repo_id):
    return db_conn.execute("SELECT * FROM repositories WHERE id = %s", (repo_id,)).fetchone()


def last_claim(db_conn, repo_id, number):
    return db_conn.execute("SELECT released_at, release_reason FROM claims WHERE repo_id = %s AND number = %s"
                           " ORDER BY id DESC LIMIT 1", (repo_id, number)).fetchone()


def repository_events_match_the_official_schema(world):
    validator = WebhookValidator.load()
    for event in world.sim.events:
        if event.event == "repository":
            assert validator.validate("repository", event.payload) == [], event.payload["action"]


@pytest.fixture
def lib(world):
    """octo/lib beside octo/widgets in the same installation, with an open issue #1."""
    w = world
    w.sim.add_user("alice", "write")
    w.sim.create_repo("octo/lib")
    w.sim.install(["octo/lib"])
    w.settle()
    w.use_state_labels()  # these tests follow the state labels (tasks.manage_labels)
    w.sim.open_issue("octo/lib", "Library work")
    w.settle()
    return w, w.sim.world.repo("octo/lib").id


def claim(world, repo, number, login="alice"):
    owner, name = repo.split("/")
    gh = world.agent(login)
    gh.rest.issues.add_assignees(owner, name, number, assignees=[login])
    world.settle()


def test_a_rename_updates_the_row_and_the_old_name_still_resolves(lib, db_conn):
    """The dependent's body still says octo/lib#1 (GitHub redirects the old name): it resolves."""
    w, lib_id = lib
    n = w.sim.open_issue(w.repo, "Uses the library", body="Depends on octo/lib#1")
    w.settle()
    assert labels(w, w.repo, n) == ["fleet:blocked"]
    w.sim.rename_repo("octo/lib", "core")
    w.settle()
    assert repo_row(db_conn, lib_id)["full_name"] == "octo/core"
    assert repo_row(db_conn, lib_id)["former_names"] == ["octo/lib"]
    w.sim.update_issue("octo/core", 1, state="closed")
    w.settle()
    w.sim.update_issue(w.repo, n, title="Uses the library (renamed)")  # Fleet re-labels on the edit
    w.settle()
    assert labels(w, w.repo, n) == ["fleet:ready"]
    repository_events_match_the_official_schema(w)


def test_deleted_and_recreated_under_the_same_name(lib, db_conn):
    w, old_id = lib
    claim(w, "octo/lib", 1)
    w.sim.delete_repo("octo/lib")
    w.settle()
    assert repo_row(db_conn, old_id)["removed_at"] is not None
    assert last_claim(db_conn, old_id, 1)["release_reason"] == "repository-deleted"
    w.sim.create_repo("octo/lib")  # a new repository, a new id, the same name
    w.sim.install(["octo/lib"])
    w.settle()
    new_id = w.sim.world.repo("octo/lib").id
    assert new_id != old_id
    assert repo_row(db_conn, new_id)["full_name"] == "octo/lib" and repo_row(db_conn, new_id)["removed_at"] is None
    assert repo_row(db_conn, old_id)["full_name"] == f"octo/lib~{old_id}"
    assert db_conn.execute("SELECT count(*) AS n FROM deliveries WHERE status = 'failed'").fetchone()["n"] == 0
    repository_events_match_the_official_schema(w)


def test_two_repositories_renamed_into_each_others_names(settings, db_conn):
    repositories.upsert_repository(db_conn, 1, "octo/a", installation_id=7)
    repositories.upsert_repository(db_conn, 2, "octo/b", installation_id=7)
    repositories.upsert_repository(db_conn, 1, "octo/b", installation_id=7)  # via octo/tmp, events reordered
    repositories.upsert_repository(db_conn, 2, "octo/a", installation_id=7)
    assert {r["id"]: r["full_name"] for r in db_conn.execute("SELECT id, full_name FROM repositories")} == {
        1: "octo/b", 2: "octo/a"}


def test_privatized_repository_stops_resolving_from_public_ones(lib, db_conn):
    w, lib_id = lib
    n = w.sim.open_issue(w.repo, "Uses the library", body="Depends on octo/lib#1")
    w.settle()
    w.sim.set_private("octo/lib")
    w.settle()
    assert repo_row(db_conn, lib_id)["private"] is True
    w.sim.update_issue("octo/lib", 1, state="closed")
    w.settle()
    w.sim.update_issue(w.repo, n, title="Uses the library (private now)")
    w.settle()
    assert labels(w, w.repo, n) == ["fleet:blocked"]
    w.sim.set_private("octo/lib", False)
    w.settle()
    assert repo_row(db_conn, lib_id)["private"] is False
    repository_events_match_the_official_schema(w)


def test_archiving_ends_claims_and_unarchiving_clears_the_flag(lib, db_conn):
    w, lib_id = lib
    claim(w, "octo/lib", 1)
    w.sim.archive_repo("octo/lib")
    w.settle()
    assert repo_row(db_conn, lib_id)["archived"] is True
    assert last_claim(db_conn, lib_id, 1)["release_reason"] == "repository-archived"
    assert [c for c in w.sim.world.repo("octo/lib").issues[1].comments if c.user.login == "fleet[bot]"] == []
    w.sim.archive_repo("octo/lib", archived=False)
    w.settle()
    assert repo_row(db_conn, lib_id)["archived"] is False
    repository_events_match_the_official_schema(w)


def official(event, action):
    payloads = json.loads((EXAMPLES / f"{event}.json").read_text())
    return copy.deepcopy(next(p for p in payloads if p.get("action") == action and "installation" in p))


def deliver(world, event, payload):
    """POST a signed delivery to the world's Fleet over HTTP, as GitHub would, and settle."""
    body = json.dumps(payload).encode()
    resp = httpx.post(world.fleet.url + "/webhooks/github", content=body, headers={
        "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()), "Content-Type": "application/json",
        "X-Hub-Signature-256": sign(world.settings.webhook_secret, body)})
    assert resp.status_code == 202, resp.text
    world.settle()


def test_a_transferred_repository_is_renamed_and_its_claims_end(lib, db_conn):
    """GitHub's own example payload, pointed at octo/lib; nothing is written to GitHub for it."""
    w, lib_id = lib
    claim(w, "octo/lib", 1)
    payload = official("repository", "transferred")
    payload["repository"].update(id=lib_id, full_name="elsewhere/lib", name="lib", private=False)
    payload["installation"]["id"] = w.installation_id
    calls = len(w.sim.calls())
    deliver(w, "repository", payload)
    assert repo_row(db_conn, lib_id)["full_name"] == "elsewhere/lib"
    assert last_claim(db_conn, lib_id, 1)["release_reason"] == "repository-transferred"
    assert len(w.sim.calls()) == calls


def test_one_bad_repository_does_not_fail_the_installation_repositories_event(settings, client, db_conn):
    payload = official("installation_repositories", "added")
    good = copy.deepcopy(payload["repositories_added"][0])
    good.update(id=424242, full_name="octo/good", name="good")
    payload["repositories_added"] = [{"full_name": "octo/no-id"}, good]
    guid = str(uuid.uuid4())
    assert post(client, "installation_repositories", payload, guid=guid).status_code == 202
    drain()
    row = db_conn.execute("SELECT status, last_error FROM deliveries WHERE id = %s", (guid,)).fetchone()
    assert row["status"] == "processed", row["last_error"]
    assert repo_row(db_conn, 424242)["full_name"] == "octo/good"


def test_a_name_taken_by_a_new_repository_resolves_to_it_not_the_renamed_one(settings, db_conn):
    """octo/lib renamed to octo/core, then a new octo/lib created: `octo/lib#1` means the new one,
    as on GitHub (the redirect ends when the name is taken)."""
    from app.claims import store as claim_store

    db_conn.execute("INSERT INTO installations (id, account_login) VALUES (7, 'octo')")
    for repo_id, name in ((1, "octo/app"), (2, "octo/lib")):
        repositories.upsert_repository(db_conn, repo_id, name, installation_id=7)
    repositories.upsert_repository(db_conn, 2, "octo/core", installation_id=7)
    db_conn.execute("INSERT INTO tasks (repo_id, number, state) VALUES (1, 1, 'open'), (2, 1, 'closed')")
    db_conn.execute("INSERT INTO dependencies (repo_id, number, dep_full_name, dep_number, source)"
                    " VALUES (1, 1, 'octo/lib', 1, 'body')")
    [task] = claim_store.snapshots(db_conn, 1, "octo/app", [1])
    assert [d.state for d in task.dependencies] == ["closed"]  # the former name resolves to octo/core
    repositories.upsert_repository(db_conn, 3, "octo/lib", installation_id=7)
    db_conn.execute("INSERT INTO tasks (repo_id, number, state) VALUES (3, 1, 'open')")
    [task] = claim_store.snapshots(db_conn, 1, "octo/app", [1])
    assert [d.state for d in task.dependencies] == ["open"]
    assert repo_row(db_conn, 2)["former_names"] == []


def test_closing_a_task_unblocks_dependents_that_name_the_repository_by_its_old_name(lib, db_conn):
    w, _ = lib
    w.use_state_labels("octo/lib")
    n = w.sim.open_issue("octo/lib", "Same repository, written in full", body="Depends on octo/lib#1")
    w.settle()
    assert labels(w, "octo/lib", n) == ["fleet:blocked"]
    w.sim.rename_repo("octo/lib", "core")
    w.settle()
    w.sim.update_issue("octo/core", 1, state="closed")
    w.settle()
    assert labels(w, "octo/core", n) == ["fleet:ready"]
