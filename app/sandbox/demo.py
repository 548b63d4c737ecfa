"""``fleet demo``: the real Fleet coordinating a scripted fleet of agents on the bundled simulator.

Fleet runs exactly as under ``fleet up`` (``fleet web``, ``fleet worker`` × N and ``fleet scheduler``
as child processes, Postgres and Redis from the environment) but with a database and an RQ
namespace of its own, against the GitHub simulator served in this process. Then:

- a demo repository gets a ``.github/fleet.yml`` (short lease, required check ``ci``, WIP limit 1)
  and the sample plan (``app/sandbox/sample/plan.yml``: epics, tasks, dependencies) is imported;
- N agents (threads) work the way an agent with ``gh`` would, over the simulator's REST API with
  their own user tokens: self-assign a ready issue (or comment ``/claim`` on it, or ``/next`` on
  the status issue), wait for Fleet's verdict (the only assignee, ``fleet:claimed``; or a refusal
  naming the agent) and never start without one, push ``agent-x/N-slug``, open a PR with
  ``Closes #N``, comment ``/queue``, renew the lease with ``/progress`` while waiting, push a fix
  and re-queue when Fleet dequeues the PR after a CI failure, and move on when the claim is undone;
- a simulated CI reports the ``ci`` check on every new PR head after ``--ci-seconds``, failing with
  probability ``--failure-rate``, and, with ``--queue-mode groups``, on every head of Fleet's merge
  group branches (``fleet/queue/...``) too (see "CI on merge groups" below);
- the first agent Fleet lets hold a claim goes silent, so its lease expires and Fleet hands the task on.

With ``real_limits`` Fleet's write pacer runs at GitHub's budget (or a smaller one) and the
simulator answers writes over it with GitHub's secondary-limit 403; the summary adds what issue 11
measures: claim verdict latency, duplicate work, tasks held or merged twice, calls and writes per
task, delivery waits and stalls. ``race`` makes every agent claim the same task at the same moment.

Progress is a live table (or plain log lines with ``--no-live``); the run ends with a summary and
exits 0 only when every task of the plan was done.

CI on merge groups (``--queue-mode groups``; the default is ``serial``, see ``DemoOptions``;
``--depth`` and ``--batch-size`` set ``queue.depth`` and ``queue.batch_size``): a simulated
failure stands for a broken change, so it sticks to the PR head it was drawn for. A group head fails when it contains a PR head that failed
before and is still its PR's head; otherwise it fails with probability ``--group-failure-rate``
(default 0.03: changes that pass alone seldom break together, and drawing a group's failure at the
full ``--failure-rate`` on top of its PRs' own made groups look far worse than they are), and then
one of the PRs merged into that group (not those of the base or of the groups it was built on),
drawn at random, is the culprit: a change that passes alone but breaks combined with the others.
Every later group containing the culprit's head fails too, so Fleet's split of the group converges
on it and dequeues it; its agent pushes a fix, and the PR's new head starts clean. Only PRs green
on their own head join a group, so with ``--group-failure-rate 0`` no group fails.
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_PLAN = Path(__file__).resolve().parent / "sample" / "plan.yml"
DEMO_REPO = "fleet-demo/widgets"
CHECK_NAME = "ci"
BOT_LOGIN = "fleet[bot]"
AGENT_NAMES = [f"agent-{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
REFUSED_TASK_SKIP_S = 60.0  # a refused task is left alone this long (the status issue's list lags)
# An agent told "no ready task" by /next asks again once the status issue changed (docs/agents.md),
# or after this long at most (its edits wait when the write budget is busy).
NO_READY_TASK_BACKOFF_S = 60.0
VERDICT_POLL_S = 0.25  # how often an agent waiting for a verdict looks at the task: the latency's resolution
NEXT_POLL_S = 0.5  # how often an agent in line for /next looks for a task assigned to it
LIFTED_WRITES = ("100000", "1000000")  # per minute, per hour: the pacer out of the way (setup of a race)


@dataclass
class DemoOptions:
    agents: int = 8
    ci_seconds: float = 3.0
    failure_rate: float = 0.15
    group_failure_rate: float = 0.03  # a merge group of PRs green alone fails (an interaction)
    lease: str = "30s"
    timeout: float = 600.0
    bind: str = "127.0.0.1:8000"
    live: bool = True
    plan: Path = DEFAULT_PLAN
    database: str = "fleet_demo"
    workers: int = 2
    seed: int | None = None
    json_path: Path | None = None
    next_agents: bool = True  # some agents find work with /next, some comment /claim, the rest self-assign
    real_limits: bool = True  # Fleet's pacer on and the simulator enforcing GitHub's secondary limits
    writes_per_minute: int = 80  # with real_limits: the budget for Fleet's pacer and for the simulator
    writes_per_hour: int = 500
    race: bool = False  # agents make their first claim together and always go for the same (lowest) task
    spent_budget: bool = False  # with race: other work already spent the budget up to the verdicts' reserve
    verdict_timeout: float = 60.0  # an agent with no verdict on its claim after this long steps back
    # queue.mode in the demo's .github/fleet.yml. Serial by default: at GitHub's write budget, with
    # PRs arriving one at a time, merge groups took the sample plan ~1.7x as long (each merged PR
    # costs ~3.4 more writes: group branch, merge into it, fast-forward, branch deletion, and a
    # fleet/gates run on the PR head) and missed bench_economy's goal of 6 writes per merged task.
    queue_mode: str = "serial"
    depth: int = 3  # queue.depth (groups)
    batch_size: int = 1  # queue.batch_size (groups)
    batch_wait: str = "0s"  # queue.batch_wait (groups)


def parse_duration_seconds(text: str) -> float:
    """``30s``, ``2m``, ``1h30m`` or a plain number of seconds."""
    text = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 2m)")
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * unit[u] for n, u in parts)


def fleet_yml(lease: str, queue_mode: str = "serial", depth: int = 3, batch_size: int = 1,
              batch_wait: str = "0s") -> str:
    queue = ""
    if queue_mode == "groups":
        queue = ("  mode: groups  # PRs tested together in fleet/queue/main/<id>; CI runs there too\n"
                 "  merge_method: merge  # each PR's head merged into the group branch as it is\n"
                 f"  depth: {depth}\n"
                 f"  batch_size: {batch_size}\n"
                 f"  batch_wait: {batch_wait}\n")
    return (
        "# Written by `fleet demo`.\n"
        "claims:\n"
        f"  lease: {lease}\n"
        "  max_per_agent: 1\n"
        "gates:\n"
        f"  required_checks: [{CHECK_NAME}]  # reported by GitHub Actions (the simulator's CI)\n"
        "queue:\n"
        "  allow_authors: true  # agents have write access: each queues its own PR\n"
        f"{queue}"
        "status:\n"
        "  min_interval: 30s  # the default: every edit of the status issue is a write\n"
    )


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (p99 of 20 values is the largest); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def _slug(title: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", title.lower())[:4]) or "task"


def _marker(body: str | None) -> dict | None:
    from app.replies import parse_marker

    return parse_marker(body)


def is_fleet_identity(identity: str) -> bool:
    """Requests made as the App (JWT) or one of its installations, not as a user."""
    return identity == "app" or identity.startswith("installation:")


# --- shared bookkeeping ------------------------------------------------------------------------

@dataclass
class AgentView:
    login: str
    doing: str = "starting"
    done: int = 0
    fixes: int = 0
    refused: int = 0
    silent: bool = False


@dataclass
class ClaimRecord:
    """One claim an agent made and the verdict it observed: ``held``, ``refused`` or ``none``
    (``in_line``: a ``/next`` still waiting for a ready task when the run ended)."""

    agent: str
    task: int | None  # None: a /next that got no task
    how: str  # assign, claim, next
    claimed_at: float  # monotonic: when the claim (assignment or command comment) was sent
    verdict_at: float
    verdict: str

    @property
    def latency(self) -> float:
        return self.verdict_at - self.claimed_at


@dataclass
class Tally:
    """What the agents and CI saw, for the table and the summary."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    agents: dict[str, AgentView] = field(default_factory=dict)
    ci_runs: int = 0
    ci_failures: int = 0
    group_ci_runs: int = 0  # of ci_runs: on merge group heads
    group_ci_failures: int = 0
    dequeued: set[int] = field(default_factory=set)  # PRs Fleet took out of the queue at least once
    log: list[str] = field(default_factory=list)
    claims: list[ClaimRecord] = field(default_factory=list)
    # (task, agent, since, until): while an agent believed it held the task (until None: still)
    beliefs: list[list] = field(default_factory=list)
    started_work: dict[int, set[str]] = field(default_factory=dict)  # task -> agents that pushed or opened a PR
    silences_left: int = 1  # one agent goes silent on the first claim Fleet lets it hold

    def take_silence(self) -> bool:
        """True for the first agent to hold a claim: it goes silent. Any agent, so a lease expires
        in every run (a designated agent that never won a claim left a run without one)."""
        with self.lock:
            if self.silences_left <= 0:
                return False
            self.silences_left -= 1
            return True

    def record_claim(self, record: ClaimRecord) -> None:
        with self.lock:
            self.claims.append(record)

    def believe(self, task: int, agent: str) -> None:
        with self.lock:
            self.beliefs.append([task, agent, time.monotonic(), None])

    def disbelieve(self, task: int, agent: str) -> None:
        with self.lock:
            for belief in self.beliefs:
                if belief[0] == task and belief[1] == agent and belief[3] is None:
                    belief[3] = time.monotonic()

    def start_work(self, task: int, agent: str) -> None:
        with self.lock:
            self.started_work.setdefault(task, set()).add(agent)

    def note(self, line: str) -> None:
        with self.lock:
            self.log.append(f"{time.strftime('%H:%M:%S')} {line}")

    def set(self, login: str, doing: str) -> None:
        with self.lock:
            self.agents[login].doing = doing


# --- simulated CI ------------------------------------------------------------------------------

class SimulatedCI(threading.Thread):
    """Reports the ``ci`` check run on every new head of an open PR and of a merge group branch:
    in progress at once, then success or failure after ``seconds``. A PR head fails with
    probability ``failure_rate``; a group head as the module docstring says ("CI on merge groups")."""

    def __init__(self, sim, repo: str, seconds: float, failure_rate: float, tally: Tally, rng: random.Random,
                 group_failure_rate: float = 0.0):
        super().__init__(name="demo-ci", daemon=True)
        self.sim, self.repo, self.seconds, self.failure_rate = sim, repo, seconds, failure_rate
        self.group_failure_rate = group_failure_rate
        self.tally, self.rng = tally, rng
        self.stopping = threading.Event()
        self.started_at: dict[str, float] = {}
        self.reported: set[str] = set()
        self.failed_heads: set[str] = set()  # PR heads that failed (alone or as a group's culprit)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._tick()
            except Exception as exc:  # a CI hiccup must not end the demo
                self.tally.note(f"ci: {type(exc).__name__}: {exc}")
            self.stopping.wait(0.1)

    def _tick(self) -> None:
        from app.queue.groups import is_group_branch

        with self.sim.world.lock:
            r = self.sim.world.repo(self.repo)
            heads = [(f"PR #{i.number}", i.pull.head_sha) for i in r.issues.values()
                     if i.pull is not None and i.state == "open" and not i.pull.merged]
            heads += [(f"group {b.rsplit('/', 1)[-1]}", sha) for b, sha in r.git.branches.items()
                      if is_group_branch(b)]
        now = time.monotonic()
        for what, sha in heads:
            if sha not in self.started_at:
                self.started_at[sha] = now
                self.sim.ci(self.repo, sha, CHECK_NAME, status="in_progress", conclusion=None)
            elif sha not in self.reported and now - self.started_at[sha] >= self.seconds:
                self.reported.add(sha)
                group = what.startswith("group")
                failed, culprit = self._group_verdict(sha) if group else (self._pr_verdict(sha), None)
                self.sim.ci(self.repo, sha, CHECK_NAME, conclusion="failure" if failed else "success",
                            output={"title": "tests failed" if failed else "tests passed",
                                    "summary": "Simulated CI run by `fleet demo`."})
                with self.tally.lock:
                    self.tally.ci_runs += 1
                    self.tally.ci_failures += failed
                    self.tally.group_ci_runs += group
                    self.tally.group_ci_failures += int(failed and group)
                if failed:
                    self.tally.note(f"ci: {what} failed on {sha[:7]}" + (f" ({culprit})" if culprit else ""))

    def _pr_verdict(self, sha: str) -> bool:
        failed = self.rng.random() < self.failure_rate
        if failed:
            self.failed_heads.add(sha)
        return failed

    def _group_verdict(self, sha: str) -> tuple[bool, str | None]:
        """(failed, why) for a group head: it contains a failed PR head, or it fails by the rate and
        one of the PRs merged into this very group becomes the culprit."""
        from app.queue.groups import is_group_branch

        with self.sim.world.lock:
            r = self.sim.world.repo(self.repo)
            git = r.git
            contained = git.ancestors(sha)
            # A failing change stays failing until its PR's head moves on (the agent's fix).
            current = {i.pull.head_sha for i in r.issues.values() if i.pull is not None and i.state == "open"}
            if self.failed_heads & current & contained:
                return True, "contains a failing change"
            if self.rng.random() >= self.group_failure_rate:
                return False, None
            # What the base and the groups this one was built on hold is not this group's own.
            below = [h for b, h in git.branches.items()
                     if h != sha and (b == r.default_branch or is_group_branch(b)) and h in contained]
            older = git.ancestors(*below) if below else set()
            own = sorted((i.number, i.pull.head_sha) for i in r.issues.values()
                         if i.pull is not None and i.state == "open" and not i.pull.merged
                         and i.pull.head_sha in contained and i.pull.head_sha not in older)
        if not own:
            return True, None
        number, head = own[self.rng.randrange(len(own))]
        self.failed_heads.add(head)
        return True, f"PR #{number} breaks it combined with the others"


# --- scripted agents ---------------------------------------------------------------------------

class ScriptedAgent(threading.Thread):
    """One agent doing what ``docs/agents.md`` asks, through the REST API as its own user."""

    def __init__(self, sim, repo: str, login: str, tally: Tally, rng: random.Random, lease_s: float,
                 claim_mode: str, status_issue: callable, verdict_timeout: float = 60.0,
                 start_line: threading.Barrier | None = None):
        super().__init__(name=f"demo-{login}", daemon=True)
        from githubkit import GitHub

        self.sim, self.repo, self.login, self.tally, self.rng = sim, repo, login, tally, rng
        self.owner, self.name = repo.split("/")
        self.gh = GitHub(sim.user_token(login), base_url=sim.url + "/", http_cache=False, auto_retry=False)
        self.renew_every = max(1.0, lease_s * 0.5)
        self.claim_mode = claim_mode
        self.verdict_timeout, self.start_line = verdict_timeout, start_line
        self.status_issue = status_issue
        self.passed_over: dict[int, float] = {}  # task → until when not to try it again (refused)
        # (status issue's body, open issues) when told "no ready task": ask again once either moves
        self.no_ready_seen: tuple | None = None
        self.no_ready_until = 0.0
        self.stopping = threading.Event()

    # -- plumbing --
    def _call(self, fn, *args, **kwargs):
        """A REST call with a few retries (the simulator or Fleet may be busy); None on failure."""
        for attempt in range(4):
            if self.stopping.is_set():
                return None
            try:
                return fn(*args, **kwargs).json()
            except Exception as exc:
                if attempt == 3:
                    self.tally.note(f"{self.login}: {type(exc).__name__} calling {getattr(fn, '__name__', fn)}")
                    return None
                time.sleep(0.3 * (attempt + 1))
        return None

    def _sleep(self, seconds: float) -> bool:
        """False when the demo is stopping."""
        return not self.stopping.wait(seconds)

    def _issue(self, number: int) -> dict | None:
        return self._call(self.gh.rest.issues.get, self.owner, self.name, number)

    def _comment(self, number: int, body: str) -> None:
        self._call(self.gh.rest.issues.create_comment, self.owner, self.name, number, body=body)

    # -- the loop --
    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                task = self._find_task()
                if task is None:
                    self.tally.set(self.login, "waiting for ready work")
                    self._sleep(1.0 + self.rng.random())
                    continue
                if self.tally.take_silence():
                    self._go_silent(task)
                    continue
                self._work(task)
            except Exception as exc:  # keep the agent alive; the table shows what happened
                self.tally.note(f"{self.login}: {type(exc).__name__}: {exc}")
                self._sleep(1.0)

    def _find_task(self) -> dict | None:
        self.tally.set(self.login, "looking for a task")
        if self.claim_mode == "next":
            status = self.status_issue()
            # One /next waits in line until a task is ready for it: nothing to poll, nothing that
            # costs Fleet a write while it waits.
            if status is not None and not self._nothing_new(status):
                return self._claim_with_next(status)
            return None
        candidates = self._ready_tasks()
        if not candidates:
            return None
        # Racing agents all go for the most urgent task (the first listed), at the same moment.
        number = candidates[0] if self.start_line is not None else self.rng.choice(candidates[:4])
        self._wait_for_start_line()
        self.tally.set(self.login, f"claiming #{number} ({self.claim_mode})")
        claimed_at = time.monotonic()
        since = _iso(time.time() - 2)
        if self.claim_mode == "claim":
            self._comment(number, "/claim")
        else:
            self._call(self.gh.rest.issues.add_assignees, self.owner, self.name, number, assignees=[self.login])
        return self._await_verdict(number, claimed_at, since, self.claim_mode, assigned=self.claim_mode == "assign")

    def _ready_tasks(self) -> list[int]:
        """Ready tasks, most urgent first, from the status issue's hidden ``{"ready": [...]}``
        marker (``docs/agents.md``: Fleet writes no readiness labels by default). It may be a few
        seconds old: Fleet referees the claim either way."""
        now = time.monotonic()
        listed = [n for n in self._listed_ready() if self.passed_over.get(n, 0) < now]
        return [n for n in listed[:4] if self._still_free(n)]

    def _nothing_new(self, status: int) -> bool:
        """Told "no ready task", and since then neither has the status issue's text changed nor
        has a task closed (which may have unblocked another), nor has the backoff passed: asking
        again would only spend one of Fleet's writes on the same answer."""
        if self.no_ready_seen is None or time.monotonic() >= self.no_ready_until:
            return False
        return self._what_is_open(status) == self.no_ready_seen

    def _what_is_open(self, status: int) -> tuple:
        """(status issue's body, open issue numbers): agents' reads, which cost Fleet nothing."""
        issue = self._issue(status)
        listed = self._call(self.gh.rest.issues.list_for_repo, self.owner, self.name, state="open", per_page=100)
        return (issue or {}).get("body"), tuple(sorted(i["number"] for i in listed or [] if "pull_request" not in i))

    def _listed_ready(self) -> list[int]:
        """The numbers in the status issue's ``{"ready": [...]}`` marker."""
        status = self.status_issue()
        issue = self._issue(status) if status is not None else None
        for line in ((issue or {}).get("body") or "").splitlines():
            data = _marker(line) if line.startswith("<!-- fleet:{") else None
            if data and isinstance(data.get("ready"), list):
                return [n for n in data["ready"] if isinstance(n, int)]
        return []

    def _still_free(self, number: int) -> bool:
        """Look before claiming (the list may be older than the task's claim): open, nobody assigned."""
        issue = self._issue(number)
        if issue is None or issue.get("state") != "open" or issue.get("assignees"):
            self.passed_over[number] = time.monotonic() + REFUSED_TASK_SKIP_S
            return False
        return True

    def _wait_for_start_line(self) -> None:
        """Racing agents make their first claim together, within a fraction of a second."""
        if self.start_line is None:
            return
        line, self.start_line = self.start_line, None
        try:
            line.wait(timeout=30)
        except threading.BrokenBarrierError:
            pass

    def _await_verdict(self, number: int, claimed_at: float, since: str, how: str, assigned: bool,
                       waited_until: float | None = None) -> dict | None:
        """Wait for Fleet's verdict on a claim and record how long it took. ``docs/agents.md``: no
        verdict yet means wait, never go; with no verdict at all after ``verdict_timeout`` step back
        (counted from ``waited_until`` for a ``/next`` that waited in line)."""
        kind, issue = self._verdict(number, since, assigned, (waited_until or claimed_at) + self.verdict_timeout)
        if kind == "cut":  # the run ended while this claim waited: neither a verdict nor a missing one
            return None
        self.tally.record_claim(ClaimRecord(self.login, number, how, claimed_at, time.monotonic(), kind))
        if kind == "held":
            self.tally.believe(number, self.login)
            return issue
        with self.tally.lock:
            self.tally.agents[self.login].refused += 1
        self.passed_over[number] = time.monotonic() + REFUSED_TASK_SKIP_S  # the ready list may still show it
        if kind == "none":
            self.tally.note(f"{self.login}: no verdict on #{number} after {self.verdict_timeout:g} s; stepping back")
            self._call(self.gh.rest.issues.remove_assignees, self.owner, self.name, number, assignees=[self.login])
        else:
            self.tally.note(f"{self.login}: claim of #{number} refused by Fleet")
        return None

    def _verdict(self, number: int, since: str, assigned: bool, deadline: float) -> tuple[str, dict | None]:
        """``held`` once we are the only assignee and the task carries ``fleet:claimed``;
        ``refused`` on a refusal reply naming us, or once we are unassigned after having been
        assigned; ``none`` when the deadline passes first; ``cut`` when the run ends before either."""
        while time.monotonic() < deadline and self._sleep(VERDICT_POLL_S):
            issue = self._issue(number)
            if issue is None:
                continue
            assignees = [a["login"] for a in issue.get("assignees") or []]
            labels = {l["name"] for l in issue.get("labels") or []}
            if assignees == [self.login] and "fleet:claimed" in labels and issue.get("state") == "open":
                return "held", issue
            if self.login in assignees:
                assigned = True
            elif assigned or issue.get("state") != "open":
                return "refused", None
            if self._refusal_naming_me(number, since):
                return "refused", None
        return ("none" if time.monotonic() >= deadline else "cut"), None

    def _refusal_naming_me(self, number: int, since: str) -> bool:
        replies = self._call(self.gh.rest.issues.list_comments, self.owner, self.name, number,
                             since=since, per_page=100) or []
        for c in replies:
            data = _marker(c.get("body")) if c["user"]["login"] == BOT_LOGIN else None
            if data and data.get("result") in ("refused", "displaced") \
                    and str(data.get("agent", "")).split(":")[0] == self.login:
                return True
        return False

    def _claim_with_next(self, status_number: int) -> dict | None:
        """Comment ``/next`` on the status issue; Fleet assigns the most urgent ready task, at once
        or, with nothing ready, once one becomes ready (the request waits in line, unanswered:
        ``docs/agents.md``). Told ``no_ready_task`` (nothing may become ready), ask again only
        once the status issue or the open tasks change."""
        self._wait_for_start_line()
        self.tally.set(self.login, "asking Fleet: /next")
        since = _iso(time.time() - 2)
        claimed_at = time.monotonic()
        self._comment(status_number, "/next")
        while self._sleep(NEXT_POLL_S):
            mine = self._call(self.gh.rest.issues.list_for_repo, self.owner, self.name, state="open",
                              assignee=self.login, per_page=100) or []
            mine = [i for i in mine if "pull_request" not in i]
            if mine:  # the assignment came; the verdict label comes with it
                return self._await_verdict(mine[0]["number"], claimed_at, since, "next", assigned=True,
                                           waited_until=time.monotonic())
            self.tally.set(self.login, "in line for /next")
            if self._told_no_ready_task(status_number, since):
                self.tally.record_claim(ClaimRecord(self.login, None, "next", claimed_at, time.monotonic(), "refused"))
                self.no_ready_seen = self._what_is_open(status_number)
                self.no_ready_until = time.monotonic() + NO_READY_TASK_BACKOFF_S
                return None
        # The run ended while the request waited in line: it was neither answered nor lost.
        self.tally.record_claim(ClaimRecord(self.login, None, "next", claimed_at, time.monotonic(), "in_line"))
        return None

    def _told_no_ready_task(self, status_number: int, since: str) -> bool:
        replies = self._call(self.gh.rest.issues.list_comments, self.owner, self.name, status_number,
                             since=since, per_page=100) or []
        for c in replies:
            data = _marker(c.get("body")) if c["user"]["login"] == BOT_LOGIN else None
            if data and data.get("command") == "next" and data.get("result") == "refused" \
                    and str(data.get("agent", "")).split(":")[0] == self.login:
                return True
        return False

    def _still_mine(self, number: int) -> bool:
        """An agent whose claim was undone moves on (``docs/agents.md``): False once we are no
        longer assigned to the open task."""
        issue = self._issue(number)
        if issue is None or issue.get("state") != "open":
            return True
        if self.login in [a["login"] for a in issue.get("assignees") or []]:
            return True
        self.tally.disbelieve(number, self.login)
        self.tally.note(f"{self.login}: claim of #{number} was undone; moving on")
        return False

    def _go_silent(self, issue: dict) -> None:
        """Hold the claim and do nothing (no push, no comment) until Fleet releases it."""
        number = issue["number"]
        self.tally.set(self.login, f"silent on #{number}")
        with self.tally.lock:
            self.tally.agents[self.login].silent = True
        self.tally.note(f"{self.login}: claimed #{number} and went silent")
        while self._sleep(VERDICT_POLL_S):  # notice the release at once: until then it "holds" the task
            issue = self._issue(number)
            if issue is not None and self.login not in [a["login"] for a in issue.get("assignees") or []]:
                self.tally.note(f"{self.login}: lease on #{number} expired; back to work")
                break
        self.tally.disbelieve(number, self.login)
        with self.tally.lock:
            self.tally.agents[self.login].silent = False

    def _work(self, issue: dict) -> None:
        number, title = issue["number"], issue["title"]
        branch = f"{self.login}/{number}-{_slug(title)}"
        self.tally.set(self.login, f"working on #{number}")
        if not self._sleep(0.5 + self.rng.random() * 1.5) or not self._still_mine(number):
            return
        self.tally.start_work(number, self.login)
        path = f"work/{number}-{_slug(title)}-{self.login}.md"  # never the same file as another agent's
        self.sim.push(self.repo, branch, {path: f"# {title}\n\nDone by {self.login}.\n"}, author=self.login,
                      message=f"{title} (#{number})")
        pr = self._call(self.gh.rest.pulls.create, self.owner, self.name, title=title, head=branch, base="main",
                        body=f"Closes #{number}\n\nImplemented by {self.login}.")
        if pr is None:
            self.tally.disbelieve(number, self.login)
            return
        pr_number = pr["number"]
        self._comment(pr_number, "/queue")
        self.tally.set(self.login, f"#{number}: PR #{pr_number} queued")
        handled: set[int] = set()
        last_renew = time.monotonic()
        fixes = 0
        while self._sleep(1.0):
            pull = self._call(self.gh.rest.pulls.get, self.owner, self.name, pr_number)
            if pull is None:
                continue
            if pull.get("merged"):
                self.tally.disbelieve(number, self.login)
                with self.tally.lock:
                    self.tally.agents[self.login].done += 1
                self.tally.note(f"{self.login}: #{number} done (PR #{pr_number} merged)")
                return
            if pull.get("state") != "open" or not self._still_mine(number):
                self.tally.disbelieve(number, self.login)
                return
            comments = self._call(self.gh.rest.issues.list_comments, self.owner, self.name, pr_number,
                                  per_page=100) or []
            for c in comments:
                data = _marker(c.get("body")) if c["user"]["login"] == BOT_LOGIN else None
                if not data or data.get("queue") != "dequeued" or c["id"] in handled:
                    continue
                handled.add(c["id"])
                task = self._issue(number)
                if task is not None and task.get("state") == "closed":  # someone else's PR finished it
                    self.tally.disbelieve(number, self.login)
                    self.tally.note(f"{self.login}: #{number} was finished by another PR; leaving PR #{pr_number}")
                    return
                fixes += 1
                with self.tally.lock:
                    self.tally.agents[self.login].fixes += 1
                    self.tally.dequeued.add(pr_number)
                self.tally.note(f"{self.login}: PR #{pr_number} dequeued ({data.get('reason')}); pushing a fix")
                self.tally.set(self.login, f"#{number}: fixing PR #{pr_number}")
                self.sim.push(self.repo, branch, {path: f"# {title}\n\nDone by {self.login}; fix {fixes}.\n"},
                              author=self.login, message=f"Fix the failing check ({fixes})")
                self._comment(pr_number, "/queue")
                self.tally.set(self.login, f"#{number}: PR #{pr_number} re-queued")
                last_renew = time.monotonic()
            if time.monotonic() - last_renew >= self.renew_every:
                self._comment(number, "/progress 90 waiting for the merge queue")
                last_renew = time.monotonic()
        self.tally.disbelieve(number, self.login)


# --- the run -----------------------------------------------------------------------------------

class DemoRun:
    def __init__(self, options: DemoOptions):
        self.o = options
        self.rng = random.Random(options.seed)
        self.tally = Tally()
        self.sim = None
        self.children: list = []
        self.agents: list[ScriptedAgent] = []
        self.ci: SimulatedCI | None = None
        self.tasks: list[int] = []
        self.repo_id: int | None = None
        self.db_url = ""
        self.queue_name = f"fleet-demo-{os.getpid()}"
        self.log_dir = Path(tempfile.mkdtemp(prefix="fleet-demo-"))
        self.setup_calls = (0, 0)
        self._status_number: int | None = None
        self._drawn = 0

    # -- setup --
    def _prepare(self) -> None:
        from app import db, runtime
        from app.settings import load_settings
        from app.cli.up import _spawn, _wait_http, start_simulator

        base = load_settings()
        self.db_url = db.with_database(base.database_url, self.o.database)
        db.drop_database(self.db_url)
        db.ensure_database(self.db_url)
        with db.connect(self.db_url) as conn:
            db.migrate(conn)
        env = dict(os.environ)
        env.update({"DATABASE_URL": self.db_url, "FLEET_QUEUE": self.queue_name, "GITHUB_APP_PRIVATE_KEY_PATH": "",
                    "FLEET_BOT_LOGIN": BOT_LOGIN, "LOG_LEVEL": os.environ.get("LOG_LEVEL") or "WARNING",
                    "FLEET_LOG_FORMAT": "console", "FLEET_SWEEP_INTERVAL": "5"})
        if self.o.real_limits:
            env["FLEET_WRITES_PER_MINUTE"] = str(self.o.writes_per_minute)
            env["FLEET_WRITES_PER_HOUR"] = str(self.o.writes_per_hour)
        self.sim = start_simulator(env)
        if self.o.real_limits:
            self.sim.secondary_limits = ((60, self.o.writes_per_minute), (3600, self.o.writes_per_hour))
            # A race starts with its whole budget: setup's writes are neither paced nor enforced.
            self.sim.enforce_secondary_limits = not self.o.race
        self.sim.create_repo(DEMO_REPO)
        self.sim.add_user("maintainer", "admin")
        for login in self.agent_logins:
            self.sim.add_user(login, "write")
        self.sim.set_file(DEMO_REPO, ".github/fleet.yml",
                          fleet_yml(self.o.lease, self.o.queue_mode, self.o.depth, self.o.batch_size,
                                    self.o.batch_wait),
                          message="Configure Fleet for the demo")
        runtime.configure(load_settings(self._setup_env(env)))
        self.log_file = (self.log_dir / "fleet.log").open("w")
        self.children = _spawn(self.o.bind, self.o.workers, env, output=self.log_file)
        if not _wait_http(f"{self.web_url}/healthz", timeout=40):
            raise RuntimeError(f"the web server did not start; see {self.log_dir / 'fleet.log'}")
        self.sim.webhook_url = f"{self.web_url}/webhooks/github"
        self.sim.resume_deliveries()
        self.sim.install([DEMO_REPO])
        self.repo_id = self._wait_for(self._repo_row, 40, "Fleet to record the installation")

    def _setup_env(self, env: dict) -> dict:
        """Settings for this process, which imports the plan as the App. Paced like Fleet's workers,
        except before a race: then the pacer is lifted and counts under a namespace of its own."""
        if not self.o.race:
            return env
        per_minute, per_hour = LIFTED_WRITES
        return {**env, "FLEET_WRITES_PER_MINUTE": per_minute, "FLEET_WRITES_PER_HOUR": per_hour,
                "FLEET_QUEUE": self.queue_name + "-setup"}

    def _fresh_budget(self) -> None:
        """Before a race: forget the writes of setup, in Fleet's pacer and in the simulator, and
        enforce the limits from here on."""
        import redis

        from app import runtime

        client = redis.Redis.from_url(runtime.settings().redis_url)
        keys = list(client.scan_iter(f"{self.queue_name}:writes:*", count=1000))
        if keys:
            client.delete(*keys)
        with self.sim.world.lock:
            self.sim.write_log.clear()
            self.sim.secondary_limit_hits.clear()
        self.sim.enforce_secondary_limits = True
        if self.o.spent_budget:
            self._spend_budget(client)

    def _spend_budget(self, client) -> None:
        """The installation's rolling minute and hour already hold as many writes as every class
        below claim verdicts and merges may make, as if other work had just spent them: the race
        is decided out of the verdicts' reserve alone."""
        from app.github.write_budget import WriteClass, ceiling

        [row] = self._query("SELECT installation_id FROM repositories WHERE id = %s", (self.repo_id,))
        prefix = f"{self.queue_name}:writes:{row['installation_id']}"
        now = time.time()
        for window, budget, ttl in (("minute", self.o.writes_per_minute, 120), ("hour", self.o.writes_per_hour, 7200)):
            spent = ceiling(WriteClass.QUEUE, budget)
            client.zadd(f"{prefix}:{window}", {f"other-work:{i}": now for i in range(spent)})
            client.expire(f"{prefix}:{window}", ttl)

    def claim_mode(self, idx: int) -> str:
        """How agent ``idx`` claims: every third asks ``/next``, every third comments ``/claim``."""
        if not self.o.next_agents:
            return "assign"
        return ("assign", "next", "claim")[idx % 3]

    @property
    def agent_logins(self) -> list[str]:
        return AGENT_NAMES[: self.o.agents]

    @property
    def web_url(self) -> str:
        return "http://" + self.o.bind.replace("0.0.0.0", "127.0.0.1")

    def _wait_for(self, probe, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            self._check_children()
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}")

    def _query(self, sql: str, params: tuple = ()) -> list:
        from app import db

        with db.connect(self.db_url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def _repo_row(self) -> int | None:
        rows = self._query("SELECT id FROM repositories WHERE full_name = %s AND installation_id IS NOT NULL",
                           (DEMO_REPO,))
        return rows[0]["id"] if rows else None

    def _check_children(self) -> None:
        for child in self.children:
            if child.poll() is not None:
                raise RuntimeError(f"a Fleet process exited with {child.returncode}; see {self.log_dir / 'fleet.log'}")

    def _import_plan(self) -> int:
        """``fleet plan apply`` in this process (as the App). Webhooks wait until it is done, so the
        tasks appear with their dependencies already written."""
        from app.github.evidence import EvidenceRecorder
        from app.tasks.plan import parse_plan
        from app.tasks.plan_apply import apply_plan
        from jobs.sync import gateway_for

        plan = parse_plan(Path(self.o.plan).read_text())
        before = len(self.sim.requests)
        self.sim.pause_deliveries()
        evidence = EvidenceRecorder(self.db_url, repo_full_name=DEMO_REPO)
        try:
            apply_plan(gateway_for(DEMO_REPO, evidence), plan)
        finally:
            evidence.close()
            self.setup_calls = (before, len(self.sim.requests))
            self.sim.resume_deliveries()
        with self.sim.world.lock:
            r = self.sim.world.repo(DEMO_REPO)
            self.tasks = sorted(i.number for i in r.issues.values()
                                if i.pull is None and "<!-- fleet:plan-key=" in (i.body or ""))
        # Under real limits the import's backlog drains at the write budget's pace: minutes, not seconds.
        slack = 600 if self.o.real_limits else 0
        self._wait_for(self._ready_listed, 120 + slack, "Fleet to list the imported tasks' ready ones")
        # Let Fleet finish the import's backlog (labels, status issue) before the agents start.
        self._wait_for(self._caught_up, 180 + slack, "Fleet to process the plan import's webhooks")
        return len(plan.tasks)

    def _caught_up(self) -> bool:
        if not self.sim.wait_idle(timeout=0.1):
            return False
        rows = self._query("SELECT count(*) AS n FROM deliveries WHERE status IN ('received', 'queued', 'processing')")
        return rows[0]["n"] == 0

    def _ready_listed(self) -> bool:
        """Fleet recorded every imported task and its status issue lists the ready ones."""
        recorded = self._query("SELECT count(*) AS n FROM tasks WHERE repo_id = %s AND number = ANY(%s)",
                               (self.repo_id, self.tasks))[0]["n"]
        status = self.status_issue()
        if recorded < len(self.tasks) or status is None:
            return False
        with self.sim.world.lock:
            body = self.sim.world.repo(DEMO_REPO).issues[status].body or ""
        return '<!-- fleet:{"ready":[' in body and '<!-- fleet:{"ready":[]}' not in body

    def status_issue(self) -> int | None:
        if self._status_number is None:
            rows = self._query("SELECT issue_number FROM status_issues WHERE repo_id = %s", (self.repo_id,))
            if rows and rows[0]["issue_number"]:
                self._status_number = rows[0]["issue_number"]
        return self._status_number

    # -- progress --
    def snapshot(self) -> dict:
        with self.sim.world.lock:
            r = self.sim.world.repo(DEMO_REPO)
            done = sum(1 for n in self.tasks if r.issues[n].state == "closed")
            merged = sum(1 for i in r.issues.values() if i.pull is not None and i.pull.merged)
            open_prs = sum(1 for i in r.issues.values() if i.pull is not None and i.state == "open")
        queue = self._query("SELECT count(*) AS n FROM queue_entries WHERE repo_id = %s AND finished_at IS NULL",
                            (self.repo_id,))[0]["n"]
        held = {}
        for row in self._query("SELECT agent_id, array_agg(number ORDER BY number) AS numbers FROM claims "
                               "WHERE repo_id = %s AND released_at IS NULL GROUP BY agent_id", (self.repo_id,)):
            held[row["agent_id"]] = row["numbers"]
        return {"done": done, "total": len(self.tasks), "merged": merged, "open_prs": open_prs, "queue": queue,
                "held": held}

    def draw(self, snap: dict, elapsed: float) -> None:
        width = 30
        filled = int(width * snap["done"] / max(snap["total"], 1))
        lines = [
            f"Fleet demo  {elapsed:5.0f} s   dashboard: {self.web_url}/dashboard",
            f"tasks  [{'#' * filled}{'.' * (width - filled)}] {snap['done']}/{snap['total']} done   "
            f"PRs merged {snap['merged']}   open PRs {snap['open_prs']}   queue {snap['queue']}",
            f"CI runs {self.tally.ci_runs} (failed {self.tally.ci_failures})   "
            f"lease expiries {self._expiries()}",
            "",
            f"{'agent':<9} {'holds (Fleet)':<14} {'done':>4} {'fixes':>5}  doing",
        ]
        with self.tally.lock:
            views = list(self.tally.agents.values())
            recent = self.tally.log[-5:]
        for v in views:
            holds = ", ".join(f"#{n}" for n in snap["held"].get(v.login, [])) or "-"
            lines.append(f"{v.login:<9} {holds:<14} {v.done:>4} {v.fixes:>5}  {v.doing[:60]}")
        lines += ["", "recent:"] + [f"  {line[:100]}" for line in recent]
        columns = shutil.get_terminal_size((100, 24)).columns
        lines = [line[: max(columns - 1, 20)] for line in lines]  # a wrapped line would break the redraw
        out = sys.stdout
        if self._drawn:
            out.write(f"\x1b[{self._drawn}F\x1b[J")
        out.write("\n".join(lines) + "\n")
        out.flush()
        self._drawn = len(lines)

    def _expiries(self) -> int:
        return self._query("SELECT count(*) AS n FROM claims WHERE repo_id = %s AND release_reason = 'expired'",
                           (self.repo_id,))[0]["n"]

    # -- main --
    def run(self) -> dict:
        started = time.monotonic()
        queue = (f"merge groups (depth {self.o.depth}, batch {self.o.batch_size}, wait {self.o.batch_wait}, a group failing "
                 f"{self.o.group_failure_rate:.0%} by itself)" if self.o.queue_mode == "groups" else "serial merge queue")
        print(f"fleet demo: {self.o.agents} agents, CI {self.o.ci_seconds:g} s failing {self.o.failure_rate:.0%}, "
              f"lease {self.o.lease}, {queue}; database {self.o.database}, RQ queue {self.queue_name}; "
              f"Fleet's logs in {self.log_dir / 'fleet.log'}", flush=True)
        self._prepare()
        print(f"simulator: {self.sim.url}   Fleet: {self.web_url}   dashboard: {self.web_url}/dashboard", flush=True)
        total = self._import_plan()
        print(f"plan {self.o.plan}: {total} tasks imported into {DEMO_REPO}", flush=True)
        lease_s = parse_duration_seconds(self.o.lease)
        start_line = threading.Barrier(len(self.agent_logins)) if self.o.race else None
        for idx, login in enumerate(self.agent_logins):
            self.tally.agents[login] = AgentView(login)
            agent = ScriptedAgent(self.sim, DEMO_REPO, login, self.tally, random.Random(self.rng.random()), lease_s,
                                  claim_mode=self.claim_mode(idx),
                                  status_issue=self.status_issue, verdict_timeout=self.o.verdict_timeout,
                                  start_line=start_line)
            self.agents.append(agent)
        if self.o.race:
            self._fresh_budget()
        self.ci = SimulatedCI(self.sim, DEMO_REPO, self.o.ci_seconds, self.o.failure_rate, self.tally,
                              random.Random(self.rng.random()), self.o.group_failure_rate)
        self.ci.start()
        run_started = time.monotonic()
        self.run_started_wall = time.time()
        first_fleet_call = len(self.sim.requests)
        for agent in self.agents:
            agent.start()
        deadline = run_started + self.o.timeout
        printed = 0
        snap = self.snapshot()
        while time.monotonic() < deadline:
            self._check_children()
            snap = self.snapshot()
            if self.o.live:
                self.draw(snap, time.monotonic() - run_started)
            else:
                with self.tally.lock:
                    fresh = self.tally.log[printed:]
                    printed = len(self.tally.log)
                for line in fresh:
                    print(line, flush=True)
            if snap["done"] == snap["total"]:
                break
            time.sleep(0.5)
        elapsed = time.monotonic() - run_started
        self._stop_actors()
        if not self.o.live:
            for line in self.tally.log[printed:]:
                print(line)
        return self.summary(snap, elapsed, time.monotonic() - started, first_fleet_call)

    def _stop_actors(self) -> None:
        for agent in self.agents:
            agent.stopping.set()
        if self.ci is not None:
            self.ci.stopping.set()
        for agent in self.agents:
            agent.join(timeout=5)

    def summary(self, snap: dict, elapsed: float, wall: float, first_run_call: int) -> dict:
        requests = list(self.sim.requests)
        fleet = [q for q in requests if is_fleet_identity(q.identity)]
        setup_from, setup_to = self.setup_calls
        plan_calls = sum(1 for q in requests[setup_from:setup_to] if is_fleet_identity(q.identity))
        during = [q for q in requests[first_run_call:] if is_fleet_identity(q.identity)]
        with self.sim.world.lock:
            r = self.sim.world.repo(DEMO_REPO)
            merged_prs = {i.number for i in r.issues.values() if i.pull is not None and i.pull.merged}
        outcomes = Counter(row["outcome"] for row in self._query(
            "SELECT outcome FROM queue_entries WHERE repo_id = %s AND finished_at IS NOT NULL", (self.repo_id,)))
        reasons = Counter(row["release_reason"] for row in self._query(
            "SELECT release_reason FROM claims WHERE repo_id = %s AND released_at IS NOT NULL", (self.repo_id,)))
        status_edits = sum(1 for q in fleet if q.method == "PATCH" and self._status_number
                           and q.path.endswith(f"/issues/{self._status_number}"))
        # A failed check on a PR's own head ends its entry as gates_failed in group mode.
        ci_dequeues = outcomes.get("checks_failed", 0) + outcomes.get("gates_failed", 0)
        result = {
            "tasks_total": snap["total"], "tasks_done": snap["done"], "prs_merged": len(merged_prs),
            "ci_runs": self.tally.ci_runs, "ci_failures": self.tally.ci_failures,
            "queue_mode": self.o.queue_mode, "group_ci_runs": self.tally.group_ci_runs,
            "group_ci_failures": self.tally.group_ci_failures,
            "queue_groups": dict(Counter(row["outcome"] or "active" for row in self._query(
                "SELECT outcome FROM queue_groups WHERE repo_id = %s", (self.repo_id,)))),
            "dequeued_after_ci_failure": ci_dequeues,
            "recovered": len(self.tally.dequeued & merged_prs),
            "lease_expiries": reasons.get("expired", 0), "claims_refused": sum(v.refused for v in self.tally.agents.values()),
            "queue_outcomes": dict(outcomes), "claim_endings": dict(reasons),
            "elapsed_s": round(elapsed, 1), "wall_s": round(wall, 1),
            "fleet_api_calls": len(fleet), "fleet_api_calls_plan_import": plan_calls,
            "fleet_api_calls_during_run": len(during),
            "fleet_api_writes": sum(1 for q in fleet if q.method != "GET" and not q.path.startswith("/app/")),
            "agent_api_calls": sum(1 for q in requests if q.identity.startswith("user:")),
            "status_issue_edits": status_edits,
            "secondary_limit_hits": len(self.sim.secondary_limit_hits),
            "secondary_limit_hits_by_caller": dict(Counter(hit[0] for hit in self.sim.secondary_limit_hits)),
            "fleet_calls_by_endpoint": _by_endpoint(fleet),
            "ok": snap["done"] == snap["total"],
        }
        done = snap["done"]
        result.update({
            "real_limits": self.o.real_limits,
            "writes_per_minute": self.o.writes_per_minute if self.o.real_limits else None,
            "writes_per_hour": self.o.writes_per_hour if self.o.real_limits else None,
            "fleet_api_writes_during_run": sum(1 for q in during if q.method != "GET" and not q.path.startswith("/app/")),
            "fleet_writes_busiest_minute": busiest_minute(q for q in during if q.method != "GET"
                                                          and not q.path.startswith("/app/")),
            "fleet_calls_per_done_task": round(len(during) / done, 1) if done else None,
            "fleet_writes_per_done_task": round(sum(1 for q in during if q.method != "GET"
                                                    and not q.path.startswith("/app/")) / done, 1) if done else None,
            **claim_figures(self.tally),
            "tasks_merged_twice": tasks_merged_twice(self.sim),
            **delivery_figures(self._query(DELIVERY_TIMES_SQL, (self.run_started_wall,)), until=time.time()),
            **budget_figures(self._query(BUDGET_SAID_NO_SQL, (self.run_started_wall,))),
        })
        return result

    def close(self) -> None:
        from app.cli.up import _stop
        from app.rq_namespace import delete_namespace

        self._stop_actors()
        _stop(self.children, grace=15)
        if self.sim is not None:
            self.sim.stop()
        if getattr(self, "log_file", None):
            self.log_file.close()
        try:
            from app import runtime

            delete_namespace(runtime.settings().redis_url, self.queue_name)  # "-setup" too
        except Exception:  # best effort on the way out: Redis may be what failed
            pass


def busiest_minute(writes) -> int:
    """Most writes in one clock minute (the pacer's window): equal to the budget when it ran out."""
    return max(Counter(int(q.timestamp // 60) for q in writes).values(), default=0)


def claim_figures(tally: Tally) -> dict:
    """Verdict latency (claim sent → verdict observed, seconds), duplicate work and double holds."""
    with tally.lock:
        claims = list(tally.claims)
        beliefs = [list(b) for b in tally.beliefs]
        started = {task: set(agents) for task, agents in tally.started_work.items()}

    def latency(kind: str | None, how: str | None = None) -> dict:
        # A /next may wait in line for a task to become ready: its wait is not a verdict's latency.
        values = [c.latency for c in claims if (kind is None or c.verdict == kind)
                  and (c.how == how if how else c.how != "next")]
        return {"n": len(values), "p50": _round(percentile(values, 50)), "p99": _round(percentile(values, 99)),
                "max": _round(max(values, default=None))}

    return {
        "claims_made": len(claims),
        "claims_by_way": dict(Counter(c.how for c in claims)),
        "claims_without_verdict": sum(1 for c in claims if c.verdict == "none"),
        "verdict_latency_s": latency(None) | {"held": latency("held"), "refused": latency("refused")},
        "next_answer_s": latency("held", "next") | {"in_line_at_end": sum(
            1 for c in claims if c.how == "next" and c.verdict == "in_line")},
        "duplicate_work": sorted(task for task, agents in started.items() if len(agents) > 1),
        "held_twice_at_once": held_twice(beliefs),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def held_twice(beliefs: list[list]) -> list[int]:
    """Tasks two agents believed they held at the same moment (each acting on a verdict it saw)."""
    now = time.monotonic()
    clashes = set()
    for i, (task, agent, since, until) in enumerate(beliefs):
        for other_task, other, other_since, other_until in beliefs[i + 1:]:
            if task == other_task and agent != other and since < (other_until or now) and other_since < (until or now):
                clashes.add(task)
    return sorted(clashes)


def tasks_merged_twice(sim) -> list[int]:
    """Tasks named by ``Closes #N`` in two or more merged PRs."""
    with sim.world.lock:
        bodies = [i.body or "" for i in sim.world.repo(DEMO_REPO).issues.values() if i.pull is not None and i.pull.merged]
    from app.tasks.refs import parse_closing_refs

    merged = Counter(ref.number for body in bodies for ref in parse_closing_refs(body, DEMO_REPO)
                     if ref.repo_full_name == DEMO_REPO)
    return sorted(task for task, count in merged.items() if count > 1)


# Deliveries received after the agents started: when each arrived, started and finished (epoch seconds).
DELIVERY_TIMES_SQL = """
SELECT extract(epoch FROM received_at)::float AS received, extract(epoch FROM started_at)::float AS started,
       extract(epoch FROM processed_at)::float AS processed, deferrals
FROM deliveries WHERE received_at >= to_timestamp(%s)
"""


# Writes the budget said no to after the agents started (Fleet's pacer, or GitHub's limit), and
# replies held for later because of it (app/github/held_writes.py).
BUDGET_SAID_NO_SQL = """
SELECT count(*) FILTER (WHERE outcome = 'deferred') AS refused, count(*) FILTER (WHERE outcome = 'held') AS held
FROM evidence WHERE at >= to_timestamp(%s)
"""


def budget_figures(rows: list) -> dict:
    return {"writes_without_budget": rows[0]["refused"], "writes_held": rows[0]["held"]}


def delivery_figures(rows: list, until: float) -> dict:
    """How long deliveries waited (received → processed), and the longest stall up to ``until``:
    a stretch in which no delivery started or finished although one was waiting (a worker asleep
    in the pacer)."""
    waits = [r["processed"] - r["received"] for r in rows if r["processed"] is not None]
    progress = sorted([t for r in rows for t in (r["started"], r["processed"]) if t is not None] + [until])
    stall = 0.0
    for before, after in zip(progress, progress[1:]):
        waiting_since = [r["received"] for r in rows
                         if r["received"] < after and (r["started"] is None or r["started"] >= after)]
        if waiting_since:
            stall = max(stall, after - max(before, min(waiting_since)))
    return {"deliveries": len(rows), "deliveries_unprocessed": sum(1 for r in rows if r["processed"] is None),
            # Deferred at least once because the write budget was spent (the pacer said no).
            "deliveries_deferred": sum(1 for r in rows if r.get("deferrals")),
            "delivery_wait_s": {"p50": _round(percentile(waits, 50)), "p99": _round(percentile(waits, 99)),
                                "max": _round(max(waits, default=None))},
            "longest_stall_with_deliveries_waiting_s": round(stall, 1)}


def _by_endpoint(requests) -> dict[str, int]:
    """Fleet's calls grouped as ``METHOD operation`` (the OpenAPI operation id when known)."""
    counts = Counter(q.method + " " + (q.operation_id or re.sub(r"/\d+", "/N", q.path)) for q in requests)
    return dict(counts.most_common())


def print_summary(s: dict) -> None:
    print()
    print("Fleet demo summary")
    print(f"  tasks done         {s['tasks_done']}/{s['tasks_total']}")
    print(f"  PRs merged         {s['prs_merged']}")
    print(f"  failures handled   {s['ci_failures']} CI failures of {s['ci_runs']} runs; "
          f"{s['dequeued_after_ci_failure']} PRs dequeued after a failed check, {s['recovered']} of them fixed and merged; "
          f"{s['lease_expiries']} lease expiries handed on; {s['claims_refused']} claims refused")
    if s.get("queue_mode") == "groups":
        groups = ", ".join(f"{n} {k}" for k, n in sorted(s["queue_groups"].items())) or "none"
        print(f"  merge groups       {groups}; CI on group heads: {s['group_ci_runs']} runs, "
              f"{s['group_ci_failures']} failed")
    print(f"  elapsed            {s['elapsed_s']:.1f} s (agents start to last task), {s['wall_s']:.1f} s in all")
    print(f"  GitHub API calls   {s['fleet_api_calls']} by Fleet (App JWT + installation tokens): "
          f"{s['fleet_api_calls_plan_import']} importing the plan, {s['fleet_api_calls_during_run']} while agents worked "
          f"({s['fleet_api_calls_during_run'] / max(s['prs_merged'], 1):.1f} per merged PR), {s['fleet_api_writes']} writes; "
          f"{s['status_issue_edits']} status-issue edits; agents made {s['agent_api_calls']}")
    if s.get("real_limits"):
        print_claim_figures(s)
    print(f"  result             {'every task done' if s['ok'] else 'NOT every task was done'}")


def print_claim_figures(s: dict) -> None:
    lat = s["verdict_latency_s"]
    print(f"  write budget       {s['writes_per_minute']}/min, {s['writes_per_hour']}/h (Fleet's pacer and the "
          f"simulator's secondary limits); {s['secondary_limit_hits']} secondary-limit hits; "
          f"busiest minute {s['fleet_writes_busiest_minute']} writes")
    print(f"  claims             {s['claims_made']} ({', '.join(f'{n} {k}' for k, n in s['claims_by_way'].items())}); "
          f"{s['claims_without_verdict']} without a verdict")
    print(f"  verdict latency    p50 {lat['p50']} s, p99 {lat['p99']} s, max {lat['max']} s "
          f"(held: p50 {lat['held']['p50']} p99 {lat['held']['p99']}; "
          f"refused: p50 {lat['refused']['p50']} p99 {lat['refused']['p99']}; self-assign and /claim)")
    nxt = s["next_answer_s"]
    print(f"  /next answered     {nxt['n']} by an assignment, p50 {nxt['p50']} s, p99 {nxt['p99']} s from asking "
          f"(time in line for a ready task included); {nxt['in_line_at_end']} still in line at the end")
    print(f"  duplicate work     {len(s['duplicate_work'])} tasks {s['duplicate_work']}; "
          f"held twice at once {s['held_twice_at_once']}; merged twice {s['tasks_merged_twice']}")
    if s["tasks_done"]:
        print(f"  per done task      {s['fleet_calls_per_done_task']} calls, {s['fleet_writes_per_done_task']} writes by Fleet")
    wait = s["delivery_wait_s"]
    print(f"  deliveries         {s['deliveries']} ({s['deliveries_unprocessed']} unprocessed, "
          f"{s.get('deliveries_deferred', 0)} deferred for budget; {s.get('writes_without_budget', 0)} writes found "
          f"the budget spent, {s.get('writes_held', 0)} replies held for later); received→processed "
          f"p50 {wait['p50']} s, p99 {wait['p99']} s, max {wait['max']} s; longest stall with deliveries waiting "
          f"{s['longest_stall_with_deliveries_waiting_s']} s")


def _queue_options_error(options: DemoOptions) -> str | None:
    """What the repository configuration would refuse in --queue-mode, --depth or --batch-size
    (its own rules, so the demo never writes a fleet.yml Fleet would reject)."""
    from pydantic import ValidationError

    from app.repos.config import QueueConfig

    try:
        QueueConfig(mode=options.queue_mode, depth=options.depth, batch_size=options.batch_size,
                    batch_wait=options.batch_wait)
    except ValidationError as exc:
        error = exc.errors()[0]
        return f"queue.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
    return None


def run_demo(options: DemoOptions) -> int:
    from app.settings import SettingsError

    if options.agents < 1 or options.agents > len(AGENT_NAMES):
        print(f"fleet: --agents must be 1 to {len(AGENT_NAMES)}", file=sys.stderr)
        return 2
    try:
        parse_duration_seconds(options.lease)
    except ValueError as exc:
        print(f"fleet: --lease: {exc}", file=sys.stderr)
        return 2
    if not Path(options.plan).is_file():
        print(f"fleet: cannot read the plan {options.plan}", file=sys.stderr)
        return 2
    queue_error = _queue_options_error(options)
    if queue_error:
        print(f"fleet: {queue_error}", file=sys.stderr)
        return 2
    from app.cli.preflight import Unavailable, check_port_free

    try:
        check_port_free(options.bind)  # before the database is re-created and anything started
    except Unavailable as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    if options.live and not sys.stdout.isatty():
        options.live = False
    import signal

    def interrupt(*_args: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stop the children on SIGTERM too, as on Ctrl-C
    run = DemoRun(options)
    summary = None
    try:
        summary = run.run()
    except SettingsError as exc:
        print(f"fleet: configuration error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"fleet demo: {exc}", file=sys.stderr)
        _tail(run.log_dir / "fleet.log")
        return 1
    except KeyboardInterrupt:
        print("\nfleet demo: interrupted", file=sys.stderr)
        return 130
    finally:
        run.close()
    print_summary(summary)
    # Kept after a green run too: a surprising one must be inspectable (it is in the temp dir).
    print(f"Fleet's logs: {run.log_dir / 'fleet.log'}", file=sys.stderr)
    if options.json_path:
        Path(options.json_path).write_text(json.dumps(summary, indent=2, default=str))
    return 0 if summary["ok"] else 1


def _tail(path: Path, lines: int = 30) -> None:
    try:
        text = path.read_text().splitlines()[-lines:]
    except OSError:
        return
    for line in text:
        print(f"  | {line}", file=sys.stderr)


__all__ = ["DemoOptions", "run_demo", "fleet_yml", "is_fleet_identity", "asdict"]
