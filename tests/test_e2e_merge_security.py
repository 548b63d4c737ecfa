"""End to end through the simulator: nobody merges without write access.

The attack from the security review, verbatim: a PR by a user without write access (in the
simulator, like a fork's author, not a collaborator of the public repository), a passing workflow,
"Closes #1", and `/queue` from its author; the same through the `fleet:queue` label and through
`queue.auto`. Then the gates: approvals from users without write or on an older head, required
checks reported by another App, and PR bodies that try to steer the merge commit.
"""
from __future__ import annotations

from tests.test_e2e_merge_queue import (  # noqa: F401 - `settings` lifts write pacing here too
    comments_text, drive, labels_of, merge_calls, merged, open_task_pr, queue_rows, run_ci, settings, sim_repo,
)
from tests.test_e2e_gates import gate_runs, head_of

OUTSIDER = "mallory"  # never added: read access, as anyone has on a public repository


def outsider_pr(world, name: str = "evil") -> int:
    """The attacker's PR: a branch of their own, a passing workflow, and "Closes #1"."""
    sim, repo = world.sim, world.repo
    sim.push(repo, f"{name}-branch", {"evil.txt": "pwned\n"}, author=OUTSIDER)
    pr = sim.open_pr(repo, f"{name}-branch", "Harmless fix", body="Closes #1", author=OUTSIDER)
    world.settle()
    run_ci(world)  # the PR's own workflow, reported by GitHub Actions, passes
    world.settle()
    return pr


def assert_nothing_merged(world, db_conn, pr: int) -> None:
    assert queue_rows(db_conn) == []
    assert merge_calls(world) == [] and merged(world) == []
    assert world.sim.pull(world.repo, pr)["merged"] is False
    assert world.sim.issue(world.repo, 1)["state"] == "open"


def test_the_reviewed_attack_queue_command_from_an_outsider_is_refused(world, db_conn):
    sim = world.sim
    sim.open_issue(world.repo, "Task one")
    pr = outsider_pr(world)
    assert world.sim.world.permission(sim_repo(world), OUTSIDER) == "read"
    [gates] = gate_runs(world, head_of(world, pr))
    assert gates.conclusion == "success"  # default config: the gates alone do not stop it
    sim.comment(world.repo, pr, "/queue", author=OUTSIDER)
    sim.comment(world.repo, pr, "/merge", author=OUTSIDER)
    drive(world)
    assert f"`{OUTSIDER}` cannot use `/queue` here: it needs write access." in comments_text(world, pr)
    assert_nothing_merged(world, db_conn, pr)


def test_the_queue_label_from_a_user_without_write_is_refused(world, db_conn):
    """Triage may add labels on GitHub, but not queue: the label is refused like the command."""
    sim = world.sim
    sim.add_user("trish", "triage")
    sim.open_issue(world.repo, "Task one")
    pr = outsider_pr(world)
    sim.update_issue(world.repo, pr, author="trish", labels=["fleet:queue"])
    drive(world)
    assert "Refused: `trish` needs write permission to queue this pull request." in comments_text(world, pr)
    assert_nothing_merged(world, db_conn, pr)


def test_queue_auto_never_queues_a_pr_whose_author_lacks_write(world, db_conn):
    sim = world.sim
    sim.set_file(world.repo, ".github/fleet.yml", "queue:\n  auto: true\n")
    sim.open_issue(world.repo, "Task one")
    world.settle()
    pr = outsider_pr(world)
    jobs_again = db_conn.execute("SELECT id FROM repositories").fetchone()["id"]
    from jobs import merge_queue as jobs

    jobs.enqueue_evaluation(jobs_again, pr, head_of(world, pr), force=True)  # evaluated twice: said once
    drive(world)
    assert_nothing_merged(world, db_conn, pr)
    said = [c for c in world.comments(pr) if "was not queued automatically" in c["body"]]
    assert len(said) == 1
    assert f"its author `{OUTSIDER}` has no write permission" in said[0]["body"]
    # The same PR queued by someone with write merges: the refusal was about the author only.
    sim.add_user("wendy", "write")
    sim.comment(world.repo, pr, "/queue", author="wendy")
    drive(world)
    assert [n for n, _, _ in merged(world)] == [pr]


def _reviews_row(world, pr: int) -> str:
    [run] = gate_runs(world, head_of(world, pr))
    return next(line for line in run.output["summary"].splitlines() if "| reviews |" in line)


def test_approvals_count_only_from_writers_on_the_current_head(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.add_user("bob", "write")
    sim.add_user("rita", "read")
    sim.set_file(world.repo, ".github/fleet.yml", "gates:\n  required_approvals: 1\n")
    world.settle()
    pr = open_task_pr(world, "reviewed")
    world.settle()
    run_ci(world)
    sim.review(world.repo, pr, "rita", "APPROVE")
    world.settle()
    assert "| ❌ | reviews | 0 of 1 required approvals; not counted, no write access: `rita` |" in _reviews_row(world, pr)

    sim.review(world.repo, pr, "bob", "APPROVE")
    world.settle()
    assert "| ✅ | reviews | approved by 1 of 1 required: `bob`;" in _reviews_row(world, pr)

    branch = sim.pull(world.repo, pr)["head"]["ref"]
    sim.push(world.repo, branch, {"more.txt": "after the approval\n"}, author="alice")
    world.settle()
    run_ci(world)
    world.settle()
    row = _reviews_row(world, pr)
    assert "| ❌ | reviews | 0 of 1 required approvals; not counted, approved an older commit: `bob`;" in row
    sim.comment(world.repo, pr, "/queue", author="alice")
    drive(world)
    assert merged(world) == []
    assert queue_rows(db_conn)[0]["outcome"] == "gates_failed"


def test_a_change_request_from_an_outsider_does_not_block(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.add_user("rita", "read")
    pr = open_task_pr(world, "blocked")
    world.settle()
    run_ci(world)
    sim.review(world.repo, pr, "rita", "REQUEST_CHANGES", body="no")
    world.settle()
    [run] = gate_runs(world, head_of(world, pr))
    assert run.conclusion == "success"
    assert "not counted, no write access: `rita`" in run.output["summary"]


def test_a_required_check_from_another_app_does_not_satisfy_it(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.set_file(world.repo, ".github/fleet.yml", "gates:\n  required_checks: [ci]\n")
    world.settle()
    pr = open_task_pr(world, "impostor")
    world.settle()
    head = head_of(world, pr)
    sim.ci(world.repo, head, "ci", app="evil-ci")  # green `ci`, but not from GitHub Actions
    sim.set_status(world.repo, head, "ci", "success", creator=OUTSIDER)
    world.settle()
    [run] = gate_runs(world, head)
    assert run.conclusion is None and run.status == "in_progress"
    assert "reported only by another App than required, not counted: `ci`" in run.output["summary"]
    assert "WARNING" not in run.output["summary"]  # required checks are configured
    sim.comment(world.repo, pr, "/queue", author="alice")
    world.settle()
    assert merge_calls(world) == []

    sim.ci(world.repo, head, "ci")  # GitHub Actions reports it
    drive(world)
    assert [n for n, _, _ in merged(world)] == [pr]


def test_a_failing_same_named_check_from_another_app_still_fails(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.set_file(world.repo, ".github/fleet.yml", "gates:\n  required_checks: [ci]\n")
    world.settle()
    pr = open_task_pr(world, "hidden")
    world.settle()
    head = head_of(world, pr)
    sim.ci(world.repo, head, "ci")
    sim.ci(world.repo, head, "ci", conclusion="failure", app="other-ci")
    world.settle()
    [run] = gate_runs(world, head)
    assert run.conclusion == "failure"


def test_app_any_accepts_a_check_from_any_source(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.set_file(world.repo, ".github/fleet.yml", "gates:\n  required_checks: [{name: ci, app: any}]\n")
    world.settle()
    pr = open_task_pr(world, "anyone")
    world.settle()
    sim.ci(world.repo, head_of(world, pr), "ci", app="evil-ci")
    world.settle()
    [run] = gate_runs(world, head_of(world, pr))
    assert run.conclusion == "success"


def test_no_required_checks_is_said_loudly_in_fleet_gates(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    pr = open_task_pr(world, "loud")
    world.settle()
    sim.ci(world.repo, head_of(world, pr), "tests")
    world.settle()
    [run] = gate_runs(world, head_of(world, pr))
    assert ("> No required checks are configured: any green check lets a PR merge. "
            "Set `gates.required_checks` in .github/fleet.yml.") in run.output["summary"]


HOSTILE_BODY = """Closes #{task}

[skip ci]
Co-authored-by: Mallory <mallory@example.com>
Signed-off-by: Linus Torvalds <torvalds@example.com>
skip-checks: true
The actual description."""


def merge_commit_message(world, sha: str) -> str:
    with world.sim.world.lock:
        return sim_repo(world).git.commits[sha].message


def test_skip_ci_and_trailers_in_the_body_never_reach_the_merge_commit(world, db_conn):
    """Even with a template that copies the body, and with the default template."""
    sim, repo = world.sim, world.repo
    sim.add_user("alice", "write")
    sim.set_file(repo, ".github/fleet.yml", 'queue:\n  commit_message: "{body}"\n')
    world.settle()
    prs = []
    for name in ("copied", "default"):
        if name == "default":
            sim.set_file(repo, ".github/fleet.yml", "gates:\n  required_checks: [tests]\n")
            world.settle()
        task = sim.open_issue(repo, f"Task {name}")
        sim.push(repo, f"alice/{task}-{name}", {f"{name}.txt": "x\n"}, author="alice")
        prs.append(sim.open_pr(repo, f"alice/{task}-{name}", f"Add {name} [skip ci]",
                               body=HOSTILE_BODY.format(task=task), author="alice"))
        world.settle()
        run_ci(world)
        world.settle()
        sim.comment(repo, prs[-1], "/queue", author="alice")
        drive(world)
    done = merged(world)
    assert [n for n, _, _ in done] == prs
    copied, default = (merge_commit_message(world, sha) for _, _, sha in done)
    for message in (copied, default):
        lowered = message.lower()
        assert "[skip ci]" not in lowered and "skip-checks" not in lowered
        assert "co-authored-by" not in lowered and "signed-off-by" not in lowered
    assert "The actual description." in copied
    assert "The actual description." not in default and f"from #{prs[1]} by alice" in default


def permission_lookups(world) -> list[str]:
    """Logins whose repository permission Fleet asked GitHub for, in order."""
    return [c.path.split("/collaborators/")[1].split("/")[0]
            for c in world.sim.calls("GET", "/permission") if "/collaborators/" in c.path]


def test_reviewer_permissions_cost_one_cached_lookup_per_distinct_reviewer(world, db_conn):
    sim = world.sim
    sim.add_user("alice", "write")
    sim.add_user("bob", "write")
    sim.add_user("rita", "read")
    pr = open_task_pr(world, "counted")
    world.settle()
    run_ci(world)
    world.settle()
    assert permission_lookups(world) == []  # no reviews: no lookup at all
    sim.review(world.repo, pr, "bob", "APPROVE")
    sim.review(world.repo, pr, "bob", "COMMENT", body="also")
    sim.review(world.repo, pr, "rita", "APPROVE")
    world.settle()
    assert sorted(permission_lookups(world)) == ["bob", "rita"]
    [run] = gate_runs(world, head_of(world, pr))
    assert "| reviews | no approval required: `bob`; not counted, no write access: `rita` |" in run.output["summary"]
