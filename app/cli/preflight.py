"""What ``fleet up`` and ``fleet demo`` check before starting anything, and the one line a CLI
command prints when a service it needs is unreachable (instead of a traceback)."""
from __future__ import annotations

import errno
import socket

import psycopg
import redis
from githubkit.exception import RequestError, RequestFailed


class Unavailable(Exception):
    """Something Fleet needs is not there; the message is the one line the user sees."""


def one_line_error(exc: BaseException) -> str | None:
    """The line to print for PostgreSQL (unreachable or not migrated), Redis or GitHub
    (unreachable, or an error answer), or None for anything else.
    psycopg's and redis-py's messages name host and port, never the password."""
    if isinstance(exc, Unavailable):
        return str(exc)
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return f"the database in DATABASE_URL has no Fleet schema ({first}); run `fleet migrate`"
    if isinstance(exc, psycopg.OperationalError):
        return f"cannot connect to PostgreSQL (DATABASE_URL): {first}"
    if isinstance(exc, redis.exceptions.ConnectionError):
        return f"cannot connect to Redis (REDIS_URL): {first}"
    if isinstance(exc, RequestFailed):
        response = exc.response
        return f"GitHub answered {response.status_code} to {response.raw_request.method} {response.raw_request.url.path}"
    if isinstance(exc, RequestError):
        return f"cannot reach GitHub (GITHUB_API_URL): {str(exc.exc).strip() or type(exc.exc).__name__}"
    return None


def check_port_free(bind: str) -> None:
    """Raise Unavailable when ``HOST:PORT`` is taken (by another Fleet or anything else), so
    nothing is started and nobody waits for a server that cannot listen."""
    host, _, port = bind.rpartition(":")
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        # As gunicorn does: a port held only by connections in TIME_WAIT is free to listen on.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host.strip("[]") or "0.0.0.0", int(port)))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise Unavailable(f"port {port} is in use on {host or '0.0.0.0'}; use --bind HOST:PORT") from None
        raise Unavailable(f"cannot listen on {bind}: {exc.strerror}") from None
    finally:
        probe.close()


def check_redis(url: str) -> None:
    """Raise redis' ConnectionError (one line via ``one_line_error``) when Redis does not answer."""
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    finally:
        client.close()
