"""docker-compose.yml: valid against the Compose specification's schema, and every persd command it
runs (service commands, entrypoints, health checks) is a real `persd` subcommand. No Docker engine
runs here, so this is what can be checked without starting the stack."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from services.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"


def _subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)


def _persd_invocations(compose: dict) -> list[tuple[str, list[str]]]:
    """(service, argv after `persd`) for every place the file runs persd."""
    found = []
    for name, svc in compose["services"].items():
        image = svc.get("image", "")
        if image.startswith("persd") and "command" in svc and "entrypoint" not in svc:
            found.append((name, list(svc["command"])))  # the image's entrypoint is `persd`
        entry = svc.get("entrypoint")
        if entry:
            script = " ".join(entry)
            found += [(name, m.split()) for m in re.findall(r"persd ([a-z-]+(?: [a-z]+)?)", script)]
        test = (svc.get("healthcheck") or {}).get("test", [])
        if len(test) > 2 and test[1] == "persd":
            found.append((name, test[2:]))
    return found


def test_compose_file_matches_the_compose_specification() -> None:
    tool = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    proc = subprocess.run(
        [tool, "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def test_every_persd_command_in_compose_exists() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    invocations = _persd_invocations(compose)
    services = {name for name, _ in invocations}
    # Every service built from our image is covered, plus the migrate entrypoint.
    assert {
        "api",
        "student",
        "executor",
        "teacher",
        "trainer",
        "scheduler",
        "beat",
        "migrate",
        "student-server-cpu",
    } <= services
    known = _subcommands()
    for service, argv in invocations:
        assert argv[0] in known, f"{service}: `persd {argv[0]}` is not a persd command"
        if argv[0] in {"worker", "ping"}:
            assert argv[1] in {"student", "executor", "teacher", "trainer", "scheduler"}, (
                service,
                argv,
            )
    # The commands parse as persd would parse them (flags included).
    parser = build_parser()
    for _service, argv in invocations:
        parser.parse_args(argv)


def test_required_secrets_fail_loudly() -> None:
    text = COMPOSE.read_text()
    assert "${POSTGRES_PASSWORD:?" in text
    compose = yaml.safe_load(text)
    for name in ("api", "student", "executor", "teacher", "trainer", "scheduler", "beat"):
        deps = compose["services"][name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert deps["migrate"]["condition"] == "service_completed_successfully", name


# What the sandbox needs from a container (services/executor/isolation.py): namespaces and
# mounts, dropping to the slot uids, killing a job's tree, unconfined seccomp/AppArmor and the
# host's cgroups.
SANDBOX_KEYS = ("cap_add", "security_opt", "cgroup", "privileged")

# The module each persd command in compose runs, to see what it loads.
ENTRY_MODULES = {
    ("worker", "student"): "services.student.worker",
    ("worker", "teacher"): "services.teacher.worker",
    ("worker", "trainer"): "services.trainer.worker",
    ("worker", "executor"): "services.executor.worker",
    ("worker", "scheduler"): "services.scheduler.worker",
    ("beat",): "services.scheduler.beat",
    ("api",): "services.api.main",
}


def _loads_executor(module: str) -> list[str]:
    """The services.executor modules importing ``module`` loads, in a fresh interpreter."""
    code = (
        "import importlib, sys; importlib.import_module(sys.argv[1]);"
        " print(' '.join(sorted(m for m in sys.modules if m.startswith('services.executor'))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_only_the_executor_has_and_needs_the_sandboxs_capabilities() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    privileged = {name for name, svc in services.items() if any(k in svc for k in SANDBOX_KEYS)}
    assert privileged == {"executor"}
    executor = services["executor"]
    assert executor["command"] == ["worker", "executor"]
    assert set(executor["cap_add"]) == {"SYS_ADMIN", "SETUID", "SETGID", "KILL"}
    assert executor["cgroup"] == "host"
    # ... and needs them: it is the one service whose code runs the sandbox. Every other persd
    # service (the trainer's gate included: it sends programs to the executor's queue) loads no
    # executor module at all.
    checked = set()
    for name, svc in services.items():
        command = tuple(svc.get("command") or ())
        module = ENTRY_MODULES.get(command[:2]) or ENTRY_MODULES.get(command[:1])
        if module is None:
            continue
        checked.add(name)
        loaded = _loads_executor(module)
        if name == "executor":
            assert "services.executor.slothost" in loaded or "services.executor.pool" in loaded
        else:
            assert loaded == [], f"{name} ({module}) loads {loaded}"
    assert {"api", "student", "executor", "teacher", "trainer", "scheduler", "beat"} <= checked


def test_flower_is_an_opt_in_service_without_per_task_events() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    flower = compose["services"]["flower"]
    assert flower["profiles"] == ["ops"]
    assert flower["command"][0] == "flower"
    assert flower["environment"]["PERSD_FLOWER_EVENTS"] == "${FLOWER_EVENTS:-0}"
