"""What a handler gets: the delivery, its transaction, a parsed payload and GitHub access."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from pydantic import BaseModel

from app.deliveries import Delivery
from app.github.evidence import EvidenceRecorder
from app.github.gateway import RepoGateway
from app.settings import Settings

M = TypeVar("M", bound=BaseModel)


class MalformedPayload(ValueError):
    """The payload does not have the fields this handler needs; the delivery is marked failed
    with this message instead of crashing the worker."""


@dataclass
class EventContext:
    delivery: Delivery
    conn: psycopg.Connection
    settings: Settings
    log: logging.LoggerAdapter
    job_id: str | None = None
    _gateways: dict[str, RepoGateway] = field(default_factory=dict)
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    _evidence: EvidenceRecorder | None = None

    def parse(self, model: type[M]) -> M:
        """The payload as ``model``; MalformedPayload names the first bad field."""
        try:
            return model.model_validate(self.delivery.payload)
        except Exception as exc:  # pydantic.ValidationError and type errors alike
            raise MalformedPayload(f"{self.delivery.key} payload is not usable: {str(exc)[:300]}") from exc

    @property
    def evidence(self) -> EvidenceRecorder:
        if self._evidence is None:
            self._evidence = EvidenceRecorder(
                self.settings.database_url,
                repo_id=self.delivery.repo_id,
                repo_full_name=self.delivery.repo_full_name,
                delivery_id=self.delivery.id,
                job_id=self.job_id,
            )
        return self._evidence

    def github(self, full_name: str | None = None, installation_id: int | None = None) -> RepoGateway:
        """GitHub access for a repository of this delivery's installation."""
        from app import runtime

        name = full_name or self.delivery.repo_full_name
        inst = installation_id or self.delivery.installation_id
        if name is None or inst is None:
            raise MalformedPayload(f"{self.delivery.key} names no repository or installation")
        if name not in self._gateways:
            client = runtime.github_clients().installation(inst)
            self._gateways[name] = RepoGateway(client, name, self.evidence)
        return self._gateways[name]

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` once this delivery's transaction has committed (e.g. enqueue a job
        that must see the rows just written)."""
        self.after_commit.append(action)

    def close(self) -> None:
        if self._evidence is not None:
            self._evidence.close()


class _BoundLogger(logging.LoggerAdapter):
    """Carries delivery id, repo and job id on every line, merged with per-call extras."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**self.extra, **(kwargs.get("extra") or {})}
        return msg, kwargs


def bind_logger(base: logging.Logger, **fields: Any) -> logging.LoggerAdapter:
    return _BoundLogger(base, {k: v for k, v in fields.items() if v is not None})


def ensure_repo(ctx: EventContext):
    """The delivery's repository row, recorded first if this is the first event seen for it."""
    from app.repos import registry as repositories
    from app.github.models import Envelope

    envelope = ctx.parse(Envelope)
    if envelope.repository is None:
        raise MalformedPayload(f"{ctx.delivery.key} has no repository")
    repo = envelope.repository
    installation_id = envelope.installation.id if envelope.installation else None
    known = repositories.recorded_as(ctx.conn, repo.id, repo.full_name, installation_id=installation_id,
                                     default_branch=repo.default_branch, private=repo.private)
    if known is not None:
        return known
    repositories.upsert_repository(
        ctx.conn, repo.id, repo.full_name, installation_id=installation_id,
        default_branch=repo.default_branch, private=repo.private,
    )
    found = repositories.get(ctx.conn, repo.id)
    assert found is not None
    return found
