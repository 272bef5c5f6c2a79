"""Commands shared by all services: configuration check, migrations, starting workers."""

from __future__ import annotations

import argparse
import os
import sys

# service: (default concurrency, pool). The queue each consumes is shared.readiness.QUEUE_OF_KIND
# (imported only when a worker command runs: it loads Celery).
WORKERS = {
    # Student threads each wait on one HTTP request; vLLM batches the concurrent ones.
    "student": (16, "threads"),
    # Executor threads each hand a job to a sandbox slot (a process of its own) and wait.
    "executor": (2, "threads"),
    "teacher": (4, "threads"),
    "trainer": (1, "solo"),
    # Periodic jobs beat sends (services/scheduler): short queries, a few threads are plenty.
    "scheduler": (4, "threads"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-config", help="validate the environment's settings and exit")
    p.set_defaults(handler=_check_config)

    p = sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    p.add_argument("--revision", default="head")
    p.set_defaults(handler=_migrate)

    p = sub.add_parser("ping", help="send a ping through a service's queue and wait for a worker")
    p.add_argument("service", choices=sorted(WORKERS))
    p.add_argument("--timeout", type=float, default=10.0)
    p.set_defaults(handler=_ping)

    p = sub.add_parser("worker", help="start a Celery worker for one service")
    p.add_argument("service", choices=sorted(WORKERS))
    p.add_argument("--concurrency", "-c", type=int, help="worker processes or threads")
    p.add_argument("--hostname", "-n", help="Celery node name")
    p.set_defaults(handler=_worker)

    p = sub.add_parser(
        "beat",
        help="start Celery beat (the periodic jobs' schedule; `persd worker scheduler` runs"
        " them); run exactly one",
    )
    p.set_defaults(handler=_beat)

    p = sub.add_parser("flower", help="start Flower, the Celery operators' web UI (needs [ops])")
    p.add_argument("--address", default=os.environ.get("FLOWER_ADDRESS", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("FLOWER_PORT", "5555")))
    p.add_argument(
        "--events",
        action="store_true",
        default=os.environ.get("PERSD_FLOWER_EVENTS", "") == "1",
        help="turn on the workers' per-task events (task history, graphs); off by default:"
        " every task would then send events, a cost on the hot path (PERSD_FLOWER_EVENTS=1)",
    )
    p.set_defaults(handler=_flower)


def _check_config(_args: argparse.Namespace) -> int:
    from shared.config import get_settings

    s = get_settings()
    print(
        f"ok: database {s.resolved_database_url.split('@')[-1]}, redis {s.redis_url.split('@')[-1]}"
    )
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from shared.migrate import upgrade

    get_settings()  # validate first: a bad DATABASE_URL is named before Alembic runs
    upgrade(revision=args.revision)
    return 0


def _ping(args: argparse.Namespace) -> int:
    import uuid

    from shared.queues import PINGS
    from shared.readiness import QUEUE_OF_KIND
    from shared.schemas.messages import Ping

    queue = QUEUE_OF_KIND[args.service]
    try:
        pong = PINGS[queue].send(Ping(nonce=uuid.uuid4().hex)).get(timeout=args.timeout)
    except Exception as exc:  # noqa: BLE001 - any failure means unhealthy; say why
        print(
            f"persd: no {args.service} worker answered on queue {queue.value}: {exc!r}",
            file=sys.stderr,
        )
        return 1
    print(f"ok: {pong.worker} (pid {pong.pid}) answered on {pong.queue}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    from shared.config import get_settings
    from shared.readiness import QUEUE_OF_KIND

    get_settings()
    queue = QUEUE_OF_KIND[args.service].value
    concurrency, pool = WORKERS[args.service]
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        f"services.{args.service}.worker",
        "worker",
        "-Q",
        queue,
        "-P",
        pool,
        "-c",
        str(args.concurrency or concurrency),
        "-n",
        args.hostname or f"{args.service}@%h",
        "--without-gossip",
        "--without-mingle",
        "-l",
        os.environ.get("PERSD_LOG_LEVEL", "INFO"),
    ]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def _beat(_args: argparse.Namespace) -> int:
    from shared.config import get_settings

    get_settings()
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "services.scheduler.beat",
        "beat",
        "-l",
        os.environ.get("PERSD_LOG_LEVEL", "INFO"),
    ]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover


def _flower(args: argparse.Namespace) -> int:
    """Flower on the same broker (and key prefix) as the workers. By default it only shows
    workers, queues and their state: Flower would otherwise switch every worker's task events
    on (and on again every minute), a few Redis writes per task that the pipeline does not pay
    without it."""
    from shared.config import get_settings

    get_settings()
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "shared.queues",
        "flower",
        f"--address={args.address}",
        f"--port={args.port}",
        f"--enable_events={args.events}",
    ]
    os.execv(sys.executable, argv)
    return 0  # pragma: no cover
