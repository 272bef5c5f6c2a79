"""``persd api`` (serve), ``persd api-key`` (manage keys) and ``persd submit`` (batch client)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="serve the REST API and dashboard with uvicorn")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    p.set_defaults(handler=_serve)

    keys = sub.add_parser("api-key", help="create, list or revoke API keys")
    ksub = keys.add_subparsers(dest="api_key_command", required=True, metavar="ACTION")
    p = ksub.add_parser("create", help="create a key and print it (shown only once)")
    p.add_argument("--name", required=True, help="who or what uses the key")
    p.add_argument(
        "--scope",
        action="append",
        required=True,
        help="submit, read or admin (admin implies the others); repeat for several",
    )
    p.set_defaults(handler=_create_key)
    p = ksub.add_parser("list", help="list keys (prefix, name, scopes, last use)")
    p.set_defaults(handler=_list_keys)
    p = ksub.add_parser("revoke", help="revoke a key by its prefix")
    p.add_argument("prefix")
    p.set_defaults(handler=_revoke_key)

    p = sub.add_parser("submit", help="submit tasks from a JSONL file to the REST API")
    p.add_argument("file", type=Path, help="one task (a POST /v1/tasks body) per line")
    p.add_argument(
        "--url", default=os.environ.get("PERSD_API_URL", "http://127.0.0.1:8000"), help="API URL"
    )
    p.add_argument(
        "--key",
        default=os.environ.get("PERSD_API_KEY"),
        help="API key with the submit scope (default: $PERSD_API_KEY)",
    )
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=_submit)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.api.settings import get_api_settings
    from shared.config import get_settings

    get_settings()
    s = get_api_settings()
    uvicorn.run(
        "services.api.main:app",
        host=args.host or s.host,
        port=args.port or s.port,
        workers=args.workers,
        log_level="info",
    )
    return 0


def _create_key(args: argparse.Namespace) -> int:
    from services.api.keys import create_key
    from shared.db import session_scope

    with session_scope() as session:
        new = create_key(session, args.name, args.scope)
    print(new.key)
    print(
        f"created key {new.id} '{new.name}' with scopes {', '.join(new.scopes)}; it is shown"
        " only this once",
        file=sys.stderr,
    )
    return 0


def _list_keys(_args: argparse.Namespace) -> int:
    from services.api.keys import list_keys
    from shared.db import session_scope

    with session_scope() as session:
        for key in list_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d}" if key.revoked_at else "active"
            used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
            print(f"{key.prefix}\t{key.name}\t{','.join(key.scopes)}\t{state}\tlast used {used}")
    return 0


def _revoke_key(args: argparse.Namespace) -> int:
    from services.api.keys import revoke_key
    from shared.db import session_scope

    with session_scope() as session:
        revoke_key(session, args.prefix)
    print(f"revoked {args.prefix}")
    return 0


def _submit(args: argparse.Namespace) -> int:
    import httpx

    from services.api.client import submit_file
    from shared.errors import InvalidInput, PersdError

    if not args.key:
        raise InvalidInput("no API key: pass --key or set PERSD_API_KEY")
    if not args.file.is_file():
        raise InvalidInput(f"{args.file} is not a file")
    if args.batch_size < 1:
        raise InvalidInput("--batch-size must be at least 1")
    try:
        report = submit_file(
            args.file, args.url, args.key, args.batch_size, progress=not args.no_progress
        )
    except httpx.TransportError as exc:
        raise PersdError(f"cannot reach the API at {args.url}: {exc}") from None
    for failure in report.failed:
        print(f"{args.file}:{failure.line}: {failure.error}", file=sys.stderr)
    print(
        f"{report.created} created, {report.existing} already submitted,"
        f" {len(report.failed)} failed"
    )
    return 1 if report.failed else 0
