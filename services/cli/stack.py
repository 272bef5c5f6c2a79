"""``persd preflight``: what ``make run`` checks before it starts the stack, and, with
``--workers``, whether a running stack's workers are there and can work.

The host packages come first (services/sysdeps.py): without bubblewrap nothing starts, and the
message names the command that installs it (as root it is installed here). Redis is the one dependency persd cannot bring itself on a bare machine: if ``REDIS_URL`` does not
answer and points at this machine, a locally installed ``redis-server`` is started (no
persistence, files under the data directory); otherwise the message says how to get one.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from urllib.parse import urlsplit

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preflight",
        help="check the host's packages, Redis (start a local one if possible) and the data dir;"
        " --workers: every worker kind of a running stack, through its own queue",
    )
    p.add_argument(
        "--workers",
        action="store_true",
        help="ask each worker kind through its queue (executor: its sandbox) and report",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the pongs")
    p.set_defaults(handler=_preflight)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _workers(timeout_s: float) -> int:
    from shared.readiness import check_workers

    states = check_workers(timeout_s)
    for kind, state in states.items():
        print(f"{kind:<9} {state.status.value:<8} workers {state.workers}  {state.detail}")
    broken = [kind for kind, state in states.items() if not state.ok]
    if broken:
        print(f"persd: not ready: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


def _preflight(args: argparse.Namespace) -> int:
    from services import sysdeps
    from services.api.settings import get_api_settings
    from shared.config import get_settings

    if args.workers:
        return _workers(args.timeout)
    if sysdeps.ensure(for_tests=False) != 0:
        return 1
    s = get_settings()
    s.data_dir.mkdir(parents=True, exist_ok=True)
    if not _redis_answers(s.redis_url):
        parts = urlsplit(s.redis_url)
        server = shutil.which("redis-server")
        if parts.hostname not in LOCAL_HOSTS or server is None:
            print(
                f"persd: no Redis answers at REDIS_URL={s.redis_url}. Start one (Debian: "
                "`apt-get install redis-server`; Docker: `docker run -p 6379:6379 redis:7`) or "
                "point REDIS_URL at yours.",
                file=sys.stderr,
            )
            return 1
        redis_dir = (s.data_dir / "redis").resolve()
        redis_dir.mkdir(exist_ok=True)
        subprocess.run(
            [
                server,
                "--daemonize",
                "yes",
                "--port",
                str(parts.port or 6379),
                "--bind",
                parts.hostname,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(redis_dir),
                "--logfile",
                str(redis_dir / "redis.log"),
                "--pidfile",
                str(redis_dir / "redis.pid"),
            ],
            check=True,
        )
        for _ in range(50):
            if _redis_answers(s.redis_url):
                break
            time.sleep(0.1)
        else:
            print(
                f"persd: started redis-server but it does not answer; see {redis_dir}/redis.log",
                file=sys.stderr,
            )
            return 1
        print(
            f"started a local redis-server on port {parts.port or 6379} (pid file {redis_dir}/redis.pid)"
        )
    api = get_api_settings()
    print(f"persd is starting. Dashboard: http://{api.host}:{api.port}/  (Ctrl-C stops everything)")
    return 0
