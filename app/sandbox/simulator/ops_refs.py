"""The git references API: create, move and delete branches (``/git/refs``).

Branches only: tags and other namespaces are not modelled and are refused with a message
saying so, rather than answered with something GitHub would not say.
"""
from __future__ import annotations

import re

from .errors import ApiError
from .ops_repo import delete_branch, move_branch
from .protection import guard_app_push
from .state import Repo, User, World

# What ``git check-ref-format`` rejects: "..", "@{", "//", control characters, space and ~^:?*[\,
# a component starting with "." or ending with ".lock", a trailing "/" or ".".
_BAD_REF = re.compile(r"\.\.|@\{|//|[\x00-\x20\x7f~^:?*\[\\]|(^|/)\.|\.lock(/|$)|[/.]$")


def create_ref(world: World, r: Repo, ref: str, sha: str, pusher: User) -> str:
    """POST git/refs: branch ``ref`` (``refs/heads/NAME``) at commit ``sha``; returns NAME.

    Emits ``create`` then ``push`` (created, before = 40 zeros), as GitHub does.
    """
    name = _branch_to_create(ref)
    if name in r.git.branches:
        raise ApiError(422, "Reference already exists")
    if sha not in r.git.commits:
        raise ApiError(422, "Object does not exist")
    if _clashes(r, name):
        # Refs are paths in git: a/b and a/b/c cannot both exist. GitHub says no more than this.
        raise ApiError(422, "Reference update failed")
    move_branch(world, r, name, sha, pusher)
    return name


def update_ref(world: World, r: Repo, ref: str, sha: str, force: bool, pusher: User, by_app: bool) -> str:
    """PATCH git/refs/heads/NAME: move NAME to ``sha``; only a fast-forward unless ``force``.

    Returns NAME. Setting the current sha again changes nothing and emits nothing.
    """
    name = _existing_branch(r, ref)
    if sha not in r.git.commits:
        raise ApiError(422, "Object does not exist")
    old = r.git.branches[name]
    if sha == old:
        return name
    fast_forward = r.git.is_ancestor(old, sha)
    if not fast_forward and not force:
        raise ApiError(422, "Update is not a fast forward")
    if by_app:
        guard_app_push(r, name, forced=not fast_forward)
    move_branch(world, r, name, sha, pusher, forced=not fast_forward)
    return name


def delete_ref(world: World, r: Repo, ref: str, pusher: User, by_app: bool) -> None:
    """DELETE git/refs/heads/NAME; emits ``delete`` and a deleting ``push``."""
    name = _existing_branch(r, ref)
    if by_app:
        guard_app_push(r, name, deleting=True)
    delete_branch(world, r, name, pusher)


def _branch_to_create(ref: str) -> str:
    """The branch name in a fully qualified ``ref``, or GitHub's 422 for a malformed one."""
    if ref.count("/") < 2:
        raise ApiError(422, "Reference name must contain at least three slash-separated components.")
    if not ref.startswith("refs/") or _BAD_REF.search(ref):
        raise ApiError(422, f"{ref} is not a valid ref name.")
    if not ref.startswith("refs/heads/"):
        raise ApiError(422, f"The simulator models branches only (refs/heads/...), not {ref}")
    return ref.removeprefix("refs/heads/")


def _existing_branch(r: Repo, ref: str) -> str:
    """The branch a ``heads/NAME`` path names; 422 as GitHub answers for anything else.

    GitHub wants the ref without ``refs/`` here: ``refs/heads/NAME`` is "Reference does not exist".
    """
    name = ref.removeprefix("heads/")
    if not ref.startswith("heads/") or name not in r.git.branches:
        raise ApiError(422, "Reference does not exist")
    return name


def _clashes(r: Repo, name: str) -> bool:
    return any(b.startswith(name + "/") or name.startswith(b + "/") for b in r.git.branches)
