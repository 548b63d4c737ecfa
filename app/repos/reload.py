"""Reloading ``.github/fleet.yml`` when it changes on the default branch."""
from __future__ import annotations

import psycopg

from app.github.gateway import RepoGateway
from app.repos import registry as repositories
from app.repos.config import CONFIG_PATH, ConfigError, parse_repo_config


def reload(conn: psycopg.Connection, gh: RepoGateway, repo: repositories.Repo) -> tuple[ConfigError, str | None] | None:
    """Read the file from the default branch; keep the last good config if it is broken.
    Returns the error and the file's blob SHA when this broken version was never reported."""
    found = gh.file_text(CONFIG_PATH, ref=repo.default_branch)
    text, sha = found if found else (None, None)
    try:
        config = parse_repo_config(text)
    except ConfigError as exc:
        message = f"{exc} (line {exc.line})" if exc.line else str(exc)
        repositories.store_config_error(conn, repo.id, message, sha)
        return None if repo.config_reported == sha else (exc, sha)
    repositories.store_config(conn, repo.id, config, sha)
    return None
