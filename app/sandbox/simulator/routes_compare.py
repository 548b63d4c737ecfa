"""GET .../compare/{base}...{head}: how two commits relate (the merge queue reads the merge base)."""
from __future__ import annotations

from flask import Blueprint

from .errors import ApiError
from .http import locked, require, respond, world
from .ops_repo import get_repo
from .render_git import git_commit_json

bp = Blueprint("sim_compare", __name__)


def _status(ahead: int, behind: int) -> str:
    if ahead and behind:
        return "diverged"
    if ahead:
        return "ahead"
    return "behind" if behind else "identical"


@bp.get("/repos/<owner>/<repo>/compare/<path:basehead>")
@locked
def compare(owner, repo, basehead):
    """Compare ``base...head`` (branch names or shas): merge base, ahead/behind counts, commits."""
    r = get_repo(world(), owner, repo)
    require(r, "read")
    base_ref, sep, head_ref = basehead.partition("...")
    if not sep:
        raise ApiError(404, "Not Found")
    base, head = r.git.resolve(base_ref), r.git.resolve(head_ref)
    if base is None or head is None:
        raise ApiError(404, "Not Found")
    git, w = r.git, world()
    merge_base = git.merge_base(base, head)
    ahead = git.only_in(head, base)
    behind = git.only_in(base, head)
    api = f"{w.api_url}/repos/{r.full_name}"
    html = f"{w.html_url}/{r.full_name}"
    return respond({
        "url": f"{api}/compare/{basehead}", "html_url": f"{html}/compare/{basehead}",
        "permalink_url": f"{html}/compare/{base}...{head}", "diff_url": f"{html}/compare/{basehead}.diff",
        "patch_url": f"{html}/compare/{basehead}.patch",
        "base_commit": git_commit_json(w, r, git.commits[base]),
        "merge_base_commit": git_commit_json(w, r, git.commits[merge_base]) if merge_base else None,
        "status": _status(len(ahead), len(behind)), "ahead_by": len(ahead), "behind_by": len(behind),
        "total_commits": len(ahead), "commits": [git_commit_json(w, r, c) for c in ahead[:250]],
        "files": [],
    })
