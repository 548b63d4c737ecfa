"""``fleet demo``: the real Fleet coordinating a scripted fleet of agents on the bundled simulator.

Fleet runs exactly as under ``fleet up`` (``fleet web``, ``fleet worker`` × N and ``fleet scheduler``
as child processes, Postgres and Redis from the environment) but with a database and an RQ
namespace of its own, against the GitHub simulator served in this process. Then:

- a demo repository gets a ``.github/fleet.yml`` (short lease, required check ``ci``, WIP limit 1)
  and the sample plan (``app/sample/plan.yml``: epics, tasks, dependencies) is imported;
- N agents (threads) work the way an agent with ``gh`` would, over the simulator's REST API with
  their own user tokens: self-assign a ready issue (or comment ``/next`` on the status issue),
  wait for Fleet's verdict, push ``agent-x/N-slug``, open a PR with ``Closes #N``, comment
  ``/queue``, renew the lease with ``/progress`` while waiting, and push a fix and re-queue when
  Fleet dequeues the PR after a CI failure;
- a simulated CI reports the ``ci`` check on every new PR head after ``--ci-seconds``, failing with
  probability ``--failure-rate``;
- one agent goes silent after its first claim, so its lease expires and Fleet hands the task on.

Progress is a live table (or plain log lines with ``--no-live``); the run ends with a summary and
exits 0 only when every task of the plan was done.
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


@dataclass
class DemoOptions:
    agents: int = 8
    ci_seconds: float = 3.0
    failure_rate: float = 0.15
    lease: str = "30s"
    timeout: float = 600.0
    bind: str = "127.0.0.1:8000"
    live: bool = True
    plan: Path = DEFAULT_PLAN
    database: str = "fleet_demo"
    workers: int = 2
    seed: int | None = None
    json_path: Path | None = None
    next_agents: bool = True  # odd-numbered agents find work with /next instead of self-assigning


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


def fleet_yml(lease: str) -> str:
    return (
        "# Written by `fleet demo`.\n"
        "claims:\n"
        f"  lease: {lease}\n"
        "  max_per_agent: 1\n"
        "gates:\n"
        f"  required_checks: [{CHECK_NAME}]  # reported by GitHub Actions (the simulator's CI)\n"
        "queue:\n"
        "  allow_authors: true  # agents have write access: each queues its own PR\n"
        "status:\n"
        "  min_interval: 5s\n"
    )


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
class Tally:
    """What the agents and CI saw, for the table and the summary."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    agents: dict[str, AgentView] = field(default_factory=dict)
    ci_runs: int = 0
    ci_failures: int = 0
    dequeued: set[int] = field(default_factory=set)  # PRs Fleet took out of the queue at least once
    log: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        with self.lock:
            self.log.append(f"{time.strftime('%H:%M:%S')} {line}")

    def set(self, login: str, doing: str) -> None:
        with self.lock:
            self.agents[login].doing = doing


# --- simulated CI ------------------------------------------------------------------------------

class SimulatedCI(threading.Thread):
    """Reports the ``ci`` check run on every new head of an open PR: in progress at once, then
    success or (with probability ``failure_rate``) failure after ``seconds``."""

    def __init__(self, sim, repo: str, seconds: float, failure_rate: float, tally: Tally, rng: random.Random):
        super().__init__(name="demo-ci", daemon=True)
        self.sim, self.repo, self.seconds, self.failure_rate = sim, repo, seconds, failure_rate
        self.tally, self.rng = tally, rng
        self.stopping = threading.Event()
        self.started_at: dict[str, float] = {}
        self.reported: set[str] = set()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._tick()
            except Exception as exc:  # a CI hiccup must not end the demo
                self.tally.note(f"ci: {type(exc).__name__}: {exc}")
            self.stopping.wait(0.1)

    def _tick(self) -> None:
        with self.sim.world.lock:
            r = self.sim.world.repo(self.repo)
            heads = [(i.number, i.pull.head_sha) for i in r.issues.values()
                     if i.pull is not None and i.state == "open" and not i.pull.merged]
        now = time.monotonic()
        for number, sha in heads:
            if sha not in self.started_at:
                self.started_at[sha] = now
                self.sim.ci(self.repo, sha, CHECK_NAME, status="in_progress", conclusion=None)
            elif sha not in self.reported and now - self.started_at[sha] >= self.seconds:
                self.reported.add(sha)
                failed = self.rng.random() < self.failure_rate
                self.sim.ci(self.repo, sha, CHECK_NAME, conclusion="failure" if failed else "success",
                            output={"title": "tests failed" if failed else "tests passed",
                                    "summary": "Simulated CI run by `fleet demo`."})
                with self.tally.lock:
                    self.tally.ci_runs += 1
                    self.tally.ci_failures += failed
                if failed:
                    self.tally.note(f"ci: PR #{number} failed on {sha[:7]}")


# --- scripted agents ---------------------------------------------------------------------------

class ScriptedAgent(threading.Thread):
    """One agent doing what ``docs/agents.md`` asks, through the REST API as its own user."""

    def __init__(self, sim, repo: str, login: str, tally: Tally, rng: random.Random, lease_s: float,
                 use_next: bool, silent_once: bool, status_issue: callable):
        super().__init__(name=f"demo-{login}", daemon=True)
        from githubkit import GitHub

        self.sim, self.repo, self.login, self.tally, self.rng = sim, repo, login, tally, rng
        self.owner, self.name = repo.split("/")
        self.gh = GitHub(sim.user_token(login), base_url=sim.url + "/", http_cache=False, auto_retry=False)
        self.renew_every = max(1.0, lease_s * 0.5)
        self.use_next, self.silent_once = use_next, silent_once
        self.status_issue = status_issue
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
                if self.silent_once:
                    self.silent_once = False
                    self._go_silent(task)
                    continue
                self._work(task)
            except Exception as exc:  # keep the agent alive; the table shows what happened
                self.tally.note(f"{self.login}: {type(exc).__name__}: {exc}")
                self._sleep(1.0)

    def _find_task(self) -> dict | None:
        self.tally.set(self.login, "looking for a task")
        if self.use_next:
            status = self.status_issue()
            if status is not None:
                return self._claim_with_next(status)
        ready = self._call(self.gh.rest.issues.list_for_repo, self.owner, self.name, state="open",
                           labels="fleet:ready", per_page=100) or []
        candidates = [i for i in ready if "pull_request" not in i and not i.get("assignees")]
        if not candidates:
            return None
        candidates.sort(key=lambda i: i["number"])
        issue = self.rng.choice(candidates[:4])
        self.tally.set(self.login, f"claiming #{issue['number']}")
        self._call(self.gh.rest.issues.add_assignees, self.owner, self.name, issue["number"], assignees=[self.login])
        verdict = self._verdict(issue["number"])
        if verdict is None:
            with self.tally.lock:
                self.tally.agents[self.login].refused += 1
            self.tally.note(f"{self.login}: claim of #{issue['number']} refused by Fleet")
        return verdict

    def _verdict(self, number: int, timeout: float = 120.0) -> dict | None:
        """Fleet's answer to a claim: the issue while we are its only assignee and it is labelled
        ``fleet:claimed`` (twice in a row), None once we are unassigned. Fleet undoes refused
        claims, so when it is slow to answer, still being the only assignee means the claim stands."""
        deadline = time.monotonic() + timeout
        stable = 0
        issue = None
        while time.monotonic() < deadline and self._sleep(0.4):
            issue = self._issue(number)
            if issue is None:
                continue
            assignees = [a["login"] for a in issue.get("assignees") or []]
            labels = {l["name"] for l in issue.get("labels") or []}
            if self.login not in assignees or issue.get("state") != "open":
                return None
            if assignees == [self.login] and "fleet:claimed" in labels:
                stable += 1
                if stable >= 2:
                    return issue
            else:
                stable = 0
        if issue is not None and [a["login"] for a in issue.get("assignees") or []] == [self.login]:
            return issue
        # No verdict at all: step back rather than hold a task we may not have.
        self._call(self.gh.rest.issues.remove_assignees, self.owner, self.name, number, assignees=[self.login])
        return None

    def _claim_with_next(self, status_number: int) -> dict | None:
        """Comment ``/next`` on the status issue; Fleet assigns the most urgent ready task."""
        self.tally.set(self.login, "asking Fleet: /next")
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
        self._comment(status_number, "/next")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self._sleep(0.5):
            mine = self._call(self.gh.rest.issues.list_for_repo, self.owner, self.name, state="open",
                              assignee=self.login, per_page=100) or []
            mine = [i for i in mine if "pull_request" not in i]
            if mine:
                return self._verdict(mine[0]["number"])
            replies = self._call(self.gh.rest.issues.list_comments, self.owner, self.name, status_number,
                                 since=since, per_page=100) or []
            for c in replies:
                data = _marker(c.get("body")) if c["user"]["login"] == BOT_LOGIN else None
                if data and data.get("command") == "next" and data.get("result") == "refused" \
                        and str(data.get("agent", "")).split(":")[0] == self.login:
                    return None
        return None

    def _go_silent(self, issue: dict) -> None:
        """Hold the claim and do nothing (no push, no comment) until Fleet releases it."""
        number = issue["number"]
        self.tally.set(self.login, f"silent on #{number}")
        with self.tally.lock:
            self.tally.agents[self.login].silent = True
        self.tally.note(f"{self.login}: claimed #{number} and went silent")
        while self._sleep(2.0):
            issue = self._issue(number)
            if issue is not None and self.login not in [a["login"] for a in issue.get("assignees") or []]:
                self.tally.note(f"{self.login}: lease on #{number} expired; back to work")
                break
        with self.tally.lock:
            self.tally.agents[self.login].silent = False

    def _work(self, issue: dict) -> None:
        number, title = issue["number"], issue["title"]
        branch = f"{self.login}/{number}-{_slug(title)}"
        self.tally.set(self.login, f"working on #{number}")
        if not self._sleep(0.5 + self.rng.random() * 1.5):
            return
        path = f"work/{number}-{_slug(title)}-{self.login}.md"  # never the same file as another agent's
        self.sim.push(self.repo, branch, {path: f"# {title}\n\nDone by {self.login}.\n"}, author=self.login,
                      message=f"{title} (#{number})")
        pr = self._call(self.gh.rest.pulls.create, self.owner, self.name, title=title, head=branch, base="main",
                        body=f"Closes #{number}\n\nImplemented by {self.login}.")
        if pr is None:
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
                with self.tally.lock:
                    self.tally.agents[self.login].done += 1
                self.tally.note(f"{self.login}: #{number} done (PR #{pr_number} merged)")
                return
            if pull.get("state") != "open":
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
        return


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
        from app.up import _spawn, _wait_http, start_simulator

        base = load_settings()
        self.db_url = base.database_url.rsplit("/", 1)[0] + "/" + self.o.database
        db.drop_database(self.db_url)
        db.ensure_database(self.db_url)
        with db.connect(self.db_url) as conn:
            db.migrate(conn)
        env = dict(os.environ)
        env.update({"DATABASE_URL": self.db_url, "FLEET_QUEUE": self.queue_name, "GITHUB_APP_PRIVATE_KEY_PATH": "",
                    "FLEET_BOT_LOGIN": BOT_LOGIN, "LOG_LEVEL": os.environ.get("LOG_LEVEL") or "WARNING",
                    "FLEET_LOG_FORMAT": "console", "FLEET_SWEEP_INTERVAL": "5"})
        self.sim = start_simulator(env)
        self.sim.create_repo(DEMO_REPO)
        self.sim.add_user("maintainer", "admin")
        for login in self.agent_logins:
            self.sim.add_user(login, "write")
        self.sim.set_file(DEMO_REPO, ".github/fleet.yml", fleet_yml(self.o.lease), message="Configure Fleet for the demo")
        runtime.configure(load_settings(env))
        self.log_file = (self.log_dir / "fleet.log").open("w")
        self.children = _spawn(self.o.bind, self.o.workers, env, output=self.log_file)
        if not _wait_http(f"{self.web_url}/healthz", timeout=40):
            raise RuntimeError(f"the web server did not start; see {self.log_dir / 'fleet.log'}")
        self.sim.webhook_url = f"{self.web_url}/webhooks/github"
        self.sim.resume_deliveries()
        self.sim.install([DEMO_REPO])
        self.repo_id = self._wait_for(self._repo_row, 40, "Fleet to record the installation")

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
        from app.evidence import EvidenceRecorder
        from app.plan import parse_plan
        from app.plan_apply import apply_plan
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
        blocked = sum(1 for t in plan.tasks if t.depends_on)
        self._wait_for(lambda: self._labelled(blocked), 120, "Fleet to label the imported tasks")
        # Let Fleet finish the import's backlog (labels, status issue) before the agents start.
        self._wait_for(self._caught_up, 180, "Fleet to process the plan import's webhooks")
        return len(plan.tasks)

    def _caught_up(self) -> bool:
        if not self.sim.wait_idle(timeout=0.1):
            return False
        rows = self._query("SELECT count(*) AS n FROM deliveries WHERE status IN ('received', 'queued', 'processing')")
        return rows[0]["n"] == 0

    def _labelled(self, expect_blocked: int) -> bool:
        with self.sim.world.lock:
            r = self.sim.world.repo(DEMO_REPO)
            labels = [{l.lower() for l in r.issues[n].labels} for n in self.tasks]
        blocked = sum(1 for ls in labels if "fleet:blocked" in ls)
        return all(ls & {"fleet:ready", "fleet:blocked"} for ls in labels) and blocked >= expect_blocked

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
        print(f"fleet demo: {self.o.agents} agents, CI {self.o.ci_seconds:g} s failing {self.o.failure_rate:.0%}, "
              f"lease {self.o.lease}; database {self.o.database}, queue {self.queue_name}; "
              f"Fleet's logs in {self.log_dir / 'fleet.log'}", flush=True)
        self._prepare()
        print(f"simulator: {self.sim.url}   Fleet: {self.web_url}   dashboard: {self.web_url}/dashboard", flush=True)
        total = self._import_plan()
        print(f"plan {self.o.plan}: {total} tasks imported into {DEMO_REPO}", flush=True)
        lease_s = parse_duration_seconds(self.o.lease)
        for idx, login in enumerate(self.agent_logins):
            self.tally.agents[login] = AgentView(login)
            agent = ScriptedAgent(self.sim, DEMO_REPO, login, self.tally, random.Random(self.rng.random()), lease_s,
                                  use_next=self.o.next_agents and idx % 2 == 1,
                                  silent_once=idx == len(self.agent_logins) - 1, status_issue=self.status_issue)
            self.agents.append(agent)
        self.ci = SimulatedCI(self.sim, DEMO_REPO, self.o.ci_seconds, self.o.failure_rate, self.tally,
                              random.Random(self.rng.random()))
        self.ci.start()
        run_started = time.monotonic()
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
        ci_dequeues = outcomes.get("checks_failed", 0)
        result = {
            "tasks_total": snap["total"], "tasks_done": snap["done"], "prs_merged": len(merged_prs),
            "ci_runs": self.tally.ci_runs, "ci_failures": self.tally.ci_failures,
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
            "fleet_calls_by_endpoint": _by_endpoint(fleet),
            "ok": snap["done"] == snap["total"],
        }
        return result

    def close(self) -> None:
        from app.up import _stop

        self._stop_actors()
        _stop(self.children, grace=15)
        if self.sim is not None:
            self.sim.stop()
        if getattr(self, "log_file", None):
            self.log_file.close()
        try:
            import redis

            from app import runtime

            client = redis.Redis.from_url(runtime.settings().redis_url)
            keys = list(client.scan_iter(f"*{self.queue_name}*", count=1000))
            if keys:
                client.delete(*keys)
        except Exception:
            pass


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
    print(f"  elapsed            {s['elapsed_s']:.1f} s (agents start to last task), {s['wall_s']:.1f} s in all")
    print(f"  GitHub API calls   {s['fleet_api_calls']} by Fleet (App JWT + installation tokens): "
          f"{s['fleet_api_calls_plan_import']} importing the plan, {s['fleet_api_calls_during_run']} while agents worked "
          f"({s['fleet_api_calls_during_run'] / max(s['prs_merged'], 1):.1f} per merged PR), {s['fleet_api_writes']} writes; "
          f"{s['status_issue_edits']} status-issue edits; agents made {s['agent_api_calls']}")
    print(f"  result             {'every task done' if s['ok'] else 'NOT every task was done'}")


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
        if summary is not None and summary["ok"]:
            shutil.rmtree(run.log_dir, ignore_errors=True)
    print_summary(summary)
    if not summary["ok"]:
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
