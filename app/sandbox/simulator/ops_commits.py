"""The git commits API: a commit object from an existing tree (``POST /git/commits``).

Creating a commit moves no ref, so nothing is emitted: the commit reaches a branch (and
sends ``push``) only when a ref is pointed at it (``ops_refs``). Trees are known by the
``tree_sha`` of the commits that hold them (there is no tree API here).
"""
from __future__ import annotations

import re
from datetime import datetime

from .errors import ApiError
from .git_model import Commit, Person
from .render import git_email
from .state import Repo, User, World, iso

_SHA = re.compile(r"[0-9a-f]{40}")
# RFC 3339 date-times only: GitHub refuses "2024-01-02T03:04:05" (no offset) as not a date-time.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE)
# GitHub signs the commits it makes for Apps with its own (web-flow) identity and key.
WEB_FLOW = ("GitHub", "noreply@github.com")
WEB_FLOW_SIGNATURE = ("-----BEGIN PGP SIGNATURE-----\n\nwsBcBAABCAAQBQJsimulatedGitHubWebFlowSignature\n"
                      "=SIM0\n-----END PGP SIGNATURE-----\n")


def create_commit(world: World, r: Repo, body: dict, user: User, by_app: bool) -> Commit:
    """POST git/commits: a commit of the tree ``body["tree"]`` with ``body["parents"]``.

    The author defaults to the caller at the current time, the committer to the author.
    A GitHub App that names neither (nor a ``signature``) gets a commit GitHub signs itself:
    committer "GitHub", verified. Only the repository's objects change; no ref moves.
    """
    if not r.git.commits:
        raise ApiError(409, "Git Repository is empty.")
    tree = _tree(r, body.get("tree"))
    parents = _parents(r, body.get("parents") or [])
    now = iso(world.now())
    author = _person(body, "author", now)
    committer = _person(body, "committer", now)
    signature = body.get("signature")
    signed_by_github = by_app and author is None and committer is None and signature is None
    author = author or Person(user.login, git_email(user.login), now)
    if signed_by_github:
        committer, signature = Person(*WEB_FLOW, now), WEB_FLOW_SIGNATURE
    return r.git.commit(tree, parents, body.get("message", ""), user.login, author.date,
                        git_author=author, git_committer=committer or author, signature=signature,
                        verified=signed_by_github)


def _tree(r: Repo, sha) -> dict:
    """The tree ``sha`` names, or the 422 GitHub answers for a malformed, missing or non-tree sha."""
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise ApiError(422, "The tree parameter must be exactly 40 characters and contain only [0-9a-f].")
    tree = r.git.tree_by_sha(sha)
    if tree is not None:
        return tree
    if sha in r.git.commits:
        raise ApiError(422, "Tree SHA is not a tree object")
    raise ApiError(422, "Tree SHA does not exist")


def _parents(r: Repo, shas: list) -> tuple:
    """The parent commits, or GitHub's 422: one message for any malformed sha, one for any
    sha that is not a commit of this repository (a tree's sha included)."""
    if not all(isinstance(s, str) and _SHA.fullmatch(s) for s in shas):
        raise ApiError(422, "Each SHA in the 'parents' parameter must be exactly 40 characters and contain "
                            "only [0-9a-f].")
    if any(s not in r.git.commits for s in shas):
        raise ApiError(422, "Parent SHA does not exist or is not a commit object")
    return tuple(shas)


def _person(body: dict, key: str, now: str) -> Person | None:
    """``body[key]`` as a Person (date defaulting to now, normalized to UTC), or None when absent."""
    raw = body.get(key)
    if raw is None:
        return None
    missing = [f for f in ("name", "email") if not raw.get(f)]
    if missing:
        raise ApiError(422, "Validation Failed",
                       [{"resource": key, "field": f, "code": "missing_field"} for f in missing])
    date = raw.get("date")
    return Person(raw["name"], raw["email"], now if date is None else _utc(date))


def _utc(date: str) -> str:
    """An RFC 3339 date-time as GitHub answers it: in UTC ("Z"), dates before 1970 clamped to 1970."""
    if not isinstance(date, str) or not _DATE_TIME.fullmatch(date):
        raise ApiError(422, f"Invalid request.\n\n{date} is not a valid date-time.")
    try:
        when = datetime.fromisoformat(date.upper().replace("Z", "+00:00"))
    except ValueError:  # e.g. month 13
        raise ApiError(422, f"Invalid request.\n\n{date} is not a valid date-time.")
    return iso(max(when.timestamp(), 0))
