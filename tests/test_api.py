"""The read API: shapes, filters, pagination, errors and access rules, over the seeded state."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from app.wsgi import create_app
from tests.seed import seed

TOKEN = "test-api-token-0123456789"
REMOTE = {"REMOTE_ADDR": "203.0.113.9"}


@pytest.fixture
def seeded(db_conn, settings):
    """The seeded state (see tests/seed.py)."""
    seed(db_conn)


@pytest.fixture
def token_client(settings, seeded):
    """A client for an app that has FLEET_API_TOKEN configured."""
    app = create_app(replace(settings, api_token=TOKEN, cors_origins=("https://ops.example",)))
    yield app.test_client()
    app.config["FLEET_POOL"].close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def refs(items) -> list[str]:
    return [f"{t['repo']}#{t['number']}" for t in items]


# --- content -------------------------------------------------------------------------------------


def test_repos_lists_public_repositories_to_loopback_without_token(client, seeded):
    """Without a token, loopback callers are unauthenticated: private repositories are left out."""
    body = client.get("/api/repos").get_json()
    assert [r["full_name"] for r in body["repos"]] == ["octo/widgets"]
    widgets = body["repos"][0]
    assert widgets == {
        "full_name": "octo/widgets", "private": False, "default_branch": "main", "installation_id": 1,
        "account": "octo", "config": "default", "config_error": None, "tasks_total": 7, "tasks_done": 1,
        "synced_at": None,
    }


def test_tasks_carry_the_state_readiness_computes(client, seeded):
    """States follow app/tasks/readiness.task_state: done, ready, blocked, claimed, review, queued."""
    items = client.get("/api/tasks").get_json()["items"]
    assert {t["number"]: t["state"] for t in items} == {
        1: "done", 2: "ready", 3: "blocked", 4: "claimed", 5: "review", 6: "queued", 7: "blocked",
    }
    parser = next(t for t in items if t["number"] == 2)
    assert parser["epic"] == {"number": 1, "title": "Foundation"}
    assert parser["url"].endswith("/octo/widgets/issues/2")
    assert parser["updated_at"].endswith("Z") and "T" in parser["updated_at"]
    assert next(t for t in items if t["number"] == 3)["blocked_by"] == ["#2"]


def test_a_public_task_never_resolves_a_private_blocker(client, token_client, db_conn):
    """A public task's reference into a private repository stays unknown, named as its public body
    writes it, to every caller: its state does not follow the private issue's (no oracle)."""
    for caller, headers in ((client, {}), (token_client, bearer())):
        task = caller.get("/api/tasks/octo/widgets/7", headers=headers).get_json()
        assert task["state"] == "blocked" and task["blocked_by"] == ["octo/secret#1"]
        assert task["dependencies"][0]["title"] is None and task["dependencies"][0]["issue_state"] == "unknown"
    db_conn.execute("UPDATE tasks SET state = 'closed' WHERE repo_id = 102 AND number = 1")
    for caller, headers in ((client, {}), (token_client, bearer())):
        assert caller.get("/api/tasks/octo/widgets/7", headers=headers).get_json()["state"] == "blocked"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=ready", ["octo/widgets#2"]),
        ("state=done", ["octo/widgets#1"]),
        ("epic=Foundation", ["octo/widgets#1", "octo/widgets#2", "octo/widgets#3"]),
        ("epic=foundation&state=blocked", ["octo/widgets#3"]),
        ("epic=1&state=ready", ["octo/widgets#2"]),
        ("holder=bot-a", ["octo/widgets#4"]),
        ("label=AREA:PARSER", ["octo/widgets#2"]),
        ("repo=OCTO/Widgets&state=review", ["octo/widgets#5"]),
        ("holder=nobody", []),
    ],
)
def test_task_filters(client, seeded, query, expected):
    assert refs(client.get(f"/api/tasks?{query}").get_json()["items"]) == expected


def test_tasks_paginate_with_a_next_link(client, seeded):
    """``next`` keeps the other parameters and is null on the last page."""
    first = client.get("/api/tasks?per_page=3&state=blocked").get_json()
    assert first["total"] == 2 and first["next"] is None
    page1 = client.get("/api/tasks?per_page=3").get_json()
    assert (page1["page"], page1["per_page"], page1["total"], len(page1["items"])) == (1, 3, 7, 3)
    assert page1["next"].endswith("/api/tasks?per_page=3&page=2")
    page3 = client.get(page1["next"].replace("page=2", "page=3")).get_json()
    assert refs(page3["items"]) == ["octo/widgets#7"] and page3["next"] is None
    assert client.get("/api/tasks?page=9").get_json()["items"] == []


def test_ready_tasks_in_hand_out_order(client, token_client):
    """Authenticated callers also see the private repository's ready work."""
    assert refs(client.get("/api/tasks/ready").get_json()["items"]) == ["octo/widgets#2"]
    body = token_client.get("/api/tasks/ready", headers=bearer()).get_json()
    assert refs(body["items"]) == ["octo/widgets#2"]  # secret#1 is claimed by ghost


def test_task_detail_has_dependencies_claims_branch_prs_checks_evidence(client, seeded):
    detail = client.get("/api/tasks/octo/widgets/4").get_json()
    assert detail["state"] == "claimed" and detail["holder"] == "bot-a"
    assert [c["agent"] for c in detail["claims"]] == ["bot-a"] and detail["claims"][0]["open"] is True
    assert detail["branches"][0]["name"] == "fleet/4-claimed"
    assert [(e["action"], e["target"], e["outcome"]) for e in detail["evidence"]] == [("comment", "#4", "ok")]

    reviewed = client.get("/api/tasks/octo/widgets/5").get_json()
    (pr,) = reviewed["pull_requests"]
    assert pr["number"] == 10 and pr["url"].endswith("/octo/widgets/pull/10")
    assert [(c["name"], c["conclusion"]) for c in pr["checks"]] == [("ci", "success")]
    assert [s["context"] for s in pr["statuses"]] == ["lint"]
    assert [r["state"] for r in pr["reviews"]] == ["APPROVED"]

    blocked = client.get("/api/tasks/octo/widgets/3").get_json()
    assert blocked["dependencies"] == [{"ref": "#2", "repo": "octo/widgets", "number": 2, "title": "Parser",
                                        "issue_state": "open", "state": "ready", "source": "body"}]
    parser = client.get("/api/tasks/octo/widgets/2").get_json()
    assert [d["ref"] for d in parser["dependents"]] == ["#3"]
    assert [(c["agent"], c["release_reason"]) for c in parser["claims"]] == [("bot-b", "expired")]


def test_agents_show_claims_and_hide_private_only_agents(client, token_client):
    public = {a["id"]: a for a in client.get("/api/agents").get_json()["agents"]}
    assert set(public) == {"bot-a", "bot-b"}
    assert [c["number"] for c in public["bot-a"]["open_claims"]] == [4]
    assert public["bot-a"]["last_activity_at"].endswith("Z")
    assert public["bot-b"]["claims_completed"] == 1
    everyone = token_client.get("/api/agents", headers=bearer()).get_json()["agents"]
    assert {a["id"] for a in everyone} == {"bot-a", "bot-b", "ghost"}


def test_progress_summary_uses_snapshots_for_velocity_and_eta(client, seeded):
    body = client.get("/api/progress/summary").get_json()
    assert body["totals"]["hours_total"] == 21 and body["totals"]["hours_done"] == 3
    assert body["totals"]["by_state"] == {"ready": 1, "blocked": 2, "claimed": 1, "review": 1, "queued": 1, "done": 1}
    (widgets,) = body["repos"]
    # 3 h done over the two days between the first and last snapshot.
    assert widgets["velocity"]["ok"] is True and widgets["velocity"]["hours_per_day"] == 1.5
    assert widgets["hours_remaining"] == 18 and widgets["days_left"] == 12
    assert widgets["eta"].endswith("Z")
    (epic,) = widgets["epics"]
    assert (epic["title"], epic["hours_total"], epic["hours_done"]) == ("Foundation", 16, 3)
    assert epic["velocity"]["hours_per_day"] == 1.5  # from the epic's own snapshots ("m1")
    assert len(widgets["burndown"]) == 4 and widgets["burndown"][-1]["hours_remaining"] == 18


def test_progress_agents(client, seeded):
    agents = {a["agent"]: a for a in client.get("/api/progress/agents").get_json()["agents"]}
    assert agents["bot-b"]["tasks_done"] == 1 and agents["bot-b"]["hours_done"] == 3
    assert agents["bot-a"]["hours_in_progress"] == 2 and agents["bot-a"]["open_claims"] == 1
    assert agents["bot-b"]["velocity"]["ok"] is True


def test_merge_queue_in_merge_order(client, token_client):
    """The in-flight entry first, then waiting entries; private queues only when authenticated."""
    (queue,) = client.get("/api/merge-queue").get_json()["queues"]
    assert (queue["repo"], queue["base"], queue["in_flight"]) == ("octo/widgets", "main", 11)
    assert [(e["position"], e["pr"], e["state"]) for e in queue["entries"]] == [(1, 11, "waiting_checks"),
                                                                                (2, 12, "queued")]
    assert queue["entries"][0]["tasks"] == [6]
    assert client.get("/api/merge-queue?base=develop").get_json() == {"queues": []}
    assert len(token_client.get("/api/merge-queue", headers=bearer()).get_json()["queues"]) == 2


def test_evidence_feed_merges_deliveries_and_actions(client, token_client):
    body = client.get("/api/evidence").get_json()
    assert [(i["kind"], i["repo"]) for i in body["items"]] == [("action", "octo/widgets"), ("delivery", "octo/widgets")]
    assert client.get("/api/evidence?kind=delivery").get_json()["items"][0]["id"] == "d-widgets-1"
    assert client.get("/api/evidence?per_page=1").get_json()["next"].endswith("page=2")
    everything = token_client.get("/api/evidence?repo=octo/secret", headers=bearer()).get_json()
    assert {(i["kind"], i["outcome"]) for i in everything["items"]} == {("action", "ok"), ("delivery", "failed")}


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/api/tasks?bogus=1", 400, "unknown_parameter"),
        ("/api/tasks?state=sleeping", 400, "invalid_parameter"),
        ("/api/tasks?repo=not-a-repo", 400, "invalid_parameter"),
        ("/api/tasks?page=0", 400, "invalid_parameter"),
        ("/api/tasks?page=abc", 400, "invalid_parameter"),
        ("/api/tasks?per_page=101", 400, "invalid_parameter"),
        ("/api/tasks?state=ready&state=done", 400, "repeated_parameter"),
        ("/api/tasks?label=", 400, "invalid_parameter"),
        ("/api/tasks?epic=%00x", 400, "invalid_parameter"),
        ("/api/tasks/ready?state=ready", 400, "unknown_parameter"),
        ("/api/repos?x=1", 400, "unknown_parameter"),
        ("/api/evidence?kind=other", 400, "invalid_parameter"),
        ("/api/tasks?repo=octo/unknown", 404, "not_found"),
        ("/api/tasks?repo=octo/secret", 404, "not_found"),
        ("/api/tasks/octo/widgets/999", 404, "not_found"),
        ("/api/tasks/octo/secret/1", 404, "not_found"),
        ("/api/tasks/octo/widgets/99999999999", 404, "not_found"),
        ("/api/tasks/octo/widgets/abc", 404, "not_found"),
        ("/api/progress/summary?repo=octo/none", 404, "not_found"),
        ("/api/merge-queue?repo=octo/none", 404, "not_found"),
        ("/api/nothing-here", 404, "not_found"),
    ],
)
def test_bad_input_gets_a_clear_json_4xx(client, seeded, path, status, code):
    response = client.get(path)
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["error"] == code and body["message"]


def test_writes_are_not_allowed(client, seeded):
    response = client.post("/api/tasks")
    assert response.status_code == 405 and response.get_json()["error"] == "method_not_allowed"


# --- access --------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/repos", "/api/tasks", "/api/stream", "/dashboard", "/metrics", "/setup"])
def test_without_a_token_only_loopback_is_served(client, seeded, path):
    """No FLEET_API_TOKEN: a non-loopback client, or one behind a proxy, gets 403."""
    assert client.get(path, environ_base=REMOTE).status_code == 403
    assert client.get(path, headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403


ALL_GUARDED = ["/api/repos", "/api/tasks", "/api/stream", "/dashboard", "/dashboard/panels", "/metrics", "/setup"]


@pytest.mark.parametrize("path", ALL_GUARDED)
def test_dns_rebinding_host_from_loopback_is_refused(client, seeded, path):
    """A page on evil.example rebound to 127.0.0.1 reaches the loopback peer address, but its
    requests name evil.example in Host: refused without a token."""
    response = client.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 403
    assert "Host header" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ALL_GUARDED)
@pytest.mark.parametrize("header", ["X-Forwarded-For", "Forwarded", "X-Forwarded-Host", "X-Real-IP", "Via"])
def test_a_proxy_header_from_loopback_is_refused(client, seeded, path, header):
    """A proxy on the same host makes every client look local; its headers are never trusted."""
    response = client.get(path, headers={header: "127.0.0.1"})
    assert response.status_code == 403
    assert "proxy" in response.get_data(as_text=True)


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1", "127.0.0.1:9", "[::1]", "[::1]:8000",
                                  "LOCALHOST:8000"])
def test_plain_loopback_with_a_loopback_host_is_served(client, seeded, host):
    assert client.get("/api/repos", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example", "127.0.0.1.nip.io", "localhost:80x",
                                  "[::1]x", "127.0.0.2", "0.0.0.0:8000", ""])
def test_a_host_that_is_not_a_loopback_name_is_refused(client, seeded, host):
    assert client.get("/api/repos", headers={"Host": host}).status_code == 403


def test_with_a_token_any_host_and_proxy_is_served(token_client):
    """Behind a proxy FLEET_API_TOKEN is the gate: Host and proxy headers no longer matter."""
    headers = {**bearer(), "Host": "fleet.example.com", "X-Forwarded-For": "203.0.113.9"}
    assert token_client.get("/api/repos", headers=headers, environ_base=REMOTE).status_code == 200
    assert token_client.get("/api/repos", headers={"Host": "fleet.example.com"}).status_code == 401


def test_every_blueprint_but_webhooks_is_guarded(settings):
    """Every route except webhooks (signed) and the health probes answers 403 to a rebinding Host."""
    app = create_app(settings)
    try:
        client = app.test_client()
        open_routes = {"/webhooks/github", "/healthz", "/readyz", "/static/<path:filename>"}
        for rule in app.url_map.iter_rules():
            if rule.rule in open_routes or "GET" not in rule.methods:
                continue
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", "x").replace(f"<int:{arg}>", "1").replace(f"<path:{arg}>", "x/y")
            assert client.get(path, headers={"Host": "evil.example"}).status_code == 403, rule.rule
    finally:
        app.config["FLEET_POOL"].close()


def test_ipv6_loopback_is_loopback(client, seeded):
    assert client.get("/api/repos", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                                     {"Authorization": "Bearer"}])
def test_with_a_token_it_is_required_even_on_loopback(token_client, headers):
    response = token_client.get("/api/tasks", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"] == "unauthorized"


def test_a_valid_token_is_accepted_from_anywhere_and_sees_private_data(token_client):
    response = token_client.get("/api/repos", headers=bearer(), environ_base=REMOTE)
    assert response.status_code == 200
    assert [r["full_name"] for r in response.get_json()["repos"]] == ["octo/secret", "octo/widgets"]
    assert token_client.get("/api/tasks/octo/secret/1", headers=bearer()).get_json()["title"] == "Secret plan"


def test_security_headers_and_cors(token_client, client, seeded):
    """Strict CSP everywhere; CORS only for allow-listed origins."""
    response = client.get("/api/repos", headers={"Origin": "https://evil.example"})
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Access-Control-Allow-Origin" not in response.headers
    allowed = token_client.get("/api/repos", headers={**bearer(), "Origin": "https://ops.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ops.example"
    assert "Origin" in allowed.headers["Vary"]
    refused = token_client.get("/api/repos", headers={**bearer(), "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    preflight = token_client.options("/api/repos", headers={"Origin": "https://ops.example",
                                                            "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Headers"] == "Authorization"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_under_gunicorn_no_server_banner_and_the_stream_flows(settings, seeded):
    """`fleet web` (gunicorn, gthread): no Server header, security headers, SSE events arrive (private
    ones only to authenticated clients), and SIGTERM is not held up by an open stream."""
    from app.events_stream import publish

    port = _free_port()
    env = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url,
           "FLEET_QUEUE": settings.queue_name, "GITHUB_WEBHOOK_SECRET": "x", "FLEET_LOG_FORMAT": "console"}
    env.pop("FLEET_API_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "web", "--bind", f"127.0.0.1:{port}",
                             "--workers", "1", "--threads", "4"], env=env, cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"{url}/api/repos", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        assert response.status_code == 200
        assert "server" not in response.headers
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        with httpx.stream("GET", f"{url}/api/stream", timeout=10) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines) == "retry: 3000"
            publish("task.updated", "octo/widgets", {"number": 2})
            publish("task.updated", "octo/secret", {"number": 1})  # private: not for this loopback client
            publish("queue.merged", None, {"pr": 11})
            data = [line for line in _take(lines, 2, prefix="data: ")]
        assert '"kind":"task.updated","repo":"octo/widgets"' in data[0]
        assert '"kind":"queue.merged"' in data[1]
    finally:
        # A graceful stop must not wait for the dropped stream's next heartbeat (15 s).
        proc.terminate()
        stopping = time.monotonic()
        proc.wait(timeout=25)
    assert time.monotonic() - stopping < 10, "SIGTERM waited for the open event stream"


def _take(lines, count: int, prefix: str):
    got = 0
    for line in lines:
        if line.startswith(prefix):
            yield line
            got += 1
            if got == count:
                return


def test_dashboard_token_login_sets_a_cookie_that_unlocks_private_data(token_client):
    """``/dashboard?token=`` swaps the token for an HttpOnly cookie (holding a digest, not the token)."""
    assert token_client.get("/dashboard").status_code == 401
    assert token_client.get("/dashboard?token=wrong").status_code == 401
    login = token_client.get(f"/dashboard?token={TOKEN}")
    assert login.status_code == 303 and login.headers["Location"] == "/dashboard"
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN not in cookie
    page = token_client.get("/dashboard")
    assert page.status_code == 200 and "octo/secret" in page.get_data(as_text=True)
    assert token_client.get("/api/repos").status_code == 200  # the cookie works for the API too
