"""Real Celery worker processes for tests, started through ``persd worker`` like in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from shared.queues import PINGS
from shared.readiness import QUEUE_OF_KIND
from shared.schemas.messages import Ping

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(
        self,
        service: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.service = service
        self.env = dict(env or {})
        self.log_path = log_dir / f"worker-{service}-{uuid.uuid4().hex[:6]}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        argv = [
            sys.executable,
            "-m",
            "services.cli",
            "worker",
            service,
            "-n",
            f"{service}-{uuid.uuid4().hex[:6]}@%h",
        ]
        if concurrency:
            argv += ["-c", str(concurrency)]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=os.environ | (env or {}),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        spec = PINGS[QUEUE_OF_KIND[self.service]]
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.service} worker exited early:\n{self.log()}")
            try:
                spec.send(Ping(nonce="ready")).get(timeout=2)
                return
            except Exception:  # noqa: BLE001 - not up yet
                continue
        raise TimeoutError(f"{self.service} worker not ready in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()[-5000:]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


class WorkerPool:
    """One running worker per service, started on demand."""

    def __init__(self) -> None:
        self.log_dir = Path(os.environ.get("PERSD_TEST_LOG_DIR", ROOT / "var" / "test-logs"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._running: dict[str, WorkerProcess] = {}

    def get(self, service: str, env: dict[str, str] | None = None) -> WorkerProcess:
        """The running worker for ``service`` if it has exactly ``env`` (the settings on top of
        this process's environment); otherwise a new one with it, stopping the old one."""
        worker = self._running.get(service)
        if worker is not None and worker.env != (env or {}):
            self._running.pop(service).stop()
            worker = None
        if worker is None or worker.proc.poll() is not None:
            worker = WorkerProcess(service, self.log_dir, env)
            try:
                worker.wait_ready()
            except BaseException:
                worker.stop()  # one that never answered must not linger, consuming its queue
                raise
            self._running[service] = worker
        return worker

    def restart(self, service: str, env: dict[str, str] | None = None) -> WorkerProcess:
        if service in self._running:
            self._running.pop(service).stop()
        return self.get(service, env)

    def stop(self, service: str) -> None:
        """Stop the pool's worker for ``service``, if it runs."""
        worker = self._running.pop(service, None)
        if worker is not None:
            worker.stop()

    def stop_all(self) -> None:
        for worker in self._running.values():
            worker.stop()
        self._running.clear()
