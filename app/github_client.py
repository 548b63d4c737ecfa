"""One place that builds githubkit clients: App (JWT) and per-installation, with Fleet's
retry policy, write pacing and call accounting.

githubkit's own retry repeats POSTs on 5xx, which can duplicate comments; Fleet's policy
retries only requests that are safe to repeat and leaves POSTs to callers that can look
before re-posting (see ``github_gateway.py``).
"""
from __future__ import annotations

import functools
import logging
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

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PATCH", "PUT", "DELETE"})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE"})
# Longest wait Fleet accepts inside one job; longer rate-limit waits fail the job so RQ's retry
# (or the sweeper) picks it up later instead of holding a worker.
MAX_INLINE_WAIT = 90.0


class RetryPolicy:
    """githubkit retry decision: rate limits honour Retry-After / reset; 5xx and network errors
    back off exponentially, for idempotent methods only."""

    def __init__(self, attempts: int = 3, base_delay: float = 1.0, max_wait: float = MAX_INLINE_WAIT):
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_wait = max_wait

    def __call__(self, exc: GitHubException, retry_count: int) -> RetryOption:
        if retry_count >= self.attempts:
            return RetryOption(False)
        if isinstance(exc, RateLimitExceeded):
            wait = exc.retry_after.total_seconds()
            if wait > self.max_wait:
                return RetryOption(False)
            return RetryOption(True, timedelta(seconds=max(wait, 0.05)))
        method = _method_of(exc)
        if method not in IDEMPOTENT:
            return RetryOption(False)
        if isinstance(exc, RequestFailed):
            status = exc.response.status_code
            secondary = status == 403 and "secondary rate limit" in exc.response.text.lower()
            if status < 500 and not secondary:
                return RetryOption(False)
        elif not isinstance(exc, RequestError):
            return RetryOption(False)
        return RetryOption(True, timedelta(seconds=self.base_delay * (2**retry_count)))


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

    When Redis is unreachable writes go ahead unpaced: losing pacing is better than losing work.
    """

    def __init__(self, redis_client: redis.Redis | None, installation_id: int, per_minute: int, per_hour: int,
                 namespace: str = "fleet"):
        self.redis = redis_client
        self.namespace = namespace
        self.installation_id = installation_id
        self.per_minute = per_minute
        self.per_hour = per_hour
        self._local = threading.Semaphore(4)

    @contextmanager
    def acquire(self, request: httpx.Request) -> Generator[None, Any, Any]:
        if request.method in MUTATING:
            self._wait_for_slot()
        with self._local:
            yield

    @contextmanager
    def async_acquire(self, request: httpx.Request):  # type: ignore[override]
        raise NotImplementedError("Fleet uses the synchronous client")
        yield

    def _wait_for_slot(self) -> None:
        if self.redis is None:
            return
        deadline = time.monotonic() + MAX_INLINE_WAIT
        while True:
            try:
                wait = self._take_slot()
            except redis.RedisError:
                log.warning("write pacing unavailable (Redis error); proceeding unpaced")
                return
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise PacingExceeded(wait)
            time.sleep(min(wait, 5.0))

    def _take_slot(self) -> float:
        now = time.time()
        minute, hour = int(now // 60), int(now // 3600)
        key_m = f"{self.namespace}:writes:{self.installation_id}:m:{minute}"
        key_h = f"{self.namespace}:writes:{self.installation_id}:h:{hour}"
        pipe = self.redis.pipeline()  # type: ignore[union-attr]
        pipe.incr(key_m)
        pipe.expire(key_m, 120)
        pipe.incr(key_h)
        pipe.expire(key_h, 7200)
        count_m, _, count_h, _ = pipe.execute()
        if count_m <= self.per_minute and count_h <= self.per_hour:
            return 0.0
        # Over budget: give the slot back and wait for the window that is full to roll over.
        pipe = self.redis.pipeline()  # type: ignore[union-attr]
        pipe.decr(key_m)
        pipe.decr(key_h)
        pipe.execute()
        if count_h > self.per_hour:
            return (hour + 1) * 3600 - now
        return (minute + 1) * 60 - now


class PacingExceeded(RuntimeError):
    """The installation's write budget is spent for longer than a job should wait."""

    def __init__(self, wait: float):
        super().__init__(f"GitHub write budget exhausted; next slot in {wait:.0f}s")
        self.wait = wait


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
                client = GitHub(auth, throttler=pacer, **self._common())
                self._installations[installation_id] = client
            return client
