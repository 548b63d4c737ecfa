"""Conditional GETs: remember each read's ETag and body, send ``If-None-Match`` next time.

GitHub answers an unchanged resource with 304, which does not count against the primary rate
limit. Fleet re-reads the same pull requests, issues and check lists often (every gate
evaluation and queue step re-checks the truth); the 304 path only ever returns a body GitHub just
confirmed is current, so freshness is unchanged. Entries live in Redis, shared by every worker;
without Redis every read is a plain GET.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import redis

log = logging.getLogger(__name__)
TTL_SECONDS = 3600
MAX_BODY = 512 * 1024  # larger bodies are not worth a Redis round trip each way


class EtagCache:
    def __init__(self, client: redis.Redis, namespace: str):
        self.client = client
        self.namespace = namespace

    def _key(self, key: str) -> str:
        return f"{self.namespace}:etag:{key}"

    def get(self, key: str) -> tuple[str, Any] | None:
        try:
            raw = self.client.get(self._key(key))
        except redis.RedisError:
            return None
        if not raw:
            return None
        entry = json.loads(raw)
        return entry["etag"], entry["body"]

    def put(self, key: str, etag: str, body: Any) -> None:
        text = json.dumps({"etag": etag, "body": body})
        if len(text) > MAX_BODY:
            return
        try:
            self.client.set(self._key(key), text, ex=TTL_SECONDS)
        except redis.RedisError:
            log.debug("etag cache unavailable")


def conditional_get(cache: EtagCache | None, key: str, call: Callable[[dict[str, str]], httpx.Response]) -> Any:
    """The JSON body of ``call``, revalidated with the cached ETag when there is one."""
    cached = cache.get(key) if cache is not None else None
    response = call({"If-None-Match": cached[0]} if cached else {})
    if response.status_code == 304 and cached is not None:
        return cached[1]
    body = response.json()
    etag = response.headers.get("etag")
    if cache is not None and etag:
        cache.put(key, etag, body)
    return body
