"""One place that builds githubkit clients: App (JWT) and per-installation, with Fleet's
retry policy, write pacing and call accounting.

githubkit's own retry repeats POSTs on 5xx, which can duplicate comments; Fleet's policy
retries only requests that are safe to repeat and leaves POSTs to callers that can look
before re-posting (see ``github_gateway.py``).
"""
from __future__ import annotations

import functools
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import httpx
import redis
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    GitHubException,
    RateLimitExceeded,
    RequestError,
    RequestFailed,
)
from githubkit.throttling import BaseThrottler
from githubkit.typing import RetryOption

from app.settings import Settings
from app.github.write_budget import WriteBudget

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
# Longest a worker may sleep inside githubkit's retry loop (5xx backoff, a Retry-After of a
# second). Anything longer marks the installation spent and the job is deferred instead
# (app/github/write_budget.py): a sleeping worker stalls every repository of every installation.
MAX_INLINE_WAIT = 1.0
# GitHub's advice for a secondary limit answered without Retry-After: wait at least a minute.
SECONDARY_LIMIT_WAIT = 60.0


def is_secondary_limit(response: Any) -> bool:
    """A 403/429 naming GitHub's secondary rate limit (githubkit raises RateLimitExceeded only
    when the answer also carries Retry-After or an exhausted x-ratelimit-remaining)."""
    return response.status_code in (403, 429) and "secondary rate limit" in response.text.lower()


class RetryPolicy:
    """githubkit retry decision: short rate-limit waits and 5xx / network errors of idempotent
    methods are retried after at most ``max_wait``; a longer rate-limit wait is reported to
    ``on_rate_limit`` (the installation's budget) and raised, so the job defers itself."""

    def __init__(self, attempts: int = 3, base_delay: float = 0.25, max_wait: float = MAX_INLINE_WAIT,
                 on_rate_limit: Callable[[float], None] | None = None):
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_wait = max_wait
        self.on_rate_limit = on_rate_limit

    def bound_to(self, on_rate_limit: Callable[[float], None]) -> "RetryPolicy":
        """The same policy, reporting long rate-limit waits of one installation."""
        return RetryPolicy(self.attempts, self.base_delay, self.max_wait, on_rate_limit)

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        if isinstance(exc, RateLimitExceeded):
            wait = exc.retry_after.total_seconds()
            if wait > self.max_wait or retry_count >= self.attempts:
                self._report(time.time() + max(wait, 1.0))
                return RetryOption(False)
            return RetryOption(True, timedelta(seconds=max(wait, 0.05)))
        if isinstance(exc, RequestFailed) and is_secondary_limit(exc.response):
            # A secondary limit without Retry-After: GitHub asks for at least a minute.
            self._report(time.time() + SECONDARY_LIMIT_WAIT)
            return RetryOption(False)
        if retry_count >= self.attempts:
            return RetryOption(False)
        method = _method_of(exc)
        if method not in IDEMPOTENT:
            return RetryOption(False)
        if isinstance(exc, RequestFailed):
            if exc.response.status_code < 500:
                return RetryOption(False)
        elif not isinstance(exc, RequestError):
            return RetryOption(False)
        return RetryOption(True, timedelta(seconds=min(self.base_delay * (2**retry_count), self.max_wait)))

    def _report(self, until: float) -> None:
        if self.on_rate_limit is None:
            return
        try:
            self.on_rate_limit(until)
        except redis.RedisError:
            log.warning("rate limit not recorded (Redis error)")


def _method_of(exc: GitHubException) -> str | None:
    try:
        return exc.request.method  # type: ignore[attr-defined]
    except Exception:
        inner = getattr(exc, "exc", None)
        request = getattr(inner, "request", None)
        return getattr(request, "method", None)


class WritePacer(BaseThrottler):
    """Keeps content-creating requests of one installation under GitHub's secondary limits
    (per minute and per hour), counted in Redis so every worker on every machine shares them.

    A write without a slot for its class raises ``BudgetSpent`` at once; it never waits. When
    Redis is unreachable writes go ahead unpaced: losing pacing is better than losing work.
    """

    def __init__(self, redis_client: redis.Redis | None, installation_id: int, per_minute: int, per_hour: int,
                 namespace: str = "fleet", clock: Callable[[], float] = time.time):
        self.installation_id = installation_id
        self.budget = (WriteBudget(redis_client, installation_id, per_minute, per_hour, namespace, clock)
                       if redis_client is not None else None)
        self._local = threading.Semaphore(4)

    @contextmanager
    def acquire(self, request: httpx.Request) -> Generator[None, Any, Any]:
        if request.method in MUTATING:
            self._take_slot()
        with self._local:
            yield

    @contextmanager
    def async_acquire(self, request: httpx.Request):  # type: ignore[override]
        raise NotImplementedError("Fleet uses the synchronous client")
        yield

    def _take_slot(self) -> None:
        if self.budget is None:
            return
        try:
            self.budget.take()
        except redis.RedisError:
            log.warning("write pacing unavailable (Redis error); proceeding unpaced")

    def mark_spent(self, until: float) -> None:
        if self.budget is not None:
            self.budget.mark_spent(until)

    def free_at(self, write_class) -> float | None:
        """``WriteBudget.free_at``; None (go ahead) when unpaced or Redis is unreachable."""
        if self.budget is None:
            return None
        try:
            return self.budget.free_at(write_class)
        except redis.RedisError:
            return None


ResponseHook = Callable[[httpx.Response], None]


def github_web_url(api_url: str) -> str:
    """The web address behind an API URL: github.com for api.github.com; for GitHub Enterprise
    Server (``https://HOST/api/v3``) the host itself."""
    api_url = api_url.rstrip("/")
    if api_url == "https://api.github.com":
        return "https://github.com"
    return api_url.removesuffix("/api/v3")


@functools.lru_cache(maxsize=1)
def shared_ssl_context() -> ssl.SSLContext:
    """One verified TLS context per process: githubkit opens a fresh HTTP client per call, and
    loading the CA bundle each time costs ~20 ms."""
    return ssl.create_default_context()


class KeptAliveTransport(httpx.BaseTransport):
    """githubkit opens and closes an httpx client for every call; routed through this transport the
    calls of a process share one connection pool, so a call reuses a kept-alive connection instead
    of a TCP (and TLS) handshake each. A forked process starts a pool of its own."""

    def __init__(self) -> None:
        self._pool: httpx.HTTPTransport | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def _current(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                self._pool = httpx.HTTPTransport(verify=shared_ssl_context())  # httpx's pool limits
                self._pid = os.getpid()
            return self._pool

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._current().handle_request(request)

    def close(self) -> None:
        """Each githubkit call closes its client, and with it the transport: the pool outlives it."""


_kept_alive = KeptAliveTransport()


class GitHubClients:
    """Builds (and caches) githubkit clients for the App and its installations."""

    def __init__(
        self,
        settings: Settings,
        redis_client: redis.Redis | None = None,
        on_response: ResponseHook | None = None,
        retry: RetryPolicy | None = None,
    ):
        settings.require_app()
        self.settings = settings
        self.redis = redis_client
        self.on_response = on_response
        self.retry = retry or RetryPolicy()
        self._installations: dict[int, GitHub] = {}
        # githubkit's default token cache is process-global and keyed by app and installation
        # ids only; a cache per client set keeps tokens of different GitHub hosts apart.
        self._tokens = MemCacheStrategy()
        self._lock = threading.Lock()

    def _common(self) -> dict[str, Any]:
        hooks = {"response": [self.on_response]} if self.on_response else {}
        return {
            "base_url": self.settings.github_api_url + "/",
            "auto_retry": self.retry,
            # Fleet's reads are snapshots that must be current; conditional requests are made
            # explicitly where they pay off.
            "http_cache": False,
            "timeout": httpx.Timeout(15.0, connect=5.0),
            "event_hooks": hooks,
            "user_agent": "fleet-github-app",
            "cache_strategy": self._tokens,
            "ssl_verify": shared_ssl_context(),
            "transport": _kept_alive,
        }

    def app(self) -> GitHub:
        """A client authenticated as the App itself (JWT): /app endpoints only."""
        return GitHub(AppAuthStrategy(self.settings.app_id, self.settings.private_key), **self._common())

    def installation(self, installation_id: int) -> GitHub:
        """A client acting as one installation; its token is cached until shortly before expiry."""
        with self._lock:
            client = self._installations.get(installation_id)
            if client is None:
                pacer = WritePacer(
                    self.redis, installation_id, self.settings.writes_per_minute, self.settings.writes_per_hour,
                    namespace=self.settings.queue_name,
                )
                auth = AppInstallationAuthStrategy(self.settings.app_id, self.settings.private_key, installation_id)
                options = {**self._common(), "auto_retry": self.retry.bound_to(pacer.mark_spent)}
                client = GitHub(auth, throttler=pacer, **options)
                self._installations[installation_id] = client
            return client
