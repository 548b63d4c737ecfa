"""Helpers shared by the benchmarks: a throw-away database and RQ namespace, percentiles, the
machine description, and free ports. Postgres and Redis as for the tests (``FLEET_TEST_PG``,
``FLEET_TEST_REDIS``)."""
from __future__ import annotations

import os
import platform
import secrets
import socket
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

PG_BASE = os.environ.get("FLEET_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("FLEET_TEST_REDIS", "redis://127.0.0.1:6379/0")


def cpu_seconds(match: Callable[[str], bool]) -> float:
    """User + system CPU seconds so far of the live processes whose command line ``match``
    accepts (Linux ``/proc``; 0 elsewhere). Taken before and after a run, the difference is what
    they spent on it: steadier than throughput on a machine whose speed varies."""
    ticks, proc = 0, Path("/proc")
    for entry in proc.iterdir() if proc.is_dir() else ():
        try:
            if not entry.name.isdigit() or not match((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")):
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def run_id() -> str:
    return f"{os.getpid()}_{secrets.token_hex(3)}"


@contextmanager
def scratch_database(prefix: str = "fleet_bench") -> Iterator[str]:
    """A migrated database of its own, dropped afterwards."""
    from app import db

    url = f"{PG_BASE}/{prefix}_{run_id()}"
    db.ensure_database(url)
    with db.connect(url) as conn:
        db.migrate(conn)
    try:
        yield url
    finally:
        db.drop_database(url)


@contextmanager
def scratch_namespace(prefix: str = "fleet-bench") -> Iterator[str]:
    """An RQ queue name (and Redis key prefix) of its own; its keys are deleted afterwards."""
    from app.rq_namespace import delete_namespace

    name = f"{prefix}-{run_id()}"
    try:
        yield name
    finally:
        delete_namespace(REDIS_URL, name)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine() -> dict[str, str]:
    """nproc, memory, CPU model, Python and OS, for RESULTS.md."""
    cpu = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    versions = {}
    for name, cmd in (("postgres", ["psql", "--version"]), ("redis", ["redis-server", "--version"])):
        try:
            versions[name] = subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            versions[name] = "unknown"
    return {"nproc": str(os.cpu_count()), "memory": memory, "cpu": cpu,
            "python": sys.version.split()[0], "os": f"{platform.system()} {platform.release()}", **versions}
