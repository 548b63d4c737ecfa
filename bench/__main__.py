"""``python -m bench``: run every benchmark and print its figures (about 7-8 minutes).

Each benchmark also runs alone (``python -m bench.bench_ingest --help`` etc.):

- ``bench_ingest``: webhook ingest through gunicorn vs a bare app that checks signatures and parses JSON;
- ``bench_processing``: deliveries/s one ``fleet worker`` turns into state vs no-op jobs;
- ``bench_burst``: 1,000 deliveries across 5 repositories in 2 s while agents claim (order, losses,
  claim verdict latency);
- ``bench_queue``: merge-queue throughput per CI duration and overhead between steps;
- ``bench_api``: GitHub calls per claim, merged PR and status update; conditional-request savings;
- ``bench_status``: rendering the status issue for 10,000 tasks;
- ``bench_economy``: GitHub calls and writes per merged task, by category, in ``fleet demo`` with 8
  and 16 agents (about 4 minutes).

Postgres and Redis as for the tests (``FLEET_TEST_PG``, ``FLEET_TEST_REDIS``); every benchmark
uses a scratch database and Redis namespace and removes them. Figures are recorded in
``bench/RESULTS.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time

NAMES = ("ingest", "processing", "burst", "queue", "api", "status", "economy")


def _queue(ci_seconds: float, prs: int) -> list[str]:
    from bench import bench_queue

    f = bench_queue.run(prs, ci_seconds)
    per_t = (f["merged"] / (f["elapsed_s"] / ci_seconds)) if ci_seconds else float("nan")
    return [
        f"merge queue: {f['merged']}/{f['prs']} PRs queued at once, simulated CI T = {ci_seconds:g} s per head, "
        f"{f['elapsed_s']:.1f} s in all",
        f"  {per_t:.2f} PRs merged per T (serialized ideal 1.00: each PR is re-tested after the previous merge)",
        "  " + bench_queue._describe("green -> merge call", f["green_to_merge"]),
        "  " + bench_queue._describe("merge -> next PR's first call", f["merge_to_next"]),
        f"  GitHub requests per PR: {f['requests_per_pr']:.1f} (writes {f['writes_per_pr']:.1f})",
    ]


def _status() -> list[str]:
    from bench import bench_status

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bench_status.main(["--runs", "5"])
    return ["status rendering:"] + ["  " + line for line in out.getvalue().splitlines()]


def _economy() -> list[str]:
    from bench import bench_economy

    return [line for n, f in bench_economy.run().items() for line in bench_economy.report(n, f)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                     epilog="Each benchmark also runs alone: python -m bench.bench_NAME --help")
    parser.add_argument("--only", choices=NAMES, action="append", help="run only these (repeatable)")
    parser.add_argument("--ci-seconds", type=float, default=2.0, help="merge queue: simulated CI duration T")
    parser.add_argument("--prs", type=int, default=6, help="merge queue: PRs queued at once")
    args = parser.parse_args(argv)
    from bench import bench_api, bench_burst, bench_ingest, bench_processing
    from bench.common import machine

    m = machine()
    print(f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory']} RAM, Python {m['python']}, {m['os']}; "
          f"{m['postgres']}; {m['redis']}")
    runs = {
        "ingest": lambda: bench_ingest.report(bench_ingest.run()),
        "processing": lambda: bench_processing.report(bench_processing.run()),
        "burst": lambda: bench_burst.report(bench_burst.run()),
        "queue": lambda: _queue(args.ci_seconds, args.prs),
        "api": lambda: bench_api.report(bench_api.run()),
        "status": _status,
        "economy": _economy,
    }
    failed = 0
    for name in args.only or NAMES:
        started = time.monotonic()
        try:
            lines = runs[name]()
        except Exception as exc:  # one broken benchmark must not hide the others
            failed += 1
            lines = [f"{name}: FAILED: {type(exc).__name__}: {exc}"]
        print()
        print("\n".join(lines))
        print(f"  ({time.monotonic() - started:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
