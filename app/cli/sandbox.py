"""``fleet sandbox``: act as an agent against the sandbox ``fleet up`` is serving.

A real agent runs ``git push`` and its CI reports checks; the simulator has no git protocol and
no CI, so ``push`` and ``ci`` use its control endpoints (``/_sim/...``). Everything an agent does
through GitHub's REST API (``comment``, ``pr``, ``api``) goes through the simulator's REST API
with that agent's own token, exactly as ``gh`` would, so Fleet sees the same webhooks.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.sandbox.running import RunningSandbox, find_running, sandbox_file

CONCLUSIONS = {"pass": "success", "fail": "failure"}
PERMISSIONS = ("read", "triage", "write", "maintain", "admin")


class SandboxError(Exception):
    """One line for the user; the command exits 1 (2 when no sandbox runs)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def running_sandbox() -> RunningSandbox:
    sandbox = find_running()
    if sandbox is None:
        raise SandboxError(f"no sandbox is running (start one with scripts/start, or `fleet up` without App "
                           f"credentials; looked for {sandbox_file()})", status=2)
    return sandbox


class SimulatorClient:
    """JSON over HTTP to the sandbox's simulator: control endpoints, or REST as a user."""

    def __init__(self, sandbox: RunningSandbox) -> None:
        self.base = sandbox.simulator_url.rstrip("/")
        self._tokens: dict[str, str] = {}

    def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/vnd.github+json", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - the loopback simulator
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise SandboxError(f"the simulator answered {exc.code} to {method} {path}: {_message(exc.read())}") from None
        except OSError as exc:
            raise SandboxError(f"the sandbox's simulator at {self.base} does not answer ({exc}); is `fleet up` "
                               "still running?") from None
        return json.loads(raw) if raw else None

    def token(self, login: str) -> str:
        """A user token acting as ``login`` (a login the simulator has not seen becomes a user
        without access: an outsider)."""
        if login not in self._tokens:
            self._tokens[login] = self.call("POST", f"/_sim/users/{urllib.parse.quote(login)}/token")["token"]
        return self._tokens[login]

    def rest(self, method: str, path: str, body: Any = None, login: str | None = None) -> Any:
        return self.call(method, path, body, self.token(login) if login else None)


def _message(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("message", "")) or "(no message)"
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:200] or "(no body)"


# --- commands -------------------------------------------------------------------------------------

def cmd_info(args: argparse.Namespace, sandbox: RunningSandbox, sim: SimulatorClient) -> int:
    web = sandbox.web_url
    facts = {"simulator": sandbox.simulator_url, "repository": sandbox.repo, "agent": sandbox.agent,
             "webhooks": f"{web}/webhooks/github", "dashboard": f"{web}/", "api": f"{web}/api/tasks",
             "health": f"{web}/healthz", "metrics": f"{web}/metrics", "fleet_up_pid": sandbox.pid,
             "database": sandbox.env.get("DATABASE_URL", ""), "queue": sandbox.env.get("FLEET_QUEUE", "")}
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    width = max(map(len, facts))
    for key, value in facts.items():
        print(f"{key.replace('_', ' '):<{width}}  {value}")
    return 0


def cmd_users(args: argparse.Namespace, sandbox: RunningSandbox, sim: SimulatorClient) -> int:
    if args.add:
        body = {"login": args.add, "permission": args.permission, "repo": args.repo}
        created = sim.call("POST", "/_sim/users", body)
        print(f"{created['login']}  {args.permission} on {args.repo}  token {created['token']}")
        return 0
    for user in sim.call("GET", "/_sim/users"):
        if user["type"] != "User":  # bots act through their Apps, not tokens
            continue
        permission = user["repos"].get(args.repo) or user["permission"] or "none"
        print(f"{user['login']:<20} {permission:<9} token {sim.token(user['login'])}")
    return 0


def cmd_push(args: argparse.Namespace, sandbox: RunningSandbox, sim: SimulatorClient) -> int:
    files: dict[str, str | None] = dict(_file_change(item) for item in args.files)
    files.update({path: None for path in args.delete})
    if not files:  # each push is a new commit, as an agent's would be
        files = {f"work/{args.branch.replace('/', '-')}.txt": f"pushed by {args.as_login} at {time.time_ns()}\n"}
    body = {"branch": args.branch, "files": files, "author": args.as_login,
            "message": args.message or f"Work on {args.branch}"}
    sha = sim.call("POST", f"/_sim/repos/{args.repo}/push", body)["sha"]
    print(f"{args.branch} {sha}")
    return 0


def _file_change(item: str) -> tuple[str, str]:
    """``PATH=TEXT``, or ``PATH=@LOCAL`` for a local file's content."""
    path, sep, text = item.partition("=")
    if not sep or not path:
        raise SandboxError(f"file change {item!r}: expected PATH=TEXT or PATH=@LOCAL_FILE")
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as exc:
            raise SandboxError(f"cannot read {text[1:]}: {exc.strerror}") from None
    return path, text


def cmd_pr(args: argparse.Namespace, sandbox: RunningSandbox, sim: SimulatorClient) -> int:
    body = args.body or ""
    if args.closes:
        body = (body + "\n\n" if body else "") + f"Closes #{args.closes}"
    pr = sim.rest("POST", f"/repos/{args.repo}/pulls",
                  {"title": args.title or args.branch, "head": args.branch, "base": args.base or _default_branch(sim, args),
                   "body": body, "draft": args.draft}, login=args.as_login)
    print(f"#{pr['number']} {pr['head']['sha']} {pr['html_url']}")
    return 0


def _default_branch(sim: SimulatorClient, args: argparse.Namespace) -> str:
    return sim.rest("GET", f"/repos/{args.repo}", login=args.as_login)["default_branch"]


def cmd_comment(args: argparse.Namespace, sandbox: RunningSandbox, sim: SimulatorClient) -> int:
    made = sim.rest("POST", f"/repos/{args.repo}/issues/{args.number}/comments", {"body": args.body},
                    login=args.as_login)
    print(made["html_url"])
    return 0


def cmd_ci(args: argparse.Namespace, sandbox: RunningSandbox, sim: SimulatorClient) -> int:
    sha = _resolve_ref(sim, args.repo, args.ref)
    body = {"sha": sha, "name": args.name, "status": "completed" if args.result != "pending" else "in_progress"}
    body["conclusion"] = CONCLUSIONS.get(args.result)
    if args.result != "pending":
        body["output"] = {"title": f"{args.name} {'passed' if args.result == 'pass' else 'failed'}",
                          "summary": f"Reported by `fleet sandbox ci {args.result}`."}
    sim.call("POST", f"/_sim/repos/{args.repo}/ci", body)
    print(f"{args.name}: {args.result} on {sha}")
    return 0


def _resolve_ref(sim: SimulatorClient, repo: str, ref: str) -> str:
    """A PR (``#N`` or ``N``) to its head SHA; a branch or SHA as the simulator resolves it."""
    number = ref.removeprefix("#")
    if number.isdigit() and len(number) < 10:
        return sim.call("GET", f"/repos/{repo}/pulls/{number}")["head"]["sha"]
    return ref


def cmd_api(args: argparse.Namespace, sandbox: RunningSandbox, sim: SimulatorClient) -> int:
    path = args.path if args.path.startswith("/") else "/" + args.path
    fields = _fields(args.field or [], typed=False) | _fields(args.raw_field or [], typed=True)
    method = args.method.upper()
    if fields and method == "GET":
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode(fields, doseq=True)
        fields = {}
    answer = sim.rest(method, path, fields or None, login=args.as_login)
    if answer is not None:
        print(json.dumps(answer, indent=2))
    return 0


def _fields(items: list[str], typed: bool) -> dict[str, Any]:
    """``gh api``'s ``-f key=value`` (strings) and ``-F key=value`` (numbers, true, false, null);
    ``key[]=value`` collects a list."""
    fields: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SandboxError(f"field {item!r}: expected KEY=VALUE")
        value: Any = raw
        if typed:
            value = {"true": True, "false": False, "null": None}.get(raw, int(raw) if raw.lstrip("-").isdigit() else raw)
        if key.endswith("[]"):
            fields.setdefault(key[:-2], []).append(value)
        else:
            fields[key] = value
    return fields


# --- parser ---------------------------------------------------------------------------------------

Handler = Callable[[argparse.Namespace, RunningSandbox, SimulatorClient], int]


def add_sandbox_parser(sub: argparse._SubParsersAction) -> None:
    """``fleet sandbox ACTION``: registered on the ``fleet`` parser."""
    text = ("Act as an agent against the running sandbox (`fleet up` without App credentials): push, open PRs, "
            "comment slash commands, report CI, call the REST API as a user.")
    sandbox = sub.add_parser("sandbox", help=text, description=text)
    actions = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="ACTION")

    def add(name: str, handler: Handler, help_text: str, actor: bool = True) -> argparse.ArgumentParser:
        p = actions.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--repo", metavar="OWNER/NAME", help="repository (default: the sandbox's, sandbox/demo)")
        if actor:
            p.add_argument("--as", dest="as_login", metavar="LOGIN",
                           help="act as this user (default: the sandbox's agent, agent-a)")
        p.set_defaults(handler=run, sandbox_handler=handler)
        return p

    info = add("info", cmd_info, "Addresses (simulator, dashboard, API, health, metrics), repository, database.",
               actor=False)
    info.add_argument("--json", action="store_true", help="as JSON")
    users = add("users", cmd_users, "List the simulator's users with their permission on the repository and a fresh token each, or add one.", actor=False)
    users.add_argument("--add", metavar="LOGIN", help="create (or update) this user and print a token")
    users.add_argument("--permission", choices=PERMISSIONS, default="write",
                       help="with --add: permission on the repository (default write)")
    push = add("push", cmd_push, "Commit files to a branch and push it (creates the branch from main), as `git push` "
                                 "would; without files, a change of its own so every push is a new commit.")
    push.add_argument("branch", metavar="BRANCH", help="e.g. agent-a/1-skeleton")
    push.add_argument("files", nargs="*", metavar="PATH=TEXT|PATH=@LOCAL_FILE", help="files to write")
    push.add_argument("--delete", action="append", default=[], metavar="PATH", help="a file to delete (repeatable)")
    push.add_argument("-m", "--message", help="commit message")
    pr = add("pr", cmd_pr, "Open a pull request from BRANCH (the REST API, as the agent).")
    pr.add_argument("branch", metavar="BRANCH")
    pr.add_argument("--title", help="title (default: the branch name)")
    pr.add_argument("--body", help="description")
    pr.add_argument("--closes", type=int, metavar="N", help="add 'Closes #N' to the description (links the task)")
    pr.add_argument("--base", help="base branch (default: the repository's default branch)")
    pr.add_argument("--draft", action="store_true", help="open it as a draft")
    comment = add("comment", cmd_comment, "Comment on an issue or PR, e.g. a slash command: /claim, /queue, /next.")
    comment.add_argument("number", type=int, metavar="N")
    comment.add_argument("body", metavar="TEXT")
    ci = add("ci", cmd_ci, "Report a CI check run on a PR (#N), branch or SHA, as GitHub Actions would.", actor=False)
    ci.add_argument("result", choices=("pass", "fail", "pending"))
    ci.add_argument("ref", metavar="#PR|BRANCH|SHA")
    ci.add_argument("--name", default="ci", help="the check's name (default ci)")
    api = add("api", cmd_api, "Call the simulator's REST API as a user, like `gh api`; prints the JSON answer.")
    api.add_argument("method", metavar="METHOD", help="GET, POST, PATCH, PUT or DELETE")
    api.add_argument("path", metavar="PATH", help="e.g. /repos/sandbox/demo/issues")
    api.add_argument("-f", "--field", action="append", metavar="KEY=VALUE", help="a string field (key[]=v for lists)")
    api.add_argument("-F", "--raw-field", action="append", metavar="KEY=VALUE",
                     help="a typed field: numbers, true, false, null")


def run(args: argparse.Namespace) -> int:
    try:
        sandbox = running_sandbox()
        args.repo = args.repo or sandbox.repo
        if hasattr(args, "as_login"):
            args.as_login = args.as_login or sandbox.agent
        return args.sandbox_handler(args, sandbox, SimulatorClient(sandbox))
    except SandboxError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return exc.status
