"""POST /graphql: just the mutations Fleet needs (pinIssue, unpinIssue); anything else errors."""
from __future__ import annotations

import re

from flask import Blueprint

from .errors import ApiError
from .http import actor, body, locked, require, respond, world
from .ops_relations import pin_issue, unpin_issue
from .state import node_id

bp = Blueprint("sim_graphql", __name__)
MUTATION = re.compile(r"\b(pinIssue|unpinIssue)\s*\(")
ISSUE_ARG = re.compile(r'issueId\s*:\s*(?:\$(\w+)|"([^"]+)")')


def _find_issue(issue_node_id: str):
    for r in world().repos.values():
        for i in r.issues.values():
            if node_id("I", i.id) == issue_node_id:
                return r, i
    return None, None


def _issue_id(query: str, variables: dict) -> str | None:
    """The ``issueId``: ``input: $input`` with an object variable, ``issueId: $var`` or a literal."""
    if isinstance(variables.get("input"), dict) and variables["input"].get("issueId"):
        return variables["input"]["issueId"]
    m = ISSUE_ARG.search(query)
    if m is None:
        return None
    return variables.get(m.group(1)) if m.group(1) else m.group(2)


def _error(message: str, type_: str = "UNPROCESSABLE") -> dict:
    return {"data": None, "errors": [{"type": type_, "message": message, "locations": [], "path": []}]}


@bp.post("/graphql")
@locked
def graphql():
    """Answer a GraphQL request (always 200, errors in the ``errors`` array as GitHub does)."""
    b = body()
    query, variables = b.get("query") or "", b.get("variables") or {}
    m = MUTATION.search(query)
    if not m:
        return respond(_error("Simulator supports only the pinIssue / unpinIssue mutations", "UNSUPPORTED"))
    ident = _issue_id(query, variables)
    r, i = _find_issue(ident) if ident else (None, None)
    if i is None:
        return respond(_error(f"Could not resolve to a node with the global id of '{ident}'", "NOT_FOUND"))
    require(r, "triage")
    try:
        (pin_issue if m.group(1) == "pinIssue" else unpin_issue)(world(), r, i, actor())
    except ApiError as exc:
        return respond(_error(exc.message))
    issue = {"id": ident, "number": i.number, "title": i.title, "isPinned": i.number in r.pinned}
    return respond({"data": {m.group(1): {"issue": issue}}})
