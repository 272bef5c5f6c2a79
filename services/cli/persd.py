"""The ``persd`` command. Each service adds its subcommands from ``services/<name>/cli.py``;
heavy imports stay inside the handlers so ``persd --help`` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from shared.errors import PersdError

# Service modules that contribute subcommands through a register(subparsers) function.
COMMAND_MODULES = [
    "services.cli.workers",
    "services.cli.stack",
    "services.cli.demo",
    "services.executor.cli",
    "services.student.cli",
    "services.teacher.cli",
    "services.trainer.cli",
    "services.api.cli",
    "services.experiment.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="persd", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except PersdError as exc:
        print(f"persd: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
