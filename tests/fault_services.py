"""Private Redis and Postgres server processes for fault-injection tests that stop them.

The machine's own Postgres (5432) and Redis (6379) are never touched: every server here runs on
a free port of its own, with its data in a temporary directory, and is stopped at the end.
Every start, stop and wait is bounded; a test is skipped (with the reason) only when the server
binaries are missing.

    with RedisServer() as rs:          # redis-server on a free port, no persistence
        rs.stop(); rs.start()
    with PostgresServer() as pg:       # initdb (as the postgres user) + pg_ctl, trust auth
        pg.url("fleet")                # postgresql://postgres@127.0.0.1:PORT/fleet
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("FLEET_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
REDIS_BIN = shutil.which("redis-server")


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition") -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- Redis -----------------------------------------------------------------------------------


class RedisServer:
    """A redis-server process on its own port (no RDB, no AOF: a restart starts empty)."""

    def __init__(self, port: int | None = None):
        if REDIS_BIN is None:
            pytest.skip("redis-server binary not installed")
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        if self.proc is not None and self.proc.poll() is None:
            return self
        self.proc = subprocess.Popen(
            [REDIS_BIN, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_until(self._pings, timeout, what=f"redis-server on port {self.port}")
        return self

    def _pings(self) -> bool:
        import redis

        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server on port {self.port} exited with {self.proc.returncode}")
        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self, timeout: float = 10) -> None:
        """Kill the server (SIGKILL: as abrupt as a crash) and wait until the port is closed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=timeout)
        self.proc = None
        wait_until(lambda: not port_open(self.port), timeout, what=f"redis port {self.port} to close")

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- Postgres --------------------------------------------------------------------------------


def _as_postgres(*argv: str) -> list[str]:
    """initdb and pg_ctl refuse to run as root: run them as the postgres user when we are root."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return list(argv)


class PostgresServer:
    """A Postgres cluster of its own (initdb in a temp dir, trust auth, fsync off) on a free port."""

    def __init__(self, port: int | None = None):
        self.initdb = PG_BIN / "initdb"
        self.pg_ctl = PG_BIN / "pg_ctl"
        if not (self.initdb.exists() and self.pg_ctl.exists()):
            pytest.skip(f"Postgres server binaries not found under {PG_BIN}")
        if os.geteuid() == 0 and shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot run initdb as the postgres user")
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="fleet-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")
        self._initialised = False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, argv: list[str], timeout: float) -> None:
        done = subprocess.run(_as_postgres(*argv), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr[-2000:]}\n{tail}")

    def start(self, timeout: float = 30) -> PostgresServer:
        if not self._initialised:
            self._run([str(self.initdb), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                       "--no-sync", "-E", "UTF8", "--locale=C"], timeout=60)
            self._initialised = True
        # fsync off is safe here (the OS keeps what a killed server wrote); synchronous_commit
        # stays on: with it off an immediate stop loses commits already acknowledged.
        options = (f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c full_page_writes=off -c max_connections=60")
        self._run([str(self.pg_ctl), "-D", str(self.data), "-l", str(self.log), "-o", options,
                   "-w", "-t", str(int(timeout)), "start"], timeout=timeout + 5)
        wait_until(self.accepting, timeout, what=f"postgres on port {self.port}")
        return self

    def accepting(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url(), connect_timeout=1):
                return True
        except psycopg.Error:
            return False

    def stop(self, mode: str = "immediate", timeout: float = 20) -> None:
        """Stop the server (``immediate`` by default: connections are cut as in a crash)."""
        if not self._initialised or not (self.data / "postmaster.pid").exists():
            return
        self._run([str(self.pg_ctl), "-D", str(self.data), "-m", mode, "-w", "-t", str(int(timeout)), "stop"],
                  timeout=timeout + 5)
        wait_until(lambda: not port_open(self.port), timeout, what=f"postgres port {self.port} to close")

    def restart(self) -> None:
        self.stop()
        self.start()

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.destroy()
