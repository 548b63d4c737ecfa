"""``fleet sandbox``: an agent's whole loop against the sandbox, as the README's quick start shows
it, and the operator commands (``plan apply``, ``sync``, ``replay``, ``doctor``) beside it."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import db
from app.rq_namespace import delete_namespace
from app.cli.sandbox import SandboxError, _fields, _file_change
from app.sandbox.running import RunningSandbox, adopt_running_sandbox, find_running, publish, withdraw
from tests.conftest import PG_BASE, REDIS_URL, RUN_ID


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fleet(env: dict, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _ok(env: dict, *args: str) -> str:
    result = _fleet(env, *args)
    assert result.returncode == 0, f"fleet {' '.join(args)}: {result.stderr[-2000:]}"
    return result.stdout


def _until(probe, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.3)
    return probe()


@pytest.fixture
def sandbox_env(tmp_path):
    """``fleet up`` in sandbox mode, and the environment of a second terminal beside it."""
    name = f"fleet_sbx_{RUN_ID}"
    state = tmp_path / "sandbox.json"
    env = {**os.environ, "DATABASE_URL": f"{PG_BASE}/{name}", "REDIS_URL": REDIS_URL, "FLEET_QUEUE": f"sbx-{RUN_ID}",
           "GITHUB_APP_ID": "", "GITHUB_APP_PRIVATE_KEY": "", "GITHUB_APP_PRIVATE_KEY_PATH": "",
           "GITHUB_WEBHOOK_SECRET": "", "LOG_LEVEL": "WARNING", "FLEET_SANDBOX_FILE": str(state)}
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "up", "--bind", f"127.0.0.1:{_free_port()}",
                                 "--workers", "1"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        assert _until(lambda: "REST token" in log.read_text(), 60), log.read_text()[-3000:]
        yield env, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()
        db.drop_database(f"{PG_BASE}/{name}_sandbox")
        delete_namespace(REDIS_URL, env["FLEET_QUEUE"])  # and its "-sandbox" sibling, which fleet up used


def _issue(env: dict, number: int) -> dict:
    return json.loads(_ok(env, "sandbox", "api", "GET", f"/repos/sandbox/demo/issues/{number}"))


def _state_label(env: dict, number: int) -> str | None:
    """The task's Fleet state label other than the claim verdict."""
    names = {label["name"] for label in _issue(env, number)["labels"]} - {"fleet:claimed"}
    found = sorted(name for name in names if name.startswith("fleet:"))
    return found[0] if len(found) == 1 else None


def test_an_agent_claims_pushes_opens_a_pr_reports_ci_and_queues_it_to_a_merge(sandbox_env):
    env, proc, log = sandbox_env
    info = json.loads(_ok(env, "sandbox", "info", "--json"))
    assert info["repository"] == "sandbox/demo" and info["agent"] == "agent-a"
    assert info["metrics"].endswith("/metrics") and info["health"].endswith("/healthz")
    assert "agent-a" in _ok(env, "sandbox", "users") and "maintainer" in _ok(env, "sandbox", "users")

    _ok(env, "sandbox", "comment", "1", "/claim")
    claimed = _until(lambda: "fleet:claimed" in {label["name"] for label in _issue(env, 1)["labels"]})
    assert claimed, _issue(env, 1)
    assert [a["login"] for a in _issue(env, 1)["assignees"]] == ["agent-a"]

    branch, sha = _ok(env, "sandbox", "push", "agent-a/1-skeleton", "src/app.py=print('hi')").split()
    assert branch == "agent-a/1-skeleton" and len(sha) == 40
    number, head = _ok(env, "sandbox", "pr", "agent-a/1-skeleton", "--title", "Project skeleton", "--closes", "1").split()[:2]
    assert head == sha
    # The sandbox shows task states as labels (tasks.manage_labels) and requires the check `ci`.
    assert _until(lambda: _state_label(env, 1) == "fleet:review"), _issue(env, 1)["labels"]
    _ok(env, "sandbox", "comment", number.lstrip("#"), "/queue")
    assert _until(lambda: _state_label(env, 1) == "fleet:queued"), _issue(env, 1)["labels"]
    assert _ok(env, "sandbox", "ci", "pass", number).strip() == f"ci: pass on {sha}"

    pull = f"/repos/sandbox/demo/pulls/{number.lstrip('#')}"
    merged = _until(lambda: json.loads(_ok(env, "sandbox", "api", "GET", pull))["merged"], 40)
    assert merged, log.read_text()[-3000:]
    assert _until(lambda: _issue(env, 1)["state"] == "closed")


def test_operator_commands_run_against_the_sandbox_and_stop_with_it(sandbox_env, tmp_path):
    env, proc, log = sandbox_env
    doctor = _fleet(env, "doctor")
    assert doctor.returncode == 0, doctor.stdout
    assert "[ok  ] mode: sandbox" in doctor.stdout and "sandbox mode" in doctor.stderr
    dry = _ok(env, "plan", "apply", "app/sandbox/sample/plan.yml", "--repo", "sandbox/demo", "--dry-run")
    assert "sandbox/demo: would change" in dry
    synced = re.match(r"sandbox/demo: (\d+) issues", _ok(env, "sync", "sandbox/demo"))
    assert synced and int(synced[1]) >= 3  # the three seeded tasks (and the status issue once it exists)
    with db.connect(json.loads(_ok(env, "sandbox", "info", "--json"))["database"]) as conn:
        delivery = conn.execute("SELECT id FROM deliveries WHERE event = 'issues' LIMIT 1").fetchone()["id"]
    assert _ok(env, "replay", delivery).strip() == f"{delivery}: processed"

    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=40)
    assert not Path(env["FLEET_SANDBOX_FILE"]).exists()
    gone = _fleet(env, "sandbox", "info")
    assert gone.returncode == 2 and gone.stderr.startswith("fleet: no sandbox is running")
    assert len(gone.stderr.strip().splitlines()) == 1
    without = _fleet(env, "sync", "sandbox/demo")
    assert without.returncode == 2 and "GITHUB_APP_ID is not set" in without.stderr and "scripts/start" in without.stderr


# --- the pieces -----------------------------------------------------------------------------------

def _described(pid: int) -> RunningSandbox:
    return RunningSandbox(pid=pid, simulator_url="http://127.0.0.1:1", web_url="http://127.0.0.1:2",
                          repo="sandbox/demo", agent="agent-a",
                          env={"GITHUB_APP_ID": "1", "DATABASE_URL": "postgresql://x/y_sandbox", "FLEET_SANDBOX": "1"})


def test_the_description_is_private_and_a_dead_process_makes_it_stale(tmp_path):
    path = tmp_path / "state" / "sandbox.json"
    publish(_described(os.getpid()), path)
    assert (path.stat().st_mode & 0o777) == 0o600
    assert find_running({"FLEET_SANDBOX_FILE": str(path)}) == _described(os.getpid())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    publish(_described(int(dead.stdout)), path)
    assert find_running({"FLEET_SANDBOX_FILE": str(path)}) is None
    withdraw(path, os.getpid())  # not ours any more: left alone
    assert path.exists()
    path.write_text("{not json")
    assert find_running({"FLEET_SANDBOX_FILE": str(path)}) is None


def test_app_credentials_win_over_a_running_sandbox(tmp_path):
    path = tmp_path / "sandbox.json"
    publish(_described(os.getpid()), path)
    real = {"FLEET_SANDBOX_FILE": str(path), "GITHUB_APP_ID": "4242", "DATABASE_URL": "postgresql://x/prod"}
    assert adopt_running_sandbox(real) is None and real["DATABASE_URL"] == "postgresql://x/prod"
    bare = {"FLEET_SANDBOX_FILE": str(path), "GITHUB_APP_PRIVATE_KEY_PATH": "/old/key.pem"}
    assert adopt_running_sandbox(bare) is not None
    assert bare["DATABASE_URL"] == "postgresql://x/y_sandbox" and bare["FLEET_SANDBOX"] == "1"
    assert "GITHUB_APP_PRIVATE_KEY_PATH" not in bare


def test_fields_and_file_changes_parse_like_gh_api():
    assert _fields(["title=Fix it", "labels[]=a", "labels[]=b"], typed=False) == {"title": "Fix it", "labels": ["a", "b"]}
    assert _fields(["n=3", "draft=true", "m=null", "s=x"], typed=True) == {"n": 3, "draft": True, "m": None, "s": "x"}
    with pytest.raises(SandboxError, match="KEY=VALUE"):
        _fields(["oops"], typed=False)
    assert _file_change("a/b.py=x = 1") == ("a/b.py", "x = 1")
    with pytest.raises(SandboxError, match="PATH=TEXT"):
        _file_change("just-a-path")
