"""Webhook outbox: signs and POSTs events in order from one background thread.

Every attempt is recorded as a delivery (what ``GET /app/hook/deliveries``
lists). Like GitHub, a failed delivery is never retried automatically; it can be
redelivered (same GUID) through the API or ``Outbox.redeliver``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import http.client
import uuid
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .faults import Faults
from .state import iso

HOOK_ID = 424242


def signature_256(secret: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``body``, as in X-Hub-Signature-256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass
class Event:
    """One emitted event (shared by all its delivery attempts)."""

    guid: str
    event: str
    payload: dict
    body: bytes
    installation_id: int | None
    emitted_at: float


@dataclass
class Delivery:
    """One delivery attempt of an event."""

    id: int
    event: Event
    redelivery: bool
    delivered_at: float = 0.0
    duration: float = 0.0
    status: str = "pending"
    status_code: int = 0
    request_headers: dict = field(default_factory=dict)
    response_headers: dict = field(default_factory=dict)
    response_body: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status == "OK"

    def item_json(self) -> dict:
        """A ``hook-delivery-item``."""
        p = self.event.payload
        repo = p.get("repository") or {}
        return {
            "id": self.id, "guid": self.event.guid, "delivered_at": iso(self.delivered_at or self.event.emitted_at),
            "redelivery": self.redelivery, "duration": round(self.duration, 3), "status": self.status,
            "status_code": self.status_code, "event": self.event.event, "action": p.get("action"),
            "installation_id": self.event.installation_id, "repository_id": repo.get("id"),
            "throttled_at": None,
        }

    def full_json(self) -> dict:
        """A ``hook-delivery`` including the request and response."""
        out = self.item_json()
        out["url"] = ""
        out["request"] = {"headers": self.request_headers, "payload": self.event.payload}
        out["response"] = {"headers": self.response_headers, "payload": self.response_body}
        return out


class Outbox:
    """Ordered webhook delivery with pause/resume, faults and an idle barrier."""

    def __init__(self, secret: str, app_id: int, faults: Faults, url: str | None = None):
        self.secret = secret
        self.app_id = app_id
        self.url = url
        self.faults = faults
        self.deliveries: list[Delivery] = []
        self.events: list[Event] = []
        self._queue: deque = deque()
        self._cv = threading.Condition()
        self._in_flight = 0
        self._paused = False
        self._stop = False
        self._next_id = 1
        self._thread: threading.Thread | None = None

    # -- producer side -------------------------------------------------
    def emit(self, event: str, payload: dict, installation_id: int | None) -> Event:
        """Queue ``payload`` for delivery as ``event``; returns the Event (with its GUID)."""
        body = json.dumps(payload).encode()
        ev = Event(str(uuid.uuid4()), event, payload, body, installation_id, time.time())
        with self._cv:
            self.events.append(ev)
            self._queue.append((ev, False))
            self._cv.notify_all()
        return ev

    def redeliver(self, delivery_id: int) -> Delivery | None:
        """Queue another attempt of the event behind ``delivery_id`` (same GUID); None if unknown."""
        with self._cv:
            d = self._find(delivery_id)
            if d is None:
                return None
            self._queue.append((d.event, True))
            self._cv.notify_all()
            return d

    def _find(self, delivery_id: int) -> Delivery | None:
        return next((d for d in self.deliveries if d.id == delivery_id), None)

    # -- control ----------------------------------------------------------
    def start(self) -> None:
        """Start the delivery thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the delivery thread; undelivered events stay queued."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread:
            self._thread.join(timeout=15)
            self._thread = None

    def pause(self) -> None:
        """Hold deliveries in the queue until ``resume``."""
        with self._cv:
            self._paused = True

    def resume(self) -> None:
        """Deliver held events again."""
        with self._cv:
            self._paused = False
            self._cv.notify_all()

    def pending(self) -> int:
        """Events queued or in flight."""
        with self._cv:
            return len(self._queue) + self._in_flight

    def wait_idle(self, timeout: float = 10) -> bool:
        """Block until nothing is queued or in flight; False on timeout (e.g. while paused)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while self._queue or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
        return True

    # -- consumer side ------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            for ev, redelivery in batch:
                try:
                    self._attempt(ev, redelivery)
                finally:
                    with self._cv:
                        self._in_flight -= 1
                        self._cv.notify_all()

    def _take(self):
        """Wait for work; pop one event, or a shuffled window of them under the shuffle fault."""
        with self._cv:
            while not self._stop and (self._paused or not self._queue):
                self._cv.wait(0.5)
            if self._stop:
                return None
            window = max(1, self.faults.shuffle_window)
            batch = [self._queue.popleft() for _ in range(min(window, len(self._queue)))]
            self._in_flight += len(batch)
        if len(batch) > 1:
            self.faults.rng.shuffle(batch)
        return batch

    def _attempt(self, ev: Event, redelivery: bool) -> None:
        fault = self.faults.take_webhook()
        copies = 2 if fault == "duplicate" else 1
        for _ in range(copies):
            d = self._new_delivery(ev, redelivery)
            if fault == "drop":
                d.status, d.status_code = "timed out", 0
                d.delivered_at = time.time()
                continue
            self._post(d)

    def _new_delivery(self, ev: Event, redelivery: bool) -> Delivery:
        with self._cv:
            d = Delivery(self._next_id, ev, redelivery)
            self._next_id += 1
            self.deliveries.append(d)
        return d

    def headers_for(self, d: Delivery) -> dict:
        """The headers GitHub sends with a delivery."""
        body = d.event.body
        return {
            "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/sim",
            "X-GitHub-Event": d.event.event, "X-GitHub-Delivery": d.event.guid,
            "X-GitHub-Hook-ID": str(HOOK_ID),
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": str(self.app_id),
            "X-Hub-Signature-256": signature_256(self.secret, body),
            "X-Hub-Signature": "sha1=" + hmac.new(self.secret.encode(), body, hashlib.sha1).hexdigest(),
        }

    def _post(self, d: Delivery) -> None:
        d.request_headers = self.headers_for(d)
        d.delivered_at = time.time()
        url = self.url
        if not url:
            d.status, d.status_code = "No webhook URL configured", 0
            return
        start = time.monotonic()
        try:
            d.status_code, d.response_headers, d.response_body = _http_post(url, d.event.body, d.request_headers)
        except TimeoutError:
            d.status = "timed out"
        except OSError as exc:
            d.status = f"failed to connect to host: {exc}"
        d.duration = time.monotonic() - start
        if d.status_code:
            d.status = "OK" if 200 <= d.status_code < 300 else f"Invalid HTTP Response: {d.status_code}"


def _http_post(url: str, body: bytes, headers: dict) -> tuple[int, dict, str]:
    """POST with http.client (keeps header case exactly as GitHub sends it); 10 s timeout."""
    parts = urlsplit(url)
    conn_cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    conn = conn_cls(parts.hostname, parts.port, timeout=10)
    try:
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read(4096).decode(errors="replace")
    finally:
        conn.close()
