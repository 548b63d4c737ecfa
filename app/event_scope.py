"""What a service needs from the webhook delivery it is handling, declared here so that ``app``
never imports ``webhooks``: ``webhooks.context.EventContext`` provides it, and a job or a test
can provide its own."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import psycopg

from app.deliveries import Delivery
from app.settings import Settings

if TYPE_CHECKING:
    from app.github.gateway import RepoGateway


class EventScope(Protocol):
    delivery: Delivery
    conn: psycopg.Connection  # the delivery's transaction
    settings: Settings
    log: logging.LoggerAdapter

    def github(self, full_name: str | None = None, installation_id: int | None = None) -> RepoGateway:
        """GitHub access for a repository of the delivery's installation."""

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the delivery's transaction has committed (e.g. enqueue a job)."""
