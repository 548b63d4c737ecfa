"""The ``Simulator``: a stateful GitHub stand-in served over real HTTP on 127.0.0.1.

Typical use::

    with Simulator(webhook_url="http://127.0.0.1:8000/webhooks/github") as sim:
        sim.create_repo("octo/demo")
        inst = sim.install(["octo/demo"])
        sim.add_user("agent-1", permission="write")
        sim.push("octo/demo", "feature", {"a.txt": "hello"}, author="agent-1")
        ...
        sim.wait_idle()

Every setup helper and action below takes the world lock and emits the webhooks
GitHub would send; the same state is reachable over GitHub's REST paths and the
``/_sim/...`` control endpoints (see ``routes_control``).
"""
from __future__ import annotations

import functools
import io
import socket
import threading
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import WSGIRequestHandler, make_server

from . import ops_checks, ops_issues, ops_pulls, ops_refs, ops_relations, ops_repo, protection
from .auth import issue_installation_token, issue_user_token
from .faults import Faults
from .render import issue_json
from .server import SECONDARY, create_app
from .state import AppInfo, World
from .webhooks import Outbox

GITHUB_ACTIONS_APP_ID = 15368  # GitHub Actions' App id on github.com
APP_PERMISSIONS = {"issues": "write", "pull_requests": "write", "contents": "write", "checks": "write",
                   "statuses": "write", "metadata": "read", "members": "read"}
# Subscribed events as the official App schema can express them (its enum predates
# issue_dependencies and sub_issues, which are delivered regardless).
APP_EVENTS = ["issues", "issue_comment", "label", "milestone", "create", "delete", "push", "pull_request",
              "pull_request_review", "check_run", "check_suite", "status"]


class _QuietHandler(WSGIRequestHandler):
    """HTTP/1.1 with persistent connections, as GitHub's API serves them: a connection serves
    request after request until the client closes it or asks to, or it idles for ``timeout``
    seconds. Werkzeug's own ``run_wsgi`` answers ``Connection: close`` every time; requests with a
    ``Content-Length`` body (every client Fleet uses) are served here instead, and only a chunked
    request body falls back to werkzeug, which closes. No per-request log lines."""

    protocol_version = "HTTP/1.1"
    timeout = 30  # an idle kept-alive connection is let go after this many seconds
    # On a kept-alive connection an answer written in pieces waits for the client's delayed ACK
    # (40 ms) under Nagle's algorithm: servers turn it off, and each answer goes out in one write.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        self.server.live_connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        self.server.live_connections.discard(self.connection)  # type: ignore[attr-defined]
        super().finish()

    def run_wsgi(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return super().run_wsgi()
        if self.headers.get("Expect", "").lower().strip() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.environ = self.make_environ()
        # Exactly the declared body, so the next request on the connection starts where it should.
        environ["wsgi.input"] = io.BytesIO(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        status, headers, body = self._answer(environ)
        code = int(status.split(" ", 1)[0])
        self.send_response(code, status.partition(" ")[2])
        for key, value in headers:
            if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(key, value)
        has_body = code >= 200 and code not in (204, 304)
        if has_body:
            self.send_header("Content-Length", str(len(body)))
        self._headers_buffer.append(b"\r\n")  # the end of the headers, and the body, in one write
        if has_body and self.command != "HEAD":
            self._headers_buffer.append(body)
        self.flush_headers()

    def _answer(self, environ: dict) -> tuple[str, list[tuple[str, str]], bytes]:
        started: list = []

        def start_response(status, headers, exc_info=None):
            started[:] = [status, headers]

        try:
            result = self.server.app(environ, start_response)
            try:
                body = b"".join(result)
            finally:
                if hasattr(result, "close"):
                    result.close()
            return started[0], started[1], body
        except Exception as exc:  # the simulator's own bug: say so, and close the connection
            self.close_connection = True
            self.server.log("error", f"simulator error: {exc!r}")
            return "500 Internal Server Error", [("Content-Type", "text/plain")], b"simulator error"

    def log_request(self, *args, **kwargs):
        pass

    def log_error(self, format: str, *args) -> None:
        if format.startswith("Request timed out"):
            return  # an idle kept-alive connection let go after ``timeout``: routine, not an error
        super().log_error(format, *args)


@functools.lru_cache(maxsize=1)
def _generated_key() -> str:
    """One RSA key per process: generating is slow and tests create many simulators."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _load_request_validator():
    try:
        from .openapi import RequestValidator
    except ImportError as exc:  # helper module missing: fail loudly, never skip validation silently
        raise RuntimeError("app.sandbox.simulator.openapi (RequestValidator) is required for request validation; "
                           "pass validate_requests=False to run without it") from exc
    return RequestValidator.load()


class Simulator:
    """A local GitHub: REST + GraphQL + webhooks for one GitHub App (Fleet).

    ``mergeable_null_once`` (default True) mimics GitHub computing mergeability in the
    background: the first ``GET .../pulls/{n}`` after the base or head moved returns
    ``mergeable: null`` and ``mergeable_state: "unknown"``; the next GET has the value.
    """

    def __init__(self, webhook_url: str | None = None, webhook_secret: str = "s3cret", app_id: int = 1,
                 app_private_key_pem: str | None = None, app_slug: str = "fleet", port: int = 0,
                 validate_requests: bool = True, validate_responses: bool = False,
                 mergeable_null_once: bool = True, rate_limit: int = 5000, seed: int | None = None,
                 enforce_secondary_limits: bool = False):
        self.app_private_key_pem = app_private_key_pem or _generated_key()
        key = serialization.load_pem_private_key(self.app_private_key_pem.encode(), password=None)
        self.public_key = key.public_key()
        self.webhook_secret = webhook_secret
        self.mergeable_null_once = mergeable_null_once
        self.rate_limit = rate_limit
        self.rate_state: dict = {}
        # GitHub's secondary limit on content creation (80/min, 500/h per caller): every
        # excess write is logged in secondary_limit_hits; answered 403 only when enforced.
        self.enforce_secondary_limits = enforce_secondary_limits
        # (window seconds, max writes) pairs; `fleet demo --writes-per-minute` shrinks them for short runs.
        self.secondary_limits: tuple = SECONDARY
        self.secondary_limit_hits: list = []
        self.write_log: dict = {}
        self.requests: list = []
        self.violations: list = []
        self.response_violations: list = []
        self.faults = Faults(seed)
        self.outbox = Outbox(webhook_secret, app_id, self.faults, webhook_url)
        self.request_validator = _load_request_validator() if validate_requests or validate_responses else None
        self.validate_responses = validate_responses
        self.world = World()
        self.world.emit = self.outbox.emit
        self._make_apps(app_id, app_slug)
        self._server = make_server("127.0.0.1", port, create_app(self), threaded=True,
                                   request_handler=_QuietHandler)
        self._server.live_connections = set()  # type: ignore[attr-defined]
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.world.api_url = self.url
        self._thread: threading.Thread | None = None

    def _make_apps(self, app_id: int, slug: str) -> None:
        w = self.world
        owner = w.user("fleet-dev")
        bot = w.user(f"{slug}[bot]", "Bot")
        w.app = AppInfo(app_id, slug, slug.capitalize(), owner, bot, dict(APP_PERMISSIONS), list(APP_EVENTS),
                        client_id=f"Iv1.sim{app_id:010d}")
        # CI plays GitHub Actions (its real App id, slug and bot), the App `gates.required_checks`
        # names are tied to by default; ``ci(..., app=SLUG)`` reports as any other App instead.
        w.ci_app = AppInfo(GITHUB_ACTIONS_APP_ID, "github-actions", "GitHub Actions", w.user("github", "Organization"),
                           w.user("github-actions[bot]", "Bot"), {"checks": "write"}, ["check_run"],
                           client_id="Iv1.githubactions")
        w.apps = {w.app.id: w.app, w.ci_app.id: w.ci_app}

    def _ci_app_named(self, slug: str | None) -> AppInfo:
        """The App reporting CI as ``slug`` (None: GitHub Actions), created on first use."""
        w = self.world
        if slug is None:
            return w.ci_app
        found = next((a for a in w.apps.values() if a.slug == slug), None)
        if found is None:
            app_id = w.new_id()
            while app_id in w.apps:
                app_id = w.new_id()
            found = AppInfo(app_id, slug, slug, w.user("fleet-dev"), w.user(f"{slug}[bot]", "Bot"),
                            {"checks": "write"}, ["check_run"], client_id=f"Iv1.{slug}")
            w.apps[found.id] = found
        return found

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> "Simulator":
        """Serve HTTP and deliver webhooks in background daemon threads."""
        if self._thread is None:
            # A short poll interval keeps stop() fast (tests start many simulators).
            self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="sim-http",
                                            daemon=True)
            self._thread.start()
            self.outbox.start()
        return self

    def stop(self) -> None:
        """Stop serving and delivering."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        # Kept-alive connections would otherwise go on being served after the stop.
        for conn in list(self._server.live_connections):  # type: ignore[attr-defined]
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()
        self.outbox.stop()

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- webhook delivery control -------------------------------------------------------
    @property
    def webhook_url(self) -> str | None:
        """Where webhooks go; None records each delivery as failed (redeliverable later)."""
        return self.outbox.url

    @webhook_url.setter
    def webhook_url(self, url: str | None) -> None:
        self.outbox.url = url

    @property
    def deliveries(self) -> list:
        """Every delivery attempt so far (``webhooks.Delivery``), oldest first."""
        return list(self.outbox.deliveries)

    @property
    def events(self) -> list:
        """Every emitted event (``webhooks.Event``: guid, event, payload), oldest first."""
        return list(self.outbox.events)

    def wait_idle(self, timeout: float = 10) -> bool:
        """Block until no webhook is queued or in flight; False on timeout."""
        return self.outbox.wait_idle(timeout)

    def pause_deliveries(self) -> None:
        """Queue webhooks without delivering them."""
        self.outbox.pause()

    def resume_deliveries(self) -> None:
        """Deliver queued webhooks again, in order."""
        self.outbox.resume()

    def redeliver(self, delivery_id: int) -> None:
        """Queue a redelivery of ``delivery_id`` (same GUID), like the API does."""
        if self.outbox.redeliver(delivery_id) is None:
            raise KeyError(delivery_id)

    # -- setup helpers ---------------------------------------------------------------------
    def _locked(self, fn, *args, **kwargs):
        with self.world.lock:
            return fn(*args, **kwargs)

    def _repo(self, full_name):
        r = self.world.repo(full_name)
        if r is None:
            raise KeyError(f"no repository {full_name}")
        return r

    def _user(self, login):
        return self.world.user(login) if login else None

    def add_org(self, login: str):
        """Declare ``login`` an organization (repos it owns then carry ``organization`` in webhooks)."""
        with self.world.lock:
            u = self.world.user(login, "Organization")
            u.type = "Organization"
            return u

    def create_repo(self, full_name: str, default_branch: str = "main", private: bool = False,
                    default_labels: bool = True):
        """Create ``owner/name`` with an initial commit; returns the ``state.Repo``."""
        return self._locked(ops_repo.create_repo, self.world, full_name, default_branch, private, default_labels)

    def install(self, repo_full_names, installation_id: int | None = None) -> int:
        """Install the App on repositories of one owner; emits installation.created (or
        installation_repositories.added when the owner already has it). Returns the installation id."""
        names = [repo_full_names] if isinstance(repo_full_names, str) else list(repo_full_names)
        with self.world.lock:
            return ops_repo.install(self.world, [self._repo(n) for n in names], installation_id).id

    def uninstall(self, installation_id: int) -> None:
        """Delete an installation; emits installation.deleted and revokes its tokens."""
        with self.world.lock:
            ops_repo.uninstall(self.world, self.world.installations[installation_id])

    def remove_repos(self, installation_id: int, repo_full_names) -> None:
        """Take repositories out of an installation; emits installation_repositories.removed."""
        with self.world.lock:
            inst = self.world.installations[installation_id]
            ops_repo.remove_repos(self.world, inst, [self._repo(n) for n in repo_full_names])

    def archive_repo(self, full_name: str, archived: bool = True, sender: str | None = None) -> None:
        """Archive (or unarchive) a repository; emits repository.archived / unarchived."""
        with self.world.lock:
            ops_repo.set_archived(self.world, self._repo(full_name), archived, self._user(sender))

    def rename_repo(self, full_name: str, new_name: str, sender: str | None = None) -> None:
        """Rename ``owner/name`` to ``owner/new_name``; emits repository.renamed."""
        with self.world.lock:
            ops_repo.rename_repo(self.world, self._repo(full_name), new_name, self._user(sender))

    def set_private(self, full_name: str, private: bool = True, sender: str | None = None) -> None:
        """Make a repository private (or public); emits repository.privatized / publicized."""
        with self.world.lock:
            ops_repo.set_private(self.world, self._repo(full_name), private, self._user(sender))

    def delete_repo(self, full_name: str, sender: str | None = None) -> None:
        """Delete a repository; emits repository.deleted."""
        with self.world.lock:
            ops_repo.delete_repo(self.world, self._repo(full_name), self._user(sender))

    def add_user(self, login: str, permission: str = "write", type: str = "User", repo: str | None = None):
        """Create/update a user. ``permission`` (admin/maintain/write/triage/read/none) applies to
        every repository, or only to ``repo`` when given."""
        with self.world.lock:
            u = self.world.user(login, type)
            u.type = type
            if repo:
                self._repo(repo).collaborators[login] = permission
            else:
                u.permission = permission
            return u

    def add_team_member(self, team: str, login: str, state: str = "active") -> None:
        """Make ``login`` a member of ``team`` (``org/slug``); ``state`` ``pending`` is an
        invitation not yet accepted (GitHub reports it, and it grants nothing)."""
        with self.world.lock:
            self.world.user(login)
            self.world.team_members.setdefault(team.lower(), {})[login.lower()] = state

    def user_token(self, login: str) -> str:
        """A token that authenticates REST calls as ``login`` (created if needed)."""
        with self.world.lock:
            return issue_user_token(self.world, self.world.user(login)).token

    def installation_token(self, installation_id: int) -> str:
        """A fresh installation token (what POST .../access_tokens returns)."""
        with self.world.lock:
            return issue_installation_token(self.world, self.world.installations[installation_id]).token

    def app_jwt(self, lifetime: int = 540) -> str:
        """An App JWT signed with the App key (iat 60 s in the past)."""
        now = int(time.time())
        return jwt.encode({"iat": now - 60, "exp": now + lifetime, "iss": str(self.world.app.id)},
                          self.app_private_key_pem, algorithm="RS256")

    # -- git actions -----------------------------------------------------------------------------
    def push(self, repo: str, branch: str, files: dict, author: str | None = None,
             message: str = "Update files") -> str:
        """Commit ``files`` (path -> content, None deletes) to ``branch`` and push.

        Creates the branch from the default branch if missing (``create`` then ``push``);
        a push to a PR head also emits ``pull_request.synchronize``. Returns the new sha.
        """
        with self.world.lock:
            r = self._repo(repo)
            who = self.world.user(author) if author else r.owner
            return ops_repo.commit_files(self.world, r, branch, files, who, message)

    def set_file(self, repo: str, path: str, content: str, branch: str | None = None,
                 author: str | None = None, message: str | None = None) -> str:
        """Commit one file on ``branch`` (default branch when None); returns the new sha."""
        r = self._repo(repo)
        return self.push(repo, branch or r.default_branch, {path: content}, author, message or f"Update {path}")

    def delete_branch(self, repo: str, branch: str, sender: str | None = None) -> None:
        """Delete a branch; emits ``delete`` and a deleting ``push``."""
        with self.world.lock:
            r = self._repo(repo)
            ops_repo.delete_branch(self.world, r, branch, self._user(sender) or r.owner)

    def branch_sha(self, repo: str, branch: str) -> str:
        """Current tip of ``branch``."""
        with self.world.lock:
            return self._repo(repo).git.branches[branch]

    def create_branch(self, repo: str, branch: str, sha: str | None = None, sender: str | None = None) -> str:
        """Create ``branch`` at ``sha`` (default: the default branch's tip) as ``git push`` of an
        existing commit would; emits ``create`` and ``push``. Returns the sha."""
        with self.world.lock:
            r = self._repo(repo)
            sha = sha or r.git.branches[r.default_branch]
            ops_refs.create_ref(self.world, r, f"refs/heads/{branch}", sha, self._user(sender) or r.owner)
            return sha

    def move_branch(self, repo: str, branch: str, sha: str, force: bool = False, sender: str | None = None) -> None:
        """Point ``branch`` at the existing commit ``sha`` (``git push [--force]`` by a person, so
        protection does not apply); emits ``push``, and open PRs into ``branch`` whose head
        ``sha`` contains become merged. ApiError 422 for a non-fast-forward without ``force``."""
        with self.world.lock:
            r = self._repo(repo)
            ops_refs.update_ref(self.world, r, f"heads/{branch}", sha, force, self._user(sender) or r.owner,
                                by_app=False)

    def protect_branch(self, repo: str, branch: str, allow_force_pushes: bool = False,
                       restrict_pushes: bool = True) -> None:
        """Protect ``branch`` against the App: with ``restrict_pushes`` every ref update, merge into
        it or deletion by an installation answers 422; otherwise only force pushes (unless
        ``allow_force_pushes``) and deletion do. People (the control API) are not restricted."""
        with self.world.lock:
            protection.protect(self._repo(repo), branch, allow_force_pushes, restrict_pushes)

    def unprotect_branch(self, repo: str, branch: str) -> None:
        """Remove the protection of ``branch``."""
        with self.world.lock:
            protection.unprotect(self._repo(repo), branch)

    def file(self, repo: str, path: str, ref: str | None = None) -> str | None:
        """Content of ``path`` at ``ref`` (default branch), or None."""
        with self.world.lock:
            r = self._repo(repo)
            return r.git.tree(r.git.resolve(ref or r.default_branch)).get(path)

    # -- CI ------------------------------------------------------------------------------------------
    def ci(self, repo: str, sha: str, name: str, status: str = "completed", conclusion: str | None = "success",
           details_url: str | None = None, output: dict | None = None, app: str | None = None) -> int:
        """Create or update the CI App's check run ``name`` on ``sha`` (a sha or branch); the App
        is GitHub Actions unless ``app`` names another (by slug).

        Emits check_run.created / .completed, and check_suite.completed once every run of
        the CI suite on that sha has completed. Returns the check run id.
        """
        with self.world.lock:
            r = self._repo(repo)
            full = r.git.resolve(sha) or sha
            fields = {"status": status, "details_url": details_url, "output": output or {}}
            if status == "completed":
                fields["conclusion"] = conclusion
            app = self._ci_app_named(app)
            run = next((c for c in reversed(r.check_runs) if c.app is app and c.head_sha == full
                        and c.name == name), None)
            if run is None:
                run = ops_checks.create_check_run(self.world, r, app, name, full, fields)
            else:
                ops_checks.update_check_run(self.world, r, run, fields)
            return run.id

    def set_status(self, repo: str, sha: str, context: str, state: str, description: str | None = None,
                   target_url: str | None = None, creator: str | None = None) -> int:
        """Create a commit status (by ``creator``, default the CI bot); emits ``status``."""
        with self.world.lock:
            r = self._repo(repo)
            who = self._user(creator) or self.world.ci_app.bot
            return ops_checks.set_status(self.world, r, sha, who, state, context, description, target_url).id

    def rerequest_check(self, repo: str, check_run_id: int | None = None, check_suite_id: int | None = None,
                        sender: str | None = None) -> None:
        """Press "Re-run" on a check run (check_run.rerequested) or suite (check_suite.rerequested)."""
        with self.world.lock:
            r = self._repo(repo)
            who = self._user(sender) or r.owner
            if check_run_id is not None:
                ops_checks.rerequest_run(self.world, r, ops_checks.get_check_run(r, check_run_id), who)
            else:
                suite = next(s for s in r.check_suites if s.id == check_suite_id)
                ops_checks.rerequest_suite(self.world, r, suite, who)

    def request_check_action(self, repo: str, check_run_id: int, identifier: str, sender: str | None = None) -> None:
        """Click a check run's action button; emits check_run.requested_action."""
        with self.world.lock:
            r = self._repo(repo)
            run = ops_checks.get_check_run(r, check_run_id)
            ops_checks.request_action(self.world, r, run, identifier, self._user(sender) or r.owner)

    # -- issue and PR actions as a person ----------------------------------------------------------------
    def open_issue(self, repo: str, title: str, body: str | None = None, author: str | None = None,
                   labels=(), assignees=(), milestone: int | None = None) -> int:
        """Open an issue as ``author`` (repo owner by default); returns its number."""
        with self.world.lock:
            r = self._repo(repo)
            who = self._user(author) or r.owner
            return ops_issues.create_issue(self.world, r, who, title, body, list(labels), list(assignees),
                                           milestone).number

    def comment(self, repo: str, number: int, body: str, author: str | None = None) -> int:
        """Comment on an issue or PR; returns the comment id."""
        with self.world.lock:
            r = self._repo(repo)
            who = self._user(author) or r.owner
            return ops_issues.create_comment(self.world, r, ops_issues.get_issue(r, number), who, body).id

    def update_issue(self, repo: str, number: int, author: str | None = None, **fields) -> None:
        """PATCH-like edit of an issue (title, body, state, labels, assignees, milestone)."""
        with self.world.lock:
            r = self._repo(repo)
            i = ops_issues.get_issue(r, number)
            ops_issues.update_issue(self.world, r, i, self._user(author) or r.owner, fields)

    def delete_issue(self, repo: str, number: int, sender: str | None = None) -> None:
        """Delete an issue; emits issues.deleted, and the number answers 410 Gone afterwards."""
        with self.world.lock:
            r = self._repo(repo)
            ops_issues.delete_issue(self.world, r, self._user(sender) or r.owner, number)

    def open_pr(self, repo: str, head: str, title: str, base: str | None = None, body: str | None = None,
                author: str | None = None, draft: bool = False) -> int:
        """Open a pull request as ``author``; returns its number."""
        with self.world.lock:
            r = self._repo(repo)
            who = self._user(author) or r.owner
            return ops_pulls.create_pull(self.world, r, who, title, head, base or r.default_branch,
                                         body, draft).number

    def set_draft(self, repo: str, number: int, draft: bool, sender: str | None = None) -> None:
        """Convert to draft / mark ready for review (GitHub does this via GraphQL or the UI)."""
        with self.world.lock:
            r = self._repo(repo)
            ops_pulls.set_draft(self.world, r, ops_pulls.get_pull(r, number), self._user(sender) or r.owner, draft)

    def merge_pr(self, repo: str, number: int, method: str = "merge", by: str | None = None) -> str:
        """Merge a PR as ``by`` (e.g. a human clicking the button); returns the new base sha."""
        with self.world.lock:
            r = self._repo(repo)
            return ops_pulls.merge_pull(self.world, r, ops_pulls.get_pull(r, number),
                                        self._user(by) or r.owner, None, method)

    def review(self, repo: str, number: int, reviewer: str, event: str = "APPROVE", body: str | None = None) -> int:
        """Submit a review; emits pull_request_review.submitted. Returns the review id."""
        with self.world.lock:
            r = self._repo(repo)
            return ops_pulls.create_review(self.world, r, ops_pulls.get_pull(r, number),
                                           self.world.user(reviewer), event, body, None).id

    def add_blocked_by(self, repo: str, issue: int, blocker: int, sender: str | None = None) -> None:
        """Mark ``issue`` blocked by ``blocker``; emits issue_dependencies.blocked_by_added."""
        with self.world.lock:
            r = self._repo(repo)
            ops_relations.add_blocked_by(self.world, r, issue, blocker, self._user(sender) or r.owner)

    def remove_blocked_by(self, repo: str, issue: int, blocker: int, sender: str | None = None) -> None:
        """Remove a dependency; emits issue_dependencies.blocked_by_removed."""
        with self.world.lock:
            r = self._repo(repo)
            ops_relations.remove_blocked_by(self.world, r, issue, blocker, self._user(sender) or r.owner)

    def add_sub_issue(self, repo: str, parent: int, child: int, sender: str | None = None) -> None:
        """Make ``child`` a sub-issue of ``parent``; emits sub_issues.sub_issue_added."""
        with self.world.lock:
            r = self._repo(repo)
            ops_relations.add_sub_issue(self.world, r, parent, child, self._user(sender) or r.owner)

    # -- inspection ------------------------------------------------------------------------------------
    def issue(self, repo: str, number: int) -> dict:
        """The issue (or PR's issue) as GitHub's REST JSON."""
        with self.world.lock:
            r = self._repo(repo)
            return issue_json(self.world, r, ops_issues.get_issue(r, number))

    def pull(self, repo: str, number: int) -> dict:
        """The pull request as REST JSON, with mergeability computed now (never null)."""
        with self.world.lock:
            r = self._repo(repo)
            return ops_pulls.pr_rest_json(self.world, r, ops_pulls.get_pull(r, number), False)

    def calls(self, method: str | None = None, path_contains: str | None = None) -> list:
        """Recorded REST requests filtered by method and path substring."""
        return [q for q in list(self.requests)
                if (method is None or q.method == method.upper())
                and (path_contains is None or path_contains in q.path)]
