"""`persd preflight` (run by `make run`): uses a Redis that answers, starts a local one if it can,
and otherwise says how to get one."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _preflight(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "preflight"],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_uses_the_running_redis(tmp_path) -> None:
    proc = _preflight({"PERSD_DATA_DIR": str(tmp_path), "API_PORT": "8123"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        "persd is starting. Dashboard: http://127.0.0.1:8123/  (Ctrl-C stops everything)"
    )


def test_starts_a_local_redis_when_none_answers(tmp_path) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = _preflight({"PERSD_DATA_DIR": str(tmp_path), "REDIS_URL": url})
    try:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith(f"started a local redis-server on port {port}")
        assert redis.Redis.from_url(url).ping()
    finally:
        redis.Redis.from_url(url).shutdown(nosave=True)


def test_says_how_to_get_redis_when_it_cannot_start_one(tmp_path) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    bin_dir = os.path.dirname(sys.executable)  # python only: no redis-server on this PATH
    env = {"PERSD_DATA_DIR": str(tmp_path), "REDIS_URL": url, "PATH": bin_dir}
    proc = _preflight(env | {"EXECUTOR_BWRAP": shutil.which("bwrap")})  # the sandbox is there
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"persd: no Redis answers at REDIS_URL={url}. Start one (Debian: `apt-get install "
        "redis-server`; Docker: `docker run -p 6379:6379 redis:7`) or point REDIS_URL at yours."
    )


# --- host packages: the sandbox's bubblewrap, hidden from PATH ----------------------------------

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534
LACKS = "persd: this host lacks bubblewrap ('bwrap', the executor's sandbox)"


def _path_without_bwrap(tmp_path: Path, tools: tuple[str, ...]) -> str:
    """A PATH holding only ``tools`` (links to the real ones): no bwrap on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in tools:
        real = shutil.which(
            tool, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        )
        assert real, tool
        (bin_dir / tool).symlink_to(real)
    bin_dir.chmod(0o755)
    tmp_path.chmod(0o755)
    return str(bin_dir)


def _as_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_as_root_a_host_without_bubblewrap_gets_it_installed(tmp_path) -> None:
    """The decision, without running apt-get here: root with apt-get installs exactly what is
    missing (the same code path runs the command without --dry-run)."""
    assert os.geteuid() == 0, "the suite runs as root (the sandbox needs it)"
    path = _path_without_bwrap(tmp_path, ("apt-get", "sh"))
    proc = subprocess.run(
        ["/usr/bin/python3", "-m", "services.sysdeps", "--dry-run"],
        cwd=ROOT,
        env={"PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == (
        f"{LACKS}; installing: apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get"
        " install -y -qq bubblewrap >/dev/null"
    )


def test_with_every_package_present_the_check_is_silent() -> None:
    proc = subprocess.run(
        ["/usr/bin/python3", "-m", "services.sysdeps", "--for", "test"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_persd_preflight_without_bubblewrap_stops_and_names_the_command(tmp_path) -> None:
    path = _path_without_bwrap(tmp_path, ("sh",))  # no apt-get either: say what to install
    proc = _preflight({"PERSD_DATA_DIR": str(tmp_path / "data"), "PATH": path})
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == f"{LACKS}. Nothing was started. Run: install bubblewrap as root"


def test_make_run_as_a_user_stops_before_starting_anything() -> None:
    """`make run` on a fresh copy, as an unprivileged user, without bubblewrap: it prints the one
    command and stops before the virtualenv, the model, migrations or honcho."""
    tmp_path = Path(tempfile.mkdtemp(prefix="persd-fresh-"))  # pytest's is root's only
    try:
        _make_run_as_nobody(tmp_path)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _make_run_as_nobody(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    (clone / "services").mkdir(parents=True)
    for name in ("Makefile", "Procfile", "pyproject.toml", "constraints.txt"):
        shutil.copy(ROOT / name, clone / name)
    for name in ("__init__.py", "sysdeps.py"):
        shutil.copy(ROOT / "services" / name, clone / "services" / name)
    for p in [clone, *clone.rglob("*")]:  # plain copies only: chmod follows links
        p.chmod(0o777 if p.is_dir() else 0o666)
    path = _path_without_bwrap(tmp_path, ("make", "sh", "apt-get", "cat"))
    (Path(path) / "python3").symlink_to("/usr/bin/python3")  # not the pyenv shim under /root
    proc = subprocess.run(
        ["make", "run"],
        cwd=clone,
        env={"PATH": path, "HOME": str(clone)},
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_as_nobody,
    )
    assert proc.returncode != 0
    assert f"{LACKS}. Nothing was started. Run: sudo make system-deps" in proc.stderr
    assert sorted(p.name for p in clone.iterdir()) == sorted(
        ["Makefile", "Procfile", "pyproject.toml", "constraints.txt", "services"]
    )  # no .venv, no var/
