"""Reloading ``.github/fleet.yml`` when it changes, and reporting a broken file once."""
from __future__ import annotations

from app import repositories
from app.repo_config import CONFIG_PATH, ConfigError, parse_repo_config
from app.replies import reply
from webhooks.context import EventContext


def reload(ctx: EventContext, repo: repositories.Repo) -> None:
    """Read the file from the default branch; keep the last good config if it is broken."""
    gh = ctx.github(repo.full_name)
    found = gh.file_text(CONFIG_PATH, ref=repo.default_branch)
    text, sha = found if found else (None, None)
    try:
        config = parse_repo_config(text)
    except ConfigError as exc:
        message = f"{exc} (line {exc.line})" if exc.line else str(exc)
        repositories.store_config_error(ctx.conn, repo.id, message, sha)
        if repo.config_reported != sha:
            _report(ctx, repo, message, sha)
        return
    repositories.store_config(ctx.conn, repo.id, config, sha)


def _report(ctx: EventContext, repo: repositories.Repo, message: str, sha: str | None) -> None:
    """One issue comment per broken version of the file, on the status issue if there is one."""
    row = ctx.conn.execute("SELECT issue_number FROM status_issues WHERE repo_id = %s", (repo.id,)).fetchone()
    number = row["issue_number"] if row and row["issue_number"] else None
    if number is None:
        ctx.log.warning("broken fleet.yml and no status issue to report it on: %s", message)
    else:
        body = reply(
            f"`{CONFIG_PATH}` on `{repo.default_branch}` is invalid and was not applied; Fleet keeps using the "
            f"last valid configuration. {message}",
            {"kind": "config", "result": "invalid", "sha": sha},
        )
        ctx.github(repo.full_name).comment(number, body, dedupe_marker=f'"sha":"{sha}"')
    repositories.mark_config_reported(ctx.conn, repo.id, sha)
