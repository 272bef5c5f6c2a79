"""The host packages persd needs and cannot install into its virtualenv: the executor's sandbox
(bubblewrap, and numpy for the sandbox's interpreter) and, for the tests, Chromium.

    python3 -m services.sysdeps [--for run|test] [--dry-run]

Standard library only: ``make run`` and ``make test`` run it with the system's python3 before
anything else, even before the virtualenv exists. With everything present it prints nothing. As
root on a Debian/Ubuntu host it installs what is missing with apt-get; otherwise it stops and
prints the one command to run, and exits 1, so nothing starts without a sandbox.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

FIX = "sudo make system-deps"


@dataclass(frozen=True)
class Need:
    what: str  # for the message
    package: str  # the Debian package that provides it


def _sandbox_python() -> str:
    return os.environ.get("EXECUTOR_PYTHON", "/usr/bin/python3")


def missing(for_tests: bool) -> list[Need]:
    """What this host lacks (the executor's settings name the programs, as the executor reads
    them: ``EXECUTOR_BWRAP``, ``EXECUTOR_PYTHON``)."""
    needs = []
    bwrap = os.environ.get("EXECUTOR_BWRAP", "bwrap")
    if shutil.which(bwrap) is None:
        needs.append(Need(f"bubblewrap ({bwrap!r}, the executor's sandbox)", "bubblewrap"))
    python = _sandbox_python()
    try:
        ok = subprocess.run([python, "-c", "import numpy"], capture_output=True, timeout=60)
        has_numpy = ok.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        has_numpy = False
    if not has_numpy:
        needs.append(Need(f"numpy for the sandbox's interpreter {python}", "python3-numpy"))
    if for_tests and shutil.which("chromium") is None:
        needs.append(Need("chromium (the dashboard's browser test)", "chromium"))
    return needs


def install_command(needs: list[Need]) -> list[str]:
    packages = " ".join(sorted({n.package for n in needs}))
    return [
        "sh",
        "-c",
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
        + packages
        + " >/dev/null",
    ]


def ensure(for_tests: bool, *, dry_run: bool = False, euid: int | None = None) -> int:
    """0 when everything is there (installed now if root could); 1 with the command to run."""
    needs = missing(for_tests)
    if not needs:
        return 0
    lacks = "; ".join(n.what for n in needs)
    root = (os.geteuid() if euid is None else euid) == 0
    if not root or shutil.which("apt-get") is None:
        how = (
            FIX
            if shutil.which("apt-get")
            else ("install " + ", ".join(sorted({n.package for n in needs})) + " as root")
        )
        print(
            f"persd: this host lacks {lacks}. Nothing was started. Run: {how}",
            file=sys.stderr,
        )
        return 1
    command = install_command(needs)
    print(f"persd: this host lacks {lacks}; installing: {command[-1]}", file=sys.stderr)
    if dry_run:
        return 0
    proc = subprocess.run(command)
    still = missing(for_tests)
    if proc.returncode != 0 or still:
        print(
            f"persd: installing failed (exit {proc.returncode}); still missing:"
            f" {'; '.join(n.what for n in still) or 'nothing'}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--for", dest="purpose", choices=["run", "test"], default="run")
    parser.add_argument("--dry-run", action="store_true", help="say what would be installed")
    args = parser.parse_args(argv)
    return ensure(args.purpose == "test", dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
