"""``fleet doctor``: check everything Fleet needs and say what to fix.

Checks, in order (each later one needs the earlier ones): settings, Postgres and its schema,
each repository's gates (a warning when no required checks are configured), parked deliveries
(per repository), held writes (a warning when the oldest waited past the hourly window), Redis,
the App's credentials (``GET /app`` with the JWT), then every installation's granted permissions
and subscribed events against ``app.yml``. Exit status 0 when nothing failed, 1 otherwise;
warnings (parked deliveries among them) do not fail.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from app.github.permissions import PERMISSION_RANK, has_permission
from app.settings import Settings, SettingsError, load_settings

Level = Literal["ok", "warn", "fail"]
# Fleet reads dependencies and parents from issue bodies too, so these only make it faster; some
# API schemas (and older GitHub Enterprise Server) do not list them at all. Without `repository`
# the lease clock still learns of archived or deleted repositories from GitHub's answers, later.
OPTIONAL_EVENTS = frozenset({"issue_dependencies", "sub_issues", "repository"})
# Parked deliveries listed per repository (the API lists them all).
PARKED_SHOWN = 3


@dataclass(frozen=True)
class Check:
    name: str
    level: Level
    message: str
    fix: str = ""


@dataclass(frozen=True)
class Requirements:
    permissions: dict[str, str]
    events: tuple[str, ...]


def load_requirements(path: Path | None = None) -> Requirements:
    """The permissions and events Fleet needs, from ``app.yml``'s defaults."""
    from app.api.setup import load_manifest

    manifest = load_manifest(path)
    return Requirements(dict(manifest.get("default_permissions") or {}), tuple(manifest.get("default_events") or ()))


def _grant_covers(granted: str, needed: str) -> bool:
    """An App permission grant (read < write < admin) covers ``needed``, on Fleet's one ladder;
    an unknown need counts as read."""
    return has_permission(granted, needed if needed in PERMISSION_RANK else "read")  # type: ignore[arg-type]


def compare_grants(granted_permissions: dict[str, str], granted_events: list[str],
                   needs: Requirements) -> tuple[list[str], list[str], list[str]]:
    """(missing or too-weak permissions, missing required events, missing optional events)."""
    weak = [
        f"{name}: {need} (has {granted_permissions.get(name, 'none')})"
        for name, need in sorted(needs.permissions.items())
        if not _grant_covers(granted_permissions.get(name, "none"), need)
    ]
    have = set(granted_events)
    missing = [e for e in needs.events if e not in have and e not in OPTIONAL_EVENTS]
    optional = [e for e in needs.events if e not in have and e in OPTIONAL_EVENTS]
    return weak, missing, optional


def check_settings(env: dict[str, str] | None) -> tuple[Settings | None, list[Check]]:
    try:
        settings = load_settings(env)
    except SettingsError as exc:
        return None, [Check("settings", "fail", str(exc), "fix the variable named above")]
    checks = [Check("settings", "ok", "environment parsed")]
    if settings.sandbox:
        checks.append(Check("mode", "ok", f"sandbox: GitHub is the bundled simulator at {settings.github_api_url}, "
                                          "started by `fleet up` without App credentials; fine for trying Fleet"))
    if not settings.webhook_secret:
        checks.append(Check("webhook secret", "fail", "GITHUB_WEBHOOK_SECRET is not set",
                            "set it to the secret configured on the App's webhook"))
    if not settings.has_app_credentials:
        checks.append(Check("app credentials", "fail", "GITHUB_APP_ID and a private key are not both set",
                            "set GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY_PATH (or create the App at /setup); "
                            "to try Fleet without an App, start the sandbox (scripts/start) and run this beside it"))
    if not settings.api_token:
        checks.append(Check("api token", "warn", "FLEET_API_TOKEN is not set: API and dashboard answer loopback only",
                            "set FLEET_API_TOKEN to a long random string to serve them beyond this host"))
    return settings, checks


def check_postgres(settings: Settings) -> list[Check]:
    from app import db

    try:
        with db.connect(settings.database_url, timeout=5) as conn:
            exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS ok").fetchone()["ok"]
            done = {r["version"] for r in conn.execute("SELECT version FROM schema_migrations")} if exists else set()
    except Exception as exc:
        return [Check("postgres", "fail", f"cannot connect ({type(exc).__name__}: {_first_line(exc)})",
                      "check DATABASE_URL and that Postgres is running; then run `fleet migrate`")]
    pending = [f"{m.version:04d} {m.name}" for m in db.load_migrations() if m.version not in done]
    if pending:
        return [Check("postgres", "ok", "connected"),
                Check("schema", "fail", f"{len(pending)} migration(s) not applied: {', '.join(pending)}",
                      "run `fleet migrate`")]
    return [Check("postgres", "ok", "connected"), Check("schema", "ok", "up to date")]


def check_parked_deliveries(settings: Settings) -> list[Check]:
    """Deliveries Fleet gave up on (out of attempts, or a payload it cannot use), per repository.

    A warning, not a failure: Fleet keeps serving everything else; someone should look.
    """
    from app import db, deliveries

    try:
        with db.connect(settings.database_url, timeout=5) as conn:
            groups = deliveries.parked_by_repo(conn, newest=PARKED_SHOWN)
    except Exception as exc:
        return [Check("parked deliveries", "warn", f"cannot list them ({type(exc).__name__}: {_first_line(exc)})")]
    if not groups:
        return [Check("parked deliveries", "ok", "none")]
    checks = []
    for group in groups:
        newest = "; ".join(
            f"{d['id']} {d['event']}{'.' + d['action'] if d['action'] else ''} "
            f"({d['attempts']} attempts): {_first_line_of(d['last_error'])}"
            for d in group.newest
        )
        checks.append(Check(
            f"parked deliveries ({group.repo_full_name or 'no repository'})", "warn",
            f"{group.count} parked, newest: {newest}",
            "see GET /api/deliveries?status=parked; once the cause is fixed, `fleet replay DELIVERY_ID` re-runs one",
        ))
    return checks


# Held writes wait at most for the hourly window to roll; older ones mean nothing is sending them.
HELD_WRITES_STUCK_AFTER = timedelta(hours=1, minutes=5)


def check_held_writes(settings: Settings) -> list[Check]:
    """Replies waiting for the write budget (``app/github/held_writes.py``): normal under load, stuck
    when the oldest has waited longer than the hourly window (no scheduler or worker running)."""
    from app import db
    from app.github import held_writes

    try:
        with db.connect(settings.database_url, timeout=5) as conn:
            row = conn.execute(held_writes.COUNT_HELD).fetchone()
    except Exception as exc:
        return [Check("held writes", "warn", f"cannot count them ({type(exc).__name__}: {_first_line(exc)})")]
    if not row["held"]:
        return [Check("held writes", "ok", "none")]
    age = datetime.now(timezone.utc) - row["oldest"]
    detail = f"{row['held']} waiting for the write budget, the oldest for {int(age.total_seconds())} s"
    if age > HELD_WRITES_STUCK_AFTER:
        return [Check("held writes", "warn", detail, "is `fleet scheduler` running, and at least one `fleet worker`?")]
    return [Check("held writes", "ok", detail)]


def _first_line_of(text: str | None) -> str:
    lines = (text or "no error recorded").strip().splitlines()
    return lines[0][:160] if lines else "no error recorded"


def check_redis(settings: Settings) -> list[Check]:
    import redis

    try:
        redis.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return [Check("redis", "fail", f"cannot reach Redis ({type(exc).__name__})",
                      "check REDIS_URL and that Redis is running")]
    return [Check("redis", "ok", "reachable")]


def check_github(settings: Settings, needs: Requirements | None) -> list[Check]:
    from githubkit.exception import GitHubException, RequestFailed

    from app.github.client import GitHubClients

    try:
        gh = GitHubClients(settings).app()
        app = gh.rest.apps.get_authenticated().json()
    except RequestFailed as exc:
        status = exc.response.status_code
        fix = ("the App id or private key is wrong (or the key was revoked): compare GITHUB_APP_ID with the "
               "App's settings page and generate a new private key if needed") if status in (401, 403) else \
            "check GITHUB_API_URL"
        return [Check("app credentials", "fail", f"GET /app answered {status}", fix)]
    except (GitHubException, ValueError) as exc:
        return [Check("app credentials", "fail", f"GET /app failed ({type(exc).__name__}: {_first_line(exc)})",
                      f"check GITHUB_API_URL ({settings.github_api_url}) and the private key")]
    checks = [Check("app credentials", "ok", f"authenticated as App {app.get('slug')!r} (id {app.get('id')})")]
    if needs is None:
        return checks
    weak, missing, optional = compare_grants(app.get("permissions") or {}, app.get("events") or [], needs)
    settings_url = f"{app.get('html_url', 'the App page')} → App settings → Permissions & events"
    if weak or missing:
        checks.append(Check("app permissions", "fail",
                            "the App asks for less than Fleet needs: " + "; ".join(
                                [*(f"permission {w}" for w in weak), *(f"event {e}" for e in missing)]),
                            f"edit them at {settings_url}, then accept the change on each installation"))
    else:
        checks.append(Check("app permissions", "ok", "the App requests every permission and event Fleet needs"))
    if optional:
        checks.append(Check("app events", "warn", f"not subscribed to {', '.join(optional)}",
                            "subscribe to them if your GitHub offers them (faster dependency updates)"))
    try:
        installations = list(gh.rest.paginate(gh.rest.apps.list_installations, per_page=100))
    except GitHubException as exc:
        checks.append(Check("installations", "fail", f"cannot list installations ({type(exc).__name__})",
                            "check the App's credentials"))
        return checks
    if not installations:
        checks.append(Check("installations", "warn", "the App is not installed anywhere",
                            f"install it: {app.get('html_url', '')}/installations/new"))
    for inst in installations:
        data: dict[str, Any] = inst.model_dump() if hasattr(inst, "model_dump") else dict(inst)
        account = (data.get("account") or {}).get("login") or (data.get("account") or {}).get("slug") or "?"
        name = f"installation {data.get('id')} ({account})"
        if data.get("suspended_at"):
            checks.append(Check(name, "fail", "suspended", "unsuspend it in the account's installation settings"))
            continue
        perms = {k: v for k, v in (data.get("permissions") or {}).items() if v is not None}
        weak, missing, _ = compare_grants(perms, data.get("events") or [], needs)
        if weak or missing:
            checks.append(Check(name, "fail", "missing " + "; ".join(
                [*(f"permission {w}" for w in weak), *(f"event {e}" for e in missing)]),
                f"accept the requested permissions at {data.get('html_url') or 'the installation settings page'}"))
        else:
            checks.append(Check(name, "ok", "permissions and events as Fleet needs"))
    return checks


ACTIVE_REPOSITORIES = "SELECT id FROM repositories WHERE removed_at IS NULL ORDER BY lower(full_name)"


def check_repository_gates(settings: Settings) -> list[Check]:
    """Per repository: warn when its gates let any green check merge a PR (``config_warnings``)."""
    from app import db
    from app.repos import registry as repositories
    from app.gates.rules import config_warnings

    try:
        with db.connect(settings.database_url, timeout=5) as conn:
            repos = [repositories.get(conn, row["id"]) for row in conn.execute(ACTIVE_REPOSITORIES).fetchall()]
    except Exception as exc:  # the postgres check above already says what is wrong
        return [Check("repository gates", "warn", f"cannot read repositories ({type(exc).__name__})",
                      "fix the Postgres problem above")]
    checks = []
    for repo in repos:
        if repo is None:
            continue
        warnings = config_warnings(repo.config.gates)
        name = f"repository {repo.full_name}"
        if warnings:
            checks.extend(Check(name, "warn", w, "list the checks that must pass in .github/fleet.yml, e.g. "
                                                 "`gates: {required_checks: [tests]}`") for w in warnings)
        else:
            checks.append(Check(name, "ok", "required checks: " + ", ".join(
                f"{n} ({app})" for n, app in repo.config.gates.required())))
    return checks


QUEUE_BASES = """
SELECT base_ref FROM queue_entries WHERE repo_id = %(repo)s AND finished_at IS NULL
UNION SELECT base_ref FROM queue_groups WHERE repo_id = %(repo)s
UNION SELECT base_ref FROM queue_serial_fallbacks WHERE repo_id = %(repo)s
"""
FALLBACKS = "SELECT base_ref, reason, since FROM queue_serial_fallbacks WHERE repo_id = %s"
# The checks (runs and statuses) ever reported on a merge group's head, and whether any group
# was ever pushed: a required check missing from a tested group means CI skips Fleet's branches.
GROUP_CHECKS = """
SELECT c.name FROM check_runs c JOIN queue_groups g ON g.repo_id = c.repo_id AND g.head_sha = c.head_sha
WHERE c.repo_id = %(repo)s
UNION SELECT s.context FROM commit_statuses s JOIN queue_groups g ON g.repo_id = s.repo_id AND g.head_sha = s.sha
WHERE s.repo_id = %(repo)s
"""
GROUPS_TESTED = "SELECT count(*) AS n FROM queue_groups WHERE repo_id = %s AND head_sha IS NOT NULL"


def check_merge_queues(settings: Settings) -> list[Check]:
    """Per repository that asks for merge groups: which mode each queue runs in and why, and
    whether its required checks ever reported on a ``fleet/queue/**`` branch."""
    from app import db
    from app.repos import registry as repositories

    checks = []
    try:
        with db.connect(settings.database_url, timeout=5) as conn:
            for row in conn.execute(ACTIVE_REPOSITORIES).fetchall():
                repo = repositories.get(conn, row["id"])
                if repo is not None and repo.config.queue.mode == "groups":
                    checks.extend(_queue_modes(conn, repo))
    except Exception as exc:  # the postgres check above already says what is wrong
        return [Check("merge queues", "warn", f"cannot read the merge queues ({type(exc).__name__})",
                      "fix the Postgres problem above")]
    return checks


def _queue_modes(conn, repo) -> list[Check]:
    name = f"merge queue {repo.full_name}"
    config = repo.config.queue
    fallbacks = {r["base_ref"]: f"{r['reason']} (since {r['since']:%Y-%m-%d %H:%M} UTC)"
                 for r in conn.execute(FALLBACKS, (repo.id,)).fetchall()}
    bases = sorted({r["base_ref"] for r in conn.execute(QUEUE_BASES, {"repo": repo.id}).fetchall()}
                   | {repo.default_branch})
    checks = []
    for base in bases:
        text = f"into {base}: {config.mode_text(fallbacks.get(base))}"
        if config.groups_refused() is None and base not in fallbacks:
            checks.append(Check(name, "ok", text))
        else:
            checks.append(Check(name, "warn", text, "fix what it says, then push a change to .github/fleet.yml "
                                                     "(a new config tries merge groups again)"))
    if not conn.execute(GROUPS_TESTED, (repo.id,)).fetchone()["n"]:
        return checks + [Check(name, "ok", "no merge group has been tested yet")]
    reported = {r["name"] for r in conn.execute(GROUP_CHECKS, {"repo": repo.id}).fetchall()}
    never = [n for n, _ in repo.config.gates.required() if n not in reported]
    for check in never:
        checks.append(Check(name, "warn", f"required check {check} has never reported on a fleet/queue/** branch",
                            "run that CI on pushes to Fleet's group branches too, e.g. GitHub Actions "
                            "`on: {push: {branches: ['fleet/queue/**']}}`"))
    return checks


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def run_checks(env: dict[str, str] | None = None, manifest: Path | None = None) -> Iterator[Check]:
    """Every check, in order; later checks are skipped when what they need failed."""
    settings, checks = check_settings(env)
    yield from checks
    if settings is None:
        return
    postgres = check_postgres(settings)
    yield from postgres
    if all(check.level == "ok" for check in postgres):
        yield from check_repository_gates(settings)
        yield from check_merge_queues(settings)
        yield from check_parked_deliveries(settings)
        yield from check_held_writes(settings)
    yield from check_redis(settings)
    try:
        needs: Requirements | None = load_requirements(manifest)
    except Exception as exc:
        needs = None
        yield Check("manifest", "warn", str(exc), "set FLEET_APP_MANIFEST to app.yml to compare permissions")
    if settings.has_app_credentials:
        yield from check_github(settings, needs)


MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}


def main(env: dict[str, str] | None = None, manifest: Path | None = None,
         out: Callable[[str], None] = print) -> int:
    """Print each check and what to fix; 1 when anything failed."""
    failed = 0
    for check in run_checks(env, manifest):
        out(f"[{MARK[check.level]}] {check.name}: {check.message}")
        if check.fix and check.level != "ok":
            out(f"       fix: {check.fix}")
        failed += check.level == "fail"
    out(f"\n{failed} problem(s) to fix." if failed else "\nEverything Fleet needs is in place.")
    return 1 if failed else 0
