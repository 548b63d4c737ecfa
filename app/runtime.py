"""Process-wide resources built once from the settings: Redis, the RQ queue, GitHub clients."""
from __future__ import annotations

import functools
import threading

import redis
from rq import Queue

from app.github.client import GitHubClients
from app.settings import Settings, load_settings

_lock = threading.Lock()
_settings: Settings | None = None


def settings() -> Settings:
    global _settings
    with _lock:
        if _settings is None:
            _settings = load_settings()
        return _settings


def configure(new: Settings) -> None:
    """Replace the process settings (start-up code and tests)."""
    global _settings
    with _lock:
        _settings = new
    redis_client.cache_clear()
    github_clients.cache_clear()


@functools.lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    # Short timeouts: ingest must answer GitHub within 10 s even when Redis hangs.
    return redis.Redis.from_url(settings().redis_url, socket_timeout=2, socket_connect_timeout=2)


def queue(name: str | None = None) -> Queue:
    """The RQ queue Fleet's jobs go to (FLEET_QUEUE, or a suffix of it)."""
    base = settings().queue_name
    return Queue(f"{base}:{name}" if name else base, connection=redis_client())


def schedule_catch_up(func: str, arg: int, key: str, retry_at: float | None) -> None:
    """Run ``func(arg)`` a second after ``retry_at`` (epoch seconds; now when None): the follow-up
    of work that found the write budget spent (label catch-up, held writes).

    The job id names the second it runs in, so schedules for the same moment coalesce, and a job
    that re-schedules itself never reuses its own id (RQ deletes a finished job with
    ``result_ttl=0`` by id, which would take the new schedule with it)."""
    import time
    from datetime import datetime, timezone

    from rq import get_current_job

    at = max(retry_at or 0.0, time.time()) + 1
    job_id = f"{settings().queue_name}-{key}-{arg}-{int(at)}"
    current = get_current_job()
    if current is not None and current.id == job_id:  # run ahead of its time (by hand): not itself
        job_id += "-again"
    queue().enqueue_at(datetime.fromtimestamp(at, tz=timezone.utc), func, arg, job_id=job_id,
                       job_timeout=120, result_ttl=0, description=f"{key} {arg}")


def repo_gateway(installation_id: int, full_name: str, evidence):
    """One repository's GitHub gateway, acting as its installation: how jobs and services get one."""
    from app.github.gateway import RepoGateway

    return RepoGateway(github_clients().installation(installation_id), full_name, evidence)


def etag_cache():
    """The shared ETag cache for conditional GETs (see conditional_reads.py)."""
    from app.github.etags import EtagCache

    return EtagCache(redis_client(), settings().queue_name)


@functools.lru_cache(maxsize=1)
def github_clients() -> GitHubClients:
    from app.metrics import record_github_response

    try:
        pacing_redis = redis_client()
    except redis.RedisError:
        pacing_redis = None
    return GitHubClients(settings(), pacing_redis, on_response=record_github_response)
