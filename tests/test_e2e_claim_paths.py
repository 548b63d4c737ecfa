"""One claim path: self-assignment, /claim and /next build the same request (team lookups for
``claims.allow: ["@org/team"]`` included) and go through the same decision. Before, /claim and
/next skipped the team lookup, so a team member could self-assign but was refused by command."""
from __future__ import annotations

import pytest

from tests.test_e2e_claims import agents, assign, assignees, configure, fleet_markers, holder, open_task  # noqa: F401

TEAM_CONFIG = 'claims:\n  allow: ["@octo/agents"]\n'


@pytest.fixture
def team(agents):
    agents.sim.add_team_member("octo/agents", "alice")
    agents.sim.add_team_member("octo/agents", "carol", state="pending")  # invited, not a member
    configure(agents, TEAM_CONFIG)
    return agents


def _claim_by(world, path: str, login: str, number: int) -> None:
    if path == "assign":
        assign(world, login, number)
    else:
        world.sim.comment(world.repo, number, f"/{path}", author=login)
        world.settle()


@pytest.mark.parametrize("path", ["assign", "claim", "next"])
def test_a_team_member_is_accepted_on_every_path(team, db_conn, path):
    n = open_task(team, f"Team task via {path}")
    _claim_by(team, path, "alice", n)
    assert holder(db_conn, n) == "alice"
    assert assignees(team, n) == ["alice"]


@pytest.mark.parametrize("login", ["bob", "carol"])
@pytest.mark.parametrize("path", ["assign", "claim", "next"])
def test_a_non_member_is_refused_on_every_path(team, db_conn, path, login):
    n = open_task(team, f"Team task via {path}")
    _claim_by(team, path, login, n)
    assert holder(db_conn, n) is None and assignees(team, n) == []
    reasons = [m.get("reason") for m in fleet_markers(team, n) if m]
    assert "not_allowed" in reasons
