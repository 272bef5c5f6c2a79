"""The slot host: the root-side supervisor of one sandbox slot, in a process of its own.

``python -m services.executor.slothost FD``, started by :class:`services.executor.pool.Slot` with
one end of a SOCK_SEQPACKET socket pair inherited as file descriptor FD. It leases the slot's uid, creates its cgroups, starts
the zygote under bubblewrap and hands the caller the zygote's two pipes (SCM_RIGHTS): jobs then go
from the caller straight to the zygote, with no process in between to wake up. The slot host only
acts when asked: it restarts a sandbox that died or hung (saying whether the memory cgroup killed
it) and reports stats. It is a process of its own, not a thread of the caller, because it must
fork with a ``preexec_fn`` (unsafe in a threaded process), be a child subreaper, and reap.

Messages (JSON, one per datagram): settings -> ``{"ready": ...}`` + fds, or ``{"error": ...}``;
``{"op": "restart", "reason": "died"|"hung"}`` -> ``{"crash": ...}`` + new fds;
``{"op": "stats"}`` -> stats. The socket closing ends the slot.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import socket
import subprocess
import sys
from pathlib import Path

from services.executor import isolation
from services.executor.sandbox import framing
from services.executor.settings import ExecutorSettings
from shared.errors import SandboxUnavailable

PR_SET_CHILD_SUBREAPER = 36
START_TIMEOUT_S = 60.0
MAX_MESSAGE = 1 << 20

INSECURE_WARNING = (
    "persd executor: INSECURE MODE: the host lacks {missing}; EXECUTOR_ALLOW_INSECURE is set, so"
    " untrusted code runs WITHOUT a sandbox (no separate uid, no namespaces, no cgroups, no"
    " seccomp; only rlimits and timeouts). Never do this with code you did not write."
)


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl {option}")


class SlotHost:
    def __init__(self, settings: ExecutorSettings) -> None:
        self.settings = settings
        self.missing = isolation.probe(settings)
        self.isolated = not self.missing
        self.warning = ""
        if self.missing and not settings.allow_insecure:
            raise SandboxUnavailable(
                "refusing to run untrusted code: this host lacks "
                + "; ".join(self.missing)
                + " (set EXECUTOR_ALLOW_INSECURE=true only for code you trust)"
            )
        self.lease: isolation.UidLease | None = None
        self.cgroups: isolation.SlotCgroups | None = None
        self.sandbox: subprocess.Popen | None = None
        self.starts = 0
        self.zygote_pid: int | None = None
        if self.isolated:
            self.lease = isolation.UidLease.acquire(settings)
            self.cgroups = isolation.SlotCgroups(settings, self.lease.uid)
            self.cgroups.create()
            self.seccomp_sandbox = isolation.seccomp_program(for_job=False)
            self.seccomp_job = isolation.seccomp_program(for_job=True)
        else:
            self.warning = INSECURE_WARNING.format(missing="; ".join(self.missing))
            print(self.warning, file=sys.stderr, flush=True)
        self.sandbox_dir = isolation.install_sandbox_files(settings.runtime_dir)

    # ------------------------------------------------------------------ sandbox lifecycle

    def start(self) -> tuple[int, int]:
        """Start bwrap + zygote; returns the caller's ends of its pipes (job in, result out)."""
        s = self.settings
        if self.isolated:
            bpf_path = s.runtime_dir / f"seccomp-{os.getpid()}.bpf"
            bpf_path.write_bytes(self.seccomp_sandbox)
            bpf_fd = os.open(bpf_path, os.O_RDONLY)
            bpf_path.unlink()
            try:
                self.sandbox = subprocess.Popen(
                    isolation.bwrap_argv(s, self.sandbox_dir, bpf_fd, self.cgroups),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    pass_fds=(bpf_fd,),
                    env={"PATH": "/usr/bin:/bin"},
                    start_new_session=True,
                    preexec_fn=isolation.drop_to_slot(
                        self.cgroups, self.lease.uid, s.nproc + isolation.INFRA_PROCESSES
                    ),
                )
            finally:
                os.close(bpf_fd)
            config = {
                "isolated": True,
                "seccomp": self.seccomp_job.hex(),
                "scratch_bytes": s.scratch_mb * 1024 * 1024,
                "oom_control": isolation.OOM_CONTROL,
            }
        else:
            scratch_root = s.runtime_dir / "insecure-scratch"
            scratch_root.mkdir(parents=True, exist_ok=True)
            python = s.python if Path(s.python).is_file() else sys.executable
            self.sandbox = subprocess.Popen(
                [python, "-s", "-B", str(self.sandbox_dir / "zygote.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=isolation.sandbox_env()
                | {"HOME": str(scratch_root), "TMPDIR": str(scratch_root)},
                cwd=str(scratch_root),
                start_new_session=True,
            )
            config = {
                "isolated": False,
                "scratch_bytes": s.scratch_mb * 1024 * 1024,
                "scratch_root": str(scratch_root),
            }
        self.starts += 1
        job_w, result_r = self.sandbox.stdin.fileno(), self.sandbox.stdout.fileno()
        framing.write_frame(job_w, config)
        ready, _, _ = select.select([result_r], [], [], START_TIMEOUT_S)
        try:
            reply = framing.read_frame(result_r) if ready else None
        except framing.ChannelClosed:
            reply = None
        if not isinstance(reply, dict) or not reply.get("ready"):
            self.stop_sandbox()
            raise SandboxUnavailable(f"the sandbox did not start: {reply!r}")
        self.zygote_pid = reply["pid"]
        return job_w, result_r

    def handed_over(self) -> None:
        """The caller has its own copies of the pipes now; ours must go, or the caller would
        never see the end of a zygote that died."""
        self.sandbox.stdin.close()
        self.sandbox.stdout.close()

    def stop_sandbox(self) -> int | None:
        """Kill the sandbox; returns bwrap's exit status (the zygote's, if it ended first)."""
        if self.sandbox is None:
            return None
        status = self.sandbox.poll()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.sandbox.pid, signal.SIGKILL)
        self.sandbox.wait()
        for stream in (self.sandbox.stdin, self.sandbox.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.sandbox = None
        if self.cgroups is not None:
            self.cgroups.kill_all()
        if self.lease is not None:
            isolation.kill_uid(self.lease.uid)
        self.reap()
        return status

    def restart(self, reason: str) -> dict:
        oom_before = self._oom_seen
        if reason == "died" and self.sandbox is not None:
            # bwrap exits with the zygote's status a moment after the zygote's pipes close.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.sandbox.wait(timeout=2)
        status = self.stop_sandbox()
        oom = self.cgroups is not None and self.cgroups.oom_kills() > oom_before
        if oom and status in (None, 128 + signal.SIGKILL, -signal.SIGKILL):
            # Nothing inside the sandbox may kill the zygote; the memory cgroup's OOM killer can.
            crash = (
                "resource_limit",
                "MemoryError",
                f"memory limit of {self.settings.memory_mb} MiB exceeded",
            )
        elif reason == "hung":
            crash = ("sandbox_error", "SandboxError", "the sandbox stopped responding")
        else:
            crash = ("sandbox_error", "SandboxError", "the sandbox died")
        return {"crash": crash[0], "error_type": crash[1], "message": f"{crash[1]}: {crash[2]}"}

    @property
    def _oom_seen(self) -> int:
        return getattr(self, "_oom_at_start", 0)

    def mark_started(self) -> None:
        self._oom_at_start = self.cgroups.oom_kills() if self.cgroups else 0

    def close(self) -> None:
        self.stop_sandbox()
        if self.cgroups is not None:
            self.cgroups.remove()
        if self.lease is not None:
            self.lease.release()

    def reap(self) -> None:
        """We are a child subreaper: sandbox processes orphaned by a dying bwrap come to us, and
        unreaped they would keep counting against the slot uid's process limit."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def stats(self) -> dict:
        return {
            "uid": self.lease.uid if self.lease else os.geteuid(),
            "isolated": self.isolated,
            "starts": self.starts,
            "zygote_pid": self.zygote_pid,
            "sandbox_pid": self.sandbox.pid if self.sandbox else None,
            "cgroups": [str(p) for p in self.cgroups.paths] if self.cgroups else [],
        }


def _send(sock: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def _fresh_sandbox(host: SlotHost) -> tuple[int, int]:
    fds = host.start()
    host.mark_started()
    return fds


def serve(sock: socket.socket) -> int:
    try:
        settings = ExecutorSettings.model_validate_json(sock.recv(MAX_MESSAGE))
    except (OSError, ValueError):
        return 0
    try:
        host = SlotHost(settings)
        fds = _fresh_sandbox(host)
    except SandboxUnavailable as exc:
        _send(sock, {"error": "sandbox_unavailable", "message": exc.message})
        return 3
    except OSError as exc:  # a cgroup or runtime directory we could not create
        _send(
            sock,
            {"error": "sandbox_unavailable", "message": f"the sandbox could not be set up: {exc}"},
        )
        return 3
    try:
        _send(sock, {"ready": True, "warning": host.warning} | host.stats(), fds)
        host.handed_over()
        while True:
            data = sock.recv(MAX_MESSAGE)
            if not data:
                return 0
            request = json.loads(data)
            if request.get("op") == "restart":
                crash = host.restart(request.get("reason", "died"))
                try:
                    fds = _fresh_sandbox(host)
                except SandboxUnavailable as exc:
                    _send(sock, {"error": "sandbox_unavailable", "message": exc.message})
                    return 3
                _send(sock, crash | host.stats(), fds)
                host.handed_over()
            else:
                _send(sock, host.stats())
    finally:
        host.close()


def main() -> int:
    # No PR_SET_PDEATHSIG: it fires when the *thread* that started us exits, and pools start
    # slots from short-lived threads. A caller that dies closes our socket, which ends us.
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    sock = socket.socket(fileno=int(sys.argv[1]))
    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    return serve(sock)


if __name__ == "__main__":
    sys.exit(main())
