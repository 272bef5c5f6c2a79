"""The trainer is a service of its own: it reaches the executor and the student through queues
and HTTP, never through their code, so a training host needs neither a sandbox nor the
student's internals."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("services.executor", "services.student")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_trainer_module_imports_executor_or_student_code() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in sorted((ROOT / "services" / "trainer").glob("*.py"))
        for name in _imports(path)
        if name.startswith(FORBIDDEN)
    }
    assert offenders == set()


def test_loading_every_trainer_module_loads_none_of_theirs() -> None:
    """The same, transitively (through shared/ too), in a fresh interpreter."""
    modules = [f"services.trainer.{p.stem}" for p in (ROOT / "services" / "trainer").glob("*.py")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(' '.join(sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == []
