"""The ``fleet`` command."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from app.settings import Settings, SettingsError, load_settings

DEFAULT_BIND = "127.0.0.1:8000"


def _settings(require_app: bool = False, require_secret: bool = False, sandbox_ok: bool = False) -> Settings:
    if sandbox_ok:
        _adopt_sandbox()
    settings = load_settings()
    if require_app:
        try:
            settings.require_app()
        except SettingsError as exc:
            if not sandbox_ok:
                raise
            raise SettingsError(f"{exc}; or start the sandbox (scripts/start) and run this beside it") from None
    if require_secret and not settings.webhook_secret:
        raise SettingsError("GITHUB_WEBHOOK_SECRET is not set (the secret configured on the GitHub App's webhook)")
    from app import runtime
    from app.logs import configure_logging

    configure_logging(settings)
    runtime.configure(settings)
    return settings


def _adopt_sandbox() -> None:
    """Without App credentials, commands that make sense against the sandbox (``plan apply``,
    ``sync``, ``replay``, ``doctor``) use the one ``fleet up`` is serving, and say so on stderr."""
    from app import db
    from app.sandbox.running import adopt_running_sandbox

    sandbox = adopt_running_sandbox()
    if sandbox is not None:
        print(f"fleet: sandbox mode: the simulator at {sandbox.simulator_url} and database "
              f"{db.database_name(os.environ['DATABASE_URL'])} of `fleet up` (pid {sandbox.pid})", file=sys.stderr)


def cmd_migrate(args: argparse.Namespace) -> int:
    from app import db

    settings = _settings()
    if db.ensure_database(settings.database_url):
        print(f"created database {db.database_name(settings.database_url)}")
    with db.connect(settings.database_url) as conn:
        applied = db.migrate(conn)
    print("applied: " + ", ".join(f"{m.version:04d} {m.name}" for m in applied) if applied else "schema is up to date")
    return 0


def bind_address(cli_bind: str | None, env: dict[str, str] | None = None) -> str:
    """``--bind`` wins, then ``PORT`` (on all interfaces, as platforms expect), then 127.0.0.1:8000."""
    env = os.environ if env is None else env
    if cli_bind:
        return cli_bind
    port = env.get("PORT", "").strip()
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError("PORT must be a TCP port number")
        return f"0.0.0.0:{port}"
    return DEFAULT_BIND


def cmd_web(args: argparse.Namespace) -> int:
    from app.cli.serve import run_gunicorn

    _settings(require_secret=True)
    run_gunicorn(bind_address(args.bind), workers=args.workers, threads=args.threads)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.cli.worker import run_worker

    _settings(require_app=True)
    return run_worker(burst=args.burst, fork=args.fork)


def cmd_scheduler(args: argparse.Namespace) -> int:
    from jobs.scheduler import run_scheduler

    _settings(require_app=True)
    run_scheduler(once=args.once)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from app.cli.up import run_up

    return run_up(bind=bind_address(args.bind), workers=args.workers)


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a write budget)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.sandbox.demo import DEFAULT_PLAN, DemoOptions, run_demo

    return run_demo(DemoOptions(
        agents=args.agents, ci_seconds=args.ci_seconds, failure_rate=args.failure_rate,
        group_failure_rate=args.group_failure_rate, lease=args.lease,
        timeout=args.timeout, bind=bind_address(args.bind), live=not args.no_live,
        plan=Path(args.plan) if args.plan else DEFAULT_PLAN, database=args.database, workers=args.workers,
        seed=args.seed, json_path=Path(args.json) if args.json else None, real_limits=args.real_limits,
        writes_per_minute=args.writes_per_minute, writes_per_hour=args.writes_per_hour, race=args.race, spent_budget=args.spent_budget,
        verdict_timeout=args.verdict_timeout,
        queue_mode=args.queue_mode, depth=args.depth, batch_size=args.batch_size, batch_wait=args.batch_wait,
    ))


def cmd_replay(args: argparse.Namespace) -> int:
    from app import db, deliveries
    from jobs.process import process_delivery

    settings = _settings(require_app=True, sandbox_ok=True)
    with db.connect(settings.database_url, autocommit=True) as conn:
        known = deliveries.requeue_for_replay(conn, args.delivery_id)
    if not known:
        print(f"fleet: no stored delivery {args.delivery_id!r}", file=sys.stderr)
        return 1
    print(f"{args.delivery_id}: {process_delivery(args.delivery_id)}")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from jobs.sync import sync_repository

    _settings(require_app=True, sandbox_ok=True)
    if args.repo.count("/") != 1:
        raise SettingsError("OWNER/NAME expected, e.g. octo-org/widgets")
    counts = sync_repository(args.repo)
    print(f"{args.repo}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from app.cli.doctor import main as doctor

    _adopt_sandbox()
    return doctor()


def cmd_plan_apply(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.github.evidence import EvidenceRecorder
    from app.tasks.plan import PlanError, parse_plan
    from app.tasks.plan_apply import apply_plan
    from jobs.sync import gateway_for

    settings = _settings(require_app=True, sandbox_ok=True)
    try:
        plan = parse_plan(Path(args.plan).read_text())
    except OSError as exc:
        print(f"fleet: cannot read {args.plan}: {exc.strerror}", file=sys.stderr)
        return 2
    except PlanError as exc:
        print(f"fleet: {args.plan}: {exc}", file=sys.stderr)
        return 2
    evidence = EvidenceRecorder(settings.database_url, repo_full_name=args.repo)
    try:
        changes = apply_plan(gateway_for(args.repo, evidence), plan, dry_run=args.dry_run)
    except LookupError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 2
    finally:
        evidence.close()
    verb = "would change" if args.dry_run else "changed"
    for line in changes:
        print(("(dry run) " if args.dry_run else "") + line)
    print(f"{args.repo}: {verb} {len(changes)} item(s)" if changes else f"{args.repo}: already matches the plan")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from app.cli.sandbox import add_sandbox_parser
    from app.repos.config import QUEUE_MODES

    parser = argparse.ArgumentParser(
        prog="fleet",
        description="Fleet coordinates coding agents and people on GitHub repositories through GitHub itself.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    add("migrate", cmd_migrate, "Create the database if missing and apply pending schema migrations.")
    web = add("web", cmd_web, "Serve webhooks, the API and the dashboard with gunicorn.")
    web.add_argument("--bind", help=f"HOST:PORT to listen on (default: 0.0.0.0:$PORT if PORT is set, else {DEFAULT_BIND})")
    web.add_argument("--workers", type=int, default=2, help="gunicorn worker processes (default 2)")
    web.add_argument("--threads", type=int, default=8, help="threads per worker, gthread class (default 8)")
    worker = add("worker", cmd_worker, "Run an RQ worker that processes deliveries and Fleet's jobs.")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.add_argument("--fork", action="store_true",
                        help="run each job in a forked work horse (isolation; slower) instead of in-process")
    sched = add("scheduler", cmd_scheduler, "Run periodic jobs: sweeper, redelivery, leases, status issue, reconciliation.")
    sched.add_argument("--once", action="store_true", help="run every periodic job once and exit")
    up = add("up", cmd_up, "Run web, worker and scheduler together on this machine (sandbox mode without App credentials).")
    up.add_argument("--bind", help=f"HOST:PORT for the web server (default {DEFAULT_BIND})")
    up.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
    demo = add("demo", cmd_demo, "Run the real Fleet against the bundled GitHub simulator with a scripted fleet of agents "
                                 "(sample plan, simulated CI, a lease that expires); live progress, then a summary.")
    demo.add_argument("--agents", type=int, default=8, help="scripted agents (default 8)")
    demo.add_argument("--ci-seconds", type=float, default=3.0, help="simulated CI duration per PR head (default 3)")
    demo.add_argument("--failure-rate", type=float, default=0.15, help="probability a CI run fails (default 0.15)")
    demo.add_argument("--group-failure-rate", type=float, default=0.03, metavar="P",
                      help="with --queue-mode groups: probability a merge group of PRs that passed alone fails "
                           "(an interaction between changes; default 0.03)")
    demo.add_argument("--lease", default="30s", help="claims.lease in the demo's .github/fleet.yml (default 30s)")
    demo.add_argument("--timeout", type=float, default=600, help="give up after this many seconds (default 600)")
    demo.add_argument("--bind", help=f"HOST:PORT for Fleet's web server (default {DEFAULT_BIND})")
    demo.add_argument("--no-live", action="store_true", help="plain log lines instead of the live table")
    demo.add_argument("--plan", metavar="PLAN.yml", help="plan to import (default app/sandbox/sample/plan.yml)")
    demo.add_argument("--database", default="fleet_demo",
                      help="database name on DATABASE_URL's server, dropped and re-created (default fleet_demo)")
    demo.add_argument("--workers", type=int, default=2, help="RQ worker processes (default 2)")
    demo.add_argument("--seed", type=int, help="random seed for CI failures and agents' choices")
    demo.add_argument("--json", metavar="PATH", help="also write the summary as JSON to PATH")
    limits = demo.add_mutually_exclusive_group()
    limits.add_argument("--real-limits", dest="real_limits", action="store_true", default=True,
                        help="the default: Fleet's write pacer runs at GitHub's limits and the simulator enforces its "
                             "secondary limits (403 over budget); the summary adds claim verdict latency, duplicate "
                             "work, tasks merged twice, calls per task and worker stalls")
    limits.add_argument("--no-limits", dest="real_limits", action="store_false",
                        help="lift Fleet's pacer and the simulator's secondary limits (faster on a slow machine)")
    demo.add_argument("--writes-per-minute", type=_positive_int, default=80, metavar="N",
                      help="writes per minute per installation (default 80, GitHub's; ignored with --no-limits)")
    demo.add_argument("--writes-per-hour", type=_positive_int, default=500, metavar="N",
                      help="writes per hour per installation (default 500, GitHub's; ignored with --no-limits)")
    demo.add_argument("--race", action="store_true",
                      help="agents make their first claim together and always go for the most urgent ready task "
                           "(with --real-limits the race starts with the whole write budget)")
    demo.add_argument("--spent-budget", action="store_true",
                      help="with --race: the race starts with the write budget spent by other work up to the "
                           "reserve of claim verdicts and merges")
    demo.add_argument("--verdict-timeout", type=float, default=60, metavar="SECONDS",
                      help="an agent with no verdict on its claim after this long steps back (default 60)")
    demo.add_argument("--queue-mode", choices=QUEUE_MODES, default="serial",
                      help="queue.mode in the demo's .github/fleet.yml (default serial: one PR at a time; groups: PRs "
                           "tested together in merge groups, the simulated CI runs on their branches too)")
    demo.add_argument("--depth", type=int, default=3, metavar="N",
                      help="with --queue-mode groups: queue.depth, groups under test at once (default 3)")
    demo.add_argument("--batch-size", type=int, default=1, metavar="N",
                      help="with --queue-mode groups: queue.batch_size, PRs per group (default 1)")
    demo.add_argument("--batch-wait", default="0s", metavar="DURATION",
                      help="with --queue-mode groups: queue.batch_wait, how long a small group waits for company "
                           "while another is under test (default 0s)")
    replay = add("replay", cmd_replay, "Re-run a stored webhook delivery through its handler.")
    replay.add_argument("delivery_id", metavar="DELIVERY_ID", help="the X-GitHub-Delivery GUID")
    sync = add("sync", cmd_sync, "Backfill a repository's state from GitHub's REST API.")
    sync.add_argument("repo", metavar="OWNER/NAME")
    add("doctor", cmd_doctor, "Check settings, Postgres, Redis, the App's credentials and installations; say what to fix.")
    plan = sub.add_parser("plan", help="Import a YAML plan as milestones (epics) and issues.",
                          description="Import a YAML plan as milestones (epics) and issues.")
    plan_sub = plan.add_subparsers(dest="plan_command", required=True, metavar="ACTION")
    apply = plan_sub.add_parser("apply", help="Create or update milestones and issues to match PLAN.yml (idempotent).",
                                description="Create or update milestones and issues to match PLAN.yml (idempotent).")
    apply.add_argument("plan", metavar="PLAN.yml")
    apply.add_argument("--repo", required=True, metavar="OWNER/NAME")
    apply.add_argument("--dry-run", action="store_true", help="print the changes without making them")
    apply.set_defaults(handler=cmd_plan_apply)
    add_sandbox_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except SettingsError as exc:
        print(f"fleet: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from app.cli.preflight import one_line_error

        line = one_line_error(exc)
        if line is None:
            raise
        print(f"fleet: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
