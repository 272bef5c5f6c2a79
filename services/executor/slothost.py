"""The slot host: the root-side supervisor of one sandbox slot, in a process of its own.

``python -m services.executor.slothost FD``, started by :class:`services.executor.pool.Slot` with
one end of a SOCK_SEQPACKET socket pair inherited as file descriptor FD. It leases two uids, one
for the program and one for its judge, creates their cgroups, starts a zygote for each under
bubblewrap, linked by a socket pair, and hands the caller the judge's zygote's two pipes
(SCM_RIGHTS): jobs then go from the caller straight to the judge, with no process in between to
wake up. The slot host only
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


class Sandbox:
    """One bubblewrap sandbox of the slot and its zygote: the program's or the judge's, each with
    its own uid and cgroups."""

    def __init__(self, settings: ExecutorSettings, isolated: bool, judge: bool) -> None:
        self.settings = settings
        self.judge = judge
        self.lease: isolation.UidLease | None = None
        self.cgroups: isolation.SlotCgroups | None = None
        self.proc: subprocess.Popen | None = None
        self.zygote_pid: int | None = None
        if isolated:
            self.lease = isolation.UidLease.acquire(settings)
            self.cgroups = isolation.SlotCgroups(settings, self.lease.uid, judge=judge)
            self.cgroups.create()

    def launch(self, sandbox_dir: Path, seccomp: bytes | None, link: int) -> None:
        s = self.settings
        if self.lease is not None:
            bpf_path = s.runtime_dir / f"seccomp-{os.getpid()}-{int(self.judge)}.bpf"
            bpf_path.write_bytes(seccomp)
            bpf_fd = os.open(bpf_path, os.O_RDONLY)
            bpf_path.unlink()
            nproc = isolation.JUDGE_PROCESSES if self.judge else s.nproc
            try:
                self.proc = subprocess.Popen(
                    isolation.bwrap_argv(s, sandbox_dir, bpf_fd, self.cgroups, judge=self.judge),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    pass_fds=(bpf_fd, link),
                    env={"PATH": "/usr/bin:/bin"},
                    start_new_session=True,
                    preexec_fn=isolation.drop_to_slot(
                        self.cgroups, self.lease.uid, nproc + isolation.INFRA_PROCESSES
                    ),
                )
            finally:
                os.close(bpf_fd)
        else:
            scratch_root = s.runtime_dir / "insecure-scratch"
            scratch_root.mkdir(parents=True, exist_ok=True)
            python = s.python if Path(s.python).is_file() else sys.executable
            self.proc = subprocess.Popen(
                [python, "-s", "-B", str(sandbox_dir / "zygote.py")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                pass_fds=(link,),
                env=isolation.sandbox_env()
                | {"HOME": str(scratch_root), "TMPDIR": str(scratch_root)},
                cwd=str(scratch_root),
                start_new_session=True,
            )

    def config(self, seccomp_job: bytes | None, link: int) -> dict:
        s = self.settings
        config: dict = {"role": "judge" if self.judge else "program", "link": link}
        if self.lease is not None:
            config |= {"isolated": True, "seccomp": seccomp_job.hex()}
            if not self.judge:
                config |= {
                    "scratch_bytes": s.scratch_mb * 1024 * 1024,
                    "oom_control": isolation.OOM_CONTROL,
                }
        else:
            config |= {
                "isolated": False,
                "scratch_bytes": s.scratch_mb * 1024 * 1024,
                "scratch_root": str(s.runtime_dir / "insecure-scratch"),
            }
        return config

    @property
    def pipes(self) -> tuple[int, int]:
        return self.proc.stdin.fileno(), self.proc.stdout.fileno()

    def ready(self) -> None:
        """Wait for the zygote's ``ready``."""
        _job_w, result_r = self.pipes
        ready, _, _ = select.select([result_r], [], [], START_TIMEOUT_S)
        try:
            reply = framing.read_frame(result_r) if ready else None
        except framing.ChannelClosed:
            reply = None
        if not isinstance(reply, dict) or not reply.get("ready"):
            role = "judge" if self.judge else "program"
            raise SandboxUnavailable(f"the {role} sandbox did not start: {reply!r}")
        self.zygote_pid = reply["pid"]

    def close_pipes(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        status = self.proc.poll()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.close_pipes()
        self.proc = None
        if self.cgroups is not None:
            self.cgroups.kill_all()
        if self.lease is not None:
            isolation.kill_uid(self.lease.uid)
        return status

    def close(self) -> None:
        self.stop()
        if self.cgroups is not None:
            self.cgroups.remove()
        if self.lease is not None:
            self.lease.release()


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
        self.starts = 0
        self.seccomp_sandbox = self.seccomp_job = None
        self.program = Sandbox(settings, self.isolated, judge=False)
        try:
            self.judge = Sandbox(settings, self.isolated, judge=True)
        except BaseException:
            self.program.close()
            raise
        if self.isolated:
            self.seccomp_sandbox = isolation.seccomp_program(for_job=False)
            self.seccomp_job = isolation.seccomp_program(for_job=True)
        else:
            self.warning = INSECURE_WARNING.format(missing="; ".join(self.missing))
            print(self.warning, file=sys.stderr, flush=True)
        self.sandbox_dir = isolation.install_sandbox_files(settings.runtime_dir)

    @property
    def lease(self) -> isolation.UidLease | None:
        return self.program.lease

    @property
    def cgroups(self) -> isolation.SlotCgroups | None:
        return self.program.cgroups

    # ------------------------------------------------------------------ sandbox lifecycle

    def start(self) -> tuple[int, int]:
        """Start both sandboxes, linked; returns the caller's ends of the judge's pipes (job in,
        result out): the caller only ever talks to the judge."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            for sandbox, link in ((self.program, ours), (self.judge, theirs)):
                sandbox.launch(self.sandbox_dir, self.seccomp_sandbox, link.fileno())
            for sandbox, link in ((self.program, ours), (self.judge, theirs)):
                framing.write_frame(
                    sandbox.pipes[0], sandbox.config(self.seccomp_job, link.fileno())
                )
        finally:
            ours.close()  # the zygotes hold the link now
            theirs.close()
        self.starts += 1
        try:
            self.program.ready()
            self.judge.ready()
        except SandboxUnavailable:
            self.stop_sandbox()
            raise
        return self.judge.pipes

    def handed_over(self) -> None:
        """The caller has its own copies of the judge's pipes now; ours must go, or the caller
        would never see the end of a zygote that died. Nobody writes to the program's zygote's
        pipes after its config."""
        self.judge.close_pipes()
        self.program.close_pipes()

    def stop_sandbox(self) -> int | None:
        """Kill both sandboxes; returns the program's bwrap's exit status (its zygote's, if it
        ended first)."""
        status = self.program.stop()
        self.judge.stop()
        self.reap()
        return status

    def restart(self, reason: str) -> dict:
        oom_before = self._oom_seen
        if reason == "died" and self.program.proc is not None:
            # bwrap exits with the zygote's status a moment after the zygote's pipes close.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.program.proc.wait(timeout=2)
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
        self.program.close()
        self.judge.close()
        self.reap()

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
        program, judge = self.program, self.judge
        return {
            "uid": program.lease.uid if program.lease else os.geteuid(),
            "judge_uid": judge.lease.uid if judge.lease else os.geteuid(),
            "isolated": self.isolated,
            "starts": self.starts,
            "zygote_pid": program.zygote_pid,
            "sandbox_pid": program.proc.pid if program.proc else None,
            "judge_zygote_pid": judge.zygote_pid,
            "judge_sandbox_pid": judge.proc.pid if judge.proc else None,
            "cgroups": [str(p) for sb in (program, judge) if sb.cgroups for p in sb.cgroups.paths],
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
