"""`fleet doctor`: each check, against a real Postgres and Redis and the GitHub simulator."""
from __future__ import annotations

import secrets
from datetime import datetime, timezone

import pytest

from app import db
from app.cli.doctor import Requirements, compare_grants, main, run_checks
from app.sandbox.simulator.simulator import Simulator
from tests.conftest import PG_BASE, REDIS_URL


@pytest.fixture
def sim():
    simulator = Simulator(webhook_secret="doctor-secret").start()
    simulator.create_repo("octo/widgets")
    yield simulator
    simulator.stop()


def env_for(database_url: str, sim: Simulator | None = None, **extra: str) -> dict[str, str]:
    env = {"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL, "GITHUB_WEBHOOK_SECRET": "doctor-secret",
           "FLEET_API_TOKEN": "t" * 32}
    if sim is not None:
        env.update(GITHUB_API_URL=sim.url, GITHUB_APP_ID="1", GITHUB_APP_PRIVATE_KEY=sim.app_private_key_pem)
    env.update(extra)
    return env


def by_name(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    return {c.name: (c.level, c.message) for c in run_checks(env)}


def test_a_healthy_setup_passes(database_url, sim):
    """Installed App with the permissions and events from app.yml: exit 0."""
    sim.install(["octo/widgets"])
    lines: list[str] = []
    assert main(env_for(database_url, sim), out=lines.append) == 0, "\n".join(lines)
    text = "\n".join(lines)
    assert "[ok  ] schema: up to date" in text and "[ok  ] redis: reachable" in text
    assert "authenticated as App 'fleet'" in text
    assert "installation" in text and "FAIL" not in text
    # The simulator's App schema cannot subscribe to these; Fleet works without them.
    assert "[WARN] app events: not subscribed to issue_dependencies, sub_issues" in text


def test_missing_settings_are_named(database_url):
    checks = by_name({"DATABASE_URL": database_url, "REDIS_URL": REDIS_URL})
    assert checks["webhook secret"][0] == "fail"
    assert checks["app credentials"][0] == "fail"
    assert checks["api token"][0] == "warn"
    level, message = by_name({"GITHUB_APP_ID": "not an id!"})["settings"]
    assert level == "fail" and message.startswith("GITHUB_APP_ID ")


def test_unreachable_services_and_pending_migrations(database_url):
    """A database with migrations missing says to run `fleet migrate`; Redis down says so."""
    fresh = f"{PG_BASE}/fleet_doctor_{secrets.token_hex(3)}"
    db.ensure_database(fresh)
    try:
        lines: list[str] = []
        assert main(env_for(fresh, REDIS_URL="redis://127.0.0.1:1/0"), out=lines.append) == 1
        text = "\n".join(lines)
        assert "[FAIL] schema:" in text and "run `fleet migrate`" in text
        assert "[FAIL] redis: cannot reach Redis" in text
    finally:
        db.drop_database(fresh)
    checks = by_name(env_for("postgresql://postgres@127.0.0.1:1/none"))
    assert checks["postgres"][0] == "fail"


def test_wrong_key_fails_the_app_check(database_url, sim):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    checks = by_name(env_for(database_url, sim, GITHUB_APP_PRIVATE_KEY=other))
    assert checks["app credentials"][0] == "fail" and "401" in checks["app credentials"][1]


def test_missing_permissions_on_app_and_installation(database_url, sim):
    """A permission taken away is reported for the App and for each installation that lacks it."""
    sim.install(["octo/widgets"])
    sim.world.app.permissions.pop("issues")
    sim.world.app.events.remove("pull_request")
    lines: list[str] = []
    assert main(env_for(database_url, sim), out=lines.append) == 1
    text = "\n".join(lines)
    assert "[FAIL] app permissions:" in text and "permission issues: write (has none)" in text
    assert "event pull_request" in text
    assert "[FAIL] installation" in text and "accept the requested permissions" in text


def test_permission_levels_are_ordered():
    needs = Requirements({"contents": "write", "statuses": "read"}, ("push", "sub_issues"))
    assert compare_grants({"contents": "admin", "statuses": "write"}, ["push"], needs) == ([], [], ["sub_issues"])
    assert compare_grants({"contents": "read"}, [], needs) == (
        ["contents: write (has read)", "statuses: read (has none)"], ["push"], ["sub_issues"])


def test_fleet_doctor_command(database_url, sim, monkeypatch, capsys):
    """`fleet doctor` reads the environment and exits non-zero on problems."""
    from app.cli.main import main as fleet

    for name, value in env_for(database_url, sim).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GITHUB_WEBHOOK_SECRET")
    assert fleet(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] webhook secret: GITHUB_WEBHOOK_SECRET is not set" in out
    assert "fix: set it to the secret configured on the App's webhook" in out


def test_repository_without_required_checks_gets_a_loud_warning(database_url, db_conn):
    """Per repository: no `gates.required_checks` means any green check merges, and doctor says so."""
    from app.repos import registry as repositories
    from app.repos.config import parse_repo_config

    repositories.upsert_repository(db_conn, 1, "octo/open-door")
    repositories.upsert_repository(db_conn, 2, "octo/guarded")
    repositories.store_config(db_conn, 2, parse_repo_config(
        "gates:\n  required_checks: [tests, {name: lint, app: any}]\n"), "c" * 40)
    lines: list[str] = []
    main(env_for(database_url), out=lines.append)
    text = "\n".join(lines)
    assert ("[WARN] repository octo/open-door: No required checks are configured: any green check lets a PR "
            "merge. Set `gates.required_checks` in .github/fleet.yml.") in text
    assert "[ok  ] repository octo/guarded: required checks: tests (github-actions), lint (any)" in text
    assert "octo/guarded: No required checks" not in text


def test_merge_queue_modes_and_ci_that_never_ran_on_groups_are_reported(database_url, db_conn):
    """A repository asking for merge groups: doctor says which mode each queue runs in and why
    (a base that refused Fleet's push, a merge method groups cannot carry), and warns when a
    required check never reported on any group that was tested."""
    from app.queue import group_store
    from app.queue.groups import QueueGroup
    from app.repos import registry as repositories
    from app.repos.config import parse_repo_config

    groups_yml = "gates:\n  required_checks: [tests, lint]\nqueue:\n  mode: groups\n  merge_method: merge\n"
    repositories.upsert_repository(db_conn, 1, "octo/grouped")
    repositories.store_config(db_conn, 1, parse_repo_config(groups_yml), "c" * 40)
    repositories.upsert_repository(db_conn, 2, "octo/squashing")
    repositories.store_config(db_conn, 2, parse_repo_config("queue:\n  mode: groups\n  merge_method: rebase\n"), "d" * 40)
    repositories.upsert_repository(db_conn, 3, "octo/plain")
    grouped = db_conn.execute("SELECT id FROM repositories WHERE full_name = 'octo/grouped'").fetchone()["id"]
    group_store.fall_back(db_conn, grouped, "release", "GitHub refused Fleet's push to the base (422: Protected)")

    def report() -> str:
        lines: list[str] = []
        main(env_for(database_url), out=lines.append)
        return "\n".join(lines)

    text = report()
    assert "[ok  ] merge queue octo/grouped: into main: merge groups (depth 3, batch size 1)" in text
    assert "[WARN] merge queue octo/grouped: into release: serial: GitHub refused Fleet's push to the base" in text
    assert "[WARN] merge queue octo/squashing: into main: serial: merge groups need queue.merge_method merge or squash" in text
    assert "merge queue octo/plain" not in text  # serial by configuration: nothing to say
    assert "no merge group has been tested yet" in text and "never reported" not in text

    gid = group_store.insert_group(db_conn, grouped, "main", (5,), ("a" * 40,), "b" * 40)
    built = QueueGroup(gid, (5,), ("a" * 40,), "building", "b" * 40, "e" * 40, carriers=("e" * 40,))
    group_store.mark_built(db_conn, built, datetime.now(timezone.utc))
    db_conn.execute("INSERT INTO check_runs (id, repo_id, head_sha, name, status, conclusion) "
                    "VALUES (1, %s, %s, 'tests', 'completed', 'success')", (grouped, "e" * 40))
    text = report()
    assert "[WARN] merge queue octo/grouped: required check lint has never reported on a fleet/queue/** branch" in text
    assert "required check tests has never" not in text
