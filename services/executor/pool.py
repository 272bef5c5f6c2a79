"""Caller-side handles: :class:`Slot` (one sandbox slot) and :class:`ExecutorPool` (N of them).

A slot's jobs go straight from the caller to its zygote over two pipes that the slot host handed
over; the slot host is only called on to restart a sandbox that died or hung. :meth:`ExecutorPool.map`
drives all slots from the calling thread with one ``poll``: per job that is one wake-up of the
zygote and one of the caller, which is what keeps throughput up on a busy host.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from pydantic import ValidationError

from services.executor.sandbox import framing
from services.executor.schemas import ExecutionResult, Job
from services.executor.settings import ExecutorSettings, get_executor_settings
from shared.enums import ExecutionOutcome
from shared.errors import InvalidInput, SandboxUnavailable

log = logging.getLogger("persd.executor")
ROOT = Path(__file__).resolve().parents[2]
MAX_MESSAGE = 1 << 20
HARD_GRACE_S = 10.0  # past a job's own wall limit, its zygote is considered hung


class Slot:
    """One sandbox slot. One job at a time: :meth:`run` holds a lock; the pool's multiplexer uses
    :meth:`begin` / :meth:`finish` while it owns the slot."""

    def __init__(self, settings: ExecutorSettings | None = None) -> None:
        self.settings = settings or get_executor_settings()
        self._lock = threading.Lock()
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "services.executor.slothost", str(theirs.fileno())],
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            cwd=str(ROOT),
            env=env,
        )
        theirs.close()
        self._job_w = self._result_r = -1
        self._deadline = 0.0
        self.info: dict = {}
        self._control.send(self.settings.model_dump_json().encode())
        self._receive_sandbox(self._ask(None))
        if self.info.get("warning"):
            log.error("%s", self.info["warning"])

    # ------------------------------------------------------------------ slot host

    def _ask(self, request: dict | None) -> tuple[dict, list[int]]:
        try:
            if request is not None:
                self._control.send(json.dumps(request).encode())
            data, fds, _flags, _addr = socket.recv_fds(self._control, MAX_MESSAGE, 2)
        except OSError:
            data, fds = b"", []
        if not data:
            self._proc.wait()
            raise SandboxUnavailable(
                f"the executor's slot host exited with status {self._proc.returncode}"
                " (see its stderr)"
            )
        reply = json.loads(data)
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            self._proc.wait()
            raise SandboxUnavailable(reply["message"])
        return reply, fds

    def _receive_sandbox(self, answer: tuple[dict, list[int]]) -> dict:
        reply, fds = answer
        for fd in (self._job_w, self._result_r):
            if fd >= 0:
                os.close(fd)
        self._job_w, self._result_r = fds
        self.info = {k: v for k, v in reply.items() if k not in ("crash", "error_type", "message")}
        return reply

    @property
    def isolated(self) -> bool:
        return bool(self.info.get("isolated"))

    def stats(self) -> dict:
        with self._lock:
            reply, _ = self._ask({"op": "stats"})
            return reply

    # ------------------------------------------------------------------ jobs

    def fileno(self) -> int:
        return self._result_r

    def begin(self, job: Job) -> None:
        limits = self.settings.job_limits(job.timeout_s)
        wall = float(limits["max_job_s"])
        self._deadline = time.monotonic() + wall + min(HARD_GRACE_S, 1.0 + wall)
        # A zygote that died makes this write fail; finish() reports it.
        with contextlib.suppress(OSError):
            framing.write_frame(self._job_w, {"job": job.wire(limits)})

    @property
    def deadline(self) -> float:
        return self._deadline

    def finish(self, hung: bool = False) -> ExecutionResult:
        """The result of the job begun last (call when :meth:`fileno` is readable, or with
        ``hung`` once :attr:`deadline` passed)."""
        reply = None
        if not hung:
            try:
                reply = framing.read_frame(self._result_r)
            except (framing.ChannelClosed, OSError):
                reply = None
        if reply is None:
            crash = self._receive_sandbox(
                self._ask({"op": "restart", "reason": "hung" if hung else "died"})
            )
            return _crash_result(crash["crash"], crash["error_type"], crash["message"])
        if "error" in reply:
            raise InvalidInput(f"tests: {reply['message']}")
        return ExecutionResult.model_validate(reply["result"])

    def run(self, job: Job) -> ExecutionResult:
        with self._lock:
            self.begin(job)
            ready = _wait([self._result_r], self._deadline)
            return self.finish(hung=not ready)

    def close(self) -> None:
        with self._lock:
            if self._proc is None:
                return
            self._control.close()  # the slot host tears the sandbox down and exits
            for fd in (self._job_w, self._result_r):
                if fd >= 0:
                    os.close(fd)
            self._job_w = self._result_r = -1
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


def _wait(fds: list[int], deadline: float) -> set[int]:
    """The fds that became readable (or hung up) before ``deadline``. poll, not select: callers
    such as a vLLM-driving evaluation may hold more than FD_SETSIZE descriptors."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    timeout_ms = max(0.0, deadline - time.monotonic()) * 1000
    return {fd for fd, _event in poller.poll(timeout_ms)}


def _crash_result(outcome: str, error_type: str, feedback: str) -> ExecutionResult:
    return ExecutionResult(
        outcome=ExecutionOutcome(outcome),
        test_results=[],
        feedback=feedback,
        error_type=error_type,
        duration_ms=0.0,
    )


class ExecutorPool:
    """``workers`` slots; :meth:`run`, :meth:`submit` and :meth:`map` are safe to call from many
    threads (each job holds one slot at a time)."""

    def __init__(
        self, workers: int | None = None, settings: ExecutorSettings | None = None
    ) -> None:
        self.settings = settings or get_executor_settings()
        self.workers = workers or self.settings.slots
        if self.workers < 1:
            raise InvalidInput("workers must be at least 1")
        self._idle: queue.Queue[Slot] = queue.Queue()
        self._all: list[Slot] = []
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()
        # Slots start in parallel: each imports numpy once in its zygote.
        with ThreadPoolExecutor(self.workers) as starter:
            futures = [starter.submit(Slot, self.settings) for _ in range(self.workers)]
            errors = []
            for future in futures:
                try:
                    self._all.append(future.result())
                except Exception as exc:  # noqa: BLE001 - reported after the others are closed
                    errors.append(exc)
        if errors:
            self.close()
            raise errors[0]
        for slot in self._all:
            self._idle.put(slot)

    @property
    def slots(self) -> list[Slot]:
        return list(self._all)

    def run_job(self, job: Job) -> ExecutionResult:
        """Run one job on the next free slot, in the calling thread."""
        slot = self._idle.get()
        try:
            return slot.run(job)
        finally:
            self._idle.put(slot)

    def run(
        self, code: str, tests, entry_point: str, *, timeout_s: float | None = None
    ) -> ExecutionResult:
        return self.run_job(make_job(code, tests, entry_point, timeout_s))

    def submit(self, job: Job) -> Future[ExecutionResult]:
        with self._executor_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.workers, thread_name_prefix="persd-executor"
                )
        return self._executor.submit(self.run_job, job)

    def map(
        self, jobs: Iterable[Job], on_done: Callable[[ExecutionResult], None] | None = None
    ) -> Iterator[ExecutionResult]:
        """Results in the order of ``jobs``; ``on_done`` is called as each one finishes."""
        pending = list(jobs)
        results: dict[int, ExecutionResult] = {}
        busy: dict[int, tuple[Slot, int]] = {}  # result fd -> (slot, job index)
        started = yielded = 0
        try:
            while yielded < len(pending):
                while started < len(pending) and len(busy) < self.workers:
                    try:
                        slot = self._idle.get(block=not busy)
                    except queue.Empty:
                        break
                    slot.begin(pending[started])
                    busy[slot.fileno()] = (slot, started)
                    started += 1
                if busy:
                    ready = _wait(list(busy), min(slot.deadline for slot, _ in busy.values()))
                    now = time.monotonic()
                    for fd in list(busy):
                        slot, index = busy[fd]
                        if fd in ready or now >= slot.deadline:
                            del busy[fd]
                            try:
                                results[index] = slot.finish(hung=fd not in ready)
                            finally:
                                self._idle.put(slot)
                            if on_done is not None:
                                on_done(results[index])
                while yielded in results:
                    yield results.pop(yielded)
                    yielded += 1
        finally:
            # An abandoned iteration still lets in-flight jobs end before their slots go back.
            for slot, _ in busy.values():
                with contextlib.suppress(Exception):
                    slot.finish()
                self._idle.put(slot)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for slot in self._all:
            slot.close()
        self._all = []

    def __enter__(self) -> ExecutorPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def make_job(code: str, tests, entry_point: str, timeout_s: float | None = None) -> Job:
    """A :class:`Job` from loose arguments; ``tests`` may be a TestSuite model or its JSON dict."""
    try:
        if not isinstance(tests, dict):
            tests = tests.model_dump(mode="json")
        return Job(code=code, tests=tests, entry_point=entry_point, timeout_s=timeout_s)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(job)'}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"invalid job: {problems}") from None
