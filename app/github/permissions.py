"""Repository permissions and team membership, asked of GitHub and cached briefly in Postgres."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import psycopg


if TYPE_CHECKING:
    from app.github.gateway import RepoGateway

Permission = Literal["none", "read", "triage", "write", "maintain", "admin"]
PERMISSION_ORDER: tuple[Permission, ...] = ("none", "read", "triage", "write", "maintain", "admin")
# The one permission ladder Fleet uses: GitHub's repository permissions (REST ``permission`` and
# ``role_name`` values, the old ``pull``/``push`` aliases) in PERMISSION_ORDER; App installation
# permissions (read < write < admin) rank on it too. Anything unknown ranks as none.
PERMISSION_RANK: dict[str, int] = {
    **{name: rank for rank, name in enumerate(PERMISSION_ORDER)},
    "pull": PERMISSION_ORDER.index("read"), "push": PERMISSION_ORDER.index("write"),
}

def has_permission(actual: str | None, needed: Permission) -> bool:
    """True when GitHub permission ``actual`` is at least ``needed`` (unknown counts as none)."""
    return PERMISSION_RANK.get((actual or "none").lower(), 0) >= PERMISSION_RANK[needed]


CACHE_SECONDS = 300

CACHED = """
SELECT permission FROM permissions_cache
WHERE repo_id = %s AND lower(login) = lower(%s) AND fetched_at > now() - make_interval(secs => %s)
"""
STORE = """
INSERT INTO permissions_cache (repo_id, login, permission) VALUES (%s, %s, %s)
ON CONFLICT (repo_id, login) DO UPDATE SET permission = EXCLUDED.permission, fetched_at = now()
"""


def permission(conn: psycopg.Connection, gh: "RepoGateway", repo_id: int, login: str) -> str:
    """admin / maintain / write / triage / read / none for ``login`` on the repository: the
    cached answer, else GitHub's."""
    if not login:
        return "none"
    row = conn.execute(CACHED, (repo_id, login, CACHE_SECONDS)).fetchone()
    if row is not None:
        return row["permission"]
    value = gh.permission(login)
    conn.execute(STORE, (repo_id, login.lower(), value))
    return value


ASSIGNABLE_CACHED = """
SELECT 1 FROM assignable_cache WHERE repo_id = %s AND login = lower(%s)
  AND checked_at > now() - make_interval(secs => %s)
"""
STORE_ASSIGNABLE = """
INSERT INTO assignable_cache (repo_id, login) VALUES (%s, lower(%s))
ON CONFLICT (repo_id, login) DO UPDATE SET checked_at = now()
"""


def can_be_assigned(conn: psycopg.Connection, gh: "RepoGateway", repo_id: int, login: str) -> bool:
    """Whether GitHub lets ``login`` be assigned issues in the repository. A yes is remembered
    ``CACHE_SECONDS``, like a permission (every ``/claim`` and ``/next`` asked GitHub again); a
    no is asked again each time, so a collaborator added a moment ago can claim at once."""
    if conn.execute(ASSIGNABLE_CACHED, (repo_id, login, CACHE_SECONDS)).fetchone() is not None:
        return True
    if not gh.can_be_assigned(login):
        return False
    conn.execute(STORE_ASSIGNABLE, (repo_id, login))
    return True


def has_write(value: str | None) -> bool:
    """``value`` (GitHub's permission or role name) is write or higher."""
    return has_permission(value, "write")


def teams_of(gh: "RepoGateway", login: str, teams: tuple[str, ...]) -> frozenset[str]:
    """Which of ``teams`` (``org/slug``) ``login`` is an active member of."""
    from githubkit.exception import RequestFailed

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
