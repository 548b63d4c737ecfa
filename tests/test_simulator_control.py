"""The /_sim control endpoints (used by the demo and by processes without the Python API)."""
import httpx
import pytest

from app.sandbox.simulator import Simulator
from app.sandbox.simulator.receiver import WebhookReceiver


@pytest.fixture
def env():
    with WebhookReceiver("s3cret") as rx, Simulator(validate_responses=True) as sim:
        yield sim, rx, httpx.Client(base_url=sim.url + "/_sim", timeout=10)


def test_control_flow(env):
    sim, rx, ctl = env
    assert ctl.put("/webhook_url", json={"url": rx.url}).json()["url"] == rx.url
    assert ctl.post("/repos", json={"full_name": "octo/demo"}).json()["full_name"] == "octo/demo"
    inst = ctl.post("/installations", json={"repos": ["octo/demo"]}).json()["id"]
    token = ctl.post("/users", json={"login": "agent-1", "permission": "write"}).json()["token"]
    n = ctl.post("/repos/octo/demo/issues", json={"title": "from the UI"}).json()["number"]
    gh = httpx.Client(base_url=sim.url, headers={"Authorization": f"token {token}"})
    assert gh.post(f"/repos/octo/demo/issues/{n}/assignees", json={"assignees": ["agent-1"]}).status_code == 201
    sha = ctl.post("/repos/octo/demo/push", json={"branch": "feat", "files": {"a": "1"},
                                                   "author": "agent-1"}).json()["sha"]
    pr = ctl.post("/repos/octo/demo/pulls", json={"head": "feat", "title": "PR", "author": "agent-1"}).json()
    assert ctl.post("/repos/octo/demo/ci", json={"sha": sha, "name": "build"}).status_code == 201
    status = {"sha": sha, "context": "c", "state": "success"}
    assert ctl.post("/repos/octo/demo/statuses", json=status).status_code == 201
    assert ctl.post(f"/repos/octo/demo/pulls/{pr['number']}/reviews", json={"reviewer": "octo"}).status_code == 201
    assert ctl.post(f"/repos/octo/demo/pulls/{pr['number']}/merge", json={"method": "squash"}).status_code == 201
    assert ctl.post("/wait_idle", json={"timeout": 5}).json()["idle"] is True
    info = ctl.get("/").json()
    assert info["repos"] == ["octo/demo"] and info["installations"] == [inst]
    assert all(d["status"] == "OK" for d in ctl.get("/deliveries").json())
    assert "pull_request.closed" in rx.keys()
    assert ctl.get("/violations").json() == {"requests": [], "responses": []}
    assert [q["status"] for q in ctl.get("/requests").json()] == [201]


def test_control_errors_and_faults(env):
    sim, _, ctl = env
    assert ctl.post("/repos", json={}).status_code == 422
    assert ctl.post("/repos/nobody/none/push", json={"branch": "x", "files": {}}).status_code == 404
    assert ctl.post("/faults", json={"kind": "fail", "n": 1, "status": 503}).status_code == 204
    assert ctl.post("/faults", json={"kind": "nope"}).status_code == 422
    ctl.post("/repos", json={"full_name": "octo/demo"})
    assert httpx.get(f"{sim.url}/repos/octo/demo").status_code == 503
    assert httpx.get(f"{sim.url}/repos/octo/demo").status_code == 200
    ctl.post("/faults", json={"kind": "fail", "n": 5})
    assert ctl.delete("/faults").status_code == 204
    assert httpx.get(f"{sim.url}/repos/octo/demo").status_code == 200
