"""Benchmark: webhook ingest through gunicorn, against a bare app that only checks signatures.

Run ``python -m bench.bench_ingest`` from the project root (Postgres and Redis as for the tests:
``FLEET_TEST_PG``, ``FLEET_TEST_REDIS``).

- Fleet: ``fleet web`` as a subprocess (gunicorn, gthread, its default 2 workers × 8 threads) on a
  scratch database and RQ namespace. Every request is stored in Postgres and enqueued on Redis (no
  worker runs, so nothing else competes for the CPU).
- Baseline: a WSGI app that reads the body, verifies ``X-Hub-Signature-256``, parses the JSON
  and answers 202,
  served by the very same ``run_gunicorn`` settings (``bench/bare_ingest.py``).
- Load: ``bench/load_generator.py`` in a process of its own (keep-alive connections on one
  asyncio loop, requests encoded once) posting the official example payloads of
  ``tests/fixtures/webhook_examples`` (15 events, 1-120 KB), each signed with the secret and with
  a fresh ``X-GitHub-Delivery`` GUID. The generator shares the machine's cores with the server,
  so absolute figures are a floor; the ratio compares like with like.
- CPU per request: user + system seconds of the server's processes and of Postgres's, read from
  ``/proc`` before and after the load. This machine's speed varies from minute to minute, so
  throughput is noisy; the CPU each request costs is steadier.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import REDIS_URL, cpu_seconds, free_port, median, percentile, scratch_database, scratch_namespace

EXAMPLES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "webhook_examples"
SECRET = "bench-ingest-secret"


def load_payloads() -> list[tuple[str, bytes, str]]:
    """(event, body, signature) for every official example payload."""
    from webhooks.signature import sign

    out = []
    for path in sorted(EXAMPLES.glob("*.json")):
        examples = json.loads(path.read_text())
        for payload in examples if isinstance(examples, list) else [examples]:
            body = json.dumps(payload).encode()
            out.append((path.stem, body, sign(SECRET, body)))
    return out


def _wait_ready(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


def load(url: str, payloads, seconds: float, concurrency: int, warmup: float = 1.0) -> dict:
    """Post payloads round-robin from ``concurrency`` keep-alive connections for ``seconds``
    (after a warm-up), from a generator process of its own (bench/load_generator.py)."""
    from urllib.parse import urlsplit

    from bench.load_generator import run_load

    parts = urlsplit(url)
    server = f"127.0.0.1:{parts.port}"
    before = {name: cpu_seconds(match) for name, match in _cpu_groups(server).items()}
    latencies, statuses, warmup_answers = run_load(parts.hostname, parts.port, payloads, seconds, concurrency, warmup)
    answers = len(latencies) + warmup_answers
    cpu_us = {name: (cpu_seconds(match) - before[name]) * 1e6 / max(answers, 1)
              for name, match in _cpu_groups(server).items()}
    ok = statuses.get(202, 0)
    return {"requests": len(latencies), "accepted": ok, "statuses": statuses, "per_s": ok / seconds,
            "cpu_us_per_request": cpu_us,
            "p50_ms": percentile(latencies, 50) * 1000 if latencies else float("nan"),
            "p99_ms": percentile(latencies, 99) * 1000 if latencies else float("nan"),
            "median_ms": median(latencies) * 1000}


def _cpu_groups(server: str) -> dict[str, Callable[[str], bool]]:
    """The processes whose CPU each request costs: the server's (its workers carry its ``--bind``
    on their command line) and Postgres's (backends, WAL writer)."""
    return {"server": lambda cmd: server in cmd, "postgres": lambda cmd: cmd.startswith("postgres")}


def _serve(cmd: list[str], env: dict[str, str], port: int, ready_path: str):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_ready(f"http://127.0.0.1:{port}{ready_path}")
    except RuntimeError:
        proc.kill()
        raise RuntimeError(f"server did not start: {proc.stderr.read()[-2000:]}")
    return proc


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def run(seconds: float = 8.0, concurrency: int = 16, workers: int = 2, threads: int = 8) -> dict:
    from app import db

    payloads = load_payloads()
    sizes = sorted(len(b) for _, b, _ in payloads)
    with scratch_database() as url, scratch_namespace() as queue_name:
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": REDIS_URL, "FLEET_QUEUE": queue_name,
               "GITHUB_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "WARNING", "FLEET_LOG_FORMAT": "console"}
        server_args = ["--workers", str(workers), "--threads", str(threads)]
        port = free_port()
        bare = _serve([sys.executable, "-m", "bench.bare_ingest", "--bind", f"127.0.0.1:{port}", *server_args],
                      env, port, "/")
        try:
            baseline = load(f"http://127.0.0.1:{port}/webhooks/github", payloads, seconds, concurrency)
        finally:
            _stop(bare)
        port = free_port()
        fleet = _serve([sys.executable, "-m", "app.cli.main", "web", "--bind", f"127.0.0.1:{port}", *server_args],
                       env, port, "/healthz")
        try:
            figures = load(f"http://127.0.0.1:{port}/webhooks/github", payloads, seconds, concurrency)
        finally:
            _stop(fleet)
        with db.connect(url, autocommit=True) as conn:
            stored = conn.execute("SELECT count(*) AS n FROM deliveries").fetchone()["n"]
    return {"fleet": figures, "baseline": baseline, "ratio": figures["per_s"] / max(baseline["per_s"], 1e-9),
            "stored": stored, "payloads": len(payloads), "payload_bytes_median": sizes[len(sizes) // 2],
            "payload_bytes_max": sizes[-1], "seconds": seconds, "concurrency": concurrency,
            "workers": workers, "threads": threads}


def report(f: dict) -> list[str]:
    a, b = f["fleet"], f["baseline"]
    return [
        f"ingest: {f['payloads']} official example payloads (median {f['payload_bytes_median'] / 1024:.0f} KB, "
        f"max {f['payload_bytes_max'] / 1024:.0f} KB), {f['concurrency']} keep-alive clients, {f['seconds']:g} s each, "
        f"gunicorn {f['workers']} workers × {f['threads']} threads",
        f"  Fleet    {a['per_s']:.0f} deliveries/s, p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms "
        f"(verify + store in Postgres + enqueue on Redis; {f['stored']} rows stored, statuses {a['statuses']})",
        f"  baseline {b['per_s']:.0f} deliveries/s, p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms "
        f"(verify the signature, parse the JSON, answer 202)",
        f"  ratio    {f['ratio']:.2f} of the bare app's throughput",
        f"  CPU per request (warm-up included): Fleet's server {a['cpu_us_per_request']['server']:.0f} µs "
        f"+ Postgres {a['cpu_us_per_request']['postgres']:.0f} µs; the bare app {b['cpu_us_per_request']['server']:.0f} µs",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per server (after 1 s warm-up)")
    parser.add_argument("--concurrency", type=int, default=16, help="client threads (keep-alive connections)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for both servers")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker for both servers")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.seconds, args.concurrency, args.workers, args.threads)
    print(json.dumps(figures, indent=2) if args.json else "\n".join(report(figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
