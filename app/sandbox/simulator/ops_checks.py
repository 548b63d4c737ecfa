"""Check runs, check suites and commit statuses."""
from __future__ import annotations

from . import events
from .errors import not_found, validation
from .protection import is_protected
from .render import check_run_json, check_suite_json, status_json
from .state import AppInfo, CheckRun, CheckSuite, Repo, Status, User, World

RUN_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CONCLUSIONS = ("success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required",
               "stale")
STATUS_STATES = ("error", "failure", "pending", "success")
MAX_OUTPUT = 65535


def request_suite(world: World, r: Repo, sha: str, sender: User) -> None:
    """After a push GitHub creates a queued suite for each App with checks:write and sends it
    check_suite.requested; we do that for Fleet's App."""
    app = world.app
    if app.permissions.get("checks") != "write" or "check_suite" not in app.events:
        return
    suite = _suite_for(world, r, app, sha)
    events.emit(world, r, "check_suite", {"action": "requested",
                                           "check_suite": check_suite_json(world, r, suite, with_repo=False)},
                sender)


def rerequest_suite(world: World, r: Repo, suite: CheckSuite, sender: User) -> None:
    """The "Re-run all checks" button: check_suite.rerequested to the suite's App."""
    suite.status, suite.conclusion = "queued", None
    events.emit(world, r, "check_suite", {"action": "rerequested",
                                           "check_suite": check_suite_json(world, r, suite, with_repo=False)},
                sender)


def rerequest_run(world: World, r: Repo, run: CheckRun, sender: User) -> None:
    """The "Re-run" button on one check run: check_run.rerequested."""
    events.emit(world, r, "check_run", {"action": "rerequested", "check_run": _run_payload(world, r, run)}, sender)


def request_action(world: World, r: Repo, run: CheckRun, identifier: str, sender: User) -> None:
    """A click on one of the run's action buttons: check_run.requested_action."""
    events.emit(world, r, "check_run", {"action": "requested_action", "check_run": _run_payload(world, r, run),
                                         "requested_action": {"identifier": identifier}}, sender)


def _suite_for(world: World, r: Repo, app: AppInfo, sha: str) -> CheckSuite:
    for s in r.check_suites:
        if s.app is app and s.head_sha == sha:
            return s
    branch = next((b for b, tip in r.git.branches.items() if tip == sha), None)
    now = world.now()
    s = CheckSuite(world.new_id(), sha, branch, app, now, now)
    r.check_suites.append(s)
    return s


def _validate_output(output: dict | None) -> dict:
    output = output or {}
    for key in ("summary", "text"):
        if len(output.get(key) or "") > MAX_OUTPUT:
            raise validation("CheckRun", f"output.{key}", "custom", f"{key} is too long (maximum is 65535)")
    if len(output.get("annotations") or []) > 50:
        raise validation("CheckRun", "output.annotations", "custom", "at most 50 annotations per request")
    return {k: output.get(k) for k in ("title", "summary", "text") if k in output}


def create_check_run(world: World, r: Repo, app: AppInfo, name: str, head_sha: str, fields: dict) -> CheckRun:
    """Create a run (and its suite on first use); emits check_run.created (+completed)."""
    sha = head_sha if head_sha in r.git.commits else None  # GitHub wants the full sha here
    if sha is None:
        raise validation("CheckRun", "head_sha", "invalid", "No commit found for SHA: " + str(head_sha))
    suite = _suite_for(world, r, app, sha)
    run = CheckRun(world.new_id(), name, sha, suite, app, started_at=world.now())
    r.check_runs.append(run)
    _apply(world, run, fields)
    _emit_run(world, r, run, "created")
    if run.status == "completed":
        _emit_run(world, r, run, "completed")
    _refresh_suite(world, r, suite)
    return run


def get_check_run(r: Repo, run_id: int) -> CheckRun:
    """The run or 404."""
    run = next((c for c in r.check_runs if c.id == run_id), None)
    if run is None:
        raise not_found()
    return run


def update_check_run(world: World, r: Repo, run: CheckRun, fields: dict) -> CheckRun:
    """PATCH a run; emits check_run.completed when it completes (and check_suite.completed)."""
    was = run.status
    _apply(world, run, fields)
    if run.status == "completed" and was != "completed":
        _emit_run(world, r, run, "completed")
    _refresh_suite(world, r, run.suite)
    return run


def _apply(world: World, run: CheckRun, f: dict) -> None:
    if f.get("status") and f["status"] not in RUN_STATUSES:
        raise validation("CheckRun", "status", "invalid")
    if f.get("conclusion") and f["conclusion"] not in CONCLUSIONS:
        raise validation("CheckRun", "conclusion", "invalid")
    if "output" in f:
        run.output.update(_validate_output(f["output"]))
    for key in ("name", "external_id", "details_url"):
        if f.get(key) is not None:
            setattr(run, key, f[key])
    if f.get("status"):
        run.status = f["status"]
    if f.get("conclusion"):
        # Giving a conclusion implies completion, as on GitHub.
        run.conclusion, run.status = f["conclusion"], "completed"
    if run.status == "completed":
        if run.conclusion is None:
            raise validation("CheckRun", "conclusion", "missing_field")
        run.completed_at = run.completed_at or world.now()


def _emit_run(world, r, run, action):
    events.emit(world, r, "check_run", {"action": action, "check_run": _run_payload(world, r, run)},
                run.app.bot)


def _run_payload(world, r, run):
    out = check_run_json(world, r, run)
    out["check_suite"] = check_suite_json(world, r, run.suite, with_repo=False)
    return out


def _refresh_suite(world: World, r: Repo, suite: CheckSuite) -> None:
    """Roll run states up into the suite; emit check_suite.completed once all runs complete."""
    runs = [c for c in r.check_runs if c.suite is suite]
    was = suite.status
    if all(c.status == "completed" for c in runs):
        suite.status = "completed"
        suite.conclusion = _worst([c.conclusion for c in runs])
    else:
        suite.status = "in_progress"
        suite.conclusion = None
    suite.updated_at = world.now()
    if suite.status == "completed" and was != "completed":
        events.emit(world, r, "check_suite", {"action": "completed",
                                               "check_suite": check_suite_json(world, r, suite, with_repo=False)},
                    suite.app.bot)


def _worst(conclusions: list) -> str:
    """A suite's conclusion from its runs' (the most severe wins)."""
    for c in ("action_required", "timed_out", "failure", "cancelled", "stale"):
        if c in conclusions:
            return c
    if all(c == "skipped" for c in conclusions):
        return "skipped"
    if all(c in ("neutral", "skipped") for c in conclusions):
        return "neutral"
    return "success"


def runs_for(r: Repo, sha: str, name: str | None = None, status: str | None = None,
             app_id: int | None = None, latest_only: bool = True) -> list:
    """Check runs on ``sha`` filtered as GET .../check-runs does (latest per name and app by default)."""
    runs = [c for c in r.check_runs if c.head_sha == sha]
    if name:
        runs = [c for c in runs if c.name == name]
    if status:
        runs = [c for c in runs if c.status == status]
    if app_id:
        runs = [c for c in runs if c.app.id == app_id]
    if latest_only:
        seen, out = set(), []
        for c in reversed(runs):
            if (c.name, c.app.id) not in seen:
                seen.add((c.name, c.app.id))
                out.append(c)
        runs = out
    return runs


def set_status(world: World, r: Repo, sha: str, creator: User, state: str, context: str = "default",
               description: str | None = None, target_url: str | None = None) -> Status:
    """Create a commit status; emits ``status``."""
    if state not in STATUS_STATES:
        raise validation("Status", "state", "invalid")
    full = r.git.resolve(sha)
    if full is None:
        raise validation("Status", "sha", "invalid", f"No commit found for SHA: {sha}")
    now = world.now()
    s = Status(world.new_id(), full, context or "default", state, creator, now, now, description, target_url)
    r.statuses.append(s)
    commit = r.git.commits[full]
    from .render_git import git_commit_json
    branches = [{"name": b, "commit": {"sha": tip, "url": f"{world.api_url}/repos/{r.full_name}/commits/{tip}"},
                 "protected": is_protected(r, b)} for b, tip in r.git.branches.items() if tip == full]
    body = status_json(world, r, s)
    events.emit(world, r, "status", {
        "id": s.id, "sha": full, "name": r.full_name, "target_url": target_url, "context": s.context,
        "description": description, "state": state, "commit": git_commit_json(world, r, commit),
        "branches": branches, "created_at": body["created_at"], "updated_at": body["updated_at"],
        "avatar_url": None}, creator)
    return s
