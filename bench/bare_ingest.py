"""The ingest baseline: a WSGI app that only verifies ``X-Hub-Signature-256``, parses the JSON
and answers 202 (the issue's "bare app"), served by Fleet's own ``run_gunicorn`` (same worker
class, workers, threads, keep-alive).

``python -m bench.bare_ingest --bind 127.0.0.1:PORT`` (secret from ``GITHUB_WEBHOOK_SECRET``).
"""
from __future__ import annotations

import argparse
import json
import os

from webhooks.signature import verify


def make_app(secret: str):
    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if environ.get("PATH_INFO") == "/webhooks/github" and environ.get("REQUEST_METHOD") == "POST":
            ok = verify(secret, body, environ.get("HTTP_X_HUB_SIGNATURE_256")) and isinstance(json.loads(body), dict)
            status, text = ("202 Accepted", b'{"status":"accepted"}') if ok else ("401 Unauthorized", b'{"status":"bad_signature"}')
        else:
            status, text = "200 OK", b"ok"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(text)))])
        return [text]
    return app


def main() -> None:
    from app.cli import serve

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    app = make_app(os.environ["GITHUB_WEBHOOK_SECRET"])
    serve.FleetGunicorn.load = lambda self: app  # same server settings, different application
    serve.run_gunicorn(args.bind, workers=args.workers, threads=args.threads)


if __name__ == "__main__":
    main()
