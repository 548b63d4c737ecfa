"""A tiny webhook receiver for tests: verifies signatures and keeps what arrived.

    with WebhookReceiver(secret="s3cret") as rx:
        sim.webhook_url = rx.url
        ...
        sim.wait_idle()
        assert rx.bad_signatures == 0
        rx.events("issues")  # payloads received for that event
"""
from __future__ import annotations

import hmac
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .webhooks import signature_256


@dataclass
class Received:
    """One POST the receiver accepted."""

    event: str
    guid: str
    headers: dict
    body: bytes

    @property
    def payload(self) -> dict:
        """The parsed JSON body."""
        return json.loads(self.body)


class WebhookReceiver:
    """Threaded HTTP server on 127.0.0.1 collecting signed webhook deliveries.

    ``status`` is what it answers (set 500 to simulate a failing endpoint); requests
    with a missing or wrong X-Hub-Signature-256 are counted and answered 401.
    """

    def __init__(self, secret: str = "s3cret", status: int = 202):
        self.secret = secret
        self.status = status
        self.received: list[Received] = []
        self.bad_signatures = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/webhooks/github"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def _handler(self):
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rx._accept(self, body)

            def log_message(self, *args):
                pass
        return Handler

    def _accept(self, req, body: bytes) -> None:
        expected = signature_256(self.secret, body)
        good = hmac.compare_digest(expected, req.headers.get("X-Hub-Signature-256") or "")
        with self._lock:
            if good:
                self.received.append(Received(req.headers.get("X-GitHub-Event", ""),
                                              req.headers.get("X-GitHub-Delivery", ""), dict(req.headers), body))
            else:
                self.bad_signatures += 1
            status = self.status if good else 401
        req.send_response(status)
        req.send_header("Content-Length", "0")
        req.end_headers()

    def start(self) -> "WebhookReceiver":
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def events(self, event: str | None = None, action: str | None = None) -> list[dict]:
        """Payloads received, optionally only for ``event`` (and ``action``)."""
        with self._lock:
            items = list(self.received)
        return [x.payload for x in items if (event is None or x.event == event)
                and (action is None or x.payload.get("action") == action)]

    def keys(self) -> list[str]:
        """``event.action`` (or ``event``) per delivery, in arrival order."""
        with self._lock:
            items = list(self.received)
        return [x.event + ("." + x.payload["action"] if "action" in x.payload else "") for x in items]
