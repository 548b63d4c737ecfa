"""Pull requests: open, edit, mergeability, merge, update-branch and reviews."""
from __future__ import annotations

from . import events
from .errors import ApiError, validation
from .git_model import MergeConflict
from .ops_issues import closing_refs, create_issue, emit_issue, get_issue, set_state, touch
from .render import review_json
from .render_git import pr_json
from .state import Issue, PullRequest, Repo, Review, User, World, iso

MERGE_METHODS = ("merge", "squash", "rebase")


def get_pull(r: Repo, number: int) -> Issue:
    """The PR ``number`` (its issue record) or 404."""
    i = get_issue(r, number)
    if i.pull is None:
        raise ApiError(404, "Not Found")
    return i


def mergeability(world: World, r: Repo, i: Issue) -> tuple:
    """(mergeable, mergeable_state) as GitHub would compute them right now."""
    p = i.pull
    if p.merged:
        return None, "unknown"
    if _conflicts(r, p):
        return False, "dirty"
    if i.state == "closed":
        return True, "clean"
    if not r.git.is_ancestor(p.base_sha, p.head_sha):
        return True, "behind"
    if p.draft:
        return True, "draft"
    return True, _checks_state(r, p.head_sha)


def _conflicts(r: Repo, p: PullRequest) -> bool:
    return bool(r.git.conflicts(p.base_sha, p.head_sha))


def _checks_state(r: Repo, sha: str) -> str:
    """clean, or unstable when a check run or status on the head failed."""
    bad = {"failure", "timed_out", "cancelled", "action_required"}
    if any(c.head_sha == sha and c.conclusion in bad for c in r.check_runs):
        return "unstable"
    latest = {s.context: s.state for s in r.statuses if s.sha == sha}
    if any(v in ("failure", "error") for v in latest.values()):
        return "unstable"
    return "clean"


def pr_rest_json(world: World, r: Repo, i: Issue, null_once: bool) -> dict:
    """The PR for GET: ``mergeable`` is null on the first read after base or head moved
    when ``null_once`` (GitHub computes it in the background)."""
    p = i.pull
    key = (p.base_sha, p.head_sha)
    if null_once and i.state == "open" and p.null_reported_for != key:
        p.null_reported_for = key
        return pr_json(world, r, i, None, "unknown")
    mergeable, state = mergeability(world, r, i)
    return pr_json(world, r, i, mergeable, state)


def pr_webhook_json(world: World, r: Repo, i: Issue) -> dict:
    """The PR inside webhooks: mergeable is unknown (null) while open, as GitHub usually sends it."""
    if i.state == "open":
        return pr_json(world, r, i, None, "unknown")
    mergeable, state = mergeability(world, r, i)
    return pr_json(world, r, i, mergeable, state)


def create_pull(world: World, r: Repo, actor: User, title: str, head: str, base: str,
                body: str | None = None, draft: bool = False) -> Issue:
    """Open a PR from ``head`` into ``base``; emits pull_request.opened."""
    head = head.split(":", 1)[-1]  # "owner:branch" form; forks are not modelled
    if base not in r.git.branches:
        raise validation("PullRequest", "base", "invalid")
    if head not in r.git.branches:
        raise validation("PullRequest", "head", "invalid")
    for other in r.issues.values():
        if other.pull and other.state == "open" and other.pull.head_ref == head and other.pull.base_ref == base:
            raise ApiError(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom",
                           "message": f"A pull request already exists for {r.owner.login}:{head}."}])
    head_sha, base_sha = r.git.branches[head], r.git.branches[base]
    if not r.git.only_in(head_sha, base_sha):
        raise ApiError(422, "Validation Failed", [{"resource": "PullRequest", "code": "custom",
                       "message": f"No commits between {base} and {head}"}])
    pull = PullRequest(world.new_id(), head, base, head_sha, base_sha, draft=bool(draft))
    return create_issue(world, r, actor, title, body, pull=pull)


def update_pull(world: World, r: Repo, i: Issue, actor: User, fields: dict) -> Issue:
    """PATCH a PR: title, body, state, base."""
    p = i.pull
    changes = {}
    for key in ("title", "body"):
        if key in fields and fields[key] is not None and fields[key] != getattr(i, key):
            changes[key] = {"from": getattr(i, key) or ""}
            setattr(i, key, fields[key])
    if fields.get("base") and fields["base"] != p.base_ref:
        if fields["base"] not in r.git.branches:
            raise validation("PullRequest", "base", "invalid")
        changes["base"] = {"ref": {"from": p.base_ref}, "sha": {"from": p.base_sha}}
        p.base_ref, p.base_sha = fields["base"], r.git.branches[fields["base"]]
    if changes:
        touch(world, i)
        emit_issue(world, r, i, "edited", actor, changes=changes)
    state = fields.get("state")
    if state and state != i.state and not p.merged:
        if state == "open" and p.head_ref not in r.git.branches:
            raise validation("PullRequest", "state", "invalid")
        set_state(world, r, i, actor, state)
    return i


def set_draft(world: World, r: Repo, i: Issue, actor: User, draft: bool) -> None:
    """Mark as draft / ready; emits converted_to_draft / ready_for_review."""
    if i.pull.draft == draft:
        return
    i.pull.draft = draft
    touch(world, i)
    emit_issue(world, r, i, "converted_to_draft" if draft else "ready_for_review", actor)


def on_branch_moved(world: World, r: Repo, branch: str, pusher: User) -> None:
    """Keep open PRs' head/base shas in step with their branches; synchronize on head moves.

    Open PRs into ``branch`` whose head the move brought into it become merged by ``pusher``,
    whatever moved it (a fast-forward, a merge, a push): that is how GitHub sees a bors-style
    queue land a batch without the merge API.
    """
    tip = r.git.branches.get(branch)
    for i in r.issues.values():
        p = i.pull
        if p is None or i.state != "open":
            continue
        if p.base_ref == branch:
            p.base_sha = tip
        if p.head_ref == branch and p.head_sha != tip:
            before, p.head_sha = p.head_sha, tip
            touch(world, i)
            emit_issue(world, r, i, "synchronize", pusher, before=before, after=tip)
    for i in _landed(r, branch, tip):
        # GitHub documents merge_commit_sha for its own merge methods only; for a rebase it is
        # "the commit that the base branch was updated to", the nearest case to a push: the new tip.
        _record_merge(world, i, pusher, tip)
        _announce_merge(world, r, i, pusher)


def _landed(r: Repo, branch: str, tip: str) -> list:
    """Open PRs into ``branch`` whose head commit ``tip`` contains."""
    into = [i for i in r.issues.values() if i.pull and i.state == "open" and i.pull.base_ref == branch]
    if not into:
        return []
    reachable = r.git.ancestors(tip)
    return [i for i in into if i.pull.head_sha in reachable]


def merge_pull(world: World, r: Repo, i: Issue, actor: User, sha: str | None = None,
               method: str = "merge", title: str | None = None, message: str | None = None) -> str:
    """Merge a PR; returns the new base head sha. 405 closed/conflict, 409 stale sha, 422 bad method."""
    p = i.pull
    if method not in MERGE_METHODS:
        raise validation("PullRequest", "merge_method", "invalid")
    if p.merged or i.state != "open":
        raise ApiError(405, "Pull Request is not mergeable")
    if sha and sha != p.head_sha:
        raise ApiError(409, "Head branch was modified. Review and try the merge again.")
    if p.draft:
        raise ApiError(405, "Pull Request is still a draft")
    p.base_sha = r.git.branches[p.base_ref]
    try:
        new_sha = _merge_commits(world, r, i, actor, method, title, message)
    except MergeConflict:
        raise ApiError(405, "Pull Request is not mergeable")
    # Recorded before the base moves, so the push below does not land this PR a second time.
    _record_merge(world, i, actor, new_sha)
    from .ops_repo import move_branch
    move_branch(world, r, p.base_ref, new_sha, actor)
    _announce_merge(world, r, i, actor)
    return new_sha


def _record_merge(world: World, i: Issue, actor: User, merge_sha: str) -> None:
    """Mark ``i`` merged by ``actor`` at ``merge_sha`` and closed (both merge paths share this)."""
    p, now = i.pull, world.now()
    p.merged, p.merged_at, p.merged_by, p.merge_commit_sha = True, now, actor, merge_sha
    i.state, i.closed_at, i.closed_by, i.state_reason = "closed", now, actor, None
    touch(world, i)


def _announce_merge(world: World, r: Repo, i: Issue, actor: User) -> None:
    """Emit pull_request.closed (merged) and, into the default branch only, close the issues
    the PR body closes (``Closes #N``...), as GitHub does."""
    emit_issue(world, r, i, "closed", actor)
    if i.pull.base_ref == r.default_branch:
        _close_referenced(world, r, i, actor)


def _merge_commits(world, r, i, actor, method, title, message) -> str:
    """Build the commit(s) a merge produces and return the resulting base sha."""
    p, git, ts = i.pull, r.git, iso(world.now())
    tree = git.three_way(git.merge_base(p.base_sha, p.head_sha), p.base_sha, p.head_sha)
    if method == "merge":
        msg = (title or f"Merge pull request #{i.number} from {r.owner.login}/{p.head_ref}") + \
            ("\n\n" + (message if message is not None else i.title))
        return git.commit(tree, (p.base_sha, p.head_sha), msg, actor.login, ts).sha
    if method == "squash":
        msg = (title or f"{i.title} (#{i.number})") + ("\n\n" + message if message else "")
        return git.commit(tree, (p.base_sha,), msg, actor.login, ts).sha
    # rebase: replay each PR commit onto base, carrying forward trees
    head = p.base_sha
    for c in git.only_in(p.head_sha, p.base_sha):
        if len(c.parents) > 1:
            continue  # merge commits are dropped by a rebase
        mb = c.parents[0] if c.parents else None
        t = git.three_way(mb, head, c.sha)
        head = git.commit(t, (head,), c.message, c.author, ts).sha
    if git.tree(head) != tree:  # skipped merge commits can hide changes; fold them in
        head = git.commit(tree, (head,), f"Rebase of #{i.number}", actor.login, ts).sha
    return head


def _close_referenced(world: World, r: Repo, pr: Issue, actor: User) -> None:
    for n in closing_refs(pr.body):
        target = r.issues.get(n)
        if target is not None and target.pull is None and target.state == "open":
            set_state(world, r, target, actor, "closed", "completed")


def update_branch(world: World, r: Repo, i: Issue, actor: User, expected_head_sha: str | None) -> str:
    """Merge base into the PR head (PUT update-branch); 422 on sha mismatch or conflict."""
    p = i.pull
    if i.state != "open":
        raise validation("PullRequest", "state", "invalid")
    if expected_head_sha and expected_head_sha != p.head_sha:
        raise ApiError(422, "expected_head_sha does not match the pull request's head sha")
    base_sha = r.git.branches[p.base_ref]
    if r.git.is_ancestor(base_sha, p.head_sha):
        raise ApiError(422, "There are no new commits on the base branch.")
    try:
        tree = r.git.three_way(r.git.merge_base(base_sha, p.head_sha), p.head_sha, base_sha)
    except MergeConflict:
        raise ApiError(422, "merge conflict")
    c = r.git.commit(tree, (p.head_sha, base_sha), f"Merge branch '{p.base_ref}' into {p.head_ref}",
                     actor.login, iso(world.now()))
    from .ops_repo import move_branch
    move_branch(world, r, p.head_ref, c.sha, actor)
    return c.sha


def create_review(world: World, r: Repo, i: Issue, actor: User, event: str | None, body: str | None,
                  commit_id: str | None) -> Review:
    """Submit a review; emits pull_request_review.submitted (pending reviews emit nothing)."""
    states = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
    if event and event not in states:
        raise validation("PullRequestReview", "event", "invalid")
    if event in ("REQUEST_CHANGES", "COMMENT") and not body:
        raise ApiError(422, "Unprocessable Entity",
                       [f"Review Can not {event.lower().replace('_', ' ')} without a body"])
    if event in ("APPROVE", "REQUEST_CHANGES") and actor is i.user:
        raise ApiError(422, "Unprocessable Entity",
                       [f"Can not {'approve' if event == 'APPROVE' else 'request changes on'} your own pull request"])
    rv = Review(world.new_id(), actor, body or "", states.get(event, "PENDING"),
                commit_id or i.pull.head_sha, world.now())
    i.pull.reviews.append(rv)
    if event:
        events.emit(world, r, "pull_request_review", {
            "action": "submitted", "review": review_json(world, r, i.number, rv),
            "pull_request": pr_webhook_json(world, r, i)}, actor)
    return rv
