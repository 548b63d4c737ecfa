"""JSON for pull requests, branches, refs, commits and combined statuses."""
from __future__ import annotations

from .git_model import blob_sha, diff
from .protection import is_protected
from .render import (_labels, _opt_iso, author_association, commit_people, milestone_json, person_json,
                     repo_json, status_json, user_for_email, user_json, verification_json)
from .state import Issue, Repo, World, iso, node_id


def pr_json(world: World, r: Repo, i: Issue, mergeable=None, mergeable_state="unknown",
            full: bool = True) -> dict:
    """A ``pull-request`` (``full``) or ``pull-request-simple`` (list endpoints)."""
    p = i.pull
    api = f"{world.api_url}/repos/{r.full_name}/pulls/{i.number}"
    issue_api = f"{world.api_url}/repos/{r.full_name}/issues/{i.number}"
    html = f"{world.html_url}/{r.full_name}/pull/{i.number}"
    assignees = [user_json(world, u) for u in i.assignees]
    out = {
        "url": api, "id": p.id, "node_id": node_id("PR", p.id), "html_url": html,
        "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": issue_api,
        "commits_url": f"{api}/commits", "review_comments_url": f"{api}/comments",
        "review_comment_url": f"{world.api_url}/repos/{r.full_name}/pulls/comments{{/number}}",
        "comments_url": f"{issue_api}/comments",
        "statuses_url": f"{world.api_url}/repos/{r.full_name}/statuses/{p.head_sha}",
        "number": i.number, "state": i.state, "locked": i.locked, "title": i.title,
        "user": user_json(world, i.user), "body": i.body, "labels": _labels(world, r, i),
        "milestone": milestone_json(world, r, r.milestones.get(i.milestone)),
        "active_lock_reason": None, "created_at": iso(i.created_at), "updated_at": iso(i.updated_at),
        "closed_at": _opt_iso(i.closed_at), "merged_at": _opt_iso(p.merged_at),
        "merge_commit_sha": p.merge_commit_sha, "assignee": assignees[0] if assignees else None,
        "assignees": assignees, "requested_reviewers": [], "requested_teams": [],
        "head": _end(world, r, p.head_ref, p.head_sha), "base": _end(world, r, p.base_ref, p.base_sha),
        "_links": _links(api, issue_api, html, f"{world.api_url}/repos/{r.full_name}", p.head_sha),
        "author_association": author_association(world, r, i.user), "auto_merge": None,
        "draft": p.draft,
    }
    if full:
        commits = r.git.only_in(p.head_sha, p.base_sha) if not p.merged else []
        files = pr_file_changes(r, i)
        out.update({
            "merged": p.merged, "mergeable": mergeable, "rebaseable": mergeable,
            "mergeable_state": mergeable_state, "merged_by": user_json(world, p.merged_by),
            "comments": len(i.comments), "review_comments": 0, "maintainer_can_modify": p.maintainer_can_modify,
            "commits": len(commits) or (1 if p.merged else 0),
            "additions": sum(_lines(b) for _, _, _, b in files),
            "deletions": sum(_lines(a) for _, _, a, _ in files), "changed_files": len(files),
        })
    return out


def _lines(text):
    return len(text.splitlines()) if text else 0


def pr_file_changes(r: Repo, i: Issue) -> list:
    """(path, status, old, new) between the PR's merge base and its head."""
    p = i.pull
    base = r.git.merge_base(p.base_sha, p.head_sha)
    return diff(r.git.tree(base), r.git.tree(p.head_sha))


def _end(world: World, r: Repo, ref: str, sha: str) -> dict:
    return {"label": f"{r.owner.login}:{ref}", "ref": ref, "sha": sha,
            "user": user_json(world, r.owner), "repo": repo_json(world, r)}


def _links(api, issue_api, html, repo_api, sha) -> dict:
    return {
        "self": {"href": api}, "html": {"href": html}, "issue": {"href": issue_api},
        "comments": {"href": f"{issue_api}/comments"}, "review_comments": {"href": f"{api}/comments"},
        "review_comment": {"href": f"{repo_api}/pulls/comments{{/number}}"},
        "commits": {"href": f"{api}/commits"}, "statuses": {"href": f"{repo_api}/statuses/{sha}"},
    }


def pr_files_json(world: World, r: Repo, i: Issue) -> list:
    """``diff-entry`` items for GET .../pulls/{n}/files."""
    out = []
    for path, status, old, new in pr_file_changes(r, i):
        sha = blob_sha(new) if new is not None else "0" * 40
        adds, dels = _lines(new), _lines(old)
        out.append({
            "sha": sha, "filename": path, "status": status, "additions": adds, "deletions": dels,
            "changes": adds + dels,
            "blob_url": f"{world.html_url}/{r.full_name}/blob/{i.pull.head_sha}/{path}",
            "raw_url": f"{world.html_url}/{r.full_name}/raw/{i.pull.head_sha}/{path}",
            "contents_url": f"{world.api_url}/repos/{r.full_name}/contents/{path}?ref={i.pull.head_sha}",
            "patch": "",
        })
    return out


def git_commit_json(world: World, r: Repo, c) -> dict:
    """A ``commit`` as returned by the commits API and embedded in branches."""
    api = f"{world.api_url}/repos/{r.full_name}"
    author, committer = commit_people(c)
    return {
        "sha": c.sha, "node_id": _commit_node_id(c), "url": f"{api}/commits/{c.sha}",
        "html_url": f"{world.html_url}/{r.full_name}/commit/{c.sha}",
        "comments_url": f"{api}/commits/{c.sha}/comments",
        "commit": {"url": f"{api}/git/commits/{c.sha}", "author": person_json(author),
                   "committer": person_json(committer), "message": c.message, "comment_count": 0,
                   "verification": verification_json(c), "tree": _tree_ref(api, c)},
        "author": user_json(world, user_for_email(world, author.email)),
        "committer": user_json(world, user_for_email(world, committer.email)),
        "parents": _parent_refs(world, r, c, f"{api}/commits"),
    }


def git_data_commit_json(world: World, r: Repo, c) -> dict:
    """A ``git-commit``: the Git database API's view of a commit object (GET and POST git/commits)."""
    api = f"{world.api_url}/repos/{r.full_name}"
    author, committer = commit_people(c)
    return {
        "sha": c.sha, "node_id": _commit_node_id(c), "url": f"{api}/git/commits/{c.sha}",
        "html_url": f"{world.html_url}/{r.full_name}/commit/{c.sha}",
        "author": person_json(author), "committer": person_json(committer), "message": c.message,
        "tree": _tree_ref(api, c),
        "parents": _parent_refs(world, r, c, f"{api}/git/commits"),
        "verification": verification_json(c),
    }


def _commit_node_id(c) -> str:
    return node_id("C", int(c.sha[:8], 16))


def _parent_refs(world: World, r: Repo, c, commits_url: str) -> list:
    """A commit's parents as both commit views list them; ``commits_url`` is the API they link to."""
    return [{"sha": s, "url": f"{commits_url}/{s}", "html_url": f"{world.html_url}/{r.full_name}/commit/{s}"}
            for s in c.parents]


def _tree_ref(api: str, c) -> dict:
    return {"sha": c.tree_sha, "url": f"{api}/git/trees/{c.tree_sha}"}


def branch_short_json(world: World, r: Repo, name: str) -> dict:
    """A ``short-branch`` for GET .../branches."""
    sha = r.git.branches[name]
    return {"name": name, "commit": {"sha": sha, "url": f"{world.api_url}/repos/{r.full_name}/commits/{sha}"},
            "protected": is_protected(r, name)}


def branch_json(world: World, r: Repo, name: str) -> dict:
    """A ``branch-with-protection`` for GET .../branches/{branch}."""
    sha = r.git.branches[name]
    api = f"{world.api_url}/repos/{r.full_name}/branches/{name}"
    return {"name": name, "commit": git_commit_json(world, r, r.git.commits[sha]),
            "_links": {"self": api, "html": f"{world.html_url}/{r.full_name}/tree/{name}"},
            "protected": is_protected(r, name), "protection": _protection_json(r, name),
            "protection_url": f"{api}/protection"}


def _protection_json(r: Repo, name: str) -> dict:
    rule = r.protections.get(name)
    out = {"enabled": rule is not None,
           "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []}}
    if rule is not None:
        out["allow_force_pushes"] = {"enabled": rule.allow_force_pushes}
    return out


def ref_json(world: World, r: Repo, name: str) -> dict:
    """A ``git-ref`` for a branch."""
    sha = r.git.branches[name]
    api = f"{world.api_url}/repos/{r.full_name}"
    return {"ref": f"refs/heads/{name}", "node_id": node_id("REF", abs(hash((r.id, name))) % 10**9),
            "url": f"{api}/git/refs/heads/{name}",
            "object": {"type": "commit", "sha": sha, "url": f"{api}/git/commits/{sha}"}}


def combined_status_json(world: World, r: Repo, sha: str) -> dict:
    """A ``combined-commit-status``: latest status per context, worst state wins."""
    latest = {}
    for s in r.statuses:
        if s.sha == sha:
            latest[s.context] = s
    states = [s.state for s in latest.values()]
    if any(x in ("error", "failure") for x in states):
        state = "failure"
    elif not states or any(x == "pending" for x in states):
        state = "pending"
    else:
        state = "success"
    api = f"{world.api_url}/repos/{r.full_name}"
    return {"state": state, "sha": sha, "total_count": len(latest),
            "statuses": [status_json(world, r, s) for s in latest.values()],
            "repository": _min_repo(world, r), "commit_url": f"{api}/commits/{sha}",
            "url": f"{api}/commits/{sha}/status"}


def _min_repo(world, r):
    full = repo_json(world, r)
    keep = ("archive_url assignees_url blobs_url branches_url collaborators_url comments_url commits_url "
            "compare_url contents_url contributors_url deployments_url description downloads_url events_url "
            "fork forks_url full_name git_commits_url git_refs_url git_tags_url hooks_url html_url id node_id "
            "issue_comment_url issue_events_url issues_url keys_url labels_url languages_url merges_url "
            "milestones_url name notifications_url owner private pulls_url releases_url stargazers_url "
            "statuses_url subscribers_url subscription_url tags_url teams_url trees_url url").split()
    return {k: full[k] for k in keep}
