"""The ``fleet`` command: help everywhere, clear one-line configuration errors, and the
one-machine ``fleet up`` in sandbox mode (the README's start command runs exactly that)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta

import pytest

from app import db
from app.cli.main import bind_address, build_parser
from app.rq_namespace import delete_namespace
from app.settings import SettingsError, load_settings
from tests.conftest import PG_BASE, REDIS_URL, RUN_ID

COMMANDS = ["migrate", "web", "worker", "scheduler", "up", "replay", "sync", "doctor", "plan", "sandbox"]


def run_fleet(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run_fleet(command, "--help")
    assert result.returncode == 0
    assert "usage: fleet " + command in result.stdout


@pytest.mark.parametrize("env, variable", [
    ({"GITHUB_APP_ID": "abc"}, "GITHUB_APP_ID"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"GITHUB_APP_PRIVATE_KEY": "not a key"}, "GITHUB_APP_PRIVATE_KEY"),
    ({"GITHUB_APP_PRIVATE_KEY_PATH": "/nonexistent/key.pem"}, "GITHUB_APP_PRIVATE_KEY_PATH"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
])
def test_malformed_setting_stops_with_one_line_naming_it(env, variable):
    result = run_fleet("migrate", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and variable in lines[0]


def _key_pem(kind: str) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if kind == "ec":
        key, encryption = ec.generate_private_key(ec.SECP256R1()), serialization.NoEncryption()
    else:
        key, encryption = rsa.generate_private_key(65537, 2048), serialization.BestAvailableEncryption(b"pw")
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


@pytest.mark.parametrize("pem, says", [
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIgarbagegarbage\n-----END RSA PRIVATE KEY-----\n", "not a readable private key"),
    (_key_pem("ec"), "not RSA"),
    (_key_pem("encrypted rsa"), "encrypted"),
])
def test_a_pem_frame_around_a_wrong_key_is_refused_at_start_up(pem, says):
    """A PEM block that is not an RSA private key stops every command with one line, instead of
    passing here and failing on every token request later; the key's text is never echoed."""
    body = pem.splitlines()[1]
    with pytest.raises(SettingsError) as info:
        load_settings({"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": pem})
    assert "GITHUB_APP_PRIVATE_KEY" in str(info.value) and says in str(info.value)
    assert body not in str(info.value)
    result = run_fleet("doctor", env={"GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": pem,
                                      "GITHUB_APP_PRIVATE_KEY_PATH": ""})
    assert result.returncode == 1 and "[FAIL] settings: GITHUB_APP_PRIVATE_KEY" in result.stdout
    assert "public key" not in result.stdout and body not in result.stdout + result.stderr


def test_secret_values_never_appear_in_errors():
    with pytest.raises(SettingsError) as info:
        load_settings({"GITHUB_APP_PRIVATE_KEY": "super-secret-value", "GITHUB_APP_ID": "1"})
    assert "super-secret-value" not in str(info.value)
    assert "super-secret-value" not in repr(load_settings({"GITHUB_WEBHOOK_SECRET": "super-secret-value"}))


def test_worker_without_app_credentials_names_the_variable():
    result = run_fleet("worker", env={"GITHUB_APP_ID": "", "GITHUB_APP_PRIVATE_KEY": ""})
    assert result.returncode == 2 and "GITHUB_APP_ID" in result.stderr


def test_bind_address_precedence():
    assert bind_address("1.2.3.4:5", {"PORT": "9"}) == "1.2.3.4:5"
    assert bind_address(None, {"PORT": "9000"}) == "0.0.0.0:9000"
    assert bind_address(None, {}) == "127.0.0.1:8000"
    with pytest.raises(SettingsError):
        bind_address(None, {"PORT": "http"})


def test_parser_lists_every_command():
    text = build_parser().format_help()
    assert all(c in text for c in COMMANDS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fleet_up_runs_the_whole_loop_in_sandbox_mode(tmp_path):
    """No App credentials: the first line says sandbox and that its state starts clean; the demo
    repo's issues become labelled tasks. An earlier run's database and scheduled jobs are gone
    (the new simulator knows nothing of them); the configured database is never touched."""
    url = f"{PG_BASE}/fleet_up_{RUN_ID}"
    sandbox_url = f"{url}_sandbox"
    port = _free_port()
    db.ensure_database(sandbox_url)
    with db.connect(sandbox_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE from_an_earlier_run (x int)")
    import redis
    from rq import Queue

    stale = Queue(f"fleet-up-{RUN_ID}-sandbox", connection=redis.Redis.from_url(REDIS_URL)).enqueue_in(
        timedelta(hours=1), "jobs.leases.check_leases", job_id=f"stale-{RUN_ID}")
    env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "FLEET_QUEUE": f"fleet-up-{RUN_ID}",
           "GITHUB_APP_ID": "", "GITHUB_APP_PRIVATE_KEY": "", "GITHUB_APP_PRIVATE_KEY_PATH": "", "LOG_LEVEL": "WARNING",
           "FLEET_SANDBOX_FILE": str(tmp_path / "sandbox.json")}
    log = tmp_path / "up.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "up", "--bind", f"127.0.0.1:{port}", "--workers", "1"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 40
        labelled = []
        while time.monotonic() < deadline:
            try:
                with db.connect(sandbox_url) as conn:
                    # The loop ran: the three sample tasks are recorded and the status issue shows them.
                    labelled = conn.execute(
                        "SELECT number FROM tasks WHERE EXISTS (SELECT 1 FROM status_issues s "
                        "WHERE s.repo_id = tasks.repo_id AND s.issue_number IS NOT NULL AND s.edits > 0) "
                        "AND number <> (SELECT issue_number FROM status_issues s WHERE s.repo_id = tasks.repo_id)"
                    ).fetchall()
            except Exception:
                labelled = []
            if len(labelled) == 3:
                break
            time.sleep(0.5)
        assert len(labelled) == 3, log.read_text()[-3000:]
        first = log.read_text().splitlines()[0]
        assert "SANDBOX mode" in first and f"database fleet_up_{RUN_ID}_sandbox re-created" in first
        with db.connect(sandbox_url) as conn:
            assert conn.execute("SELECT to_regclass('from_an_earlier_run') AS t").fetchone()["t"] is None
        assert not stale.connection.exists(stale.key)
        with db.connect(f"{PG_BASE}/postgres") as conn:
            assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (f"fleet_up_{RUN_ID}",)).fetchone() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=40)
        finally:
            if proc.poll() is None:
                proc.kill()
            db.drop_database(sandbox_url)
            delete_namespace(REDIS_URL, f"fleet-up-{RUN_ID}")
    assert proc.returncode == 0


# --- the first hour: one line, nothing started ---------------------------------------------------

SANDBOX_ENV = {"GITHUB_APP_ID": "", "GITHUB_APP_PRIVATE_KEY": "", "GITHUB_APP_PRIVATE_KEY_PATH": "",
               "LOG_LEVEL": "WARNING"}


def _one_line_refusal(result: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit 2, nothing on stdout (nothing was started), one line on stderr holding ``needles``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and all(n in lines[0] for n in needles), result.stderr
    assert result.stdout.strip() == "" and "Traceback" not in result.stderr
    return lines[0]


def test_migrate_with_postgres_unreachable_says_so_in_one_line():
    dead = f"postgresql://fleet:s3cret-pw@127.0.0.1:{_free_port()}/fleet"
    line = _one_line_refusal(run_fleet("migrate", env={"DATABASE_URL": dead}), "DATABASE_URL", "cannot connect")
    assert "s3cret-pw" not in line


def test_up_on_a_taken_port_stops_at_once_naming_the_port_and_bind():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        result = run_fleet("up", "--bind", f"127.0.0.1:{port}", env=SANDBOX_ENV)
    _one_line_refusal(result, f"port {port} is in use", "--bind")
    assert time.monotonic() - started < 15  # no wait for a web server that cannot listen


def test_up_with_redis_unreachable_starts_nothing():
    url = f"{PG_BASE}/fleet_up_noredis_{RUN_ID}"
    env = {**SANDBOX_ENV, "DATABASE_URL": url, "REDIS_URL": f"redis://127.0.0.1:{_free_port()}/0"}
    try:
        _one_line_refusal(run_fleet("up", "--bind", f"127.0.0.1:{_free_port()}", env=env), "REDIS_URL", "cannot connect")
    finally:
        db.drop_database(url)


def test_demo_on_a_taken_port_stops_before_touching_anything():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_fleet("demo", "--bind", f"127.0.0.1:{port}", "--no-live", "--database", f"fleet_demo_unused_{RUN_ID}")
    _one_line_refusal(result, f"port {port} is in use", "--bind")


def test_the_sandbox_database_url_keeps_everything_but_the_name():
    url = "postgresql://fleet:pw@db.internal:6543/fleet?sslmode=require"
    sandbox = db.with_database(url, db.database_name(url) + "_sandbox")
    assert sandbox == "postgresql://fleet:pw@db.internal:6543/fleet_sandbox?sslmode=require"
    assert db.database_name(sandbox) == "fleet_sandbox"


def test_logs_are_readable_lines_on_a_terminal_and_json_elsewhere(monkeypatch):
    """FLEET_LOG_FORMAT unset: console when stderr is a terminal (the sandbox's), else JSON;
    an explicit value always wins."""
    monkeypatch.setattr(os, "isatty", lambda fd: fd == 2)
    assert load_settings({}).log_format == "console"
    assert load_settings({"FLEET_LOG_FORMAT": "json"}).log_format == "json"
    monkeypatch.setattr(os, "isatty", lambda fd: False)
    assert load_settings({}).log_format == "json"
    assert load_settings({"FLEET_LOG_FORMAT": "console"}).log_format == "console"


def _app_key(tmp_path) -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = tmp_path / "app.pem"
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return str(path)


def test_plan_apply_with_github_unreachable_or_no_schema_says_so_in_one_line(tmp_path):
    url = f"{PG_BASE}/fleet_plan_nogh_{RUN_ID}"
    env = {"DATABASE_URL": url, "GITHUB_APP_ID": "1", "GITHUB_APP_PRIVATE_KEY": "",
           "GITHUB_APP_PRIVATE_KEY_PATH": _app_key(tmp_path), "GITHUB_API_URL": f"http://127.0.0.1:{_free_port()}/"}
    plan = ["plan", "apply", "app/sandbox/sample/plan.yml", "--repo", "o/r", "--dry-run"]
    db.ensure_database(url)
    try:
        _one_line_refusal(run_fleet(*plan, env=env), "DATABASE_URL", "fleet migrate")  # no tables yet
        with db.connect(url, autocommit=True) as conn:
            db.migrate(conn)
            conn.execute("INSERT INTO installations (id, account_login) VALUES (7, 'o')")
            conn.execute("INSERT INTO repositories (id, installation_id, full_name) VALUES (70, 7, 'o/r')")
        _one_line_refusal(run_fleet(*plan, env=env), "cannot reach GitHub (GITHUB_API_URL)")
    finally:
        db.drop_database(url)


def test_a_github_error_answer_is_one_line_naming_status_and_call():
    from typing import Any

    import httpx
    from githubkit.exception import RequestFailed
    from githubkit.response import Response

    from app.cli.preflight import one_line_error

    answer = httpx.Response(401, request=httpx.Request("GET", "https://api.github.com/app/installations"))
    assert one_line_error(RequestFailed(Response(answer, Any))) == "GitHub answered 401 to GET /app/installations"
    assert one_line_error(ValueError("anything else")) is None  # left to raise as it is
