"""``/metrics``: cluster-wide figures read from Postgres at scrape time, plus this process's own.

Every web replica reports the same database-derived numbers (deliveries, merge queues, claims,
evidence), so scraping any one of them, or all, gives a consistent picture. The in-process metrics
(GitHub calls, rate-limit headroom, processing time; ``app/metrics.py``) describe the process that
answered. The figures are gauges over stored rows: they can drop when old rows are pruned, so
use ``delta()``/``deriv()`` on them rather than ``rate()``.

Access follows the API (bearer token, or loopback when no token is set); for an unauthenticated
scrape, private repositories are reported under ``repo="(private)"``.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

import redis
from flask import Blueprint, Response, current_app
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool

from app import metrics as _process_metrics  # noqa: F401  (registers the in-process metrics)
from app import runtime
from app.api.auth import authenticated, guard

log = logging.getLogger(__name__)

bp = Blueprint("metrics", __name__)
guard(bp, as_json=False)

PRIVATE = "(private)"
LATENCY_WINDOW_MINUTES = 15
QUANTILES = (0.5, 0.9, 0.99)

# %(auth)s: whether private repository names may appear as label values.
_REPO_LABEL = "CASE WHEN r.private AND NOT %(auth)s THEN '(private)' ELSE r.full_name END"

DELIVERIES_BY_STATUS = """
SELECT event, status, count(*) AS n FROM deliveries GROUP BY event, status
"""

DELIVERY_BACKLOG = """
SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(received_at)), 0) AS oldest
FROM deliveries WHERE status IN ('received', 'queued', 'processing')
"""

# Wait: received → started; processing: started → processed; over the recent window only.
DELIVERY_LATENCY = f"""
SELECT percentile_cont(%(quantiles)s::float8[]) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - received_at)) AS wait,
       percentile_cont(%(quantiles)s::float8[]) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - started_at)) AS processing,
       count(*) AS n
FROM deliveries
WHERE processed_at IS NOT NULL AND started_at IS NOT NULL
  AND processed_at > now() - interval '{LATENCY_WINDOW_MINUTES} minutes'
"""

QUEUE_DEPTH = f"""
SELECT {_REPO_LABEL} AS repo, q.base_ref AS base, count(*) AS depth,
       extract(epoch FROM now() - min(q.queued_at)) AS oldest_wait,
       count(*) FILTER (WHERE q.state <> 'queued') AS in_flight
FROM queue_entries q JOIN repositories r ON r.id = q.repo_id
WHERE q.finished_at IS NULL
GROUP BY 1, 2
"""

QUEUE_FINISHED = f"""
SELECT {_REPO_LABEL} AS repo, q.state AS outcome, count(*) AS n
FROM queue_entries q JOIN repositories r ON r.id = q.repo_id
WHERE q.finished_at IS NOT NULL
GROUP BY 1, 2
"""

CLAIMS_OPEN = f"""
SELECT {_REPO_LABEL} AS repo, count(*) AS n,
       count(*) FILTER (WHERE c.lease_expires_at < now()) AS expired
FROM claims c JOIN repositories r ON r.id = c.repo_id
WHERE c.released_at IS NULL
GROUP BY 1
"""

CLAIMS_RELEASED = """
SELECT coalesce(release_reason, 'unknown') AS reason, count(*) AS n
FROM claims WHERE released_at IS NOT NULL GROUP BY 1
"""

EVIDENCE_BY_OUTCOME = """
SELECT action, outcome, count(*) AS n FROM evidence GROUP BY action, outcome
"""


class DatabaseCollector(Collector):
    """Computes Fleet's cluster-wide figures from Postgres on every collect()."""

    def __init__(self, pool: ConnectionPool, include_private: bool = True, queue_name: str | None = None):
        self.pool = pool
        self.include_private = include_private
        self.queue_name = queue_name

    def describe(self) -> list[Metric]:
        return []  # figures are computed at scrape time; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("fleet_database_up", "1 when Postgres answered this scrape's queries")
        try:
            with self.pool.connection(timeout=2) as conn:
                families = list(self._families(conn))
        except Exception as exc:
            log.warning("metrics: database unavailable", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from families
        yield from self._job_queue()

    def _families(self, conn) -> Iterator[Metric]:
        params = {"auth": self.include_private, "quantiles": list(QUANTILES)}

        def run(query: str) -> list[dict]:
            return conn.execute(query, params).fetchall()

        deliveries = GaugeMetricFamily("fleet_deliveries", "Stored webhook deliveries by event and status",
                                       labels=["event", "status"])
        for r in run(DELIVERIES_BY_STATUS):
            deliveries.add_metric([r["event"], r["status"]], r["n"])
        yield deliveries

        backlog = run(DELIVERY_BACKLOG)[0]
        yield GaugeMetricFamily("fleet_deliveries_pending", "Deliveries received but not yet processed",
                                value=backlog["n"])
        yield GaugeMetricFamily("fleet_deliveries_oldest_pending_seconds",
                                "Age of the oldest delivery not yet processed (0 when none)",
                                value=float(backlog["oldest"]))

        latency = GaugeMetricFamily(
            "fleet_delivery_latency_seconds",
            f"Delivery latency quantiles over the last {LATENCY_WINDOW_MINUTES} minutes "
            "(stage wait: received to started; processing: started to processed)",
            labels=["stage", "quantile"],
        )
        lat = run(DELIVERY_LATENCY)[0]
        if lat["n"]:
            for stage in ("wait", "processing"):
                for quantile, value in zip(QUANTILES, lat[stage] or ()):
                    latency.add_metric([stage, str(quantile)], max(0.0, float(value)))
        yield latency
        yield GaugeMetricFamily("fleet_delivery_latency_samples",
                                f"Deliveries processed in the last {LATENCY_WINDOW_MINUTES} minutes", value=lat["n"])

        depth = GaugeMetricFamily("fleet_merge_queue_depth", "Active merge-queue entries", labels=["repo", "base"])
        wait = GaugeMetricFamily("fleet_merge_queue_oldest_wait_seconds",
                                 "How long the longest-waiting active entry has been queued", labels=["repo", "base"])
        flying = GaugeMetricFamily("fleet_merge_queue_in_flight", "Entries being updated, checked or merged",
                                   labels=["repo", "base"])
        for r in run(QUEUE_DEPTH):
            depth.add_metric([r["repo"], r["base"]], r["depth"])
            wait.add_metric([r["repo"], r["base"]], float(r["oldest_wait"]))
            flying.add_metric([r["repo"], r["base"]], r["in_flight"])
        yield from (depth, wait, flying)

        finished = GaugeMetricFamily("fleet_merge_queue_finished",
                                     "Finished merge-queue entries by outcome (merged, failed, dequeued)",
                                     labels=["repo", "outcome"])
        for r in run(QUEUE_FINISHED):
            finished.add_metric([r["repo"], r["outcome"]], r["n"])
        yield finished

        claims = GaugeMetricFamily("fleet_claims_open", "Open claims", labels=["repo"])
        expired = GaugeMetricFamily("fleet_claims_lease_expired", "Open claims past their lease, not yet released",
                                    labels=["repo"])
        for r in run(CLAIMS_OPEN):
            claims.add_metric([r["repo"]], r["n"])
            expired.add_metric([r["repo"]], r["expired"])
        yield from (claims, expired)

        released = GaugeMetricFamily("fleet_claims_released", "Ended claims by reason (completed, expired, ...)",
                                     labels=["reason"])
        for r in run(CLAIMS_RELEASED):
            released.add_metric([r["reason"]], r["n"])
        yield released

        evidence = GaugeMetricFamily("fleet_evidence", "Actions Fleet took on GitHub by action and outcome",
                                     labels=["action", "outcome"])
        for r in run(EVIDENCE_BY_OUTCOME):
            evidence.add_metric([r["action"], r["outcome"]], r["n"])
        yield evidence

    def _job_queue(self) -> Iterator[Metric]:
        if self.queue_name is None:
            return
        try:
            length = runtime.redis_client().llen(f"rq:queue:{self.queue_name}")
        except redis.RedisError:
            yield GaugeMetricFamily("fleet_redis_up", "1 when Redis answered this scrape", value=0)
            return
        yield GaugeMetricFamily("fleet_redis_up", "1 when Redis answered this scrape", value=1)
        yield GaugeMetricFamily("fleet_job_queue_length", "Jobs waiting in the RQ queue", value=length)


class _ProcessMetrics(Collector):
    """This process's default-registry metrics (app/metrics.py, process and Python collectors)."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def render_metrics(pool: ConnectionPool, include_private: bool, queue_name: str | None) -> bytes:
    """The text exposition for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(pool, include_private, queue_name))
    registry.register(_ProcessMetrics())
    return generate_latest(registry)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    settings = current_app.config["FLEET_SETTINGS"]
    body = render_metrics(current_app.config["FLEET_POOL"], authenticated(), settings.queue_name)
    # ``content_type``, not ``mimetype``: Flask appends its own charset to a mimetype, which
    # answered "...; charset=utf-8; charset=utf-8". generate_latest writes text format 0.0.4.
    return Response(body, content_type=CONTENT_TYPE_PLAIN_0_0_4)
