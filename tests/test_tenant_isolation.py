"""Tenant isolation: a dependency reference resolves only inside the dependent's installation,
and never from a public repository into a private one (security review: "dependency oracle")."""
from __future__ import annotations

import httpx
import pytest


def labels(world, repo, number):
    return sorted(l["name"] for l in world.sim.issue(repo, number)["labels"])


def readiness(world, repo, number):
    """The task's state as Fleet's read API (over HTTP, an unauthenticated loopback caller) says."""
    task = httpx.get(f"{world.fleet.url}/api/tasks/{repo}/{number}").json()
    return task["state"], task["blocked_by"]


def relabel(world, repo, number, body):
    """Edit the dependent (same references) so Fleet recomputes its label from current state."""
    world.sim.update_issue(repo, number, body=body + "\n")
    world.settle()


@pytest.fixture
def tenants(world):
    """octo/widgets (public, installation A) plus octo/secret (private, also A) and
    other/private (private, installation B), each with one open issue #1."""
    w = world
    w.sim.create_repo("octo/secret", private=True)
    w.sim.install(["octo/secret"])  # the octo account already has the App: joins installation A
    w.sim.add_org("other")
    w.sim.create_repo("other/private", private=True)
    w.sim.install(["other/private"])
    w.settle()
    for repo in ("octo/secret", "other/private"):
        assert w.sim.open_issue(repo, "Secret plan") == 1
    w.settle()
    w.use_state_labels()  # these tests read readiness off the state labels (tasks.manage_labels)
    return w


@pytest.mark.parametrize("private_ref", ["other/private#1", "octo/secret#1"])
def test_public_task_does_not_reveal_a_private_issue_closing(tenants, db_conn, private_ref):
    w = tenants
    body = f"Depends on {private_ref}"
    n = w.sim.open_issue(w.repo, "Public work", body=body)
    w.settle()
    assert labels(w, w.repo, n) == ["fleet:blocked"]  # unresolvable: unknown, as an unknown repository
    before = readiness(w, w.repo, n)
    assert before == ("blocked", [private_ref])
    w.sim.update_issue(private_ref.split("#")[0], 1, state="closed")
    w.settle()
    relabel(w, w.repo, n, body)
    assert labels(w, w.repo, n) == ["fleet:blocked"]
    assert readiness(w, w.repo, n) == before


def test_unknown_and_cross_tenant_references_look_the_same(tenants, db_conn):
    """Same label and the same API answer for a reference into another tenant as for a repository
    Fleet has never seen, so the answer tells nothing about the other tenant."""
    w = tenants
    a = w.sim.open_issue(w.repo, "Into B", body="Depends on other/private#1")
    b = w.sim.open_issue(w.repo, "Into nowhere", body="Depends on nobody/nothing#1")
    w.sim.update_issue("other/private", 1, state="closed")
    w.settle()
    assert labels(w, w.repo, a) == labels(w, w.repo, b) == ["fleet:blocked"]


def test_references_inside_the_tenant_still_resolve(tenants, db_conn):
    """A private repository may depend on a public one of its installation; public on public too."""
    w = tenants
    w.sim.create_repo("octo/lib")
    w.sim.install(["octo/lib"])
    w.settle()
    w.use_state_labels("octo/secret")
    lib = w.sim.open_issue("octo/lib", "Library")
    w.settle()
    private_dep = w.sim.open_issue("octo/secret", "Uses the library", body=f"Depends on octo/lib#{lib}")
    public_dep = w.sim.open_issue(w.repo, "Uses the library", body=f"Depends on octo/lib#{lib}")
    w.settle()
    assert labels(w, "octo/secret", private_dep) == labels(w, w.repo, public_dep) == ["fleet:blocked"]
    w.sim.update_issue("octo/lib", lib, state="closed")
    w.settle()
    relabel(w, "octo/secret", private_dep, f"Depends on octo/lib#{lib}")
    relabel(w, w.repo, public_dep, f"Depends on octo/lib#{lib}")
    assert labels(w, "octo/secret", private_dep) == labels(w, w.repo, public_dep) == ["fleet:ready"]
