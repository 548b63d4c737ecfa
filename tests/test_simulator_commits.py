"""The git commits API. POST: a commit object from an existing tree (a merge commit's, here) with
chosen parents, landed on a branch through the refs API; GitHub's 422s for trees and parents that
are malformed, missing or of the wrong kind; no webhook until a ref moves; githubkit's
create_commit. GET /git/commits/{sha} reads one back."""
import httpx
import pytest
from githubkit import AppInstallationAuthStrategy, GitHub

from tests.simulator_demo import checked_simulator

REPO = "/repos/octo/demo"
COMMITS = f"{REPO}/git/commits"
REFS = f"{REPO}/git/refs"
GROUP = "fleet/queue/main/1"
UNKNOWN = "f" * 40


@pytest.fixture
def sim():
    """octo/demo installed; every request, response and webhook must be valid by GitHub's description."""
    with checked_simulator(readers=("reader",)) as s:
        yield s


def _main(sim):
    return sim.branch_sha("octo/demo", "main")


def _error(resp, status):
    assert resp.status_code == status, resp.text
    return resp.json()["message"]


def _group_merge(sim):
    """PR #1 (feat: a.txt) merged into a group branch cut from main; returns (pr number, merge JSON)."""
    sim.push("octo/demo", "feat", {"a.txt": "from feat\n"}, author="agent-1")
    n = sim.open_pr("octo/demo", "feat", "Add a", author="agent-1")
    sim.create_branch("octo/demo", GROUP)
    resp = sim.c.post(f"{REPO}/merges", json={"base": GROUP, "head": "feat", "commit_message": "Group 1: #1"})
    assert resp.status_code == 201, resp.text
    return n, resp.json()


def test_merges_answers_the_merge_commits_tree(sim):
    """POST /merges answers a ``commit`` whose ``commit.tree`` names the merge result's tree."""
    _, merge = _group_merge(sim)
    tree = sim.world.repo("octo/demo").git.commits[merge["sha"]].tree_sha
    assert merge["commit"]["tree"] == {"sha": tree, "url": f"{sim.url}{REPO}/git/trees/{tree}"}


def test_a_commit_of_the_merge_tree_on_main_lands_by_fast_forward(sim):
    """A squash-style landing: the group's merge tree committed with main's tip as the only parent
    (201, GitHub's ``git-commit``, no webhook), then main fast-forwarded to it: main has the
    group's files, ``push`` names the commit and its tree, and the PR, whose head main does not
    contain, stays open."""
    n, merge = _group_merge(sim)
    tree, tip = merge["commit"]["tree"]["sha"], _main(sim)
    mark, calls = len(sim.events), len(sim.requests)
    resp = sim.c.post(COMMITS, json={"message": "Land group 1 (#1)", "tree": tree, "parents": [tip]})
    assert resp.status_code == 201, resp.text
    c = resp.json()
    assert resp.headers["Location"] == c["url"] == f"{sim.url}{REPO}/git/commits/{c['sha']}"
    assert c["html_url"] == f"{sim.world.html_url}/octo/demo/commit/{c['sha']}"
    assert c["message"] == "Land group 1 (#1)" and c["node_id"]
    assert c["tree"] == {"sha": tree, "url": f"{sim.url}{REPO}/git/trees/{tree}"}
    assert [(p["sha"], p["url"]) for p in c["parents"]] == [(tip, f"{sim.url}{REPO}/git/commits/{tip}")]
    assert c["parents"][0]["html_url"] == f"{sim.world.html_url}/octo/demo/commit/{tip}"
    # An App naming no author or committer gets a commit GitHub signs (committer GitHub, verified).
    assert (c["author"]["name"], c["committer"]["name"], c["committer"]["email"]) == \
        ("fleet[bot]", "GitHub", "noreply@github.com")
    assert c["author"]["date"] == c["committer"]["date"]
    assert c["verification"]["verified"] is True and c["verification"]["reason"] == "valid"
    assert c["verification"]["payload"].startswith(f"tree {tree}\nparent {tip}\nauthor fleet[bot] <")
    assert sim.events[mark:] == [] and _main(sim) == tip  # no ref moved, nothing sent
    assert [(r.operation_id, r.status) for r in sim.requests[calls:]] == [("git/create-commit", 201)]

    assert sim.c.patch(f"{REFS}/heads/main", json={"sha": c["sha"], "force": False}).status_code == 200
    assert _main(sim) == c["sha"]
    assert sim.file("octo/demo", "a.txt") == "from feat\n" and sim.file("octo/demo", "README.md") == "# demo\n"
    push = [e.payload for e in sim.events[mark:] if e.event == "push"][0]
    assert (push["before"], push["after"], push["forced"]) == (tip, c["sha"], False)
    assert push["head_commit"]["tree_id"] == tree and push["head_commit"]["committer"]["name"] == "GitHub"
    assert [x["id"] for x in push["commits"]] == [c["sha"]] and push["commits"][0]["added"] == ["a.txt"]
    branch = sim.c.get(f"{REPO}/branches/main").json()["commit"]
    assert branch["commit"]["tree"]["sha"] == tree and branch["commit"]["verification"]["verified"] is True
    assert [p["sha"] for p in branch["parents"]] == [tip]
    pr = sim.pull("octo/demo", n)
    assert (pr["state"], pr["merged"]) == ("open", False)


def test_a_commit_with_other_parents_replaces_a_branch_by_force(sim):
    """A commit of the merge tree with two chosen parents (main's tip and a side commit) is not a
    descendant of the group branch: a plain update is refused, a forced one moves the branch there."""
    _, merge = _group_merge(sim)
    side = sim.push("octo/demo", "side", {"b.txt": "side\n"})
    body = {"message": "Rebuilt group", "tree": merge["commit"]["tree"]["sha"], "parents": [_main(sim), side]}
    c = sim.c.post(COMMITS, json=body).json()
    assert [p["sha"] for p in c["parents"]] == [_main(sim), side]
    assert _error(sim.c.patch(f"{REFS}/heads/{GROUP}", json={"sha": c["sha"]}), 422) == "Update is not a fast forward"
    assert sim.c.patch(f"{REFS}/heads/{GROUP}", json={"sha": c["sha"], "force": True}).status_code == 200
    assert sim.branch_sha("octo/demo", GROUP) == c["sha"]
    assert sim.file("octo/demo", "a.txt", GROUP) == "from feat\n"
    assert sim.file("octo/demo", "b.txt", GROUP) is None  # the tree is the merge's; parents do not add files


def test_a_root_commit_and_a_commit_on_a_new_branch(sim):
    """Without ``parents`` the commit is a root commit; a new branch can be created at it."""
    tree = sim.c.get(f"{REPO}/branches/main").json()["commit"]["commit"]["tree"]["sha"]
    c = sim.c.post(COMMITS, json={"message": "root", "tree": tree}).json()
    assert c["parents"] == [] and c["tree"]["sha"] == tree
    assert sim.c.post(REFS, json={"ref": "refs/heads/orphan", "sha": c["sha"]}).status_code == 201
    assert sim.file("octo/demo", "README.md", "orphan") == "# demo\n"


def test_missing_or_malformed_trees_and_parents_are_422(sim):
    """GitHub's messages: an unknown tree, a commit's sha given as the tree, an unknown parent
    (alone or beside a good one), a tree's sha given as a parent, and shas that are not 40 hex
    digits. Nothing is created and nothing is sent."""
    _, merge = _group_merge(sim)
    tree, tip = merge["commit"]["tree"]["sha"], _main(sim)
    git = sim.world.repo("octo/demo").git
    mark, count = len(sim.events), len(git.commits)
    cases = [
        ({"tree": UNKNOWN, "parents": [tip]}, "Tree SHA does not exist"),
        ({"tree": tip, "parents": [tip]}, "Tree SHA is not a tree object"),
        ({"tree": tree[:7], "parents": [tip]},
         "The tree parameter must be exactly 40 characters and contain only [0-9a-f]."),
        ({"tree": tree.upper(), "parents": [tip]},
         "The tree parameter must be exactly 40 characters and contain only [0-9a-f]."),
        ({"tree": tree, "parents": [UNKNOWN]}, "Parent SHA does not exist or is not a commit object"),
        ({"tree": tree, "parents": [tip, UNKNOWN]}, "Parent SHA does not exist or is not a commit object"),
        ({"tree": tree, "parents": [tree]}, "Parent SHA does not exist or is not a commit object"),
        ({"tree": tree, "parents": [tip[:7]]},
         "Each SHA in the 'parents' parameter must be exactly 40 characters and contain only [0-9a-f]."),
        ({"tree": UNKNOWN, "parents": [UNKNOWN]}, "Tree SHA does not exist"),  # the tree is checked first
    ]
    for extra, message in cases:
        assert _error(sim.c.post(COMMITS, json={"message": "m", **extra}), 422) == message, extra
    assert len(git.commits) == count and sim.events[mark:] == []


def test_named_author_and_committer(sim):
    """A named author (date given with an offset) is answered in UTC; the committer defaults to the
    author; such a commit is not signed. An author without email, or with a date lacking its
    offset, is 422."""
    tip = _main(sim)
    tree = sim.world.repo("octo/demo").git.commits[tip].tree_sha
    author = {"name": "Mona Octocat", "email": "octocat@github.com", "date": "2008-07-09T16:13:30+12:00"}
    c = sim.c.post(COMMITS, json={"message": "m", "tree": tree, "parents": [tip], "author": author}).json()
    assert c["author"] == c["committer"] == {"name": "Mona Octocat", "email": "octocat@github.com",
                                             "date": "2008-07-09T04:13:30Z"}
    assert c["verification"] == {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                                 "verified_at": None}
    committer = {"name": "Fleet", "email": "fleet@example.com"}
    c = sim.c.post(COMMITS, json={"message": "m", "tree": tree, "author": author, "committer": committer}).json()
    assert (c["committer"]["name"], c["committer"]["email"]) == ("Fleet", "fleet@example.com")
    assert c["committer"]["date"].endswith("Z") and c["author"]["date"] == "2008-07-09T04:13:30Z"

    bad = sim.c.post(COMMITS, json={"message": "m", "tree": tree, "author": {"name": "Mona", "email": ""}})
    assert _error(bad, 422) == "Validation Failed"
    assert bad.json()["errors"] == [{"resource": "author", "field": "email", "code": "missing_field"}]
    undated = dict(author, date="2008-07-09T16:13:30")
    assert _error(sim.c.post(COMMITS, json={"message": "m", "tree": tree, "author": undated}), 422) == \
        "Invalid request.\n\n2008-07-09T16:13:30 is not a valid date-time."


def test_a_person_with_push_access_commits_as_themselves_unsigned(sim):
    """A user's commit is authored and committed by that user, unsigned (GitHub signs only for Apps)."""
    tip = _main(sim)
    tree = sim.world.repo("octo/demo").git.commits[tip].tree_sha
    agent = httpx.Client(base_url=sim.url, headers={"Authorization": f"token {sim.user_token('agent-1')}"})
    c = agent.post(COMMITS, json={"message": "m", "tree": tree, "parents": [tip]}).json()
    assert c["author"]["name"] == c["committer"]["name"] == "agent-1"
    assert c["verification"]["reason"] == "unsigned"


def test_a_body_without_tree_fails_schema_validation(sim):
    """``tree`` and ``message`` are required by GitHub's description: 422 before the handler runs."""
    assert sim.c.post(COMMITS, json={"message": "m"}).status_code == 422
    assert sim.violations.pop().operation_id == "git/create-commit"
    assert sim.c.post(COMMITS, json={"tree": UNKNOWN}).status_code == 422
    assert sim.violations.pop().operation_id == "git/create-commit"


def test_needs_write_access_and_a_visible_repository(sim):
    """A reader is refused like on the other git endpoints; a repository outside the installation,
    or one that does not exist, is 404."""
    tip = _main(sim)
    tree = sim.world.repo("octo/demo").git.commits[tip].tree_sha
    reader = httpx.Client(base_url=sim.url, headers={"Authorization": f"token {sim.user_token('reader')}"})
    assert _error(reader.post(COMMITS, json={"message": "m", "tree": tree}), 403) == \
        "Must have push access to repository"
    sim.create_repo("octo/elsewhere")
    assert _error(sim.c.post("/repos/octo/elsewhere/git/commits", json={"message": "m", "tree": tree}), 404) == \
        "Not Found"
    assert _error(sim.c.post("/repos/octo/nope/git/commits", json={"message": "m", "tree": tree}), 404) == "Not Found"


def test_create_commit_through_githubkit(sim):
    """Fleet's client: merge into the group, commit the merge tree on main's tip with
    ``gh.rest.git.create_commit``, fast-forward main with ``update_ref``."""
    gh = GitHub(AppInstallationAuthStrategy(sim.world.app.id, sim.app_private_key_pem, sim.inst),
                base_url=sim.url + "/", http_cache=False)
    sim.push("octo/demo", "feat", {"a.txt": "1"}, author="agent-1")
    gh.rest.git.create_ref("octo", "demo", ref=f"refs/heads/{GROUP}", sha=_main(sim))
    merge = gh.rest.repos.merge("octo", "demo", base=GROUP, head="feat").parsed_data
    tip = _main(sim)
    commit = gh.rest.git.create_commit("octo", "demo", data={
        "message": "Land group 1", "tree": merge.commit.tree.sha, "parents": [tip]}).parsed_data
    assert commit.tree.sha == merge.commit.tree.sha and [p.sha for p in commit.parents] == [tip]
    assert commit.verification.verified is True and commit.author.name == "fleet[bot]"
    ref = gh.rest.git.update_ref("octo", "demo", "heads/main", sha=commit.sha, force=False).parsed_data
    assert ref.object_.sha == commit.sha == _main(sim)
    assert sim.file("octo/demo", "a.txt") == "1"


def test_get_a_commit_answers_what_creating_it_did(sim):
    """GET git/commits/{sha} reads back the same ``git-commit`` (its tree included) for a commit
    made through the API and for a merge; unknown or non-commit shas are 404, a reader may read."""
    _, merge = _group_merge(sim)
    made = sim.c.post(COMMITS, json={"message": "m", "tree": merge["commit"]["tree"]["sha"],
                                     "parents": [_main(sim)]}).json()
    calls = len(sim.requests)
    assert sim.c.get(f"{COMMITS}/{made['sha']}").json() == made
    read = sim.c.get(f"{COMMITS}/{merge['sha']}").json()
    assert read["tree"]["sha"] == merge["commit"]["tree"]["sha"] and len(read["parents"]) == 2
    assert [(r.operation_id, r.status) for r in sim.requests[calls:]] == [("git/get-commit", 200)] * 2
    assert _error(sim.c.get(f"{COMMITS}/{UNKNOWN}"), 404) == "Not Found"
    assert _error(sim.c.get(f"{COMMITS}/{made['tree']['sha']}"), 404) == "Not Found"
    reader = httpx.Client(base_url=sim.url, headers={"Authorization": f"token {sim.user_token('reader')}"})
    assert reader.get(f"{COMMITS}/{made['sha']}").json()["sha"] == made["sha"]
