"""A light HTTP/1.1 load generator for the ingest benchmark: keep-alive connections on one asyncio
loop in its own process, requests pre-encoded once (only the delivery GUID changes), responses
read by Content-Length. Much cheaper per request than a Python HTTP client, so the server, not
the generator, is what is measured (the issue's figures came from wrk; this machine has none).

``run_load(host, port, requests, seconds, connections)`` returns latencies, status counts and the warm-up's count;
``requests`` are (event, body, signature) triples posted round-robin to ``/webhooks/github``.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import time
import uuid

GUID = b"00000000-0000-0000-0000-000000000000"


def _template(host: str, port: int, event: str, body: bytes, signature: str) -> bytes:
    head = (f"POST /webhooks/github HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"X-GitHub-Event: {event}\r\nX-GitHub-Delivery: {GUID.decode()}\r\n"
            f"X-Hub-Signature-256: {signature}\r\nUser-Agent: GitHub-Hookshot/bench\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


async def _response(reader) -> int:
    """Read one response (its body by Content-Length); its status code."""
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def _connection(host, port, templates, offset, stride, start_at, stop_at, latencies, statuses,
                      warmup_answers):
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while (now := time.monotonic()) < stop_at:
            request = templates[i % len(templates)].replace(GUID, str(uuid.uuid4()).encode(), 1)
            i += stride
            t0 = time.perf_counter()
            writer.write(request)
            code = await _response(reader)
            elapsed = time.perf_counter() - t0
            if now >= start_at:
                latencies.append(elapsed)
                statuses[code] = statuses.get(code, 0) + 1
            else:
                warmup_answers[0] += 1
    finally:
        writer.close()


async def _run(host, port, templates, seconds, connections, warmup):
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    warmup_answers = [0]
    start_at = time.monotonic() + warmup
    stop_at = start_at + seconds
    await asyncio.gather(*(_connection(host, port, templates, k, connections, start_at, stop_at, latencies, statuses,
                                       warmup_answers) for k in range(connections)))
    return latencies, statuses, warmup_answers[0]


def _child(host, port, requests, seconds, connections, warmup, out) -> None:
    templates = [_template(host, port, *r) for r in requests]
    out.put(asyncio.run(_run(host, port, templates, seconds, connections, warmup)))


def run_load(host: str, port: int, requests, seconds: float, connections: int,
             warmup: float = 1.0) -> tuple[list[float], dict[int, int], int]:
    """Post for ``seconds`` after ``warmup`` from ``connections`` keep-alive connections, in a
    separate process; (latencies of the measured requests, their status counts, how many
    requests were answered during the warm-up)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(host, port, list(requests), seconds, connections, warmup, out))
    proc.start()
    result = out.get(timeout=seconds + warmup + 120)
    proc.join(timeout=10)
    return result


async def _paced(host, port, templates, offsets, connections, statuses, latencies):
    """Send templates[i] no earlier than offsets[i] seconds from now, in list order, over
    ``connections`` keep-alive connections."""
    start = time.monotonic()
    next_index = iter(range(len(templates)))

    async def connection():
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in next_index:
                delay = start + offsets[i] - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                t0 = time.perf_counter()
                writer.write(templates[i])
                code = await _response(reader)
                latencies.append(time.perf_counter() - t0)
                statuses[code] = statuses.get(code, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))


def _paced_child(host, port, requests, seconds, connections, out) -> None:
    templates = [_template(host, port, event, body, signature).replace(GUID, guid.encode(), 1)
                 for event, body, signature, guid in requests]
    offsets = [seconds * i / max(len(templates), 1) for i in range(len(templates))]
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    asyncio.run(_paced(host, port, templates, offsets, connections, statuses, latencies))
    out.put((latencies, statuses))


def post_paced(host: str, port: int, requests, seconds: float, connections: int = 16):
    """Start posting (event, body, signature, guid) deliveries evenly over ``seconds``, in order,
    from a process of its own; returns a function that waits for it and gives (latencies,
    status counts)."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_paced_child, args=(host, port, list(requests), seconds, connections, out))
    proc.start()

    def wait(timeout: float = 300):
        result = out.get(timeout=timeout)
        proc.join(timeout=10)
        return result
    return wait
