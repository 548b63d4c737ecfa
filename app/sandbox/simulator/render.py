"""JSON representations of simulator objects, shaped like GitHub's REST resources.

One representation per kind serves both REST responses and webhook payloads: it
carries the union of the fields the official REST and webhook schemas require,
as GitHub's own payloads largely do.
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone

from .git_model import Person
from .state import (AppInfo, CheckRun, CheckSuite, Comment, Installation, Issue, IssueEvent, Label,
                    Milestone, Reaction, Repo, Review, Status, User, World, iso, node_id)

REACTION_KEYS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket")


def _opt_iso(ts):
    return iso(ts) if ts is not None else None


def user_json(world: World, u: User | None) -> dict | None:
    """A ``simple-user``."""
    if u is None:
        return None
    api = f"{world.api_url}/users/{u.login}"
    return {
        "login": u.login, "id": u.id, "node_id": u.node_id,
        "avatar_url": f"{world.html_url}/avatars/u/{u.id}", "gravatar_id": "",
        "url": api, "html_url": f"{world.html_url}/{u.login}",
        "followers_url": f"{api}/followers", "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}", "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events", "type": u.type,
        "user_view_type": "public", "site_admin": False,
    }


def org_json(world: World, u: User) -> dict:
    """An ``organization-simple`` for org-owned repositories' payloads."""
    api = f"{world.api_url}/orgs/{u.login}"
    return {
        "login": u.login, "id": u.id, "node_id": u.node_id, "url": api,
        "repos_url": f"{api}/repos", "events_url": f"{api}/events", "hooks_url": f"{api}/hooks",
        "issues_url": f"{api}/issues", "members_url": f"{api}/members{{/member}}",
        "public_members_url": f"{api}/public_members{{/member}}",
        "avatar_url": f"{world.html_url}/avatars/u/{u.id}", "description": None,
    }


def repo_json(world: World, r: Repo, viewer_perm: str | None = None) -> dict:
    """A ``full-repository`` (also valid as a webhook ``repository``)."""
    api = f"{world.api_url}/repos/{r.full_name}"
    html = f"{world.html_url}/{r.full_name}"
    urls = {
        "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
        "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
        "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
        "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
        "contents_url": "/contents/{+path}", "contributors_url": "/contributors",
        "deployments_url": "/deployments", "downloads_url": "/downloads", "events_url": "/events",
        "forks_url": "/forks", "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}",
        "git_tags_url": "/git/tags{/sha}", "hooks_url": "/hooks",
        "issue_comment_url": "/issues/comments{/number}", "issue_events_url": "/issues/events{/number}",
        "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}", "labels_url": "/labels{/name}",
        "languages_url": "/languages", "merges_url": "/merges", "milestones_url": "/milestones{/number}",
        "notifications_url": "/notifications{?since,all,participating}", "pulls_url": "/pulls{/number}",
        "releases_url": "/releases{/id}", "stargazers_url": "/stargazers", "statuses_url": "/statuses/{sha}",
        "subscribers_url": "/subscribers", "subscription_url": "/subscription", "tags_url": "/tags",
        "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
    }
    open_count = sum(1 for i in r.issues.values() if i.state == "open")
    out = {k: api + v for k, v in urls.items()}
    out.update({
        "id": r.id, "node_id": r.node_id, "name": r.name, "full_name": r.full_name,
        "private": r.private, "owner": user_json(world, r.owner), "html_url": html,
        "description": r.description, "fork": False, "url": api,
        "clone_url": f"{html}.git", "git_url": f"git://{html.split('://', 1)[-1]}.git",
        "ssh_url": f"git@localhost:{r.full_name}.git", "svn_url": html, "mirror_url": None,
        "homepage": None, "language": None, "size": 0, "default_branch": r.default_branch,
        "forks": 0, "forks_count": 0, "stargazers_count": 0, "watchers": 0, "watchers_count": 0,
        "open_issues": open_count, "open_issues_count": open_count,
        "network_count": 0, "subscribers_count": 0,
        "has_issues": True, "has_projects": True, "has_downloads": True, "has_wiki": True,
        "has_pages": False, "has_discussions": False, "archived": r.archived, "disabled": False,
        "is_template": False, "license": None, "topics": [],
        "visibility": "private" if r.private else "public",
        "allow_forking": True, "web_commit_signoff_required": False,
        "created_at": iso(r.created_at), "updated_at": iso(r.updated_at), "pushed_at": iso(r.pushed_at),
    })
    if viewer_perm is not None:
        out["permissions"] = permissions_json(viewer_perm)
    return out


def permissions_json(perm: str) -> dict:
    """The ``permissions`` flags GitHub derives from one role."""
    order = ["none", "read", "triage", "write", "maintain", "admin"]
    rank = order.index(perm) if perm in order else 0
    return {"admin": rank >= 5, "maintain": rank >= 4, "push": rank >= 3,
            "triage": rank >= 2, "pull": rank >= 1}


def label_json(world: World, r: Repo, lb: Label) -> dict:
    """A ``label``."""
    return {"id": lb.id, "node_id": node_id("LA", lb.id),
            "url": f"{world.api_url}/repos/{r.full_name}/labels/{lb.name}",
            "name": lb.name, "color": lb.color, "description": lb.description, "default": lb.default}


def milestone_json(world: World, r: Repo, m: Milestone | None) -> dict | None:
    """A ``milestone`` with live open/closed counts."""
    if m is None:
        return None
    issues = [i for i in r.issues.values() if i.milestone == m.number]
    api = f"{world.api_url}/repos/{r.full_name}/milestones/{m.number}"
    return {
        "url": api, "html_url": f"{world.html_url}/{r.full_name}/milestone/{m.number}",
        "labels_url": f"{api}/labels", "id": m.id, "node_id": node_id("MI", m.id),
        "number": m.number, "title": m.title, "description": m.description,
        "creator": user_json(world, m.creator),
        "open_issues": sum(1 for i in issues if i.state == "open"),
        "closed_issues": sum(1 for i in issues if i.state == "closed"),
        "state": m.state, "created_at": iso(m.created_at), "updated_at": iso(m.updated_at),
        "due_on": m.due_on, "closed_at": _opt_iso(m.closed_at),
    }


def reactions_json(url: str, reactions: list) -> dict:
    """The ``reactions`` rollup attached to issues and comments."""
    out = {"url": url, "total_count": len(reactions)}
    for key in REACTION_KEYS:
        out[key] = sum(1 for x in reactions if x.content == key)
    return out


def reaction_json(world: World, x: Reaction) -> dict:
    """A single ``reaction``."""
    return {"id": x.id, "node_id": node_id("REA", x.id), "user": user_json(world, x.user),
            "content": x.content, "created_at": iso(x.created_at)}


def author_association(world: World, r: Repo, u: User) -> str:
    """OWNER / COLLABORATOR / NONE, as GitHub labels an author relative to the repo."""
    if u.login.lower() == r.owner.login.lower():
        return "OWNER"
    if world.permission(r, u.login) in ("write", "maintain", "admin"):
        return "COLLABORATOR"
    return "NONE"


def app_json(world: World, a: AppInfo | None) -> dict | None:
    """An ``integration`` (GitHub App)."""
    if a is None:
        return None
    return {
        "id": a.id, "slug": a.slug, "node_id": node_id("A", a.id), "client_id": a.client_id,
        "owner": user_json(world, a.owner), "name": a.name, "description": None,
        "external_url": f"{world.html_url}/apps/{a.slug}", "html_url": f"{world.html_url}/apps/{a.slug}",
        "created_at": iso(a.created_at), "updated_at": iso(a.created_at),
        "permissions": dict(a.permissions), "events": list(a.events),
    }


def issue_json(world: World, r: Repo, i: Issue) -> dict:
    """An ``issue``; pull requests get the ``pull_request`` link object, as on GitHub."""
    api = f"{world.api_url}/repos/{r.full_name}/issues/{i.number}"
    kind = "pull" if i.pull else "issues"
    assignees = [user_json(world, u) for u in i.assignees]
    out = {
        "url": api, "repository_url": f"{world.api_url}/repos/{r.full_name}",
        "labels_url": f"{api}/labels{{/name}}", "comments_url": f"{api}/comments",
        "events_url": f"{api}/events", "timeline_url": f"{api}/timeline",
        "html_url": f"{world.html_url}/{r.full_name}/{kind}/{i.number}",
        "id": i.id, "node_id": node_id("I", i.id), "number": i.number, "title": i.title,
        "user": user_json(world, i.user), "labels": _labels(world, r, i),
        "state": i.state, "locked": i.locked, "assignee": assignees[0] if assignees else None,
        "assignees": assignees, "milestone": milestone_json(world, r, r.milestones.get(i.milestone)),
        "comments": len(i.comments), "created_at": iso(i.created_at), "updated_at": iso(i.updated_at),
        "closed_at": _opt_iso(i.closed_at), "author_association": author_association(world, r, i.user),
        "active_lock_reason": None, "body": i.body, "state_reason": i.state_reason,
        "reactions": reactions_json(f"{api}/reactions", i.reactions),
        "performed_via_github_app": app_json(world, i.app),
        "closed_by": user_json(world, i.closed_by) if i.state == "closed" else None,
    }
    if i.pull is None:
        out["sub_issues_summary"] = _sub_summary(r, i)
        out["issue_dependencies_summary"] = _dep_summary(r, i)
    if i.pull is not None:
        pr_api = f"{world.api_url}/repos/{r.full_name}/pulls/{i.number}"
        html = f"{world.html_url}/{r.full_name}/pull/{i.number}"
        out["draft"] = i.pull.draft
        out["pull_request"] = {"url": pr_api, "html_url": html, "diff_url": f"{html}.diff",
                               "patch_url": f"{html}.patch", "merged_at": _opt_iso(i.pull.merged_at)}
    return out


def _labels(world, r, i):
    return [label_json(world, r, r.labels[n.lower()]) for n in i.labels if n.lower() in r.labels]


def _sub_summary(r: Repo, i: Issue) -> dict:
    kids = [r.issues[n] for n in r.sub_issues.get(i.number, []) if n in r.issues]
    done = sum(1 for k in kids if k.state == "closed")
    pct = int(done * 100 / len(kids)) if kids else 0
    return {"total": len(kids), "completed": done, "percent_completed": pct}


def _dep_summary(r: Repo, i: Issue) -> dict:
    blockers = r.blocked_by.get(i.number, [])
    blocking = [n for n, bs in r.blocked_by.items() if i.number in bs]
    open_blockers = [b for b in blockers if b in r.issues and r.issues[b].state == "open"]
    return {"blocked_by": len(open_blockers), "blocking": len(blocking),
            "total_blocked_by": len(blockers), "total_blocking": len(blocking)}


def issue_event_json(world: World, r: Repo, e: IssueEvent) -> dict:
    """An ``assigned-issue-event`` / ``unassigned-issue-event`` (``issue-event-for-issue``)."""
    return {
        "id": e.id, "node_id": node_id("AE" if e.event == "assigned" else "UAE", e.id),
        "url": f"{world.api_url}/repos/{r.full_name}/issues/events/{e.id}",
        "actor": user_json(world, e.actor), "event": e.event, "commit_id": None, "commit_url": None,
        "created_at": iso(e.created_at), "performed_via_github_app": app_json(world, e.app),
        "assignee": user_json(world, e.assignee), "assigner": user_json(world, e.actor),
    }


def comment_json(world: World, r: Repo, c: Comment) -> dict:
    """An ``issue-comment``."""
    api = f"{world.api_url}/repos/{r.full_name}/issues/comments/{c.id}"
    issue = r.issues[c.issue_number]
    kind = "pull" if issue.pull else "issues"
    return {
        "url": api, "html_url": f"{world.html_url}/{r.full_name}/{kind}/{c.issue_number}#issuecomment-{c.id}",
        "issue_url": f"{world.api_url}/repos/{r.full_name}/issues/{c.issue_number}",
        "id": c.id, "node_id": node_id("IC", c.id), "user": user_json(world, c.user),
        "created_at": iso(c.created_at), "updated_at": iso(c.updated_at),
        "author_association": author_association(world, r, c.user), "body": c.body,
        "reactions": reactions_json(f"{api}/reactions", c.reactions),
        "performed_via_github_app": app_json(world, c.app),
    }


def content_json(world: World, r: Repo, path: str, content: str, ref: str) -> dict:
    """A ``content-file`` with base64 content."""
    from .git_model import blob_sha
    sha = blob_sha(content)
    api = f"{world.api_url}/repos/{r.full_name}/contents/{path}?ref={ref}"
    html = f"{world.html_url}/{r.full_name}/blob/{ref}/{path}"
    git = f"{world.api_url}/repos/{r.full_name}/git/blobs/{sha}"
    return {
        "type": "file", "encoding": "base64", "size": len(content.encode()),
        "name": path.rsplit("/", 1)[-1], "path": path,
        "content": base64.encodebytes(content.encode()).decode(), "sha": sha, "url": api,
        "git_url": git, "html_url": html, "download_url": f"{world.html_url}/raw/{r.full_name}/{ref}/{path}",
        "_links": {"self": api, "git": git, "html": html},
    }


def check_suite_json(world: World, r: Repo, s: CheckSuite, with_repo: bool = True) -> dict:
    """A ``check-suite``."""
    runs = [c for c in r.check_runs if c.suite is s]
    commit = r.git.commits.get(s.head_sha)
    out = {
        "id": s.id, "node_id": node_id("CS", s.id), "head_branch": s.head_branch, "head_sha": s.head_sha,
        "status": s.status, "conclusion": s.conclusion,
        "url": f"{world.api_url}/repos/{r.full_name}/check-suites/{s.id}",
        "before": commit.parents[0] if commit and commit.parents else "0" * 40, "after": s.head_sha,
        "pull_requests": pr_refs(world, r, s.head_sha), "app": app_json(world, s.app),
        "created_at": iso(s.created_at), "updated_at": iso(s.updated_at),
        "latest_check_runs_count": len(runs),
        "check_runs_url": f"{world.api_url}/repos/{r.full_name}/check-suites/{s.id}/check-runs",
        "head_commit": simple_commit_json(world, r, commit) if commit else None,
        "rerequestable": True, "runs_rerequestable": True,
    }
    if with_repo:
        out["repository"] = repo_json(world, r)
    return out


def check_run_json(world: World, r: Repo, c: CheckRun) -> dict:
    """A ``check-run``."""
    api = f"{world.api_url}/repos/{r.full_name}/check-runs/{c.id}"
    out = {"title": None, "summary": None, "text": None, "annotations_count": 0,
           "annotations_url": f"{api}/annotations"}
    out.update({k: v for k, v in c.output.items() if k in ("title", "summary", "text")})
    return {
        "id": c.id, "node_id": node_id("CR", c.id), "head_sha": c.head_sha, "external_id": c.external_id or "",
        "url": api, "html_url": f"{world.html_url}/{r.full_name}/runs/{c.id}",
        "details_url": c.details_url or f"{world.html_url}/apps/{c.app.slug}",
        "status": c.status, "conclusion": c.conclusion,
        "started_at": _opt_iso(c.started_at), "completed_at": _opt_iso(c.completed_at),
        "output": out, "name": c.name,
        "check_suite": {"id": c.suite.id},
        "app": app_json(world, c.app), "pull_requests": pr_refs(world, r, c.head_sha),
    }


def pr_refs(world: World, r: Repo, sha: str) -> list:
    """The minimal pull-request refs GitHub attaches to check runs and suites."""
    out = []
    for i in r.issues.values():
        p = i.pull
        if p and i.state == "open" and p.head_sha == sha:
            repo_ref = {"id": r.id, "url": f"{world.api_url}/repos/{r.full_name}", "name": r.name}
            out.append({"id": p.id, "number": i.number,
                        "url": f"{world.api_url}/repos/{r.full_name}/pulls/{i.number}",
                        "head": {"ref": p.head_ref, "sha": p.head_sha, "repo": repo_ref},
                        "base": {"ref": p.base_ref, "sha": p.base_sha, "repo": repo_ref}})
    return out


def simple_commit_json(world: World, r: Repo, c) -> dict:
    """A ``simple-commit`` (push payload ``head_commit`` style, without file lists)."""
    author, committer = commit_people(c)
    return {"id": c.sha, "tree_id": c.tree_sha, "message": c.message, "timestamp": c.timestamp,
            "author": _person(world, author), "committer": _person(world, committer)}


def _person(world: World, who: Person) -> dict:
    """A push payload's author/committer; ``username`` when the email is an account's."""
    out = {"name": who.name, "email": who.email}
    if who.email.endswith(NOREPLY):
        out["username"] = who.email[:-len(NOREPLY)]
    return out


NOREPLY = "@users.noreply.localhost"  # the simulator's stand-in for users.noreply.github.com


def git_email(login: str) -> str:
    """The commit email of a simulated account."""
    return f"{login}{NOREPLY}"


def user_for_email(world: World, email: str | None) -> User | None:
    """The account a commit email belongs to (GitHub links commits to users by email)."""
    if not email or not email.endswith(NOREPLY):
        return None
    return world.users.get(email[:-len(NOREPLY)].lower())


def commit_people(c) -> tuple[Person, Person]:
    """The git (author, committer) of a commit: the ones a client named, else its login's."""
    author = c.git_author or Person(c.author, git_email(c.author), c.timestamp)
    return author, c.git_committer or author


def person_json(who: Person) -> dict:
    """A ``git-user``-style {name, email, date}."""
    return {"name": who.name, "email": who.email, "date": who.date}


def verification_json(c) -> dict:
    """A commit's ``verification``: unsigned, GitHub-signed (valid), or signed with a key the
    simulated world does not know (``unknown_key``)."""
    if c.signature is None:
        return {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                "verified_at": None}
    return {"verified": c.verified, "reason": "valid" if c.verified else "unknown_key",
            "signature": c.signature, "payload": commit_payload(c),
            "verified_at": commit_people(c)[1].date if c.verified else None}


def commit_payload(c) -> str:
    """The commit object text a signature covers (what git hashes, minus the ``gpgsig`` header)."""
    author, committer = commit_people(c)
    lines = [f"tree {c.tree_sha}", *(f"parent {p}" for p in c.parents),
             f"author {_ident_line(author)}", f"committer {_ident_line(committer)}"]
    return "\n".join(lines) + "\n\n" + c.message


def _ident_line(who: Person) -> str:
    when = datetime.strptime(who.date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return f"{who.name} <{who.email}> {int(when.timestamp())} +0000"


def push_commit_json(world: World, r: Repo, c, parent_tree: dict) -> dict:
    """A commit as listed in a ``push`` payload, with added/removed/modified paths."""
    from .git_model import diff
    changes = diff(parent_tree, c.tree)
    out = simple_commit_json(world, r, c)
    out.update({
        "distinct": True, "url": f"{world.html_url}/{r.full_name}/commit/{c.sha}",
        "added": [p for p, s, _, _ in changes if s == "added"],
        "removed": [p for p, s, _, _ in changes if s == "removed"],
        "modified": [p for p, s, _, _ in changes if s == "modified"],
    })
    return out


def status_json(world: World, r: Repo, s: Status) -> dict:
    """A commit ``status``."""
    return {
        "url": f"{world.api_url}/repos/{r.full_name}/statuses/{s.sha}",
        "avatar_url": None, "id": s.id, "node_id": node_id("SC", s.id), "state": s.state,
        "description": s.description, "target_url": s.target_url, "context": s.context,
        "created_at": iso(s.created_at), "updated_at": iso(s.updated_at),
        "creator": user_json(world, s.creator),
    }


def review_json(world: World, r: Repo, number: int, rv: Review) -> dict:
    """A ``pull-request-review``."""
    html = f"{world.html_url}/{r.full_name}/pull/{number}#pullrequestreview-{rv.id}"
    pr_url = f"{world.api_url}/repos/{r.full_name}/pulls/{number}"
    return {
        "id": rv.id, "node_id": node_id("PRR", rv.id), "user": user_json(world, rv.user),
        "body": rv.body, "state": rv.state, "html_url": html, "pull_request_url": pr_url,
        "_links": {"html": {"href": html}, "pull_request": {"href": pr_url}},
        "submitted_at": iso(rv.submitted_at), "commit_id": rv.commit_id,
        "author_association": author_association(world, r, rv.user),
    }


def installation_json(world: World, inst: Installation) -> dict:
    """An ``installation``."""
    acct = inst.account
    account = user_json(world, acct)
    # The official list-installations schema combines simple-user with enterprise
    # (allOf), so carry the enterprise fields too; GitHub's users have most of them.
    account.update({"name": acct.name or acct.login, "slug": acct.login.lower(), "description": None,
                    "website_url": None, "created_at": iso(inst.created_at), "updated_at": iso(inst.created_at)})
    return {
        "id": inst.id, "account": account, "repository_selection": "selected",
        "access_tokens_url": f"{world.api_url}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{world.api_url}/installation/repositories",
        "html_url": f"{world.html_url}/settings/installations/{inst.id}",
        "app_id": inst.app.id, "app_slug": inst.app.slug, "client_id": inst.app.client_id,
        "target_id": acct.id, "target_type": "Organization" if acct.type == "Organization" else "User",
        "permissions": dict(inst.app.permissions), "events": list(inst.app.events),
        "created_at": iso(inst.created_at), "updated_at": iso(inst.updated_at),
        "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
        "suspended_by": None, "suspended_at": None,
    }
