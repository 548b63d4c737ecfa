"""Claims end to end: agents self-assign issues on the simulator and Fleet accepts, refuses,
renews and releases — deciding in Postgres, acting on GitHub, replying with markers."""
from __future__ import annotations

import json
import re
import threading
from datetime import datetime, timedelta, timezone

import pytest

from tests.github_env import STATE_LABELS_YML

from app.replies import marker, parse_marker
from jobs.leases import check_leases


def holder(db_conn, number):
    row = db_conn.execute(
        "SELECT agent_id FROM claims WHERE number = %s AND released_at IS NULL", (number,)
    ).fetchone()
    return row["agent_id"] if row else None


def fleet_markers(world, number):
    return [parse_marker(c["body"]) for c in world.comments(number) if c["user"]["login"] == "fleet[bot]"]


def assignees(world, number):
    return [a["login"] for a in world.sim.issue(world.repo, number)["assignees"]]


def labels(world, number):
    return sorted(l["name"] for l in world.sim.issue(world.repo, number)["labels"])


@pytest.fixture
def agents(world):
    for login in ("alice", "bob", "carol"):
        world.sim.add_user(login, "write")
    world.sim.add_user("reader", "read")
    world.use_state_labels()  # these tests follow the state labels too (tasks.manage_labels)
    return world


def open_task(world, title, **fields):
    """Open an issue and let Fleet process it; returns its number."""
    number = world.sim.open_issue(world.repo, title, **fields)
    world.settle()
    return number


def assign(world, login, number, assignee=None):
    """``login`` assigns ``assignee`` (default: themselves) to the issue, and Fleet reacts."""
    world.assign(login, number, assignee=assignee)
    world.settle()


def configure(world, text):
    world.sim.set_file(world.repo, ".github/fleet.yml", STATE_LABELS_YML + text)
    world.settle()


def test_self_assignment_is_accepted_as_a_claim(agents, db_conn):
    w = agents
    n = open_task(w, "Ready task")
    assert labels(w, n) == ["fleet:ready"]
    assign(w, "alice", n)
    assert holder(db_conn, n) == "alice"
    assert assignees(w, n) == ["alice"]
    assert labels(w, n) == ["fleet:claimed"]
    assert fleet_markers(w, n) == []  # an accepted self-assignment needs no reply


def test_claim_on_blocked_task_is_undone_naming_the_blockers(agents, db_conn):
    w = agents
    a = w.sim.open_issue(w.repo, "Foundation")
    b = open_task(w, "Needs foundation", body=f"Depends on #{a}")
    assert labels(w, b) == ["fleet:blocked"]
    assign(w, "bob", b)
    assert holder(db_conn, b) is None
    assert assignees(w, b) == []
    [marker] = fleet_markers(w, b)
    assert marker["result"] == "refused" and marker["reason"] == "blocked" and marker["blockers"] == [a]
    w.sim.update_issue(w.repo, a, state="closed")
    w.settle()
    assert labels(w, b) == ["fleet:ready"]


def test_second_agent_is_refused_when_task_is_taken(agents, db_conn):
    w = agents
    n = open_task(w, "Contested")
    assign(w, "alice", n)
    assign(w, "bob", n)
    assert holder(db_conn, n) == "alice"
    assert assignees(w, n) == ["alice"]
    [marker] = fleet_markers(w, n)
    assert marker["reason"] == "taken" and marker["holder"] == "alice"


def test_two_agents_assigning_at_once_end_with_exactly_one_holder(agents, db_conn):
    w = agents
    n = open_task(w, "Race")
    threads = [threading.Thread(target=w.assign, args=(login, n)) for login in ("alice", "bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    w.settle()
    winner = holder(db_conn, n)
    assert winner in {"alice", "bob", "carol"}
    assert assignees(w, n) == [winner]
    assert db_conn.execute("SELECT count(*) AS n FROM claims WHERE number = %s AND released_at IS NULL", (n,)).fetchone()["n"] == 1


def test_one_event_with_two_assignees_ends_with_one_holder(agents, db_conn):
    w = agents
    n = open_task(w, "Two at once")
    owner, name = w.repo.split("/")
    gh = w.agent("alice")
    gh.rest.issues.add_assignees(owner, name, n, assignees=["alice", "bob"])
    w.settle()
    winner = holder(db_conn, n)
    assert winner in {"alice", "bob"}
    assert assignees(w, n) == [winner]


def test_wip_limit_refuses_a_claim_beyond_max_per_agent(agents, db_conn):
    w = agents
    configure(w, "claims:\n  max_per_agent: 1\n")
    first = w.sim.open_issue(w.repo, "One")
    second = open_task(w, "Two")
    assign(w, "alice", first)
    assign(w, "alice", second)
    assert holder(db_conn, first) == "alice" and holder(db_conn, second) is None
    [marker] = fleet_markers(w, second)
    assert marker["reason"] == "wip_limit" and marker["claims"] == [first]


def test_user_outside_allow_list_is_not_allowed(agents, db_conn):
    w = agents
    configure(w, "claims:\n  allow: [alice]\n")
    n = open_task(w, "Allow-listed only")
    assign(w, "bob", n)
    assert holder(db_conn, n) is None and assignees(w, n) == []
    assert fleet_markers(w, n)[0]["reason"] == "not_allowed"


def test_lease_warns_once_then_releases_with_a_handoff(agents, db_conn):
    """The clock is moved by passing `now` to the lease job: no sleeping."""
    w = agents
    configure(w, "claims:\n  lease: 1h\n")
    n = open_task(w, "Leased")
    assign(w, "alice", n)
    w.sim.push(w.repo, f"alice/{n}-leased", {"a.txt": "1"}, author="alice")
    w.settle()
    start = datetime.now(timezone.utc)
    nothing = {"warned": 0, "released": 0, "ended": 0, "failed": 0, "waits_answered": 0}
    assert check_leases((start + timedelta(minutes=50)).isoformat()) == {**nothing, "warned": 1}
    assert check_leases((start + timedelta(minutes=55)).isoformat()) == nothing
    w.settle()
    assert [m["result"] for m in fleet_markers(w, n)] == ["warning"]
    assert check_leases((start + timedelta(minutes=61)).isoformat()) == {**nothing, "released": 1}
    w.settle()
    assert holder(db_conn, n) is None
    assert assignees(w, n) == []
    assert labels(w, n) == ["fleet:ready"]
    expired = [c["body"] for c in w.comments(n) if (parse_marker(c["body"]) or {}).get("reason") == "expired"]
    assert expired and f"alice/{n}-leased" in expired[0], [c["body"] for c in w.comments(n)]


def test_an_outsiders_copy_of_the_lease_warning_marker_does_not_silence_the_warning(agents, db_conn):
    """The dedupe marker of a lease warning is predictable (task, holder, lease end); an outsider
    who posts it first must not stop Fleet from warning: only Fleet's own comments count."""
    w = agents
    w.sim.add_user("mallory", "none")
    configure(w, "claims:\n  lease: 1h\n")
    n = open_task(w, "Leased")
    assign(w, "alice", n)
    expires = db_conn.execute("SELECT lease_expires_at FROM claims WHERE number = %s", (n,)).fetchone()["lease_expires_at"]
    forged = marker({"dedupe": f"lease-warn:{n}:alice:{int(expires.timestamp())}:{n}:1"})
    w.sim.comment(w.repo, n, f"nothing to see\n{forged}", author="mallory")
    w.settle()
    counts = check_leases((datetime.now(timezone.utc) + timedelta(minutes=50)).isoformat())
    assert counts == {"warned": 1, "released": 0, "ended": 0, "failed": 0, "waits_answered": 0}
    w.settle()
    fleet_bodies = [c["body"] for c in w.comments(n) if c["user"]["login"] == "fleet[bot]"]
    assert [parse_marker(b)["result"] for b in fleet_bodies] == ["warning"]
    assert forged in fleet_bodies[0]
    # Every marker in a reply is JSON (docs/agents.md's parsing rule), the dedupe key included.
    markers = re.findall(r"<!-- fleet:(.*?) -->", fleet_bodies[0])
    assert len(markers) == 2 and all(isinstance(json.loads(m), dict) for m in markers)


def test_push_to_task_branch_renews_the_lease(agents, db_conn):
    w = agents
    n = open_task(w, "Renew me")
    assign(w, "alice", n)
    before = db_conn.execute("SELECT lease_expires_at FROM claims WHERE number = %s", (n,)).fetchone()["lease_expires_at"]
    sha = w.sim.push(w.repo, f"alice/{n}-renew", {"x": "1"}, author="alice")
    w.settle()
    row = db_conn.execute("SELECT lease_expires_at, branch, head_sha FROM claims WHERE number = %s", (n,)).fetchone()
    assert row["lease_expires_at"] > before
    assert (row["branch"], row["head_sha"]) == (f"alice/{n}-renew", sha)


def test_pr_for_a_task_held_by_someone_else_gets_a_warning(agents, db_conn):
    w = agents
    n = open_task(w, "Alice's")
    assign(w, "alice", n)
    w.sim.push(w.repo, "bob-fix", {"y": "1"}, author="bob")
    pr = w.sim.open_pr(w.repo, "bob-fix", "Fix", body=f"Fixes #{n}", author="bob")
    w.settle()
    [marker] = fleet_markers(w, pr)
    assert marker["reason"] == "held_by_other"


def test_next_claims_the_most_urgent_ready_task_and_links_it(agents, db_conn):
    w = agents
    low = w.sim.open_issue(w.repo, "Low", labels=["priority:low"])
    high = open_task(w, "High", labels=["priority:high"])
    w.sim.comment(w.repo, low, "/next", author="carol")
    w.settle()
    assert holder(db_conn, high) == "carol"
    assert assignees(w, high) == ["carol"]
    assert "fleet:claimed" in labels(w, high)  # the verdict is the answer: no reply
    assert [m for m in fleet_markers(w, low) if m and m.get("command") == "next"] == []
    w.sim.comment(w.repo, low, "/next as scout", author="alice")
    w.settle()
    reply = [m for m in fleet_markers(w, low) if m and m.get("command") == "next"]
    assert reply and reply[0]["result"] == "accepted" and reply[0]["agent"] == "alice:scout"


def next_markers(world, number):
    return [m for m in fleet_markers(world, number) if m and m.get("command") == "next"]


def fleet_writes(world) -> list:
    return [(q.method, q.path) for q in list(world.sim.requests)
            if q.identity.startswith("installation:") and q.method != "GET" and "/access_tokens" not in q.path]


def in_line(db_conn):
    return [(r["login"], r["agent_name"]) for r in db_conn.execute(
        "SELECT login, agent_name FROM next_waiters ORDER BY asked_at, comment_id").fetchall()]


def test_next_with_nothing_ready_waits_in_line_and_is_answered_by_the_assignment(agents, db_conn):
    w = agents
    base = open_task(w, "Foundation")
    first = open_task(w, "Walls", body=f"Depends on #{base}")
    second = open_task(w, "Roof", body=f"Depends on #{base}")
    assign(w, "alice", base)
    writes_before = len(fleet_writes(w))
    w.sim.comment(w.repo, first, "/next", author="bob")
    w.settle()
    w.sim.comment(w.repo, first, "/next as scout", author="carol")
    w.settle()
    w.sim.comment(w.repo, first, "/next", author="bob")  # asking again keeps bob's place
    w.settle()
    assert in_line(db_conn) == [("bob", ""), ("carol", "scout")]
    assert next_markers(w, first) == [] and fleet_writes(w)[writes_before:] == []  # waiting costs nothing
    w.sim.update_issue(w.repo, base, state="closed")  # both dependents are ready now
    w.settle()
    assert holder(db_conn, first) == "bob" and assignees(w, first) == ["bob"]  # longest in line, most urgent
    assert holder(db_conn, second) == "carol:scout" and assignees(w, second) == ["carol"]
    assert "fleet:claimed" in labels(w, first) and "fleet:claimed" in labels(w, second)
    # bob's answer is the assignment; the named agent learns its task from a reply where it asked
    [reply] = next_markers(w, first)
    assert reply["result"] == "accepted" and reply["agent"] == "carol:scout" and reply["task"] == second
    assert in_line(db_conn) == []


def test_next_is_refused_at_once_when_no_task_may_become_ready(agents, db_conn):
    w = agents
    n = open_task(w, "Only one")
    assign(w, "alice", n)
    w.sim.comment(w.repo, n, "/next", author="alice")  # alice's own task is all there is
    w.settle()
    [reply] = next_markers(w, n)
    assert reply["result"] == "refused" and reply["reason"] == "no_ready_task" and "waited_s" not in reply
    assert in_line(db_conn) == []


def test_a_released_task_goes_to_the_agent_in_line(agents, db_conn):
    w = agents
    n = open_task(w, "Busy")
    assign(w, "alice", n)
    w.sim.comment(w.repo, n, "/next", author="bob")
    w.settle()
    assert in_line(db_conn) == [("bob", "")] and holder(db_conn, n) == "alice"
    w.sim.comment(w.repo, n, "/release", author="alice")
    w.settle()
    assert holder(db_conn, n) == "bob" and assignees(w, n) == ["bob"] and in_line(db_conn) == []


def test_an_agent_that_claims_meanwhile_leaves_the_line(agents, db_conn):
    w = agents
    base = open_task(w, "Base")
    blocked = open_task(w, "Blocked", body=f"Depends on #{base}")
    other = open_task(w, "Other")
    assign(w, "alice", base)
    assign(w, "carol", other)
    w.sim.comment(w.repo, blocked, "/next", author="bob")
    w.settle()
    assert in_line(db_conn) == [("bob", "")]
    w.sim.comment(w.repo, other, "/release", author="carol")
    w.settle()  # the released task goes to bob, who was in line
    assert holder(db_conn, other) == "bob" and in_line(db_conn) == []
    w.sim.comment(w.repo, blocked, "/next", author="carol")
    w.settle()
    assign(w, "carol", open_task(w, "Picked by hand"))  # carol found work herself
    assert in_line(db_conn) == []
    w.sim.update_issue(w.repo, base, state="closed")
    w.settle()
    assert holder(db_conn, blocked) is None  # not handed to carol unasked


def test_a_next_that_waits_past_next_wait_gets_one_reply(agents, db_conn):
    w = agents
    configure(w, "claims:\n  next_wait: 10m\n")
    base = open_task(w, "Base")
    blocked = open_task(w, "Blocked", body=f"Depends on #{base}")
    assign(w, "alice", base)
    w.sim.comment(w.repo, blocked, "/next as scout", author="bob")
    w.settle()
    start = datetime.now(timezone.utc)
    nothing = {"warned": 0, "released": 0, "ended": 0, "failed": 0, "waits_answered": 0}
    assert check_leases((start + timedelta(minutes=9)).isoformat()) == nothing
    assert check_leases((start + timedelta(minutes=11)).isoformat()) == {**nothing, "waits_answered": 1}
    assert check_leases((start + timedelta(minutes=12)).isoformat()) == nothing
    w.settle()
    [reply] = next_markers(w, blocked)
    assert reply["result"] == "refused" and reply["reason"] == "no_ready_task" and reply["agent"] == "bob:scout"
    assert reply["waited_s"] >= 600 and in_line(db_conn) == []


def test_claim_and_release_commands(agents, db_conn):
    w = agents
    n = open_task(w, "Commands")
    w.sim.comment(w.repo, n, "/claim as agent-d", author="alice")
    w.settle()
    assert holder(db_conn, n) == "alice:agent-d"
    assert assignees(w, n) == ["alice"]
    w.sim.comment(w.repo, n, "/release", author="alice")
    w.settle()
    assert holder(db_conn, n) is None
    assert assignees(w, n) == []
    assert labels(w, n) == ["fleet:ready"]


def test_maintainer_command_by_read_only_user_is_refused(agents, db_conn):
    w = agents
    n = open_task(w, "Block me not")
    w.sim.comment(w.repo, n, "/block #1", author="reader")
    w.settle()
    assert db_conn.execute("SELECT count(*) AS n FROM dependencies WHERE number = %s", (n,)).fetchone()["n"] == 0
    [marker] = fleet_markers(w, n)
    assert marker["reason"] == "permission"


def test_command_inside_code_block_is_ignored(agents, db_conn):
    w = agents
    n = open_task(w, "Quoted")
    w.sim.comment(w.repo, n, "Run this:\n\n```\n/claim\n```\n\n> /claim\n", author="alice")
    w.settle()
    assert holder(db_conn, n) is None
    assert fleet_markers(w, n) == []


def test_fleets_own_comment_is_ignored(agents, db_conn):
    w = agents
    n = open_task(w, "Bot text")
    w.sim.comment(w.repo, n, "/claim\n/unknowncommand", author="fleet[bot]")
    w.settle()
    assert holder(db_conn, n) is None
    assert [c for c in w.comments(n) if c["user"]["login"] == "fleet[bot]"] == [
        c for c in w.comments(n) if c["body"].startswith("/claim")
    ]


def test_unknown_command_gets_a_suggestion(agents, db_conn):
    w = agents
    n = open_task(w, "Typo")
    w.sim.comment(w.repo, n, "/clam", author="alice")
    w.settle()
    [marker] = fleet_markers(w, n)
    assert marker["result"] == "unknown" and marker["suggestion"] == "claim"


def test_maintainer_assigning_someone_else_is_honoured(agents, db_conn):
    w = agents
    n = open_task(w, "Assigned by a maintainer")
    assign(w, "alice", n, assignee="bob")
    assert holder(db_conn, n) == "bob"


def test_triager_assigning_someone_else_needs_write_permission(agents, db_conn):
    """GitHub lets triagers assign people; Fleet honours that as a claim only with write access."""
    w = agents
    w.sim.add_user("trudy", "triage")
    n = open_task(w, "Not yours to give")
    assign(w, "trudy", n, assignee="bob")
    assert holder(db_conn, n) is None
    assert assignees(w, n) == []
    assert fleet_markers(w, n)[0]["reason"] == "maintainer_required"


def test_broken_config_keeps_last_good_and_is_reported_once(agents, db_conn):
    w = agents
    configure(w, "claims:\n  max_per_agent: 1\n")
    configure(w, "claims:\n  max_per_agent: 0\n")
    w.sim.set_file(w.repo, "README.md", "touch the default branch without touching the config")
    w.settle()
    row = db_conn.execute("SELECT config, config_error FROM repositories").fetchone()
    assert row["config"]["claims"]["max_per_agent"] == 1
    assert "claims.max_per_agent" in row["config_error"]
    number = db_conn.execute("SELECT issue_number FROM status_issues").fetchone()["issue_number"]
    reports = [m for m in fleet_markers(w, number) if m and m.get("command") == "config"]
    assert len(reports) == 1 and reports[0]["key"] == "claims.max_per_agent" and reports[0]["line"] == 2 + STATE_LABELS_YML.count("\n")


def test_push_to_a_named_agents_branch_renews_that_agents_claim(agents, db_conn):
    w = agents
    n = open_task(w, "Named")
    w.sim.comment(w.repo, n, "/claim as agent-d", author="alice")
    w.settle()
    sha = w.sim.push(w.repo, f"agent-d/{n}-named", {"n": "1"}, author="alice")
    w.settle()
    row = db_conn.execute("SELECT agent_id, head_sha FROM claims WHERE number = %s AND released_at IS NULL", (n,)).fetchone()
    assert (row["agent_id"], row["head_sha"]) == ("alice:agent-d", sha)
    branch = db_conn.execute("SELECT agent_id FROM branches WHERE name = %s", (f"agent-d/{n}-named",)).fetchone()
    assert branch["agent_id"] == "alice:agent-d"


def test_native_blocked_by_relation_blocks_the_task(agents, db_conn):
    w = agents
    a = w.sim.open_issue(w.repo, "Native blocker")
    b = open_task(w, "Natively blocked")
    w.sim.add_blocked_by(w.repo, b, a)
    w.settle()
    assert labels(w, b) == ["fleet:blocked"]
    db_conn.execute("DELETE FROM dependencies")
    from jobs.sync import sync_repository

    sync_repository(w.repo)  # the backfill finds the native relation again
    assert db_conn.execute("SELECT source FROM dependencies WHERE number = %s", (b,)).fetchone()["source"] == "native"


def claim_in(world, repo, login, number):
    """``login`` self-assigns ``repo#number`` and Fleet decides."""
    owner, name = repo.split("/")
    gh = world.agent(login)
    gh.rest.issues.add_assignees(owner, name, number, assignees=[login])
    world.settle()


def holder_in(db_conn, repo, number):
    row = db_conn.execute(
        "SELECT c.agent_id FROM claims c JOIN repositories r ON r.id = c.repo_id "
        "WHERE r.full_name = %s AND c.number = %s AND c.released_at IS NULL", (repo, number)).fetchone()
    return row["agent_id"] if row else None


def open_claims_of(db_conn, repo):
    return [r["agent_id"] for r in db_conn.execute(
        "SELECT c.agent_id FROM claims c JOIN repositories r ON r.id = c.repo_id "
        "WHERE r.full_name = %s AND c.released_at IS NULL ORDER BY c.number", (repo,)).fetchall()]


def test_naming_more_agents_does_not_raise_the_wip_limit(agents, db_conn):
    """`/claim as x1` … `/claim as x3` with max_per_agent: 2 → the third is refused (per account);
    with wip_per_name: true it is accepted."""
    w = agents
    configure(w, "claims:\n  max_per_agent: 2\n")
    numbers = [w.sim.open_issue(w.repo, f"Task {i}") for i in (1, 2, 3)]
    w.settle()
    for i, n in enumerate(numbers, start=1):
        w.sim.comment(w.repo, n, f"/claim as x{i}", author="alice")
        w.settle()
    assert [holder(db_conn, n) for n in numbers] == ["alice:x1", "alice:x2", None]
    [marker] = fleet_markers(w, numbers[2])
    assert marker["reason"] == "wip_limit" and marker["claims"] == numbers[:2]
    configure(w, "claims:\n  max_per_agent: 2\n  wip_per_name: true\n")
    w.sim.comment(w.repo, numbers[2], "/claim as x3", author="alice")
    w.settle()
    assert holder(db_conn, numbers[2]) == "alice:x3"


def test_claims_in_another_installation_never_count_or_appear(agents, db_conn):
    """An agent holding a claim in `org-a/private-repo` (installation A) is not refused in this
    repository (installation B), whatever the scope, and a refusal here never names it."""
    w = agents
    w.sim.create_repo("org-a/private-repo", private=True)
    w.sim.install(["org-a/private-repo"])
    w.settle()
    secret = w.sim.open_issue("org-a/private-repo", "Secret work")
    w.settle()
    claim_in(w, "org-a/private-repo", "alice", secret)
    assert open_claims_of(db_conn, "org-a/private-repo") == ["alice"]
    configure(w, "claims:\n  max_per_agent: 1\n  wip_scope: installation\n")
    first, second = w.sim.open_issue(w.repo, "One"), w.sim.open_issue(w.repo, "Two")
    w.settle()
    claim_in(w, w.repo, "alice", first)
    assert holder_in(db_conn, w.repo, first) == "alice"
    claim_in(w, w.repo, "alice", second)
    assert holder_in(db_conn, w.repo, second) is None
    [body] = [c["body"] for c in w.comments(second) if c["user"]["login"] == "fleet[bot]"]
    marker = parse_marker(body)
    assert (marker["reason"], marker["claims"], marker["elsewhere"]) == ("wip_limit", [first], 0)
    assert "org-a" not in body and "private-repo" not in body and f"#{secret}" not in body.replace(f"#{first}", "")


def test_installation_scope_counts_a_sibling_repositorys_claim_without_naming_it(agents, db_conn):
    w = agents
    sibling = "octo/sibling"
    w.sim.create_repo(sibling, private=True)
    assert w.sim.install([sibling]) == w.installation_id
    w.settle()
    elsewhere = w.sim.open_issue(sibling, "Sibling work")
    w.settle()
    claim_in(w, sibling, "alice", elsewhere)
    assert open_claims_of(db_conn, sibling) == ["alice"]
    n = open_task(w, "Here")
    configure(w, "claims:\n  max_per_agent: 1\n")
    claim_in(w, w.repo, "alice", n)
    assert holder_in(db_conn, w.repo, n) == "alice"  # scope repository (default): the sibling's claim does not count
    w.sim.comment(w.repo, n, "/release", author="alice")
    w.settle()
    configure(w, "claims:\n  max_per_agent: 1\n  wip_scope: installation\n")
    claim_in(w, w.repo, "alice", n)
    assert holder_in(db_conn, w.repo, n) is None
    refusal = [c["body"] for c in w.comments(n) if (parse_marker(c["body"]) or {}).get("reason") == "wip_limit"]
    assert len(refusal) == 1
    assert (parse_marker(refusal[0])["claims"], parse_marker(refusal[0])["elsewhere"]) == ([], 1)
    assert "sibling" not in refusal[0] and "1 in other repositories" in refusal[0]
