"""``fleet up``: web + workers + scheduler on one machine, as child processes.

Without App credentials Fleet runs in **sandbox mode**: this process also serves the bundled
GitHub simulator with one demo repository, and the children talk to it instead of GitHub.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request

from app import db
from app.cli.preflight import check_port_free, check_redis
from app.rq_namespace import delete_namespace
from app.sandbox.running import ADOPTED, RunningSandbox, publish, sandbox_file, withdraw
from app.settings import load_settings

SANDBOX_REPO = "sandbox/demo"
SANDBOX_AGENT = "agent-a"
# The sandbox shows every task's state as a label (off by default: on GitHub that costs writes the
# merge queue needs; the sandbox's pacer is lifted) and gates on the check `fleet sandbox ci` reports.
SANDBOX_CONFIG = """\
tasks:
  manage_labels: true
gates:
  required_checks: [ci]
"""


def _wait_http(url: str, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback only
                if resp.status == 200:
                    return True
        except OSError:
            time.sleep(0.2)
    return False


def start_simulator(env: dict[str, str]):
    """Serve the GitHub simulator in this process (deliveries paused until Fleet's web server
    is up) and point the children's environment ``env`` at it. Shared with ``fleet demo``."""
    from app.sandbox.simulator.simulator import Simulator

    secret = secrets.token_hex(16)
    sim = Simulator(webhook_secret=secret, port=int(env.get("FLEET_SANDBOX_PORT", "0"))).start()
    sim.pause_deliveries()
    env.update({
        "GITHUB_API_URL": sim.url,
        "GITHUB_APP_ID": "1",
        "GITHUB_APP_PRIVATE_KEY": sim.app_private_key_pem,
        "GITHUB_WEBHOOK_SECRET": secret,
        "FLEET_SANDBOX": "1",
        # The simulator has no secondary limits worth pacing for.
        "FLEET_WRITES_PER_MINUTE": env.get("FLEET_WRITES_PER_MINUTE", "100000"),
        "FLEET_WRITES_PER_HOUR": env.get("FLEET_WRITES_PER_HOUR", "1000000"),
    })
    return sim


def _start_sandbox(env: dict[str, str]):
    """The simulator with the sandbox repository and its users."""
    sim = start_simulator(env)
    sim.create_repo(SANDBOX_REPO)
    sim.set_file(SANDBOX_REPO, ".github/fleet.yml", SANDBOX_CONFIG, message="Configure Fleet for the sandbox")
    for login in (SANDBOX_AGENT, "agent-b", "maintainer"):
        sim.add_user(login, "admin" if login == "maintainer" else "write")
    return sim


def _clean_sandbox_state(settings, env: dict[str, str]) -> str:
    """The sandbox's own database (``<name>_sandbox``, dropped) and RQ queue (``<queue>-sandbox``,
    its Redis keys deleted), pointed at by ``env``: a new simulator knows nothing of an earlier
    run, so Fleet must not either. Never the configured database itself: a deployment that lost
    its App credentials by mistake must not lose its data too. Returns the database URL."""
    url = db.with_database(settings.database_url, db.database_name(settings.database_url) + "_sandbox")
    db.drop_database(url)
    queue = settings.queue_name + "-sandbox"
    delete_namespace(settings.redis_url, queue)
    env.update({"DATABASE_URL": url, "FLEET_QUEUE": queue})
    return url


def _seed_sandbox(sim) -> None:
    """A few tasks so a newcomer sees claims and readiness at once."""
    first = sim.open_issue(SANDBOX_REPO, "Set up the project skeleton", body="Estimate: 2h", labels=["priority:high"])
    sim.open_issue(SANDBOX_REPO, "Add the widget API", body=f"Estimate: 4h\n\nDepends on #{first}")
    sim.open_issue(SANDBOX_REPO, "Write the user guide", body="Estimate: 3h", labels=["priority:low"])


def run_up(bind: str, workers: int = 2) -> int:
    try:
        settings = load_settings()
    except Exception as exc:  # SettingsError: one line naming the variable
        print(f"fleet: configuration error: {exc}", file=sys.stderr)
        return 2
    # Before anything starts: a taken port, PostgreSQL or Redis down end here with one line.
    check_port_free(bind)
    check_redis(settings.redis_url)
    env = dict(os.environ)
    sim = None
    database_url = settings.database_url
    if not settings.has_app_credentials:
        database_url = _clean_sandbox_state(settings, env)
        sim = _start_sandbox(env)
        print(f"Fleet is running in SANDBOX mode: no GitHub App credentials (GITHUB_APP_ID) are set, so it talks to "
              f"the bundled GitHub simulator at {sim.url} with the demo repository {SANDBOX_REPO}; its state starts "
              f"clean every run (database {db.database_name(database_url)} re-created, queue {env['FLEET_QUEUE']} "
              "emptied).", flush=True)
    else:
        if not settings.webhook_secret:
            print("fleet: configuration error: GITHUB_WEBHOOK_SECRET is not set", file=sys.stderr)
            return 2
        print(f"Fleet is running for GitHub App {settings.app_id} against {settings.github_api_url}.", flush=True)
    created = db.ensure_database(database_url)
    with db.connect(database_url) as conn:
        applied = db.migrate(conn)
    print(f"database {db.database_name(database_url)}: {'created, ' if created else ''}"
          f"{len(applied)} migration(s) applied", flush=True)
    children = _spawn(bind, workers, env)
    web_url = f"http://{bind.replace('0.0.0.0', '127.0.0.1')}"
    if not _wait_http(web_url + "/healthz"):
        print("fleet: the web server did not start; see the errors above", file=sys.stderr)
        _stop(children)
        return 1
    print(f"web: {web_url} (webhooks at {web_url}/webhooks/github)", flush=True)
    if sim is not None:
        sim.webhook_url = web_url + "/webhooks/github"
        sim.resume_deliveries()
        sim.install([SANDBOX_REPO])
        _seed_sandbox(sim)
        published = _publish_sandbox(sim, web_url, env)
        print(f"sandbox: act as the agent {SANDBOX_AGENT} from another terminal with `fleet sandbox` (comment /claim, "
              f"push, pr, ci pass, comment /queue; see README); REST token {sim.user_token(SANDBOX_AGENT)!r} against "
              f"{sim.url}", flush=True)
        print(f"sandbox: dashboard {web_url}/ · API {web_url}/api/tasks · health {web_url}/healthz · metrics "
              f"{web_url}/metrics · described in {published}", flush=True)
    code = _supervise(children, sim)
    if sim is not None:
        withdraw(published, os.getpid())
    return code


def _publish_sandbox(sim, web_url: str, env: dict[str, str]):
    """Describe this sandbox for the ``fleet`` commands run beside it (``app.sandbox.running``)."""
    path = sandbox_file()
    publish(RunningSandbox(pid=os.getpid(), simulator_url=sim.url, web_url=web_url, repo=SANDBOX_REPO,
                           agent=SANDBOX_AGENT, env={name: env[name] for name in ADOPTED if name in env}), path)
    return path


def _spawn(bind: str, workers: int, env: dict[str, str], output=None) -> list[subprocess.Popen]:
    """Start ``fleet web``, ``workers`` × ``fleet worker`` and ``fleet scheduler``; their output
    goes to ``output`` (a file) when given, else to this process's stdout/stderr."""
    fleet = [sys.executable, "-m", "app.cli.main"]
    commands = [fleet + ["web", "--bind", bind]] + [fleet + ["worker"]] * workers + [fleet + ["scheduler"]]
    streams = {} if output is None else {"stdout": output, "stderr": subprocess.STDOUT}
    return [subprocess.Popen(cmd, env=env, **streams) for cmd in commands]


def _stop(children: list[subprocess.Popen], grace: float = 25) -> None:
    """SIGTERM everyone (gunicorn drains requests, RQ finishes its job), SIGKILL stragglers."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()


def _supervise(children: list[subprocess.Popen], sim) -> int:
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while not stopping:
        for child in children:
            if child.poll() is not None:
                print(f"fleet: a child process exited with {child.returncode}; stopping", file=sys.stderr)
                code = child.returncode or 1
                stopping = True
        time.sleep(0.5)
    _stop(children)
    if sim is not None:
        sim.stop()
    return code


