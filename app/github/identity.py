"""Who Fleet is on GitHub, so it never reacts to its own comments and assignments."""
from __future__ import annotations

import functools

from app import runtime


@functools.lru_cache(maxsize=4)
def _login_for(api_url: str, configured: str | None) -> str:
    if configured:
        return configured
    client = runtime.github_clients().app()  # held: githubkit namespaces reference it weakly
    slug = client.rest.apps.get_authenticated().json().get("slug") or "fleet"
    return f"{slug}[bot]"


def bot_login() -> str:
    """``FLEET_BOT_LOGIN``, or ``<app slug>[bot]`` asked of GitHub once per process."""
    settings = runtime.settings()
    return _login_for(settings.github_api_url, settings.bot_login)


def is_bot(login: str | None) -> bool:
    return bool(login) and login.lower() == bot_login().lower()
