"""Repositories, installations and branch pushes."""
from __future__ import annotations

from . import events
from .errors import ApiError, not_found
from .git_model import MergeConflict, apply_changes
from .protection import guard_app_push
from .render import installation_json, push_commit_json, user_json
from .state import Installation, Label, Repo, User, World, iso

DEFAULT_LABELS = [
    ("bug", "d73a4a", "Something isn't working"),
    ("documentation", "0075ca", "Improvements or additions to documentation"),
    ("duplicate", "cfd3d7", "This issue or pull request already exists"),
    ("enhancement", "a2eeef", "New feature or request"),
    ("good first issue", "7057ff", "Good for newcomers"),
    ("help wanted", "008672", "Extra attention is needed"),
    ("invalid", "e4e669", "This doesn't seem right"),
    ("question", "d876e3", "Further information is requested"),
    ("wontfix", "ffffff", "This will not be worked on"),
]
ZERO = "0" * 40


def get_repo(world: World, owner: str, name: str) -> Repo:
    """The repository or a 404."""
    r = world.repo(f"{owner}/{name}")
    if r is None:
        raise not_found()
    return r


def create_repo(world: World, full_name: str, default_branch: str = "main", private: bool = False,
                default_labels: bool = True, description: str | None = None) -> Repo:
    """Create a repository with one initial commit (README.md) on ``default_branch``."""
    owner_login, name = full_name.split("/", 1)
    if world.repo(full_name):
        raise ApiError(422, "Repository creation failed.",
                       [{"resource": "Repository", "code": "custom", "field": "name",
                         "message": "name already exists on this account"}])
    owner = world.user(owner_login)
    now = world.now()
    r = Repo(id=world.new_id(), owner=owner, name=name, default_branch=default_branch,
             private=private, created_at=now, updated_at=now, pushed_at=now, description=description)
    first = r.git.commit({"README.md": f"# {name}\n"}, (), "Initial commit", owner.login, iso(now))
    r.git.branches[default_branch] = first.sha
    if default_labels:
        for lname, color, desc in DEFAULT_LABELS:
            r.labels[lname] = Label(world.new_id(), lname, color, desc, default=True)
    world.repos[full_name.lower()] = r
    return r


def install(world: World, repos: list[Repo], installation_id: int | None = None,
            sender: User | None = None) -> Installation:
    """Install Fleet's App on ``repos`` (one account); emits installation.created or
    installation_repositories.added when the account already has the App."""
    account = repos[0].owner
    existing = next((i for i in world.installations.values()
                     if i.app is world.app and i.account is account), None)
    sender = sender or account
    if existing:
        added = [r for r in repos if r.full_name not in existing.repos]
        existing.repos.extend(r.full_name for r in added)
        if added:
            _emit_install_repos(world, existing, "added", added, [], sender)
        return existing
    now = world.now()
    inst = Installation(installation_id or world.new_id(), world.app, account,
                        [r.full_name for r in repos], now, now)
    world.installations[inst.id] = inst
    world.emit("installation", {
        "action": "created", "installation": installation_json(world, inst),
        "repositories": [_repo_stub(r) for r in repos], "requester": None,
        "sender": user_json(world, sender)}, inst.id)
    return inst


def uninstall(world: World, inst: Installation, sender: User | None = None) -> None:
    """Remove the installation; emits installation.deleted."""
    repos = [world.repo(n) for n in inst.repos]
    payload = {"action": "deleted", "installation": installation_json(world, inst),
               "repositories": [_repo_stub(r) for r in repos if r],
               "sender": user_json(world, sender or inst.account)}
    del world.installations[inst.id]
    world.tokens = {k: t for k, t in world.tokens.items() if t.installation_id != inst.id}
    world.emit("installation", payload, inst.id)


def remove_repos(world: World, inst: Installation, repos: list[Repo], sender: User | None = None) -> None:
    """Take repositories out of an installation; emits installation_repositories.removed."""
    gone = [r for r in repos if r.full_name in inst.repos]
    inst.repos = [n for n in inst.repos if n not in {r.full_name for r in gone}]
    if gone:
        _emit_install_repos(world, inst, "removed", [], gone, sender or inst.account)


def _emit_install_repos(world, inst, action, added, removed, sender):
    world.emit("installation_repositories", {
        "action": action, "installation": installation_json(world, inst),
        "repository_selection": "selected", "repositories_added": [_repo_stub(r) for r in added],
        "repositories_removed": [_repo_stub(r) for r in removed], "requester": None,
        "sender": user_json(world, sender)}, inst.id)


def set_archived(world: World, r: Repo, archived: bool, sender: User | None = None) -> None:
    """Archive (read-only: writes answer 403) or unarchive; emits repository.archived/unarchived."""
    if r.archived == archived:
        return
    r.archived = archived
    r.updated_at = world.now()
    events.emit(world, r, "repository", {"action": "archived" if archived else "unarchived"}, sender or r.owner)


def rename_repo(world: World, r: Repo, new_name: str, sender: User | None = None) -> None:
    """Rename within the owner (installations follow); emits repository.renamed with ``changes``."""
    old_full, old_name = r.full_name, r.name
    if world.repo(f"{r.owner.login}/{new_name}"):
        raise ApiError(422, "Repository creation failed.",
                       [{"resource": "Repository", "code": "custom", "field": "name",
                         "message": "name already exists on this account"}])
    del world.repos[old_full.lower()]
    r.name = new_name
    r.updated_at = world.now()
    world.repos[r.full_name.lower()] = r
    for inst in world.installations.values():
        inst.repos = [r.full_name if n == old_full else n for n in inst.repos]
    events.emit(world, r, "repository", {"action": "renamed",
                                         "changes": {"repository": {"name": {"from": old_name}}}}, sender or r.owner)


def set_private(world: World, r: Repo, private: bool, sender: User | None = None) -> None:
    """Change visibility; emits repository.privatized / publicized."""
    if r.private == private:
        return
    r.private = private
    r.updated_at = world.now()
    events.emit(world, r, "repository", {"action": "privatized" if private else "publicized"}, sender or r.owner)


def delete_repo(world: World, r: Repo, sender: User | None = None) -> None:
    """Delete the repository; emits repository.deleted (to the installation that had it), after
    which its name is free to be created again (with a new id)."""
    events.emit(world, r, "repository", {"action": "deleted"}, sender or r.owner)
    del world.repos[r.full_name.lower()]
    for inst in world.installations.values():
        inst.repos = [n for n in inst.repos if n != r.full_name]


def _repo_stub(r: Repo) -> dict:
    return {"id": r.id, "node_id": r.node_id, "name": r.name, "full_name": r.full_name, "private": r.private}


def commit_files(world: World, r: Repo, branch: str, files: dict, author: User, message: str,
                 parents: tuple | None = None) -> str:
    """Commit ``files`` (path -> content, None deletes) on ``branch`` and run push side effects.

    Creates the branch from the default branch when missing (emitting ``create``),
    then emits ``push`` and, for branches that head open pull requests,
    ``pull_request.synchronize``. Returns the new head sha.
    """
    created = branch not in r.git.branches
    if created:
        if not r.git.branches:
            raise ApiError(409, "Git Repository is empty.")
        r.git.branches[branch] = r.git.branches[r.default_branch]
    before = r.git.branches[branch]
    tree = apply_changes(r.git.tree(before), files)
    c = r.git.commit(tree, parents or (before,), message, author.login, iso(world.now()))
    move_branch(world, r, branch, c.sha, author, created=created, before=ZERO if created else before)
    return c.sha


def move_branch(world: World, r: Repo, branch: str, sha: str, pusher: User, created: bool = False,
                before: str | None = None, forced: bool = False) -> None:
    """Point ``branch`` at ``sha`` and emit create/push/synchronize as GitHub would."""
    from .ops_checks import request_suite
    from .ops_pulls import on_branch_moved  # late imports: both depend on this module
    old = r.git.branches.get(branch) if before is None else before
    if old is None:
        old, created = ZERO, True
    r.git.branches[branch] = sha
    r.pushed_at = r.updated_at = world.now()
    if created:
        events.emit(world, r, "create", {
            "ref": branch, "ref_type": "branch", "master_branch": r.default_branch,
            "description": r.description, "pusher_type": "user"}, pusher)
    _emit_push(world, r, branch, old, sha, pusher, created, forced)
    on_branch_moved(world, r, branch, pusher)
    request_suite(world, r, sha, pusher)


def _pushed_commits(r: Repo, branch: str, before: str, after: str) -> list:
    """The commits a push brings: new to the branch, or for a new branch, on no other branch
    (a branch created at an existing commit pushes none)."""
    if before != ZERO:
        return r.git.only_in(after, before)
    return r.git.only_in(after, *(tip for b, tip in r.git.branches.items() if b != branch))


def _emit_push(world, r, branch, before, after, pusher, created, forced):
    new = _pushed_commits(r, branch, before, after)
    commits = [push_commit_json(world, r, c, r.git.tree(c.parents[0] if c.parents else None)) for c in new]
    head = r.git.commits[after]
    head_json = push_commit_json(world, r, head, r.git.tree(head.parents[0] if head.parents else None))
    events.emit(world, r, "push", {
        "ref": f"refs/heads/{branch}", "before": before, "after": after, "created": created,
        "deleted": False, "forced": forced, "base_ref": None,
        "compare": f"{world.html_url}/{r.full_name}/compare/{before[:12]}...{after[:12]}",
        "commits": commits[-20:], "head_commit": head_json,
        "pusher": {"name": pusher.login, "email": f"{pusher.login}@users.noreply.localhost"}}, pusher)


def delete_branch(world: World, r: Repo, branch: str, sender: User) -> None:
    """Delete ``branch``; emits ``delete`` and a deleting ``push``."""
    if branch not in r.git.branches:
        raise ApiError(422, "Reference does not exist")
    if branch == r.default_branch:
        raise ApiError(422, "Cannot delete the default branch")
    before = r.git.branches.pop(branch)
    events.emit(world, r, "delete", {"ref": branch, "ref_type": "branch", "pusher_type": "user"}, sender)
    events.emit(world, r, "push", {
        "ref": f"refs/heads/{branch}", "before": before, "after": ZERO, "created": False,
        "deleted": True, "forced": False, "base_ref": None,
        "compare": f"{world.html_url}/{r.full_name}/compare/{before[:12]}...000000000000",
        "commits": [], "head_commit": None,
        "pusher": {"name": sender.login, "email": f"{sender.login}@users.noreply.localhost"}}, sender)


def merge_refs(world: World, r: Repo, base: str, head: str, actor: User, message: str | None,
               by_app: bool = False):
    """POST /merges into any branch: returns the new merge commit sha, or None when already merged.

    The base moves like any push (``push``, PRs it now contains become merged); an App
    may be refused by the base's protection (``by_app``)."""
    if base not in r.git.branches:
        raise ApiError(404, "Base does not exist")
    head_sha = r.git.resolve(head)
    if head_sha is None:
        raise ApiError(404, "Head does not exist")
    base_sha = r.git.branches[base]
    if r.git.is_ancestor(head_sha, base_sha):
        return None
    try:
        tree = r.git.three_way(r.git.merge_base(base_sha, head_sha), base_sha, head_sha)
    except MergeConflict:
        raise ApiError(409, "Merge conflict")
    if by_app:
        guard_app_push(r, base)
    c = r.git.commit(tree, (base_sha, head_sha), message or f"Merge {head} into {base}",
                     actor.login, iso(world.now()))
    move_branch(world, r, base, c.sha, actor)
    return c.sha
