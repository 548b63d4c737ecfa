"""Pull request semantics: mergeability, merge methods, stale heads, update-branch."""
import pytest

from tests.simulator_demo import demo_simulator

REPO = "/repos/octo/demo"


@pytest.fixture
def sim():
    with demo_simulator() as s:
        yield s
        assert s.violations == []


def _pr(sim, files, branch="feat", body=None):
    sim.push("octo/demo", branch, files, author="agent-1")
    return sim.open_pr("octo/demo", branch, "PR", body=body, author="agent-1")


def _get(sim, number):
    return sim.c.get(f"{REPO}/pulls/{number}").json()


def test_mergeable_is_null_once_after_a_move(sim):
    n = _pr(sim, {"a.txt": "1"})
    first, second = _get(sim, n), _get(sim, n)
    assert (first["mergeable"], first["mergeable_state"]) == (None, "unknown")
    assert (second["mergeable"], second["mergeable_state"]) == (True, "clean")
    sim.set_file("octo/demo", "other.txt", "x")  # base moves
    assert _get(sim, n)["mergeable"] is None
    assert (_get(sim, n)["mergeable"], _get(sim, n)["mergeable_state"]) == (True, "behind")


def test_mergeable_null_once_can_be_switched_off(sim):
    sim.mergeable_null_once = False
    n = _pr(sim, {"a.txt": "1"})
    assert _get(sim, n)["mergeable"] is True


def test_conflict_is_dirty_and_merge_405(sim):
    sim.mergeable_null_once = False
    n = _pr(sim, {"README.md": "mine\n"})
    sim.set_file("octo/demo", "README.md", "theirs\n")
    pr = _get(sim, n)
    assert (pr["mergeable"], pr["mergeable_state"]) == (False, "dirty")
    resp = sim.c.put(f"{REPO}/pulls/{n}/merge", json={"sha": pr["head"]["sha"]})
    assert resp.status_code == 405 and resp.json()["message"] == "Pull Request is not mergeable"


def test_stale_sha_409_then_merge(sim):
    n = _pr(sim, {"a.txt": "1"})
    old = _get(sim, n)["head"]["sha"]
    new = sim.push("octo/demo", "feat", {"a.txt": "2"}, author="agent-1")
    resp = sim.c.put(f"{REPO}/pulls/{n}/merge", json={"sha": old})
    assert resp.status_code == 409
    assert resp.json()["message"] == "Head branch was modified. Review and try the merge again."
    ok = sim.c.put(f"{REPO}/pulls/{n}/merge", json={"sha": new, "merge_method": "merge"})
    assert ok.status_code == 200 and ok.json()["merged"] is True
    main = sim.world.repo("octo/demo").git.commits[ok.json()["sha"]]
    assert len(main.parents) == 2 and main.parents[1] == new
    assert sim.file("octo/demo", "a.txt") == "2"
    assert sim.c.get(f"{REPO}/pulls/{n}/merge").status_code == 204
    pr = _get(sim, n)
    assert pr["merged"] and pr["state"] == "closed" and pr["merge_commit_sha"] == ok.json()["sha"]
    again = sim.c.put(f"{REPO}/pulls/{n}/merge", json={})
    assert again.status_code == 405


def test_squash_and_rebase(sim):
    sim.push("octo/demo", "sq", {"a": "1"})
    sim.push("octo/demo", "sq", {"b": "1"})
    n = sim.open_pr("octo/demo", "sq", "squash me")
    sha = sim.c.put(f"{REPO}/pulls/{n}/merge", json={"merge_method": "squash", "commit_title": "T"}).json()["sha"]
    commit = sim.world.repo("octo/demo").git.commits[sha]
    assert len(commit.parents) == 1 and commit.message.startswith("T") and {"a", "b"} <= set(commit.tree)
    base = sim.branch_sha("octo/demo", "main")
    sim.push("octo/demo", "rb", {"c": "1"})
    sim.push("octo/demo", "rb", {"d": "1"})
    n = sim.open_pr("octo/demo", "rb", "rebase me")
    sha = sim.c.put(f"{REPO}/pulls/{n}/merge", json={"merge_method": "rebase"}).json()["sha"]
    git = sim.world.repo("octo/demo").git
    assert [c.message for c in git.only_in(sha, base)] == ["Update files", "Update files"]
    assert all(len(c.parents) == 1 for c in git.only_in(sha, base))
    assert sim.c.put(f"{REPO}/pulls/{n}/merge", json={"merge_method": "bogus"}).status_code == 422
    assert sim.violations.pop().errors  # the schema rejects it before any handler runs


def test_merge_closes_referenced_issues(sim):
    issue = sim.open_issue("octo/demo", "bug")
    other = sim.open_issue("octo/demo", "unrelated")
    n = _pr(sim, {"fix": "1"}, body=f"Fixes #{issue}. See #{other}.")
    sim.c.put(f"{REPO}/pulls/{n}/merge", json={})
    assert sim.issue("octo/demo", issue)["state"] == "closed"
    assert sim.issue("octo/demo", other)["state"] == "open"


def test_update_branch(sim):
    n = _pr(sim, {"a.txt": "1"})
    head = _get(sim, n)["head"]["sha"]
    assert sim.c.put(f"{REPO}/pulls/{n}/update-branch", json={}).status_code == 422  # nothing new on base
    sim.set_file("octo/demo", "base.txt", "b")
    bad = sim.c.put(f"{REPO}/pulls/{n}/update-branch", json={"expected_head_sha": "0" * 40})
    assert bad.status_code == 422
    resp = sim.c.put(f"{REPO}/pulls/{n}/update-branch", json={"expected_head_sha": head})
    assert resp.status_code == 202 and "message" in resp.json()
    pr = sim.pull("octo/demo", n)
    assert pr["head"]["sha"] != head and pr["mergeable_state"] == "clean"
    assert sim.file("octo/demo", "base.txt", ref="feat") == "b"
    kinds = [(e.event, e.payload.get("action")) for e in sim.events[-3:]]
    assert kinds == [("push", None), ("pull_request", "synchronize"), ("check_suite", "requested")]


def test_update_branch_conflict(sim):
    n = _pr(sim, {"README.md": "mine"})
    sim.set_file("octo/demo", "README.md", "theirs")
    resp = sim.c.put(f"{REPO}/pulls/{n}/update-branch", json={})
    assert resp.status_code == 422 and resp.json()["message"] == "merge conflict"


def test_pr_create_rules_and_files(sim):
    assert sim.c.post(f"{REPO}/pulls", json={"title": "t", "head": "nope", "base": "main"}).status_code == 422
    sim.push("octo/demo", "feat", {"new.txt": "a\nb\n", "README.md": None})
    pr = sim.c.post(f"{REPO}/pulls", json={"title": "t", "head": "feat", "base": "main"}).json()
    dup = sim.c.post(f"{REPO}/pulls", json={"title": "t", "head": "feat", "base": "main"})
    assert dup.status_code == 422
    files = {f["filename"]: f["status"] for f in sim.c.get(f"{REPO}/pulls/{pr['number']}/files").json()}
    assert files == {"README.md": "removed", "new.txt": "added"}
    assert [p["number"] for p in sim.c.get(f"{REPO}/pulls", params={"head": "octo:feat"}).json()] == [pr["number"]]


def test_reviews(sim):
    n = _pr(sim, {"a": "1"})
    rv = sim.c.post(f"{REPO}/pulls/{n}/reviews", json={"event": "APPROVE", "body": "lgtm"})
    assert rv.status_code == 200 and rv.json()["state"] == "APPROVED"
    assert [r["state"] for r in sim.c.get(f"{REPO}/pulls/{n}/reviews").json()] == ["APPROVED"]


def test_repo_merges_endpoint(sim):
    sim.push("octo/demo", "x", {"x": "1"})
    assert sim.c.post(f"{REPO}/merges", json={"base": "main", "head": "x"}).status_code == 201
    assert sim.c.post(f"{REPO}/merges", json={"base": "main", "head": "x"}).status_code == 204
    sim.push("octo/demo", "y", {"README.md": "y"})
    sim.set_file("octo/demo", "README.md", "main")
    assert sim.c.post(f"{REPO}/merges", json={"base": "main", "head": "y"}).status_code == 409


def test_checks_and_statuses(sim):
    sha = sim.push("octo/demo", "feat", {"a": "1"})
    run = sim.c.post(f"{REPO}/check-runs", json={"name": "fleet", "head_sha": sha, "status": "in_progress"}).json()
    assert run["status"] == "in_progress" and run["app"]["slug"] == "fleet"
    done = sim.c.patch(f"{REPO}/check-runs/{run['id']}", json={"conclusion": "failure"}).json()
    assert done["status"] == "completed" and done["completed_at"]
    sim.ci("octo/demo", sha, "build", status="in_progress", conclusion=None)
    sim.ci("octo/demo", "feat", "build", conclusion="success")
    runs = sim.c.get(f"{REPO}/commits/feat/check-runs").json()
    assert runs["total_count"] == 2
    assert {r["name"]: r["conclusion"] for r in runs["check_runs"]} == {"fleet": "failure", "build": "success"}
    # The CI app's run cannot be modified by Fleet.
    build = next(r for r in runs["check_runs"] if r["name"] == "build")
    assert sim.c.patch(f"{REPO}/check-runs/{build['id']}", json={"status": "queued"}).status_code == 403
    assert sim.c.post(f"{REPO}/statuses/{sha}", json={"state": "pending", "context": "ci/x"}).status_code == 201
    sim.set_status("octo/demo", sha, "ci/x", "success")
    combined = sim.c.get(f"{REPO}/commits/{sha}/status").json()
    assert combined["state"] == "success" and combined["total_count"] == 1
    check_events = [(e.event, e.payload["action"]) for e in sim.events if e.event.startswith("check_")]
    assert check_events.count(("check_suite", "completed")) == 2  # one per app suite
