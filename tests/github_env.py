"""An end-to-end world for tests: the GitHub simulator over HTTP, Fleet's web app over HTTP
receiving its webhooks, and an in-process RQ worker to drain jobs."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

from githubkit import GitHub

from app import runtime
from app.settings import Settings
from app.sandbox.simulator.simulator import Simulator
from tests.conftest import ServedApp, drain, release_scheduled


STATE_LABELS_YML = "tasks:\n  manage_labels: true\n"


@dataclass
class GitHubWorld:
    sim: Simulator
    fleet: ServedApp
    settings: Settings
    repo: str = "octo/widgets"
    installation_id: int = 0

    def settle(self, timeout: float = 30.0) -> int:
        """Deliver every pending webhook and run every job, until both are quiet; returns jobs run.
        Gate evaluations scheduled again because GitHub was still computing mergeability run
        at once (the simulator computes it by the second read)."""
        total = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.sim.wait_idle(timeout=10), "simulator webhooks did not drain"
            ran = drain()
            total += ran
            if ran == 0 and self.sim.wait_idle(timeout=0.1) and not run_mergeable_rechecks():
                return total
        raise AssertionError("the system did not settle")

    def use_state_labels(self, repo: str | None = None) -> None:
        """Turn on ``tasks.manage_labels`` (off by default) for tests about the state labels."""
        self.sim.set_file(repo or self.repo, ".github/fleet.yml", STATE_LABELS_YML)
        self.settle()

    def agent(self, login: str) -> GitHub:
        """A GitHub client acting as ``login`` (what an agent's ``gh`` would do)."""
        return GitHub(self.sim.user_token(login), base_url=self.sim.url + "/", http_cache=False, auto_retry=False)

    def assign(self, login: str, number: int, assignee: str | None = None) -> None:
        owner, name = self.repo.split("/")
        gh = self.agent(login)  # keep a reference: githubkit's namespaces hold the client weakly
        gh.rest.issues.add_assignees(owner, name, number, assignees=[assignee or login])

    def comments(self, number: int) -> list[dict]:
        owner, name = self.repo.split("/")
        token = self.sim.installation_token(self.installation_id)
        gh = GitHub(token, base_url=self.sim.url + "/", http_cache=False)
        return gh.rest.issues.list_comments(owner, name, number, per_page=100).json()


def run_mergeable_rechecks() -> int:
    """Move the scheduled re-evaluations of heads whose mergeability GitHub was still computing
    (``jobs.merge_queue.MERGEABLE_RECHECKS``) to the queue now; returns how many."""
    return release_scheduled(lambda job: job.func_name == "jobs.merge_queue.evaluate_gates"
                             and len(job.args) >= 5 and bool(job.args[4]))


def start_world(settings: Settings, fleet_app_factory, repo: str = "octo/widgets") -> GitHubWorld:
    sim = Simulator(webhook_secret=settings.webhook_secret or "secret").start()
    world_settings = replace(
        settings, github_api_url=sim.url, app_id=1, private_key=sim.app_private_key_pem,
        # Pacing (GitHub's 80 writes/min) is exercised by its own tests; here it would only sleep.
        writes_per_minute=100_000, writes_per_hour=1_000_000,
    )
    runtime.configure(world_settings)
    from app.github import identity as bot_identity

    bot_identity._login_for.cache_clear()
    fleet = ServedApp(fleet_app_factory(world_settings))
    sim.webhook_url = fleet.url + "/webhooks/github"
    sim.create_repo(repo)
    world = GitHubWorld(sim, fleet, world_settings, repo)
    world.installation_id = sim.install([repo])
    world.settle()
    return world
