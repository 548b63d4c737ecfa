"""Live state-change notices: workers ``publish`` to Redis, ``/api/stream`` relays them as
server-sent events.

The channel is ``{FLEET_QUEUE}:events``. A notice is JSON ``{"kind", "repo", "data", "at"}``; it
says *that* something changed (a claim, a label, a queue entry), and readers fetch the new state
from the API. Redis pub/sub keeps nothing: a browser that was away reloads the state it needs.

Each stream holds one gunicorn thread (``fleet web`` runs the gthread worker class), so the
number of open dashboards per web process is bounded by ``--threads``; streams end after
``MAX_STREAM_SECONDS`` and EventSource reconnects on its own, which also lets a graceful shutdown
finish. A comment line every ``HEARTBEAT_SECONDS`` keeps proxies from closing an idle stream and
lets a thread notice a client that went away. When the gunicorn worker is told to stop, open
streams end within a second, so a graceful shutdown is not held up by dashboards.
"""
from __future__ import annotations

import json
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import redis
from flask import Blueprint, Response, current_app

from app.api import queries as q
from app import runtime
from app.api.auth import authenticated, guard

log = logging.getLogger(__name__)

bp = Blueprint("events", __name__, url_prefix="/api")
guard(bp)

HEARTBEAT_SECONDS = 15.0
MAX_STREAM_SECONDS = 300.0
PRIVATE_REFRESH_SECONDS = 30.0
_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
# Set when this process's gunicorn worker starts shutting down: streams end so it can.
SHUTTING_DOWN = threading.Event()


@bp.record_once
def _watch_worker_shutdown(state) -> None:
    """Chain onto gunicorn's worker signal handlers (installed before the app is loaded).

    gunicorn waits for open connections on SIGTERM and joins request threads on SIGQUIT/SIGINT; a
    stream only notices either at its next heartbeat, so it is told directly instead. Nothing is
    done outside a gunicorn worker's main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        previous = signal.getsignal(signum)
        owner = getattr(previous, "__self__", None)
        if not callable(previous) or not type(owner).__module__.startswith("gunicorn.workers"):
            continue

        def on_signal(sig, frame, previous=previous):
            SHUTTING_DOWN.set()
            previous(sig, frame)

        signal.signal(signum, on_signal)


def channel(queue_name: str) -> str:
    """The Redis pub/sub channel for one Fleet deployment (its queue name namespaces it)."""
    return f"{queue_name}:events"


def publish(kind: str, repo: str | None, data: dict[str, Any] | None = None) -> bool:
    """Tell every open dashboard that ``kind`` happened in ``repo`` (None: not about one repository).

    ``kind`` is a short dotted name such as ``claim.created`` or ``queue.merged``; ``data`` must be
    JSON-serialisable. Never raises: a lost notice only delays a dashboard until its next event,
    so a Redis failure is logged and reported as False.
    """
    if not _KIND.match(kind):
        raise ValueError(f"event kind must match {_KIND.pattern}, got {kind!r}")
    message = {
        "kind": kind,
        "repo": repo,
        "data": data or {},
        "at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    try:
        runtime.redis_client().publish(channel(runtime.settings().queue_name), json.dumps(message, default=str))
        return True
    except redis.RedisError as exc:
        log.warning("event not published", extra={"kind": kind, "repo": repo, "error": type(exc).__name__})
        return False


def format_event(message: dict[str, Any]) -> str:
    """One SSE frame. JSON has no raw newlines, so a ``data:`` line cannot be broken out of."""
    return f"data: {json.dumps(message, separators=(',', ':'))}\n\n"


def _decode(raw: Any) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except (TypeError, ValueError):
        return None
    if not isinstance(message, dict) or not isinstance(message.get("kind"), str):
        return None
    return message


class _PrivateRepos:
    """Lower-cased names of private repositories, re-read now and then (for unauthenticated streams)."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.names: frozenset[str] = frozenset()
        self.loaded_at = float("-inf")

    def hides(self, repo: Any) -> bool:
        if time.monotonic() - self.loaded_at > PRIVATE_REFRESH_SECONDS:
            try:
                with self.pool.connection(timeout=2) as conn:
                    self.names = frozenset(r["name"] for r in conn.execute(q.PRIVATE_REPO_NAMES))
                self.loaded_at = time.monotonic()
            except Exception:
                return True  # fail closed: without the list, an unauthenticated stream gets no repo events
        return isinstance(repo, str) and repo.lower() in self.names


@bp.get("/stream")
def stream() -> Response:
    """Server-sent events: one ``data:`` frame per state change, a comment line as heartbeat."""
    settings = current_app.config["FLEET_SETTINGS"]
    heartbeat = float(current_app.config.get("FLEET_SSE_HEARTBEAT", HEARTBEAT_SECONDS))
    lifetime = float(current_app.config.get("FLEET_SSE_MAX_SECONDS", MAX_STREAM_SECONDS))
    private = None if authenticated() else _PrivateRepos(current_app.config["FLEET_POOL"])
    try:
        pubsub = runtime.redis_client().pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel(settings.queue_name))
        # Wait for the subscription to be confirmed, so nothing published after this answer is missed.
        pubsub.get_message(timeout=1.0)
    except redis.RedisError:
        return Response("data: {\"kind\":\"unavailable\"}\n\n", status=503, mimetype="text/event-stream",
                        headers={"Retry-After": "5"})

    def frames() -> Iterator[str]:
        try:
            yield "retry: 3000\n: connected\n\n"
            started = last_write = time.monotonic()
            while time.monotonic() - started < lifetime and not SHUTTING_DOWN.is_set():
                try:
                    raw = pubsub.get_message(timeout=1.0)
                except redis.RedisError:
                    yield ": redis unavailable\n\n"
                    return
                if raw is None or raw.get("type") != "message":
                    if time.monotonic() - last_write >= heartbeat:
                        yield ": heartbeat\n\n"
                        last_write = time.monotonic()
                    continue
                message = _decode(raw["data"])
                if message is None or (private is not None and private.hides(message.get("repo"))):
                    continue
                yield format_event(message)
                last_write = time.monotonic()
        finally:
            pubsub.close()

    return Response(frames(), mimetype="text/event-stream",
                    headers={"X-Accel-Buffering": "no", "Cache-Control": "no-store"})
