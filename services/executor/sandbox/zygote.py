"""The zygotes: pre-warmed interpreters inside the sandboxes, one per role, started by the slot
host (under bwrap, each as its own uid) and linked by a socket pair.

Each imports the prelude (numpy & co.) once; a job is then a clone of it, which costs a
page-table copy instead of an interpreter start and a numpy import. A zygote never runs job code
itself, so every job starts from the same pristine state.

- The **program** zygote (this module's :class:`ProgramZygote`) runs the program: per request of
  the judge's zygote it clones a job into fresh namespaces, confines it, and lets the servant
  (:mod:`servant`) answer the judge's calls. It never sees a test. It enforces the output cap,
  kills the job when asked, and reports how the job ended (exit status, signal, memory, CPU).
- The **judge** zygote (:mod:`judge`) holds the tests, judges, and talks to the caller.

Protocol on fds 0/1 (framing): the slot host sends a config frame and the zygote answers
``ready``; for the judge, the slot host then hands both pipes to the caller, which sends
``{"job": ...}`` frames and reads ``{"result": ...}`` (or ``{"error": ...}``) frames, one per job.
The link between the zygotes carries one JSON datagram per message (see :mod:`judge`).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from typing import NamedTuple

import confine
import framing

SETUP_FAILED = 112
OUTPUT_KEPT = 4096
BACKSTOP_S = 5.0  # past the job's wall clock the judge's zygote has stopped it; this is in case
MAX_MESSAGE = 1 << 16


def receive(link: socket.socket) -> tuple[dict | None, list[int]]:
    """One datagram of the link and the fds it carried; (None, []) when the link closed."""
    data, fds, _flags, _addr = socket.recv_fds(link, MAX_MESSAGE, 1)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


def send(link: socket.socket, message: dict, fds: tuple[int, ...] = ()) -> None:
    data = json.dumps(message, separators=(",", ":")).encode()
    if fds:
        socket.send_fds(link, [data], list(fds))
    else:
        link.send(data)


class Spare(NamedTuple):
    """A job process cloned and confined ahead of its job, waiting on ``go`` for it."""

    pid: int
    go: socket.socket
    out_r: int
    ready_r: int
    scratch: str | None


class ProgramZygote:
    def __init__(self, link: socket.socket, config: dict) -> None:
        self.link = link
        self.isolated = bool(config["isolated"])
        self.seccomp = bytes.fromhex(config.get("seccomp", ""))
        self.scratch_bytes = int(config["scratch_bytes"])
        self.scratch_root = config.get("scratch_root")
        self.oom_control = config.get("oom_control")
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.oom_before = 0

    def serve(self) -> None:
        self.spare = self._spawn()
        while True:
            request, fds = receive(self.link)
            if request is None:
                return
            if "run" not in request or len(fds) != 1:
                for fd in fds:  # a stop for a job that already ended
                    os.close(fd)
                continue
            send(self.link, self.run(request["run"], fds[0]))
            # The next job's process is cloned and confined now, while the judge assembles this
            # job's verdict and the caller sends the next: off the next job's critical path.
            self.spare = self._spawn()

    def _spawn(self) -> Spare:
        scratch = tempfile.mkdtemp(dir=self.scratch_root) if not self.isolated else None
        out_r, out_w = os.pipe()
        ready_r, ready_w = os.pipe()
        go, go_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = confine.clone_into_namespaces(confine.JOB_NAMESPACES if self.isolated else 0)
        if pid == 0:
            try:
                self._enter_job(go_child.fileno(), out_w, ready_w, scratch)
            except BaseException as exc:  # noqa: BLE001 - reported in the job's output
                os.write(2, f"persd zygote: job setup failed: {exc!r}\n".encode())
            finally:
                os._exit(SETUP_FAILED)
        for fd in (out_w, ready_w):
            os.close(fd)
        go_child.close()
        return Spare(pid, go, out_r, ready_r, scratch)

    def run(self, run: dict, channel: int) -> dict:
        limits = run["limits"]
        spare, self.spare = self.spare, None
        self.oom_before = self._oom_kills()
        started = time.monotonic()
        try:
            try:
                socket.send_fds(spare.go, [json.dumps(limits).encode()], [channel])
            except OSError:
                pass  # the spare died: the job is reported as not started
            finally:
                os.close(channel)
                spare.go.close()
            killed, status, usage, output = self._supervise(
                spare.pid, run, limits, spare.out_r, started
            )
            os.set_blocking(spare.ready_r, False)
            try:
                set_up = os.read(spare.ready_r, 1) == b"1"
            except BlockingIOError:
                set_up = False
        finally:
            os.close(spare.out_r)
            os.close(spare.ready_r)
            if spare.scratch is not None:
                shutil.rmtree(spare.scratch, ignore_errors=True)
        detail = output.decode("utf-8", "replace")
        end = self._end(killed, status, usage, limits) if set_up else None
        return {
            "token": run["token"],
            "end": end,
            "output": detail,
            "oom": self._oom_kills() > self.oom_before,
        }

    # ------------------------------------------------------------------ inside the job

    def _enter_job(self, go: int, out_w: int, ready_w: int, scratch) -> None:
        """Confine a fresh clone, wait for its job (limits and the channel to the judge), and
        hand it to the servant."""
        confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
        if self.isolated:
            # Our /proc files are root-owned while non-dumpable; the job must write its own id
            # maps and oom score, then it stays dumpable (only its own processes can see it).
            confine.prctl(confine.PR_SET_DUMPABLE, 1)
            confine.map_ids(self.uid, self.gid)
            confine.mount(
                "tmpfs",
                "/scratch",
                "tmpfs",
                confine.MS_NOSUID | confine.MS_NODEV,
                f"size={self.scratch_bytes},mode=0700",
            )
            os.mkdir("/scratch/tmp", 0o700)
            os.mkdir("/scratch/shm", 0o700)
            confine.mount("/scratch/shm", "/dev/shm", None, confine.MS_BIND, None)
            with open("/proc/self/oom_score_adj", "w") as f:
                f.write("1000")  # under memory pressure the job dies, not the zygote
            workdir = "/scratch"
        else:
            os.environ["TMPDIR"] = os.environ["HOME"] = scratch
            workdir = scratch
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        os.dup2(go, 3, inheritable=False)
        os.dup2(ready_w, 4, inheritable=False)
        os.closerange(5, 65536)  # the link, the zygote's pipes
        os.chdir(workdir)
        waiting = socket.socket(fileno=3)
        data, fds, _flags, _addr = socket.recv_fds(waiting, MAX_MESSAGE, 1)
        waiting.detach()  # fd 3 becomes the channel below
        if not data or len(fds) != 1:
            os._exit(SETUP_FAILED)  # the zygote gave up on this spare
        limits = json.loads(data)
        # Not inherited across exec: a program the job starts cannot speak to the judge.
        os.dup2(fds[0], 3, inheritable=False)
        os.close(fds[0])
        os.write(4, b"1")  # from here on, a failure is the program's
        os.close(4)
        address_space = confine.vm_size() + limits["memory_mb"] * 1024 * 1024
        confine.set_rlimits(limits, address_space)
        if self.isolated:
            confine.drop_capabilities()
            confine.load_seccomp(self.seccomp)
        import servant  # imported by the zygote already: this is a dictionary lookup

        servant.serve(3)

    # ------------------------------------------------------------------ supervising it

    def _supervise(self, pid, run, limits, out_r, started):
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (out_r, pidfd, self.link.fileno()):
            poller.register(fd, select.POLLIN)
        deadline = started + float(limits["max_job_s"]) + BACKSTOP_S
        output = bytearray()
        output_total = 0
        killed: str | None = None
        exited = False
        try:
            while not exited:
                now = time.monotonic()
                if killed is None and now >= deadline:
                    killed = "wall"
                    os.kill(pid, signal.SIGKILL)
                wait = 1.0 if killed else max(0.0, deadline - now)
                for fd, _event in poller.poll(wait * 1000):
                    if fd == pidfd:
                        exited = True
                    elif fd == out_r:
                        data = os.read(fd, 65536)
                        if not data:
                            poller.unregister(fd)
                            continue
                        output_total += len(data)
                        if len(output) < OUTPUT_KEPT:
                            output += data[: OUTPUT_KEPT - len(output)]
                        if output_total > limits["output_bytes"] and killed is None:
                            killed = "output"
                            os.kill(pid, signal.SIGKILL)
                    else:
                        request, fds = receive(self.link)
                        for extra in fds:
                            os.close(extra)
                        if request is None:
                            os.kill(pid, signal.SIGKILL)
                            sys.exit(0)  # the judge's zygote is gone: so is this sandbox
                        if request.get("stop") == run["token"] and killed is None:
                            killed = "stopped"
                            os.kill(pid, signal.SIGKILL)
            _, status, usage = os.wait4(pid, 0)
        finally:
            os.close(pidfd)
        if not self.isolated:
            # Without a pid namespace the job's leftovers are found by process group only.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        os.set_blocking(out_r, False)
        while len(output) < OUTPUT_KEPT:  # what the job wrote just before it ended
            try:
                data = os.read(out_r, OUTPUT_KEPT - len(output))
            except BlockingIOError:
                break
            if not data:
                break
            output += data
        return killed, status, usage, bytes(output)

    def _end(self, killed, status, usage, limits) -> dict:
        if killed is not None:
            return {"kind": killed}
        if os.WIFEXITED(status):
            return {"kind": "exit", "code": os.WEXITSTATUS(status)}
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:
            # Not ours, and nothing inside the job may signal its pid 1: the kernel did it, for
            # memory (the slot host can tell from the cgroup) or at the CPU limit. Accounted CPU
            # time lags the scheduler's by up to a tick per ~10, hence the margin.
            if self._oom_kills() > self.oom_before:
                return {"kind": "memory"}
            if usage.ru_utime + usage.ru_stime >= 0.75 * int(limits["cpu_s"] + 0.999):
                return {"kind": "cpu"}
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return {"kind": "signal", "signal": name}

    def _oom_kills(self) -> int:
        if not self.oom_control:
            return 0
        with open(self.oom_control) as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
        return 0


def main() -> None:
    # The control channel moves off 0/1 so that nothing printed by accident can corrupt it.
    ctl_in = os.dup(0)
    ctl_out = os.dup(1)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    config = framing.read_frame(ctl_in)
    link = socket.socket(fileno=os.dup(int(config["link"])))
    os.close(int(config["link"]))
    if config["isolated"]:
        # Not dumpable: even with the slot's uid, no job can open /proc/<zygote>/mem.
        confine.prctl(confine.PR_SET_DUMPABLE, 0)
    if config["role"] == "judge":
        import judge

        role = judge.JudgeZygote(ctl_in, ctl_out, link, config)
    else:
        import harness  # noqa: F401 - the prelude, imported once for every job
        import servant  # noqa: F401

        role = ProgramZygote(link, config)
    framing.write_frame(
        ctl_out,
        {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "python": sys.version.split()[0]},
    )
    import gc

    gc.freeze()
    role.serve()


if __name__ == "__main__":
    main()
