"""Repository permissions and team membership, asked of GitHub and cached briefly in Postgres."""
from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg

from app.gates import permission_at_least
from app.repositories import Repo
from webhooks.context import EventContext

if TYPE_CHECKING:
    from app.github_gateway import RepoGateway

CACHE_SECONDS = 300

CACHED = """
SELECT permission FROM permissions_cache
WHERE repo_id = %s AND lower(login) = lower(%s) AND fetched_at > now() - make_interval(secs => %s)
"""
STORE = """
INSERT INTO permissions_cache (repo_id, login, permission) VALUES (%s, %s, %s)
ON CONFLICT (repo_id, login) DO UPDATE SET permission = EXCLUDED.permission, fetched_at = now()
"""


def permission(ctx: EventContext, repo: Repo, login: str) -> str:
    """admin / maintain / write / triage / read / none for ``login`` on the repository."""
    return lookup(ctx.conn, ctx.github(repo.full_name), repo, login)


def lookup(conn: psycopg.Connection, gh: "RepoGateway", repo: Repo, login: str) -> str:
    """The same answer outside a delivery (jobs): the cached permission, else GitHub's."""
    if not login:
        return "none"
    row = conn.execute(CACHED, (repo.id, login, CACHE_SECONDS)).fetchone()
    if row is not None:
        return row["permission"]
    value = gh.permission(login)
    conn.execute(STORE, (repo.id, login.lower(), value))
    return value


def has_write(value: str | None) -> bool:
    """``value`` (GitHub's permission or role name) is write or higher."""
    return permission_at_least(value, "write")


def teams_of(ctx: EventContext, repo: Repo, login: str, teams: tuple[str, ...]) -> frozenset[str]:
    """Which of ``teams`` (``org/slug``) ``login`` is an active member of."""
    from githubkit.exception import RequestFailed

    gh = ctx.github(repo.full_name)
    found = set()
    for team in teams:
        org, _, slug = team.partition("/")
        try:
            data = gh.gh.rest.teams.get_membership_for_user_in_org(org, slug, login).json()
        except RequestFailed as exc:
            if exc.response.status_code in (403, 404):
                continue
            raise
        if data.get("state") == "active":
            found.add(team.lower())
    return frozenset(found)
