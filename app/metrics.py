"""Prometheus metrics that live in this process (GitHub calls, processing latency).

Cluster-wide figures (deliveries, queue depth, claims) are computed from Postgres at scrape
time by ``app/api/metrics.py`` so every replica reports the same truth.
"""
from __future__ import annotations

import httpx
from prometheus_client import Counter, Gauge, Histogram

GITHUB_CALLS = Counter(
    "fleet_github_api_calls_total", "GitHub API calls made by this process", ["method", "status"]
)
GITHUB_RATE_REMAINING = Gauge(
    "fleet_github_rate_limit_remaining", "x-ratelimit-remaining from the last GitHub response", ["resource"]
)
PROCESSING_SECONDS = Histogram(
    "fleet_delivery_processing_seconds", "Time to process one webhook delivery", ["event"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
INGEST_SECONDS = Histogram(
    "fleet_ingest_seconds", "Time to verify, store and enqueue one webhook", ["outcome"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)


def record_github_response(response: httpx.Response) -> None:
    """httpx response hook: count the call and remember the rate-limit headroom."""
    GITHUB_CALLS.labels(response.request.method, str(response.status_code)).inc()
    remaining = response.headers.get("x-ratelimit-remaining")
    if remaining is not None and remaining.isdigit():
        GITHUB_RATE_REMAINING.labels(response.headers.get("x-ratelimit-resource", "core")).set(int(remaining))
