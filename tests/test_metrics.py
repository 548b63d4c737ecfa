"""/metrics: cluster-wide figures computed from Postgres at scrape time, plus in-process metrics."""
from __future__ import annotations

from dataclasses import replace

from prometheus_client.parser import text_string_to_metric_families

from app import runtime
from app.wsgi import create_app
from tests.seed import seed


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """(sample name, sorted labels) → value."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(client, **kwargs) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"  # one charset
    return samples(response.get_data(as_text=True))


def test_database_figures(client, db_conn, settings):
    """Deliveries by event/status, latency, merge queues, claims, releases, evidence, job queue."""
    seed(db_conn)
    runtime.queue().enqueue("builtins.len", [1])
    m = scrape(client)
    assert m[("fleet_database_up", ())] == 1
    assert m[("fleet_deliveries", (("event", "issues"), ("status", "processed")))] == 1
    assert m[("fleet_deliveries", (("event", "issues"), ("status", "failed")))] == 1
    assert m[("fleet_delivery_latency_seconds", (("quantile", "0.5"), ("stage", "processing")))] == 2
    assert m[("fleet_delivery_latency_seconds", (("quantile", "0.5"), ("stage", "wait")))] == 1
    assert m[("fleet_merge_queue_depth", (("base", "main"), ("repo", "octo/widgets")))] == 2
    assert m[("fleet_merge_queue_in_flight", (("base", "main"), ("repo", "octo/widgets")))] == 1
    assert m[("fleet_merge_queue_oldest_wait_seconds", (("base", "main"), ("repo", "octo/widgets")))] >= 1795  # PR 12, 30 min
    assert m[("fleet_merge_queue_finished", (("outcome", "merged"), ("repo", "octo/widgets")))] == 1
    assert m[("fleet_claims_open", (("repo", "octo/widgets"),))] == 1
    assert m[("fleet_claims_released", (("reason", "completed"),))] == 1
    assert m[("fleet_claims_released", (("reason", "expired"),))] == 1
    assert m[("fleet_evidence", (("action", "comment"), ("outcome", "ok")))] == 2
    assert m[("fleet_job_queue_length", ())] == 1
    assert any(name == "process_cpu_seconds_total" or name.startswith("python_") for name, _ in m)


def test_private_repository_names_are_masked_unless_authenticated(client, db_conn, settings):
    seed(db_conn)
    m = scrape(client)
    assert m[("fleet_claims_open", (("repo", "(private)"),))] == 1
    assert not any(dict(labels).get("repo") == "octo/secret" for _, labels in m)
    app = create_app(replace(settings, api_token="metrics-token"))
    try:
        token_client = app.test_client()
        assert token_client.get("/metrics").status_code == 401
        m = scrape(token_client, headers={"Authorization": "Bearer metrics-token"})
        assert m[("fleet_claims_open", (("repo", "octo/secret"),))] == 1
    finally:
        app.config["FLEET_POOL"].close()


def test_in_process_github_metrics_are_included(client, settings):
    """GitHub call counts and rate-limit headroom recorded by app/metrics.py show up too."""
    import httpx

    from app.metrics import record_github_response

    response = httpx.Response(200, headers={"x-ratelimit-remaining": "4321", "x-ratelimit-resource": "core"},
                              request=httpx.Request("GET", "http://github.invalid/"))
    record_github_response(response)
    m = scrape(client)
    assert m[("fleet_github_rate_limit_remaining", (("resource", "core"),))] == 4321
    assert m[("fleet_github_api_calls_total", (("method", "GET"), ("status", "200")))] >= 1


def test_database_outage_is_reported_not_raised(settings):
    """A scrape while Postgres is away answers 200 with fleet_database_up 0."""
    app = create_app(replace(settings, database_url="postgresql://postgres@127.0.0.1:1/none"))
    try:
        m = scrape(app.test_client())
        assert m[("fleet_database_up", ())] == 0
    finally:
        app.config["FLEET_POOL"].close(timeout=0)
