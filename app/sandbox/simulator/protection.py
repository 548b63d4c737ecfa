"""Branch protection: which pushes by the App GitHub refuses, and with which answer.

Only what a merge queue runs into is modelled: "Restrict who can push" (the App not on the
list) and "Allow force pushes" off. Both answer 422, as GitHub does for ref updates; the
message depends on the rule, so callers should not match one exact text.
"""
from __future__ import annotations

from .errors import ApiError
from .state import BranchProtection, Repo


def protect(r: Repo, branch: str, allow_force_pushes: bool = False, restrict_pushes: bool = True) -> None:
    """Protect ``branch`` (it need not exist yet: GitHub rules match names)."""
    r.protections[branch] = BranchProtection(allow_force_pushes, restrict_pushes)


def unprotect(r: Repo, branch: str) -> None:
    """Remove the protection of ``branch`` (nothing when it had none)."""
    r.protections.pop(branch, None)


def is_protected(r: Repo, branch: str) -> bool:
    """True when a protection rule covers ``branch`` (the ``protected`` field of branch JSON)."""
    return branch in r.protections


def guard_app_push(r: Repo, branch: str, forced: bool = False, deleting: bool = False) -> None:
    """Raise GitHub's 422 when protection forbids the App this update of ``branch``.

    Deletion is refused whatever the rule says: "Allow deletions" is off by default and not modelled.
    """
    rule = r.protections.get(branch)
    if rule is None:
        return
    if rule.restrict_pushes or deleting:
        raise ApiError(422, f"Protected branch update failed for refs/heads/{branch}.")
    if forced and not rule.allow_force_pushes:
        # The wording GitHub's API is reported to use when only force pushes are off.
        raise ApiError(422, "Cannot force-push to this protected branch")
