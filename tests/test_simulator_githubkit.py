"""End to end through githubkit (Fleet's client) against the simulator over HTTP."""
import time

import pytest
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub, TokenAuthStrategy

from app.sandbox.simulator import Simulator
from app.sandbox.simulator.receiver import WebhookReceiver


@pytest.fixture
def env():
    with WebhookReceiver("s3cret") as rx, Simulator(webhook_url=rx.url, validate_responses=True) as sim:
        sim.create_repo("octo/demo")
        inst = sim.install(["octo/demo"])
        sim.add_user("agent-1", "write")
        gh = GitHub(AppInstallationAuthStrategy(sim.world.app.id, sim.app_private_key_pem, inst),
                    base_url=sim.url + "/", http_cache=False)
        yield sim, rx, gh
        assert sim.violations == [] and sim.response_violations == []


def test_full_flow(env):
    sim, rx, gh = env
    agent = GitHub(TokenAuthStrategy(sim.user_token("agent-1")), base_url=sim.url + "/", http_cache=False)
    issue = gh.rest.issues.create("octo", "demo", title="Add feature", body="do it").parsed_data
    gh.rest.issues.add_labels("octo", "demo", issue.number, labels=["fleet:ready"])
    agent.rest.issues.add_assignees("octo", "demo", issue.number, assignees=["agent-1"])
    agent.rest.issues.create_comment("octo", "demo", issue.number, body="claiming")
    sha = sim.push("octo/demo", "agent-1/feature", {"feature.py": "x = 1\n"}, author="agent-1")
    pr = agent.rest.pulls.create("octo", "demo", title="Feature", head="agent-1/feature", base="main",
                                 body=f"Closes #{issue.number}").parsed_data
    run = gh.rest.checks.create("octo", "demo", name="fleet/gate", head_sha=sha, status="in_progress").parsed_data
    gh.rest.checks.update("octo", "demo", run.id, status="completed", conclusion="success")
    sim.ci("octo/demo", sha, "build")
    runs = gh.rest.checks.list_for_ref("octo", "demo", sha).parsed_data
    assert {r.name for r in runs.check_runs} == {"fleet/gate", "build"}
    assert gh.rest.pulls.get("octo", "demo", pr.number).parsed_data.mergeable in (None, True)
    assert gh.rest.pulls.get("octo", "demo", pr.number).parsed_data.mergeable is True
    merged = gh.rest.pulls.merge("octo", "demo", pr.number, sha=sha, merge_method="squash").parsed_data
    assert merged.merged
    closed = gh.rest.issues.get("octo", "demo", issue.number).parsed_data
    assert closed.state == "closed" and [a.login for a in closed.assignees] == ["agent-1"]
    assert sim.wait_idle()
    assert {"issues.opened", "issues.labeled", "issues.assigned", "issue_comment.created", "create", "push",
            "pull_request.opened", "check_run.completed", "check_suite.completed", "pull_request.closed",
            "issues.closed"} <= set(rx.keys())
    content = gh.rest.repos.get_content("octo", "demo", "feature.py").parsed_data
    assert content.path == "feature.py"


def test_app_endpoints_and_deliveries(env):
    sim, rx, _ = env
    app = GitHub(AppAuthStrategy(sim.world.app.id, sim.app_private_key_pem), base_url=sim.url + "/",
                 http_cache=False)
    assert app.rest.apps.get_authenticated().parsed_data.slug == "fleet"
    [inst] = app.rest.apps.list_installations().parsed_data
    assert inst.account.login == "octo"
    sim.wait_idle()
    deliveries = app.rest.apps.list_webhook_deliveries(per_page=10).parsed_data
    assert deliveries[0].status == "OK" and deliveries[0].event == "installation"
    app.rest.apps.redeliver_webhook_delivery(deliveries[0].id)
    sim.wait_idle()
    assert [x.guid for x in rx.received] == [deliveries[0].guid] * 2


def test_githubkit_retries_server_errors_and_rate_limits(env):
    sim, _, gh = env
    gh.rest.repos.get("octo", "demo")  # warm the token
    sim.faults.fail_next(1, status=502, path_contains="/repos/octo/demo")
    assert gh.rest.repos.get("octo", "demo").parsed_data.full_name == "octo/demo"
    sim.faults.rate_limit_next(1, retry_after=1)
    start = time.monotonic()
    assert gh.rest.repos.get("octo", "demo").parsed_data.full_name == "octo/demo"
    assert time.monotonic() - start >= 1
    statuses = [q.status for q in sim.calls("GET", "/repos/octo/demo")]
    assert statuses == [200, 502, 200, 403, 200]


def test_graphql_pin(env):
    sim, rx, gh = env
    issue = gh.rest.issues.create("octo", "demo", title="pin").parsed_data
    data = gh.graphql("mutation($id: ID!) { pinIssue(input: {issueId: $id}) { issue { id } } }",
                      {"id": issue.node_id})
    assert data["pinIssue"]["issue"]["id"] == issue.node_id
