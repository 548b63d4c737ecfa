"""The simulator's GitHub REST surface over real HTTP: auth, shapes, pagination, rules."""
import time

import httpx
import jwt
import pytest

from tests.simulator_demo import demo_simulator

REPO = "/repos/octo/demo"


@pytest.fixture
def sim():
    with demo_simulator(readers=("reader",)) as s:
        yield s


def client(sim, token=None):
    """An httpx client authenticated with ``token`` (default: a fresh installation token)."""
    token = token or sim.installation_token(sim.inst)
    return httpx.Client(base_url=sim.url, headers={"Authorization": f"token {token}"}, timeout=10)


def test_app_jwt_and_installation_token(sim):
    app = httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {sim.app_jwt()}"})
    assert app.get("/app").json()["slug"] == "fleet"
    resp = app.post(f"/app/installations/{sim.inst}/access_tokens")
    assert resp.status_code == 201
    body = resp.json()
    assert body["expires_at"].endswith("Z") and body["token"].startswith("ghs_")
    repos = client(sim, body["token"]).get("/installation/repositories").json()
    assert [r["full_name"] for r in repos["repositories"]] == ["octo/demo"]
    assert sim.requests[-1].identity == f"installation:{sim.inst}"


@pytest.mark.parametrize("auth", [None, "Bearer nonsense", "token ghs_unknown"])
def test_bad_credentials_on_app_endpoints(sim, auth):
    headers = {"Authorization": auth} if auth else {}
    resp = httpx.get(f"{sim.url}/app/installations", headers=headers)
    assert resp.status_code == 401
    assert set(resp.json()) >= {"message", "documentation_url"}
    assert resp.headers["x-ratelimit-limit"] == "60"


def test_jwt_checks(sim):
    now = int(time.time())
    pem = sim.app_private_key_pem
    too_long = jwt.encode({"iat": now - 60, "exp": now + 3600, "iss": "1"}, pem, algorithm="RS256")
    wrong_iss = jwt.encode({"iat": now - 60, "exp": now + 500, "iss": "999"}, pem, algorithm="RS256")
    expired = jwt.encode({"iat": now - 1200, "exp": now - 600, "iss": "1"}, pem, algorithm="RS256")
    for token in (too_long, wrong_iss, expired):
        assert httpx.get(f"{sim.url}/app", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    # A JWT is not accepted on repository endpoints.
    assert httpx.get(f"{sim.url}{REPO}", headers={"Authorization": f"Bearer {sim.app_jwt()}"}).status_code == 401


def test_expired_installation_token(sim):
    token = sim.installation_token(sim.inst)
    sim.world.tokens[token].expires_at = time.time() - 1
    resp = client(sim, token).get(REPO)
    assert resp.status_code == 401 and resp.json()["message"] == "Bad credentials"


def test_rate_limit_headers_decrement_per_token(sim):
    c = client(sim)
    first = c.get(REPO).headers
    second = c.get(REPO).headers
    assert first["x-ratelimit-limit"] == "5000" and first["x-ratelimit-resource"] == "core"
    assert int(second["x-ratelimit-remaining"]) == int(first["x-ratelimit-remaining"]) - 1
    assert int(second["x-ratelimit-used"]) == 2
    other = client(sim).get(REPO).headers  # a new token of the same installation shares the budget
    assert other["x-ratelimit-used"] == "3"


def test_pagination_link_headers(sim):
    c = client(sim)
    for n in range(7):
        sim.open_issue("octo/demo", f"issue {n}")
    resp = c.get(f"{REPO}/issues", params={"per_page": 3})
    assert [i["number"] for i in resp.json()] == [7, 6, 5]
    links = resp.links
    assert links["next"]["url"].endswith("page=2") and "per_page=3" in links["next"]["url"]
    assert "page=3" in links["last"]["url"]
    last = c.get(links["last"]["url"])
    assert [i["number"] for i in last.json()] == [1]
    assert "prev" in last.links and "next" not in last.links
    assert len(c.get(f"{REPO}/issues", params={"per_page": 500}).json()) == 7  # capped at 100, not an error


def test_issue_filters_and_prs_in_issue_list(sim):
    c = client(sim)
    sim.open_issue("octo/demo", "labelled", labels=["bug"], assignees=["agent-1"])
    sim.open_issue("octo/demo", "plain")
    sim.push("octo/demo", "feat", {"f.txt": "x"})
    sim.open_pr("octo/demo", "feat", "a PR")
    items = c.get(f"{REPO}/issues").json()
    assert [i["number"] for i in items] == [3, 2, 1]
    assert "pull_request" in items[0] and "pull_request" not in items[1]
    assert [i["number"] for i in c.get(f"{REPO}/issues", params={"labels": "bug"}).json()] == [1]
    assert [i["number"] for i in c.get(f"{REPO}/issues", params={"assignee": "agent-1"}).json()] == [1]
    unassigned = c.get(f"{REPO}/issues", params={"assignee": "none", "direction": "asc"}).json()
    assert [i["number"] for i in unassigned] == [2, 3]
    sim.update_issue("octo/demo", 2, state="closed")
    assert [i["number"] for i in c.get(f"{REPO}/issues", params={"state": "closed"}).json()] == [2]
    closed = c.get(f"{REPO}/issues/2").json()
    assert closed["state_reason"] == "completed" and closed["closed_by"]["login"] == "octo"


def test_unassignable_users_are_silently_ignored(sim):
    c = client(sim)
    number = sim.open_issue("octo/demo", "x")
    resp = c.post(f"{REPO}/issues/{number}/assignees", json={"assignees": ["agent-1", "reader", "ghost"]})
    assert resp.status_code == 201
    assert [u["login"] for u in resp.json()["assignees"]] == ["agent-1"]
    assert c.get(f"{REPO}/assignees/agent-1").status_code == 204
    assert c.get(f"{REPO}/assignees/reader").status_code == 404
    # A prior commenter on the issue becomes assignable to it.
    sim.comment("octo/demo", number, "I'll take it", author="reader")
    resp = c.post(f"{REPO}/issues/{number}/assignees", json={"assignees": ["reader"]})
    assert [u["login"] for u in resp.json()["assignees"]] == ["agent-1", "reader"]


def test_max_ten_assignees(sim):
    for n in range(12):
        sim.add_user(f"dev{n}", "write")
    c = client(sim)
    number = sim.open_issue("octo/demo", "x")
    resp = c.post(f"{REPO}/issues/{number}/assignees", json={"assignees": [f"dev{n}" for n in range(12)]})
    assert len(resp.json()["assignees"]) == 10


def test_user_token_acts_as_user(sim):
    c = client(sim, sim.user_token("agent-1"))
    number = sim.open_issue("octo/demo", "x")
    resp = c.post(f"{REPO}/issues/{number}/assignees", json={"assignees": ["agent-1"]})
    assert resp.json()["assignees"][0]["login"] == "agent-1"
    comment = c.post(f"{REPO}/issues/{number}/comments", json={"body": "on it"}).json()
    assert comment["user"]["login"] == "agent-1"
    # A read-only user can comment but not label.
    reader = client(sim, sim.user_token("reader"))
    assert reader.post(f"{REPO}/issues/{number}/comments", json={"body": "hi"}).status_code == 201
    assert reader.post(f"{REPO}/issues/{number}/labels", json={"labels": ["bug"]}).status_code == 403


def test_labels(sim):
    c = client(sim)
    assert c.post(f"{REPO}/labels", json={"name": "fleet:ready", "color": "00ff00"}).status_code == 201
    dup = c.post(f"{REPO}/labels", json={"name": "FLEET:READY"})
    assert dup.status_code == 422 and dup.json()["errors"][0]["code"] == "already_exists"
    assert c.get(f"{REPO}/labels/fleet:ready").json()["color"] == "00ff00"
    assert c.patch(f"{REPO}/labels/fleet:ready", json={"new_name": "ready"}).json()["name"] == "ready"
    number = sim.open_issue("octo/demo", "x")
    assert [x["name"] for x in c.post(f"{REPO}/issues/{number}/labels", json={"labels": ["ready", "new-one"]}).json()] \
        == ["ready", "new-one"]
    assert [x["name"] for x in c.put(f"{REPO}/issues/{number}/labels", json={"labels": ["bug"]}).json()] == ["bug"]
    assert c.delete(f"{REPO}/issues/{number}/labels/ready").status_code == 404
    assert c.delete(f"{REPO}/issues/{number}/labels/bug").json() == []


def test_milestones_comments_reactions(sim):
    c = client(sim)
    m = c.post(f"{REPO}/milestones", json={"title": "Epic", "description": "d"}).json()
    number = c.post(f"{REPO}/issues", json={"title": "t", "milestone": m["number"]}).json()["number"]
    assert c.get(f"{REPO}/milestones/{m['number']}").json()["open_issues"] == 1
    assert c.patch(f"{REPO}/milestones/{m['number']}", json={"state": "closed"}).json()["state"] == "closed"
    assert c.get(f"{REPO}/milestones", params={"state": "closed"}).json()[0]["title"] == "Epic"
    comment = c.post(f"{REPO}/issues/{number}/comments", json={"body": "one"}).json()
    assert c.patch(f"{REPO}/issues/comments/{comment['id']}", json={"body": "two"}).json()["body"] == "two"
    assert c.get(f"{REPO}/issues/comments/{comment['id']}").json()["body"] == "two"
    first = c.post(f"{REPO}/issues/comments/{comment['id']}/reactions", json={"content": "eyes"})
    again = c.post(f"{REPO}/issues/comments/{comment['id']}/reactions", json={"content": "eyes"})
    assert (first.status_code, again.status_code) == (201, 200) and first.json()["id"] == again.json()["id"]
    assert c.post(f"{REPO}/issues/{number}/reactions", json={"content": "rocket"}).status_code == 201
    assert c.get(f"{REPO}/issues/{number}").json()["reactions"]["rocket"] == 1
    assert c.delete(f"{REPO}/issues/comments/{comment['id']}").status_code == 204
    assert c.get(f"{REPO}/issues/{number}/comments").json() == []


def test_contents_branches_refs_permissions(sim):
    c = client(sim)
    sim.set_file("octo/demo", ".github/fleet.yml", "max_agents: 3\n")
    f = c.get(f"{REPO}/contents/.github/fleet.yml").json()
    import base64
    assert base64.b64decode(f["content"]).decode() == "max_agents: 3\n" and f["encoding"] == "base64"
    assert c.get(f"{REPO}/contents/missing.txt").status_code == 404
    sim.push("octo/demo", "feature/x", {"y": "1"})
    assert c.get(f"{REPO}/contents/y", params={"ref": "feature/x"}).status_code == 200
    assert c.get(f"{REPO}/contents/y").status_code == 404
    assert [b["name"] for b in c.get(f"{REPO}/branches").json()] == ["feature/x", "main"]
    assert c.get(f"{REPO}/branches/feature/x").json()["commit"]["sha"] == sim.branch_sha("octo/demo", "feature/x")
    assert c.get(f"{REPO}/git/ref/heads/main").json()["object"]["sha"] == sim.branch_sha("octo/demo", "main")
    perms = {u: c.get(f"{REPO}/collaborators/{u}/permission").json()["permission"]
             for u in ("octo", "agent-1", "reader")}
    assert perms == {"octo": "admin", "agent-1": "write", "reader": "read"}


def test_dependencies_and_sub_issues(sim):
    c = client(sim)
    a, b, kid = (sim.open_issue("octo/demo", t) for t in ("a", "b", "kid"))
    sim.add_blocked_by("octo/demo", b, a)
    sim.add_sub_issue("octo/demo", a, kid)
    assert [i["number"] for i in c.get(f"{REPO}/issues/{b}/dependencies/blocked_by").json()] == [a]
    assert [i["number"] for i in c.get(f"{REPO}/issues/{a}/sub_issues").json()] == [kid]


def test_graphql_pin_issue_and_unknown_query(sim):
    c = client(sim)
    issue = c.post(f"{REPO}/issues", json={"title": "pin me"}).json()
    q = "mutation($input: PinIssueInput!) { pinIssue(input: $input) { issue { id } } }"
    resp = c.post("/graphql", json={"query": q, "variables": {"input": {"issueId": issue["node_id"]}}}).json()
    assert resp["data"]["pinIssue"]["issue"]["id"] == issue["node_id"]
    assert sim.world.repo("octo/demo").pinned == [issue["number"]]
    unknown = c.post("/graphql", json={"query": "{ viewer { login } }"}).json()
    assert unknown["errors"] and unknown.get("data") is None


def test_invalid_request_is_a_recorded_violation(sim):
    c = client(sim)
    resp = c.post(f"{REPO}/issues", json={"body": "no title"})
    assert resp.status_code == 422
    assert len(sim.violations) == 1
    v = sim.violations[0]
    assert v.method == "POST" and v.path == f"{REPO}/issues" and v.errors
    assert c.get("/repos/octo/demo/not-an-endpoint").status_code == 404
    assert len(sim.violations) == 2
    assert sim.world.repo("octo/demo").issues == {}  # the invalid request changed nothing


def test_requests_are_recorded(sim):
    c = client(sim)
    number = sim.open_issue("octo/demo", "x")
    for title in ("a", "b", "c"):
        c.patch(f"{REPO}/issues/{number}", json={"title": title})
    edits = sim.calls("PATCH", f"/issues/{number}")
    assert len(edits) == 3 and all(q.status == 200 for q in edits)
    assert edits[0].identity.startswith("installation:") and edits[0].operation_id == "issues/update"


def test_body_too_long(sim):
    resp = client(sim).post(f"{REPO}/issues", json={"title": "t", "body": "x" * 65537})
    assert resp.status_code == 422


def test_private_repo_hidden_from_outsiders(sim):
    sim.create_repo("octo/secret", private=True)
    outsider = client(sim, sim.user_token("stranger"))
    assert outsider.get("/repos/octo/secret").status_code == 404
    assert client(sim).get("/repos/octo/secret").status_code == 404  # not in the installation
    assert outsider.get(REPO).status_code == 200  # public repos are readable


def test_conditional_requests_get_304_and_do_not_count(sim):
    c = client(sim)
    first = c.get(REPO)
    etag = first.headers["etag"]
    again = c.get(REPO, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["x-ratelimit-used"] == first.headers["x-ratelimit-used"]
    sim.open_issue("octo/demo", "changes open_issues_count")
    assert c.get(REPO, headers={"If-None-Match": etag}).status_code == 200


def test_secondary_limit_on_writes(sim):
    c = client(sim)
    number = sim.open_issue("octo/demo", "x")
    sim.enforce_secondary_limits = True
    codes = [c.post(f"{REPO}/issues/{number}/comments", json={"body": str(k)}).status_code for k in range(81)]
    assert codes[:80] == [201] * 80 and codes[80] == 403
    assert len(sim.secondary_limit_hits) == 1


def test_concurrent_requests_are_consistent(sim):
    from concurrent.futures import ThreadPoolExecutor
    number = sim.open_issue("octo/demo", "x")
    token = sim.installation_token(sim.inst)

    def post(k):
        with client(sim, token) as c:
            return c.post(f"{REPO}/issues/{number}/comments", json={"body": str(k)}).json()["id"]
    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(post, range(24)))
    assert len(set(ids)) == 24 and sim.issue("octo/demo", number)["comments"] == 24
