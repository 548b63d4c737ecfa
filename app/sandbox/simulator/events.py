"""Wrap payloads in GitHub's common webhook envelope and hand them to the outbox."""
from __future__ import annotations

from .render import org_json, repo_json, user_json
from .state import Repo, User, World, node_id


def installation_ref(inst_id: int) -> dict:
    """The ``installation`` stub every App webhook carries."""
    return {"id": inst_id, "node_id": node_id("IN", inst_id)}


def emit(world: World, repo: Repo, event: str, payload: dict, sender: User,
         with_org: bool = False) -> None:
    """Emit ``event`` for ``repo`` if Fleet's App is installed there (else GitHub sends nothing).

    ``organization`` is added for org-owned repositories, and for user-owned ones only
    when ``with_org`` (events whose official schema requires it).
    """
    inst = world.installation_for(repo, world.app.id)
    if inst is None:
        return
    body = dict(payload)
    body["repository"] = repo_json(world, repo)
    if repo.owner.type == "Organization" or with_org:
        body["organization"] = org_json(world, repo.owner)
    body["sender"] = user_json(world, sender)
    body["installation"] = installation_ref(inst.id)
    world.emit(event, body, inst.id)
