"""A real vLLM server on the offline tiny student, for tests.

The tiny model is built once into a cache directory shared by test sessions (reused while its
builder version matches; a file lock serialises concurrent builders). One server per test session
is started on a free port with ``persd student-server``, the production command. Readiness is
proven with a real completion, not only ``/health``: vLLM's CPU engine can pass ``/health`` and
die on the first request.

Use it through the session-scoped ``vllm_server`` fixture::

    def test_x(vllm_server):
        httpx.post(f"{vllm_server.url}/v1/completions", json={"model": vllm_server.model, ...})
        workers.get("student", env=vllm_server.env)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def model_cache_dir() -> Path:
    return Path(os.environ.get("PERSD_TEST_MODEL_CACHE", ROOT / "var" / "cache" / "test-models"))


def tiny_student_path() -> Path:
    """The tiny student, built on first use and reused across sessions."""
    from services.student.tiny_model import BUILDER_VERSION, build_tiny_student, is_built

    cache = model_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"tiny-student-v{BUILDER_VERSION}"
    if is_built(target):
        return target
    with open(cache / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return build_tiny_student(target)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unload_adapters(vllm_url: str) -> None:
    """Unload every LoRA adapter the server has loaded, so a test starts from the base model."""
    data = httpx.get(f"{vllm_url}/v1/models", timeout=10).json()["data"]
    for name in [m["id"] for m in data if m.get("parent")]:
        httpx.post(
            f"{vllm_url}/v1/unload_lora_adapter", json={"lora_name": name}, timeout=10
        ).raise_for_status()


class VllmServer:
    """One vLLM OpenAI-compatible server process with LoRA enabled."""

    def __init__(self, model_path: Path, data_dir: Path, log_dir: Path, **settings) -> None:
        self.model_path = Path(model_path)
        self.data_dir = Path(data_dir)
        self.port = free_port()
        self.log_path = log_dir / f"vllm-{self.port}.log"
        self._settings = settings
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def model(self) -> str:
        """The served base model name; it is also the model's directory (vLLM's default)."""
        return str(self.model_path)

    @property
    def env(self) -> dict[str, str]:
        """Environment for processes that talk to this server (e.g. a student worker)."""
        return {"STUDENT_VLLM_URL": self.url, "STUDENT_MODEL": str(self.model_path)}

    def start(self, timeout: float = 240.0) -> None:
        """Start through ``persd student-server``, the production command (which also loads the
        active adapter once the server is up)."""
        env = os.environ | {
            "STUDENT_MODEL": str(self.model_path),
            "STUDENT_HOST": "127.0.0.1",
            "STUDENT_PORT": str(self.port),
            "PERSD_DATA_DIR": str(self.data_dir),
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        env |= {f"STUDENT_{key.upper()}": str(value) for key, value in self._settings.items()}
        self._log = open(self.log_path, "a")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "student-server"],
            env=env,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # vLLM and its engine-core children die with the group
        )
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                if self.proc is None or self.proc.poll() is not None:
                    raise RuntimeError(f"vLLM server exited during start-up:\n{self.log()}")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        reply = client.post(
                            f"{self.url}/v1/completions",
                            json={
                                "model": self.model,
                                "prompt": "def f(x):\n",
                                "max_tokens": 4,
                                "temperature": 0,
                            },
                        )
                        if reply.status_code == 200 and reply.json()["choices"]:
                            return
                        last = f"probe completion: HTTP {reply.status_code} {reply.text[:300]}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.5)
        raise TimeoutError(f"vLLM server not ready in {timeout}s ({last}):\n{self.log()}")

    def stop(self) -> None:
        from services.student.server import runtime_dir

        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
            except ProcessLookupError:
                pass
        # Engine-core children share the group; make sure none outlive the front end.
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(runtime_dir(self.data_dir, self.port), ignore_errors=True)

    def restart(self, timeout: float = 240.0) -> None:
        """Stop and start again on the same port (runtime-loaded adapters are gone after it)."""
        self.stop()
        self.start(timeout)

    def log(self) -> str:
        if self._log is not None:
            self._log.flush()
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return ""
