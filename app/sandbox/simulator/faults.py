"""Fault injection for REST calls and webhook deliveries.

Each rule is consumed by the next matching request (or delivery), so a test can
say "the next two calls to /issues fail with 502" and know exactly what happens.
"""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass


@dataclass
class RestFault:
    """One pending REST fault rule and how many more requests it applies to."""

    kind: str  # fail | rate_limit | delay
    remaining: int
    status: int = 502
    retry_after: int = 1
    seconds: float = 0.0
    path_contains: str | None = None
    method: str | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request."""
        if self.method and self.method.upper() != method.upper():
            return False
        return self.path_contains is None or self.path_contains in path


class Faults:
    """Pending faults; all methods are thread-safe."""

    def __init__(self, seed: int | None = None):
        self._lock = threading.Lock()
        self._rest: list[RestFault] = []
        self._drop = 0
        self._dup = 0
        self.shuffle_window = 0
        self.rng = random.Random(seed)

    def fail_next(self, n: int = 1, status: int = 502, path_contains: str | None = None,
                  method: str | None = None) -> None:
        """The next ``n`` matching REST requests answer ``status`` with a GitHub error body."""
        self._add(RestFault("fail", n, status=status, path_contains=path_contains, method=method))

    def rate_limit_next(self, n: int = 1, retry_after: int = 1, path_contains: str | None = None,
                        method: str | None = None) -> None:
        """The next ``n`` matching requests get 403 with ``retry-after`` and exhausted x-ratelimit headers."""
        self._add(RestFault("rate_limit", n, status=403, retry_after=retry_after,
                            path_contains=path_contains, method=method))

    def delay_next(self, n: int = 1, seconds: float = 1.0, path_contains: str | None = None,
                   method: str | None = None) -> None:
        """The next ``n`` matching requests are answered normally after sleeping ``seconds``."""
        self._add(RestFault("delay", n, seconds=seconds, path_contains=path_contains, method=method))

    def drop_next_webhooks(self, n: int = 1) -> None:
        """The next ``n`` deliveries never reach the receiver; each is recorded as a failed delivery."""
        with self._lock:
            self._drop += n

    def duplicate_next_webhooks(self, n: int = 1) -> None:
        """The next ``n`` deliveries are POSTed twice with the same GUID."""
        with self._lock:
            self._dup += n

    def shuffle_webhooks(self, window: int = 5, seed: int | None = None) -> None:
        """Deliver queued webhooks in random order within batches of ``window`` (0/1 disables)."""
        with self._lock:
            self.shuffle_window = window
            if seed is not None:
                self.rng.seed(seed)

    def clear(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._rest.clear()
            self._drop = self._dup = 0
            self.shuffle_window = 0

    def _add(self, fault: RestFault) -> None:
        with self._lock:
            self._rest.append(fault)

    def take_rest(self, method: str, path: str) -> list[RestFault]:
        """Consume and return the faults that apply to this request (at most one of each kind)."""
        taken, kinds = [], set()
        with self._lock:
            for f in self._rest:
                if f.kind not in kinds and f.remaining > 0 and f.matches(method, path):
                    f.remaining -= 1
                    kinds.add(f.kind)
                    taken.append(f)
            self._rest = [f for f in self._rest if f.remaining > 0]
        return taken

    def take_webhook(self) -> str | None:
        """Consume one webhook fault: "drop", "duplicate" or None."""
        with self._lock:
            if self._drop:
                self._drop -= 1
                return "drop"
            if self._dup:
                self._dup -= 1
                return "duplicate"
        return None
