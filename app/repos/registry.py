"""Installations and repositories as Fleet knows them, and each repository's cached config."""
from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg.types.json import Jsonb

from app.repos.config import DEFAULT_CONFIG, RepoConfig, load_stored_config

UPSERT_INSTALLATION = """
INSERT INTO installations (id, account_login, account_type)
VALUES (%s, %s, %s)
ON CONFLICT (id) DO UPDATE SET account_login = EXCLUDED.account_login,
    account_type = EXCLUDED.account_type, deleted_at = NULL, updated_at = now()
"""

SET_INSTALLATION_STATE = """
UPDATE installations SET suspended_at = %s, deleted_at = %s, updated_at = now() WHERE id = %s
"""

# A repository event can arrive before its installation's event (no ordering guarantee): record
# the installation with what is known, and let the installation event fill in the rest.
ENSURE_INSTALLATION = """
INSERT INTO installations (id, account_login) VALUES (%s, split_part(%s, '/', 1)) ON CONFLICT (id) DO NOTHING
"""

UPSERT_REPOSITORY = """
INSERT INTO repositories (id, installation_id, full_name, default_branch, private, archived)
VALUES (%(id)s, %(installation_id)s, %(full_name)s, %(default_branch)s, %(private)s, coalesce(%(archived)s, false))
ON CONFLICT (id) DO UPDATE SET
    installation_id = coalesce(EXCLUDED.installation_id, repositories.installation_id),
    full_name = EXCLUDED.full_name,
    default_branch = coalesce(%(default_branch_update)s, repositories.default_branch),
    private = EXCLUDED.private, archived = coalesce(%(archived)s, repositories.archived),
    removed_at = NULL, updated_at = now()
"""

# GitHub gave this name to another repository id (the old one deleted and re-created, renamed or
# transferred away, or two renamed into each other's names): the old row keeps its data under a
# name no GitHub repository can have ("~" is not allowed), until its own event renames or removes it.
FREE_NAME = """
UPDATE repositories SET full_name = full_name || '~' || id, updated_at = now()
WHERE lower(full_name) = lower(%(full_name)s) AND id <> %(id)s
"""
CURRENT_NAME = "SELECT full_name FROM repositories WHERE id = %s"

# A rename keeps the old name (lowercased) as a former name: dependency references written with
# it -- issue bodies keep them -- still resolve, as GitHub redirects it (claim_store.DEP_REPO_JOIN).
REMEMBER_FORMER_NAME = """
UPDATE repositories SET former_names = array_append(array_remove(former_names, lower(%(old)s)), lower(%(old)s))
WHERE id = %(id)s
"""
# A name in use now is nobody's former name any more.
FORGET_FORMER_NAME = """
UPDATE repositories SET former_names = array_remove(former_names, lower(%(name)s))
WHERE lower(%(name)s) = ANY(former_names)
"""

REMOVE_REPOSITORY = "UPDATE repositories SET removed_at = now(), updated_at = now() WHERE id = %s"
REMOVE_INSTALLATION_REPOS = "UPDATE repositories SET removed_at = now() WHERE installation_id = %s"

GET_REPO = "SELECT * FROM repositories WHERE id = %s"
GET_REPO_BY_NAME = "SELECT * FROM repositories WHERE lower(full_name) = lower(%s)"

STORE_CONFIG = """
UPDATE repositories SET config = %s, config_sha = %s, config_error = NULL, updated_at = now() WHERE id = %s
"""
STORE_CONFIG_ERROR = """
UPDATE repositories SET config_error = %s, config_sha = %s, updated_at = now() WHERE id = %s
"""
MARK_CONFIG_REPORTED = "UPDATE repositories SET config_reported = %s WHERE id = %s"
SET_ARCHIVED = "UPDATE repositories SET archived = %s, updated_at = now() WHERE id = %s"
MARK_SYNCED = "UPDATE repositories SET synced_at = now() WHERE id = %s"

# Handlers and jobs of one repository run one at a time (an advisory lock per repository), so
# two workers never interleave decisions about the same tasks; repositories run in parallel.
REPO_LOCK_TAKEN = "pg_advisory_xact_lock(hashtextextended('fleet-repo:' || {repo_id}::text, 0))"
REPO_LOCK = "SELECT " + REPO_LOCK_TAKEN.format(repo_id="%s")


@dataclass(frozen=True)
class Repo:
    id: int
    installation_id: int | None
    full_name: str
    default_branch: str
    private: bool
    config: RepoConfig
    config_sha: str | None
    config_error: str | None
    config_reported: str | None
    archived: bool = False

    @property
    def owner(self) -> str:
        return self.full_name.split("/", 1)[0]


def upsert_installation(conn: psycopg.Connection, installation_id: int, account_login: str, account_type: str) -> None:
    conn.execute(UPSERT_INSTALLATION, (installation_id, account_login, account_type))


def set_installation_state(conn: psycopg.Connection, installation_id: int, *, suspended_at=None, deleted_at=None) -> None:
    conn.execute(SET_INSTALLATION_STATE, (suspended_at, deleted_at, installation_id))
    if deleted_at is not None:
        conn.execute(REMOVE_INSTALLATION_REPOS, (installation_id,))


def upsert_repository(
    conn: psycopg.Connection,
    repo_id: int,
    full_name: str,
    *,
    installation_id: int | None = None,
    default_branch: str | None = None,
    private: bool = False,
    archived: bool | None = None,
) -> None:
    """Record a repository; ``default_branch`` and ``archived`` None keep what is known
    (installation events omit them). A name another id holds is freed first (FREE_NAME); a new
    name for a known id is a rename, and the old one stays resolvable as a former name."""
    if installation_id is not None:
        conn.execute(ENSURE_INSTALLATION, (installation_id, full_name))
    row = conn.execute(CURRENT_NAME, (repo_id,)).fetchone()
    old_name = row["full_name"] if row else None
    conn.execute(FREE_NAME, {"full_name": full_name, "id": repo_id})
    conn.execute(
        UPSERT_REPOSITORY,
        {
            "id": repo_id,
            "installation_id": installation_id,
            "full_name": full_name,
            "default_branch": default_branch or "main",
            "default_branch_update": default_branch,
            "private": private,
            "archived": archived,
        },
    )
    conn.execute(FORGET_FORMER_NAME, {"name": full_name})
    if old_name is not None and old_name.lower() != full_name.lower() and "~" not in old_name:
        conn.execute(REMEMBER_FORMER_NAME, {"id": repo_id, "old": old_name})


def recorded_as(
    conn: psycopg.Connection, repo_id: int, full_name: str, *, installation_id: int | None,
    default_branch: str | None, private: bool,
) -> Repo | None:
    """The repository when its row already says all this (the common case: one read, no writes
    for each of its deliveries); None when ``upsert_repository`` has something to record."""
    row = conn.execute(GET_REPO, (repo_id,)).fetchone()
    if (row is None or row["removed_at"] is not None or row["full_name"] != full_name
            or row["private"] != private
            or installation_id not in (None, row["installation_id"])
            or default_branch not in (None, row["default_branch"])):
        return None
    return _repo(row)


def remove_repository(conn: psycopg.Connection, repo_id: int) -> None:
    conn.execute(REMOVE_REPOSITORY, (repo_id,))


def _repo(row: dict | None) -> Repo | None:
    if row is None:
        return None
    config = DEFAULT_CONFIG if row["config"] is None else load_stored_config(row["config"])
    return Repo(
        row["id"], row["installation_id"], row["full_name"], row["default_branch"], row["private"],
        config, row["config_sha"], row["config_error"], row["config_reported"], row["archived"],
    )


def get(conn: psycopg.Connection, repo_id: int) -> Repo | None:
    return _repo(conn.execute(GET_REPO, (repo_id,)).fetchone())


def by_name(conn: psycopg.Connection, full_name: str) -> Repo | None:
    return _repo(conn.execute(GET_REPO_BY_NAME, (full_name,)).fetchone())


def store_config(conn: psycopg.Connection, repo_id: int, config: RepoConfig, sha: str | None) -> None:
    conn.execute(STORE_CONFIG, (Jsonb(config.model_dump(mode="json")), sha, repo_id))


def store_config_error(conn: psycopg.Connection, repo_id: int, error: str, sha: str | None) -> None:
    """Keep the last good config; remember the error so it is reported once."""
    conn.execute(STORE_CONFIG_ERROR, (error, sha, repo_id))


def mark_config_reported(conn: psycopg.Connection, repo_id: int, sha: str | None) -> None:
    conn.execute(MARK_CONFIG_REPORTED, (sha, repo_id))


def set_archived(conn: psycopg.Connection, repo_id: int, archived: bool) -> None:
    """An archived repository is read-only on GitHub: Fleet ends its claims and writes nothing there."""
    conn.execute(SET_ARCHIVED, (archived, repo_id))


def mark_synced(conn: psycopg.Connection, repo_id: int) -> None:
    conn.execute(MARK_SYNCED, (repo_id,))
