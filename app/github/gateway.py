"""The GitHub operations Fleet performs for one repository.

Every mutation goes through ``_mutate`` so it is recorded as evidence with its outcome. Reads
return plain values or githubkit models; callers never see HTTP details.
"""
from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from githubkit import GitHub
from githubkit.exception import RateLimitExceeded, RequestFailed

from app.github.identity import is_bot
from app.github.etags import EtagCache, conditional_get
from app.github.evidence import EvidenceRecorder
from app.github.client import SECONDARY_LIMIT_WAIT, is_secondary_limit
from app.github.write_budget import BudgetSpent, WriteClass, current_class

log = logging.getLogger(__name__)
T = TypeVar("T")


class GitHubRefused(RuntimeError):
    """GitHub answered a mutation with a 4xx; ``status`` and GitHub's ``message`` say why."""

    def __init__(self, action: str, status: int, message: str):
        super().__init__(f"{action}: GitHub answered {status}: {message}")
        self.action = action
        self.status = status
        self.message = message


def github_message(exc: RequestFailed) -> str:
    try:
        body = exc.response.json()
        return str(body.get("message") or body)[:500]
    except Exception:
        return exc.response.text[:500]


def _process_etag_cache() -> EtagCache | None:
    from app import runtime

    try:
        return runtime.etag_cache()
    except Exception:  # settings not loaded (scripts, some tests): plain GETs
        return None


class RepoGateway:
    """GitHub calls scoped to one repository, acting as the installation."""

    def __init__(self, client: GitHub, full_name: str, evidence: EvidenceRecorder, etags: EtagCache | None = None):
        self.gh = client
        self.full_name = full_name
        self.owner, self.repo = full_name.split("/", 1)
        self.evidence = evidence
        self.etags = etags if etags is not None else _process_etag_cache()

    def write_slot_free_at(self, write_class: WriteClass) -> float | None:
        """When this installation's pacer would have a slot for a ``write_class`` write (epoch
        seconds); None when it would now, or when the client is not paced."""
        pacer = getattr(self.gh.config, "throttler", None)  # Fleet's WritePacer, or githubkit's own
        return pacer.free_at(write_class) if hasattr(pacer, "free_at") else None

    # -- plumbing ---------------------------------------------------------------------------

    def _mutate(self, action: str, target: str, call: Callable[[], T], **detail: Any) -> T:
        try:
            result = call()
        except BudgetSpent as exc:
            self.evidence.record(action, target, "deferred", None, message=str(exc)[:500], **detail)
            raise
        except RateLimitExceeded as exc:
            # GitHub said stop (the retry policy marked the installation spent): the job defers,
            # it is not a refusal of this write.
            status = exc.response.status_code
            self.evidence.record(action, target, "deferred", status, message=github_message(exc), **detail)
            raise BudgetSpent(self._installation_id(), current_class(),
                              time.time() + exc.retry_after.total_seconds(), f"GitHub answered {status}") from exc
        except RequestFailed as exc:
            status = exc.response.status_code
            message = github_message(exc)
            if is_secondary_limit(exc.response):
                self.evidence.record(action, target, "deferred", status, message=message, **detail)
                raise BudgetSpent(self._installation_id(), current_class(), time.time() + SECONDARY_LIMIT_WAIT,
                                  f"GitHub answered {status}") from exc
            self.evidence.record(action, target, "refused" if status < 500 else "error", status, message=message, **detail)
            if status < 500:
                raise GitHubRefused(action, status, message) from exc
            raise
        except Exception as exc:
            self.evidence.record(action, target, "error", None, message=str(exc)[:500], **detail)
            raise
        status = getattr(result, "status_code", None)
        self.evidence.record(action, target, "ok", status, **detail)
        return result

    def _installation_id(self) -> int:
        return getattr(self.gh.config.throttler, "installation_id", 0)

    def _paginate(self, method: Callable[..., Any], **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, as raw JSON. Fleet parses with its own small models:
        githubkit's full models reject payloads that omit fields newer API versions added."""
        return iter(self.gh.rest.paginate(
            method, map_func=lambda resp: resp.json(), owner=self.owner, repo=self.repo, per_page=100, **kwargs
        ))

    # -- reads ------------------------------------------------------------------------------

    def permission(self, login: str) -> str:
        """The user's permission on the repository: admin, maintain, write, triage, read or none."""
        try:
            resp = self.gh.rest.repos.get_collaborator_permission_level(self.owner, self.repo, login)
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return "none"
            raise
        data = resp.json()
        return data.get("role_name") or data.get("permission") or "none"

    def can_be_assigned(self, login: str) -> bool:
        try:
            self.gh.rest.issues.check_user_can_be_assigned(self.owner, self.repo, login)
            return True
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return False
            raise

    def file_text(self, path: str, ref: str | None = None) -> tuple[str, str] | None:
        """(text, blob sha) of a file, or None when it does not exist."""
        kwargs = {"ref": ref} if ref else {}
        try:
            data = self.gh.rest.repos.get_content(self.owner, self.repo, path, **kwargs).json()
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return None
            raise
        if not isinstance(data, dict) or data.get("type") != "file":
            return None
        return base64.b64decode(data.get("content") or "").decode("utf-8", "replace"), data["sha"]

    def issues(self, state: str = "open") -> Iterator[dict[str, Any]]:
        """Issues and pull requests (GitHub lists both), as raw JSON dicts."""
        yield from self._paginate(self.gh.rest.issues.list_for_repo, state=state)

    def _cached(self, key: str, call: Callable[[dict[str, str]], Any]) -> Any:
        return conditional_get(self.etags, f"{self.full_name.lower()}:{key}", call)

    def issue(self, number: int) -> dict[str, Any]:
        return self._cached(f"issue:{number}", lambda h: self.gh.rest.issues.get(self.owner, self.repo, number, headers=h))

    def issue_events(self, number: int) -> list[dict[str, Any]]:
        """``GET .../issues/{n}/events``, oldest first: GitHub's record of who was assigned when
        (read only to decide a contested claim)."""
        return list(self._paginate(self.gh.rest.issues.list_events, issue_number=number))

    def pulls(self, state: str = "open") -> Iterator[dict[str, Any]]:
        yield from self._paginate(self.gh.rest.pulls.list, state=state)

    def pull(self, number: int) -> dict[str, Any]:
        return self._cached(f"pull:{number}", lambda h: self.gh.rest.pulls.get(self.owner, self.repo, number, headers=h))

    def labels(self) -> list[str]:
        return [label["name"] for label in self._paginate(self.gh.rest.issues.list_labels_for_repo)]

    def milestones(self) -> list[dict[str, Any]]:
        return list(self._paginate(self.gh.rest.issues.list_milestones, state="all"))

    def check_runs(self, ref: str) -> list[dict[str, Any]]:
        data = self._cached(f"check-runs:{ref}", lambda h: self.gh.rest.checks.list_for_ref(
            self.owner, self.repo, ref, per_page=100, headers=h))
        return data.get("check_runs", [])

    def combined_status(self, ref: str) -> list[dict[str, Any]]:
        data = self._cached(f"status:{ref}", lambda h: self.gh.rest.repos.get_combined_status_for_ref(
            self.owner, self.repo, ref, per_page=100, headers=h))
        return data.get("statuses", [])

    def comments(self, number: int) -> list[dict[str, Any]]:
        return list(self._paginate(self.gh.rest.issues.list_comments, issue_number=number))

    def blocked_by(self, number: int) -> list[dict[str, Any]]:
        try:
            return self.gh.rest.issues.list_dependencies_blocked_by(self.owner, self.repo, number).json()
        except RequestFailed as exc:
            if exc.response.status_code in (404, 410):
                return []
            raise

    # -- writes -----------------------------------------------------------------------------

    def add_assignees(self, number: int, logins: list[str]) -> None:
        self._mutate(
            "add_assignees", f"#{number}",
            lambda: self.gh.rest.issues.add_assignees(self.owner, self.repo, number, assignees=logins),
            logins=logins,
        )

    def remove_assignees(self, number: int, logins: list[str]) -> None:
        self._mutate(
            "remove_assignees", f"#{number}",
            lambda: self.gh.rest.issues.remove_assignees(self.owner, self.repo, number, assignees=logins),
            logins=logins,
        )

    def comment(self, number: int, body: str, *, dedupe_marker: str | None = None) -> int | None:
        """Post a comment. With ``dedupe_marker``, a comment already carrying it is not posted
        again: a retried job (or a POST GitHub half-completed) never duplicates a reply."""
        if dedupe_marker and self._find_comment(number, dedupe_marker) is not None:
            self.evidence.record("comment", f"#{number}", "skipped-duplicate", None, marker=dedupe_marker)
            return None
        try:
            resp = self._mutate(
                "comment", f"#{number}",
                lambda: self.gh.rest.issues.create_comment(self.owner, self.repo, number, body=body),
                length=len(body),
            )
        except RequestFailed as exc:
            # 5xx: the comment may exist anyway; look once before giving up.
            if dedupe_marker and exc.response.status_code >= 500:
                found = self._find_comment(number, dedupe_marker)
                if found is not None:
                    return found
            raise
        return resp.json()["id"]

    def _find_comment(self, number: int, marker: str) -> int | None:
        """Fleet's own comment carrying ``marker``. Anyone can paste a marker (they are
        predictable), so a comment by any other author never counts: it would silence a warning."""
        for comment in self.comments(number):
            if marker in (comment.get("body") or "") and is_bot((comment.get("user") or {}).get("login")):
                return comment["id"]
        return None

    def react(self, comment_id: int, content: str = "+1") -> None:
        self._mutate(
            "react", f"comment:{comment_id}",
            lambda: self.gh.rest.reactions.create_for_issue_comment(self.owner, self.repo, comment_id, content=content),
            content=content,
        )

    def add_labels(self, number: int, labels: list[str]) -> None:
        self._mutate(
            "add_labels", f"#{number}",
            lambda: self.gh.rest.issues.add_labels(self.owner, self.repo, number, labels=labels),
            labels=labels,
        )

    def remove_label(self, number: int, label: str) -> None:
        try:
            self._mutate(
                "remove_label", f"#{number}",
                lambda: self.gh.rest.issues.remove_label(self.owner, self.repo, number, label),
                label=label,
            )
        except GitHubRefused as exc:
            if exc.status != 404:  # already gone: the goal is reached
                raise

    def create_label(self, name: str, color: str, description: str) -> None:
        try:
            self._mutate(
                "create_label", f"label:{name}",
                lambda: self.gh.rest.issues.create_label(
                    self.owner, self.repo, name=name, color=color, description=description
                ),
            )
        except GitHubRefused as exc:
            if exc.status != 422:  # 422 already_exists: someone made it first
                raise

    def update_issue(self, number: int, **fields: Any) -> dict[str, Any]:
        return self._mutate(
            "update_issue", f"#{number}",
            lambda: self.gh.rest.issues.update(self.owner, self.repo, number, **fields),
            fields=sorted(fields),
        ).json()

    def create_issue(self, title: str, body: str, **fields: Any) -> dict[str, Any]:
        return self._mutate(
            "create_issue", "issue",
            lambda: self.gh.rest.issues.create(self.owner, self.repo, title=title, body=body, **fields),
        ).json()

    def create_milestone(self, title: str, **fields: Any) -> dict[str, Any]:
        return self._mutate(
            "create_milestone", f"milestone:{title[:50]}",
            lambda: self.gh.rest.issues.create_milestone(self.owner, self.repo, title=title, **fields),
        ).json()

    def update_milestone(self, number: int, **fields: Any) -> dict[str, Any]:
        return self._mutate(
            "update_milestone", f"milestone:{number}",
            lambda: self.gh.rest.issues.update_milestone(self.owner, self.repo, number, **fields),
        ).json()

    def open_issues_labelled(self, label: str) -> list[dict[str, Any]]:
        return self.gh.rest.issues.list_for_repo(self.owner, self.repo, state="open", labels=label, per_page=100).json()

    def pin_issue(self, node_id: str) -> bool:
        """Pin with GraphQL; False (recorded as evidence) when GitHub refuses."""
        query = "mutation($id: ID!) { pinIssue(input: {issueId: $id}) { issue { number } } }"
        try:
            self._mutate("pin_issue", node_id, lambda: self.gh.graphql.request(query, {"id": node_id}))
            return True
        except BudgetSpent:
            raise  # not a refusal: the job defers and pins later
        except Exception as exc:  # GraphQL errors arrive as exceptions of several kinds
            log.warning("pinning refused: %s", str(exc)[:200])
            return False

    # -- pull requests and checks (merge queue) ---------------------------------------------

    def compare(self, base: str, head: str) -> dict[str, Any]:
        """``GET .../compare/{base}...{head}`` (first page only: the queue reads the merge base,
        the base tip and the ahead/behind counts, not the commit list)."""
        return self.gh.rest.repos.compare_commits(self.owner, self.repo, f"{base}...{head}", per_page=1).json()

    def reviews(self, number: int) -> list[dict[str, Any]]:
        return list(self._paginate(self.gh.rest.pulls.list_reviews, pull_number=number))

    def merge_pull(self, number: int, sha: str, method: str, title: str, message: str) -> dict[str, Any]:
        """``PUT .../pulls/{n}/merge`` pinned to ``sha``: GitHub refuses (409) if the head moved.
        Raises GitHubRefused on 4xx, githubkit's RequestFailed on 5xx."""
        data: dict[str, Any] = {"sha": sha, "merge_method": method, "commit_title": title}
        if message:
            data["commit_message"] = message
        return self._mutate(
            "merge_pull", f"#{number}",
            lambda: self.gh.rest.pulls.merge(self.owner, self.repo, number, data=data),
            sha=sha, method=method,
        ).json()

    def update_branch(self, number: int, expected_head_sha: str) -> int:
        """``PUT .../pulls/{n}/update-branch``: merge the base into the head (GitHub answers 202
        and pushes asynchronously). Returns the status code."""
        resp = self._mutate(
            "update_branch", f"#{number}",
            lambda: self.gh.rest.pulls.update_branch(
                self.owner, self.repo, number, data={"expected_head_sha": expected_head_sha}
            ),
            expected_head_sha=expected_head_sha,
        )
        return resp.status_code

    # -- branches (merge groups) ---------------------------------------------------------

    def branch_tip(self, branch: str) -> str | None:
        """``GET .../git/ref/heads/{branch}``: the commit the branch points to; None when it
        does not exist."""
        try:
            return self.gh.rest.git.get_ref(self.owner, self.repo, f"heads/{branch}").json()["object"]["sha"]
        except RequestFailed as exc:
            if exc.response.status_code == 404:
                return None
            raise

    def create_branch(self, branch: str, sha: str) -> None:
        """``POST .../git/refs``: a new branch at ``sha`` (422 when it exists)."""
        self._mutate("create_branch", branch, lambda: self.gh.rest.git.create_ref(
            self.owner, self.repo, data={"ref": f"refs/heads/{branch}", "sha": sha}), sha=sha)

    def fast_forward(self, branch: str, sha: str) -> None:
        """``PATCH .../git/refs/heads/{branch}`` to ``sha``, never forced: GitHub answers 422
        "Update is not a fast forward" when the branch moved elsewhere meanwhile."""
        self._mutate("fast_forward", branch, lambda: self.gh.rest.git.update_ref(
            self.owner, self.repo, f"heads/{branch}", data={"sha": sha, "force": False}), sha=sha)

    def delete_branch(self, branch: str) -> bool:
        """``DELETE .../git/refs/heads/{branch}``; False when it was already gone."""
        try:
            self._mutate("delete_branch", branch, lambda: self.gh.rest.git.delete_ref(
                self.owner, self.repo, f"heads/{branch}"))
        except GitHubRefused as exc:
            if exc.status in (404, 422) and "does not exist" in exc.message.lower():
                return False
            raise
        return True

    def merge_into(self, branch: str, head_sha: str, message: str) -> tuple[str, str] | None:
        """``POST .../merges``: merge ``head_sha`` into ``branch``; (the new commit, its tree), or
        None when the branch already contains it (204). A conflict raises GitHubRefused (409)."""
        resp = self._mutate("merge_into", branch, lambda: self.gh.rest.repos.merge(
            self.owner, self.repo, data={"base": branch, "head": head_sha, "commit_message": message}),
            head=head_sha)
        if resp.status_code == 204:
            return None
        data = resp.json()
        return data["sha"], data["commit"]["tree"]["sha"]

    def commit_tree(self, sha: str) -> str:
        """``GET .../git/commits/{sha}``: the commit's tree."""
        return self.gh.rest.git.get_commit(self.owner, self.repo, sha).json()["tree"]["sha"]

    def create_commit(self, message: str, tree: str, parent: str) -> str:
        """``POST .../git/commits``: a commit object (no ref moves, so no push); its sha."""
        return self._mutate("create_commit", f"tree:{tree[:12]}", lambda: self.gh.rest.git.create_commit(
            self.owner, self.repo, data={"message": message, "tree": tree, "parents": [parent]}),
            parent=parent).json()["sha"]

    def force_branch(self, branch: str, sha: str) -> None:
        """``PATCH .../git/refs/heads/{branch}`` with ``force``: only ever Fleet's own group branches."""
        self._mutate("force_branch", branch, lambda: self.gh.rest.git.update_ref(
            self.owner, self.repo, f"heads/{branch}", data={"sha": sha, "force": True}), sha=sha)

    def create_check_run(self, payload: dict[str, Any]) -> int:
        """``POST .../check-runs``; returns the new run's id."""
        return self._mutate(
            "create_check_run", f"sha:{payload.get('head_sha', '')[:12]}",
            lambda: self.gh.rest.checks.create(self.owner, self.repo, data=payload),
            name=payload.get("name"), conclusion=payload.get("conclusion"),
        ).json()["id"]

    def update_check_run(self, check_run_id: int, payload: dict[str, Any]) -> None:
        """``PATCH .../check-runs/{id}``: update Fleet's run in place."""
        self._mutate(
            "update_check_run", f"check_run:{check_run_id}",
            lambda: self.gh.rest.checks.update(self.owner, self.repo, check_run_id, data=payload),
            conclusion=payload.get("conclusion"),
        )
