"""``persd api``: serve the REST API and dashboard."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("api", help="serve the REST API and dashboard with uvicorn")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.set_defaults(handler=_serve)


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
        log_level="info",
    )
    return 0
