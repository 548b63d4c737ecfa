"""Git refs (create, fast-forward, force, delete), POST /merges into a group branch, PRs merged by
a push to their base (how bors-style queues land), and branch protection against the App."""
import pytest
from githubkit import AppInstallationAuthStrategy, GitHub

from tests.simulator_demo import checked_simulator

REPO = "/repos/octo/demo"
REFS = f"{REPO}/git/refs"
ZERO = "0" * 40
GROUP = "fleet/queue/main/1"


@pytest.fixture
def sim():
    """A simulator with octo/demo installed; every request, response and webhook must be valid."""
    with checked_simulator() as s:
        yield s


def _main(sim):
    return sim.branch_sha("octo/demo", "main")


def _mark(sim):
    """How many events were emitted so far (pass to ``_since``)."""
    return len(sim.events)


def _since(sim, mark, event=None):
    """(event, payload) emitted after ``mark``, optionally only of one event name."""
    return [(e.event, e.payload) for e in sim.events[mark:] if event is None or e.event == event]


def _names(sim, mark):
    return [(e, p.get("action")) for e, p in _since(sim, mark)]


def _error(resp, status):
    assert resp.status_code == status, resp.text
    return resp.json()["message"]


def _pr(sim, branch, files, body=None, base=None):
    sim.push("octo/demo", branch, files, author="agent-1")
    return sim.open_pr("octo/demo", branch, f"PR {branch}", base=base, body=body, author="agent-1")


def _pull(sim, number):
    return sim.pull("octo/demo", number)


# -- POST git/refs -------------------------------------------------------------------------------
def test_create_ref_is_201_with_the_ref_and_sends_create_then_push(sim):
    """Creating a branch answers the ref JSON and emits ``create`` and a creating ``push``
    (before = 40 zeros) with no commits, since the commit is already on main."""
    mark, tip = _mark(sim), _main(sim)
    resp = sim.c.post(REFS, json={"ref": f"refs/heads/{GROUP}", "sha": tip})
    assert resp.status_code == 201
    ref = resp.json()
    assert ref["ref"] == f"refs/heads/{GROUP}" and ref["object"] == {
        "type": "commit", "sha": tip, "url": f"{sim.url}{REPO}/git/commits/{tip}"}
    assert resp.headers["Location"] == ref["url"] == f"{sim.url}{REPO}/git/refs/heads/{GROUP}"
    assert sim.c.get(f"{REPO}/git/ref/heads/{GROUP}").json()["object"]["sha"] == tip
    assert _names(sim, mark)[:2] == [("create", None), ("push", None)]
    create, push = _since(sim, mark, "create")[0][1], _since(sim, mark, "push")[0][1]
    assert (create["ref"], create["ref_type"], create["master_branch"]) == (GROUP, "branch", "main")
    assert create["sender"]["login"] == "fleet[bot]"
    assert (push["ref"], push["before"], push["after"]) == (f"refs/heads/{GROUP}", ZERO, tip)
    assert (push["created"], push["deleted"], push["forced"], push["commits"]) == (True, False, False, [])
    assert push["head_commit"]["id"] == tip and push["pusher"]["name"] == "fleet[bot]"


def test_create_ref_rejects_what_github_rejects(sim):
    """422 for an existing ref, an unknown sha, a malformed name and a name clashing with a branch's
    path; nothing is created and nothing is emitted."""
    mark, tip = _mark(sim), _main(sim)
    cases = [
        ("refs/heads/main", tip, "Reference already exists"),
        ("refs/heads/new", "f" * 40, "Object does not exist"),
        ("refs/heads/new", "main", "Object does not exist"),  # a sha, not a branch name
        ("heads/new", tip, "Reference name must contain at least three slash-separated components."),
        ("branches/x/new", tip, "branches/x/new is not a valid ref name."),
        ("refs/heads/a..b", tip, "refs/heads/a..b is not a valid ref name."),
        ("refs/heads/main/sub", tip, "Reference update failed"),  # main is a file, not a directory
    ]
    for ref, sha, message in cases:
        assert _error(sim.c.post(REFS, json={"ref": ref, "sha": sha}), 422) == message, ref
    assert sorted(sim.world.repo("octo/demo").git.branches) == ["main"]
    assert _since(sim, mark) == []


def test_create_ref_without_sha_fails_schema_validation(sim):
    """The body's ``sha`` is required by GitHub's description: 422 before any handler runs."""
    assert sim.c.post(REFS, json={"ref": "refs/heads/x"}).status_code == 422
    assert sim.violations.pop().operation_id == "git/create-ref"


# -- PATCH git/refs/{ref} ------------------------------------------------------------------------
def test_fast_forward_is_200_and_pushes(sim):
    """With ``force`` left out only a fast-forward is accepted; the push lists the new commits."""
    sim.create_branch("octo/demo", GROUP)
    head = sim.push("octo/demo", "feat", {"a.txt": "1"}, author="agent-1")
    mark = _mark(sim)
    resp = sim.c.patch(f"{REFS}/heads/{GROUP}", json={"sha": head})
    assert resp.status_code == 200 and resp.json()["object"]["sha"] == head
    assert sim.branch_sha("octo/demo", GROUP) == head
    push = _since(sim, mark, "push")[0][1]
    assert (push["before"], push["after"], push["created"], push["forced"]) == (_main(sim), head, False, False)
    assert [c["id"] for c in push["commits"]] == [head]


def test_not_fast_forward_is_422_unless_forced(sim):
    """A diverged update is refused without ``force`` (nothing moves, nothing is sent) and
    accepted with it, as a forced push."""
    sim.create_branch("octo/demo", GROUP)
    ours = sim.push("octo/demo", GROUP, {"a.txt": "ours"})
    theirs = sim.set_file("octo/demo", "b.txt", "theirs")
    mark = _mark(sim)
    refused = sim.c.patch(f"{REFS}/heads/{GROUP}", json={"sha": theirs, "force": False})
    assert _error(refused, 422) == "Update is not a fast forward"
    assert sim.branch_sha("octo/demo", GROUP) == ours and _since(sim, mark) == []
    forced = sim.c.patch(f"{REFS}/heads/{GROUP}", json={"sha": theirs, "force": True})
    assert forced.status_code == 200 and sim.branch_sha("octo/demo", GROUP) == theirs
    push = _since(sim, mark, "push")[0][1]
    assert (push["before"], push["after"], push["forced"]) == (ours, theirs, True)


def test_update_ref_422_for_missing_ref_or_object(sim):
    """A ref GitHub does not know (including the ``refs/``-prefixed spelling in the path) is
    "Reference does not exist"; an unknown sha "Object does not exist"; the same sha is a no-op."""
    tip, mark = _main(sim), _mark(sim)
    assert _error(sim.c.patch(f"{REFS}/heads/nope", json={"sha": tip}), 422) == "Reference does not exist"
    assert _error(sim.c.patch(f"{REFS}/refs/heads/main", json={"sha": tip}), 422) == "Reference does not exist"
    assert _error(sim.c.patch(f"{REFS}/heads/main", json={"sha": "e" * 40}), 422) == "Object does not exist"
    same = sim.c.patch(f"{REFS}/heads/main", json={"sha": tip})
    assert same.status_code == 200 and same.json()["object"]["sha"] == tip
    assert _since(sim, mark) == []


# -- DELETE git/refs/{ref} -----------------------------------------------------------------------
def test_delete_ref_is_204_and_sends_delete_then_push(sim):
    """Deleting a branch emits ``delete`` and a ``push`` with deleted: true; deleting again, or
    the default branch, is 422."""
    sim.create_branch("octo/demo", GROUP)
    tip, mark = _main(sim), _mark(sim)
    assert sim.c.delete(f"{REFS}/heads/{GROUP}").status_code == 204
    assert GROUP not in sim.world.repo("octo/demo").git.branches
    assert _names(sim, mark) == [("delete", None), ("push", None)]
    delete, push = _since(sim, mark, "delete")[0][1], _since(sim, mark, "push")[0][1]
    assert (delete["ref"], delete["ref_type"]) == (GROUP, "branch")
    assert (push["before"], push["after"], push["deleted"], push["created"]) == (tip, ZERO, True, False)
    assert _error(sim.c.delete(f"{REFS}/heads/{GROUP}"), 422) == "Reference does not exist"
    assert sim.c.delete(f"{REFS}/heads/main").status_code == 422


# -- POST /merges into a group branch --------------------------------------------------------------
def test_merges_into_a_non_default_base_pushes_that_base(sim):
    """Merging a PR's head into a group branch makes a merge commit there, emits ``push`` for the
    group branch, and leaves the PR (whose base is main) open."""
    n = _pr(sim, "feat", {"a.txt": "1"})
    head = _pull(sim, n)["head"]["sha"]
    sim.create_branch("octo/demo", GROUP)
    mark = _mark(sim)
    resp = sim.c.post(f"{REPO}/merges", json={"base": GROUP, "head": "feat", "commit_message": "Group 1: #1"})
    assert resp.status_code == 201
    merge = resp.json()
    assert [p["sha"] for p in merge["parents"]] == [_main(sim), head]
    assert sim.branch_sha("octo/demo", GROUP) == merge["sha"] and _main(sim) != merge["sha"]
    push = _since(sim, mark, "push")[0][1]
    assert (push["ref"], push["after"]) == (f"refs/heads/{GROUP}", merge["sha"])
    assert _pull(sim, n)["state"] == "open" and _since(sim, mark, "pull_request") == []
    assert sim.c.post(f"{REPO}/merges", json={"base": GROUP, "head": "feat"}).status_code == 204


# -- PRs merged by a push to their base ------------------------------------------------------------
def test_fast_forwarding_the_base_to_a_group_merges_the_prs_it_contains(sim):
    """The bors flow: group branch from main, PR heads merged into it, main fast-forwarded to it.
    The contained PR becomes merged by the App at the new tip and closes the issue its body
    names; a PR whose head is not contained stays open."""
    issue = sim.open_issue("octo/demo", "bug")
    landed = _pr(sim, "feat-a", {"a.txt": "1"}, body=f"Fixes #{issue}")
    waiting = _pr(sim, "feat-b", {"b.txt": "1"})
    sim.create_branch("octo/demo", GROUP)
    sim.c.post(f"{REPO}/merges", json={"base": GROUP, "head": "feat-a"})
    group = sim.branch_sha("octo/demo", GROUP)
    mark = _mark(sim)
    assert sim.c.patch(f"{REFS}/heads/main", json={"sha": group, "force": False}).status_code == 200
    pr = _pull(sim, landed)
    assert (pr["merged"], pr["state"], pr["merge_commit_sha"]) == (True, "closed", group)
    assert pr["merged_by"]["login"] == "fleet[bot]" and pr["merged_at"] and pr["closed_at"]
    assert sim.c.get(f"{REPO}/pulls/{landed}/merge").status_code == 204
    assert _pull(sim, waiting)["state"] == "open" and _pull(sim, waiting)["merged"] is False
    assert sim.issue("octo/demo", issue)["state"] == "closed"
    assert _names(sim, mark)[:3] == [("push", None), ("pull_request", "closed"), ("issues", "closed")]
    closed = _since(sim, mark, "pull_request")[0][1]
    assert closed["pull_request"]["number"] == landed and closed["pull_request"]["merged"] is True
    assert closed["pull_request"]["merge_commit_sha"] == group and closed["sender"]["login"] == "fleet[bot]"
    assert [p["issue"]["number"] for _, p in _since(sim, mark, "issues")] == [issue]


def test_a_pr_into_a_non_default_base_closes_no_issues(sim):
    """GitHub closes the issues a PR body names only when it merges into the default branch."""
    sim.create_branch("octo/demo", "release")
    issue = sim.open_issue("octo/demo", "bug")
    n = _pr(sim, "fix", {"fix.txt": "1"}, body=f"Closes #{issue}", base="release")
    head = _pull(sim, n)["head"]["sha"]
    sim.move_branch("octo/demo", "release", head, sender="agent-1")
    pr = _pull(sim, n)
    assert pr["merged"] and pr["merged_by"]["login"] == "agent-1" and pr["merge_commit_sha"] == head
    assert sim.issue("octo/demo", issue)["state"] == "open"


def test_post_merges_into_main_merges_the_pr(sim):
    """Merging a PR's head straight into its base with POST /merges lands it like a push does."""
    n = _pr(sim, "feat", {"a.txt": "1"})
    sha = sim.c.post(f"{REPO}/merges", json={"base": "main", "head": "feat"}).json()["sha"]
    pr = _pull(sim, n)
    assert pr["merged"] and pr["merge_commit_sha"] == sha and pr["merged_by"]["login"] == "fleet[bot]"


def test_a_stacked_pr_lands_with_the_pr_built_on_it(sim):
    """Merging PR B (a merge commit) also brings PR A's head into main: A becomes merged too,
    while B keeps its own merge result and is announced once."""
    a = _pr(sim, "feat-a", {"a.txt": "1"})
    sim.create_branch("octo/demo", "feat-b", sim.branch_sha("octo/demo", "feat-a"))
    b = _pr(sim, "feat-b", {"b.txt": "1"})
    mark = _mark(sim)
    sha = sim.c.put(f"{REPO}/pulls/{b}/merge", json={"merge_method": "merge"}).json()["sha"]
    assert _pull(sim, a)["merged"] and _pull(sim, a)["merge_commit_sha"] == sha
    assert _pull(sim, b)["merged"] and _pull(sim, b)["merge_commit_sha"] == sha
    closed = [p["pull_request"]["number"] for _, p in _since(sim, mark, "pull_request")]
    assert sorted(closed) == [a, b]


def test_pushing_unrelated_commits_to_the_base_merges_nothing(sim):
    """A push to main that does not contain a PR's head leaves the PR open."""
    n = _pr(sim, "feat", {"a.txt": "1"})
    sim.set_file("octo/demo", "other.txt", "x")
    assert _pull(sim, n)["state"] == "open"


# -- branch protection ------------------------------------------------------------------------------
def test_a_protected_branch_refuses_the_apps_pushes(sim):
    """With pushes restricted, the App's fast-forward, merge into and deletion of the branch are
    422 "Protected branch update failed"; nothing moves; a person may still push."""
    sim.create_branch("octo/demo", "release")
    sim.protect_branch("octo/demo", "main")
    sim.protect_branch("octo/demo", "release")
    _pr(sim, "feat", {"a.txt": "1"})
    head, tip, mark = sim.branch_sha("octo/demo", "feat"), _main(sim), _mark(sim)
    message = "Protected branch update failed for refs/heads/main."
    assert _error(sim.c.patch(f"{REFS}/heads/main", json={"sha": head}), 422) == message
    assert _error(sim.c.post(f"{REPO}/merges", json={"base": "main", "head": "feat"}), 422) == message
    assert _error(sim.c.delete(f"{REFS}/heads/release"), 422) == \
        "Protected branch update failed for refs/heads/release."
    assert _main(sim) == tip and _since(sim, mark) == []
    assert sim.c.get(f"{REPO}/branches/main").json()["protected"] is True
    assert {b["name"]: b["protected"] for b in sim.c.get(f"{REPO}/branches").json()}["feat"] is False
    sim.move_branch("octo/demo", "main", head)
    assert _main(sim) == head


def test_protection_without_push_restriction_refuses_only_force_pushes(sim):
    """Fast-forwards pass; a forced non-fast-forward is refused unless force pushes are allowed."""
    sim.create_branch("octo/demo", GROUP)
    sim.protect_branch("octo/demo", GROUP, restrict_pushes=False)
    ahead = sim.push("octo/demo", "ahead", {"a.txt": "1"})
    assert sim.c.patch(f"{REFS}/heads/{GROUP}", json={"sha": ahead}).status_code == 200
    other = sim.set_file("octo/demo", "b.txt", "2")
    forced = sim.c.patch(f"{REFS}/heads/{GROUP}", json={"sha": other, "force": True})
    assert _error(forced, 422) == "Cannot force-push to this protected branch"
    sim.protect_branch("octo/demo", GROUP, allow_force_pushes=True, restrict_pushes=False)
    assert sim.c.patch(f"{REFS}/heads/{GROUP}", json={"sha": other, "force": True}).status_code == 200
    sim.unprotect_branch("octo/demo", GROUP)
    assert sim.c.delete(f"{REFS}/heads/{GROUP}").status_code == 204


# -- through githubkit (Fleet's client) ----------------------------------------------------------------
def test_the_queue_flow_through_githubkit(sim):
    """create_ref, merge, update_ref and delete_ref as Fleet's client sends them (refs with slashes
    in the path included)."""
    gh = GitHub(AppInstallationAuthStrategy(sim.world.app.id, sim.app_private_key_pem, sim.inst),
                base_url=sim.url + "/", http_cache=False)
    n = _pr(sim, "feat", {"a.txt": "1"})
    gh.rest.git.create_ref("octo", "demo", ref=f"refs/heads/{GROUP}", sha=_main(sim))
    merge = gh.rest.repos.merge("octo", "demo", base=GROUP, head="feat").parsed_data
    ref = gh.rest.git.update_ref("octo", "demo", f"heads/{GROUP}", sha=merge.sha, force=True).parsed_data
    assert ref.object_.sha == merge.sha
    gh.rest.git.update_ref("octo", "demo", "heads/main", sha=merge.sha, force=False)
    gh.rest.git.delete_ref("octo", "demo", f"heads/{GROUP}")
    assert _pull(sim, n)["merged"] and _main(sim) == merge.sha
    assert GROUP not in sim.world.repo("octo/demo").git.branches
