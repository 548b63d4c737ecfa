"""The Flask application: webhook ingest, health, and (later) the read API and dashboard."""
from __future__ import annotations

import logging
from typing import Any

import redis
from flask import Flask, Response, jsonify, request
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from app.api.headers import SECURITY_HEADERS
from app import db, runtime
from app.settings import Settings

log = logging.getLogger("fleet.web")

def make_pool(database_url: str) -> ConnectionPool:
    """A small pool that checks connections on checkout, so a Postgres restart heals itself."""
    return ConnectionPool(
        database_url,
        min_size=1,
        max_size=8,
        open=False,
        kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 3},
        check=db.check_pooled,
        reconnect_timeout=0,
    )


def create_app(settings: Settings | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Build the WSGI app for ``settings`` (default: from the environment)."""
    settings = settings or runtime.settings()
    runtime.configure(settings)
    app = Flask(__name__, template_folder="api/templates", static_folder="api/static")
    app.config["MAX_CONTENT_LENGTH"] = 26 * 1024 * 1024
    app.config["FLEET_SETTINGS"] = settings
    pool = make_pool(settings.database_url)
    pool.open(wait=False)
    app.config["FLEET_POOL"] = pool
    if test_config:
        app.config.update(test_config)

    from webhooks.ingest import WebhookIngest

    app.wsgi_app = WebhookIngest(app, app.wsgi_app)  # type: ignore[method-assign]
    from app.api.views import bp as api_bp
    from app.api.dashboard import bp as dashboard_bp
    from app.events_stream import bp as events_bp
    from app.api.metrics import bp as metrics_bp
    from app.api.setup import bp as setup_bp

    for blueprint in (api_bp, events_bp, dashboard_bp, metrics_bp, setup_bp):
        app.register_blueprint(blueprint)
    _hide_gunicorn_banner()

    @app.get("/healthz")
    def healthz() -> Response:
        """The process is alive."""
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        """Postgres and Redis are reachable."""
        checks = {"postgres": _check_postgres(pool), "redis": _check_redis()}
        ok = all(v == "ok" for v in checks.values())
        return jsonify({"status": "ok" if ok else "unavailable", "checks": checks}), 200 if ok else 503

    @app.after_request
    def secure(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.pop("Server", None)
        # CORS stays off unless FLEET_CORS_ORIGINS lists the requesting origin.
        origin = request.headers.get("Origin")
        if settings.cors_origins:
            response.headers.add("Vary", "Origin")
            if origin in settings.cors_origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Allow-Headers"] = "Authorization"
                response.headers["Access-Control-Allow-Methods"] = "GET"
        return response

    return app


def _hide_gunicorn_banner() -> None:
    """Drop the ``Server: gunicorn`` line gunicorn writes itself after the app's headers.

    gunicorn has no setting for it (benoitc/gunicorn#825), so its default header list is filtered
    once per process; harmless when not running under gunicorn.
    """
    from gunicorn.http import wsgi

    if getattr(wsgi.Response, "fleet_no_banner", False):
        return
    original = wsgi.Response.default_headers

    def default_headers(self) -> list[str]:
        return [line for line in original(self) if not line.lower().startswith("server:")]

    wsgi.Response.default_headers = default_headers  # type: ignore[method-assign]
    wsgi.Response.fleet_no_banner = True  # type: ignore[attr-defined]


def _check_postgres(pool: ConnectionPool) -> str:
    try:
        with pool.connection(timeout=2) as conn:
            conn.execute("SELECT 1")
        return "ok"
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"


def _check_redis() -> str:
    try:
        runtime.redis_client().ping()
        return "ok"
    except redis.RedisError as exc:
        return f"unavailable: {type(exc).__name__}"
