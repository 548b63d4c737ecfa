"""Reloading ``.github/fleet.yml`` when it changes, and reporting a broken file once."""
from __future__ import annotations

from datetime import datetime, timezone

from app import replies, repositories, status_service
from app.repo_config import CONFIG_PATH, ConfigError, parse_repo_config
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
            _report(ctx, repo, exc, sha)
        return
    repositories.store_config(ctx.conn, repo.id, config, sha)


def _report(ctx: EventContext, repo: repositories.Repo, error: ConfigError, sha: str | None) -> None:
    """One comment per broken version of the file, on the status issue (created if needed)."""
    gh = ctx.github(repo.full_name)
    number = status_service.ensure_issue(ctx.conn, gh, repo, ctx.settings.github_api_url, datetime.now(timezone.utc))
    marker = f"<!-- fleet:config-error={sha} -->"
    body = replies.config_invalid(message=str(error), key=error.key, line=error.line) + "\n" + marker
    gh.comment(number, body, dedupe_marker=marker)
    repositories.mark_config_reported(ctx.conn, repo.id, sha)
