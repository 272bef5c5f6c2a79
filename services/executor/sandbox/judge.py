"""The judge's zygote: holds the tests, judges each job in a fork of itself, and answers the caller.

Runs in a sandbox of its own, as the slot's second uid, with no writable mount at all. Per job it
builds (or reuses) the plan, makes the job's channel (a socket pair), sends one end to the
program's zygote with the program's limits, and forks the judge, which runs the tests
(:mod:`trial`) calling the program through the other end. The judge's records come here over a
pipe; this process enforces the per-test and wall-clock deadlines (stopping both sides), learns
from the program's zygote how the program ended, and assembles the result (:mod:`verdict`).

Link messages (JSON datagrams): to the program's zygote ``{"run": {"limits", "token"}}`` with the
channel's fd, and ``{"stop": token}``; from it ``{"token", "end", "output", "oom"}``.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import mmap
import os
import select
import signal
import socket
import sys
import time

import confine
import framing
import harness
import trial
import verdict
import zygote

SHM_SIZE = 64 * 1024
PLAN_CACHE = 512
RECORD_PIPE_BYTES = 1 << 20  # the default pipe-max-size
JUDGE_NPROC = 8  # the judge starts nothing; a few for the interpreter's own needs


class JudgeZygote:
    def __init__(self, ctl_in: int, ctl_out: int, link: socket.socket, config: dict) -> None:
        self.ctl_in = ctl_in
        self.ctl_out = ctl_out
        self.link = link
        self.isolated = bool(config["isolated"])
        self.seccomp = bytes.fromhex(config.get("seccomp", ""))
        self.plans: collections.OrderedDict[str, harness.Plan] = collections.OrderedDict()
        # Shared with every judge (MAP_SHARED survives the fork): check-format progress, read
        # after a timeout to say which assertion was running.
        self.shm = mmap.mmap(-1, SHM_SIZE)

    def serve(self) -> None:
        while True:
            try:
                request = framing.read_frame(self.ctl_in)
            except framing.ChannelClosed:
                return
            framing.write_frame(self.ctl_out, self.handle(request["job"]))

    def plan_for(self, tests: dict, entry_point: str) -> harness.Plan:
        key = json.dumps([tests, entry_point], sort_keys=True)
        plan = self.plans.get(key)
        if plan is None:
            plan = harness.build_plan(tests, entry_point)
            self.plans[key] = plan
            if len(self.plans) > PLAN_CACHE:
                self.plans.popitem(last=False)
        else:
            self.plans.move_to_end(key)
        return plan

    def handle(self, job: dict) -> dict:
        try:
            plan = self.plan_for(job["tests"], job["entry_point"])
        except harness.InvalidTests as exc:
            return {"error": "invalid_tests", "message": str(exc)}
        job = dict(job, token=os.urandom(16).hex())
        limits = job["limits"]
        n = min(len(plan.sites), SHM_SIZE)
        self.shm[:n] = bytes(n)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        started = time.monotonic()
        # The program starts first: its clone and the judge's fork then overlap.
        with theirs:
            zygote.send(self.link, {"run": {"limits": limits, "token": job["token"]}},
                        (theirs.fileno(),))  # fmt: skip
        rec_r, rec_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                self._enter_judge(plan, job, mine.fileno(), rec_w)
            except BaseException as exc:  # noqa: BLE001 - a judge that cannot start is ours
                os.write(2, f"persd judge: setup failed: {exc!r}\n".encode())
            finally:
                os._exit(zygote.SETUP_FAILED)
        mine.close()
        os.close(rec_w)
        try:
            return self._supervise(pid, plan, job, rec_r, started)
        finally:
            os.close(rec_r)

    # ------------------------------------------------------------------ inside the judge

    def _enter_judge(self, plan, job: dict, channel: int, rec_w: int) -> None:
        if self.isolated:
            confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.dup2(channel, 3, inheritable=False)
        os.dup2(rec_w, 4, inheritable=False)
        os.closerange(5, 65536)  # the caller's pipes and the link stay with the zygote
        limits = dict(job["limits"], nproc=JUDGE_NPROC)
        address_space = confine.vm_size() + limits["memory_mb"] * 1024 * 1024
        confine.set_rlimits(limits, address_space)
        if self.isolated:
            confine.drop_capabilities()
            confine.load_seccomp(self.seccomp)
        trial.run(plan, job, 3, 4, self.shm)

    # ------------------------------------------------------------------ supervising it

    def _supervise(self, pid, plan, job, rec_r, started) -> dict:
        limits = job["limits"]
        token = job["token"]
        timeout = float(limits["timeout_s"])
        transcript = verdict.Transcript(plan.format, len(plan.tests), token)
        # Records are read when a deadline comes up and after the job, not as they arrive: every
        # wake-up of the zygote is a context switch, and on a busy host each one waits for a
        # time slice. The pipe is made large enough that the judge never blocks on it.
        with contextlib.suppress(OSError):  # over the uid's pipe quota: 64 KiB still works
            fcntl.fcntl(rec_r, fcntl.F_SETPIPE_SZ, RECORD_PIPE_BYTES)
        os.set_blocking(rec_r, False)
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (pidfd, self.link.fileno()):
            poller.register(fd, select.POLLIN)
        phase_deadline = started + timeout
        wall_deadline = started + float(limits["max_job_s"])
        killed: str | None = None
        stopped = False
        judge_status: int | None = None
        report: dict | None = None
        try:
            while judge_status is None or report is None:
                now = time.monotonic()
                # Deadlines count while the judge runs, and after it saw the program go while
                # the program's zygote has not said how (a program may close its channel and
                # go on running).
                gone = judge_status is not None and _exit_code(judge_status) == trial.PROGRAM_GONE
                deciding = killed is None and (judge_status is None or gone)
                if deciding and now >= phase_deadline:
                    # Has the judge moved on to another test since? Its phase records say when.
                    if self._drain(rec_r, transcript):
                        begun = transcript.phase_started
                        begun = begun if begun is not None and started <= begun <= now else now
                        phase_deadline = begun + timeout
                    if transcript.tampered:
                        killed = "tampered"
                    elif now >= phase_deadline:
                        killed = "timeout"
                if deciding and killed is None and now >= wall_deadline:
                    killed = "wall"
                if killed is not None and judge_status is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if not stopped and (killed is not None or (judge_status is not None and not gone)):
                    # The verdict no longer needs the program, or must not wait for it.
                    zygote.send(self.link, {"stop": token})
                    stopped = True
                wait = 1.0 if killed else max(0.0, min(phase_deadline, wall_deadline) - now)
                for fd, _event in poller.poll(wait * 1000):
                    if fd == pidfd:
                        _, judge_status = os.waitpid(pid, 0)
                        poller.unregister(pidfd)
                    else:
                        message, fds = zygote.receive(self.link)
                        for extra in fds:
                            os.close(extra)
                        if message is None:
                            sys.exit(0)  # the program's zygote is gone: the slot restarts
                        if message.get("token") == token:
                            report = message
        finally:
            if judge_status is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(pidfd)
        duration_ms = (time.monotonic() - started) * 1000
        self._drain(rec_r, transcript)
        return {"result": self._verdict(plan, transcript, killed, judge_status, report,
                                        limits, duration_ms)}  # fmt: skip

    def _verdict(self, plan, transcript, killed, judge_status, report, limits, duration_ms):
        if report["end"] is None:
            detail = report["output"].strip() or "no detail"
            return _sandbox_error(plan, duration_ms, f"the job could not be started: {detail}")
        program_end = report["end"]
        if killed == "tampered":
            end = {"kind": "tampered", "reason": transcript.tampered}
        elif killed is not None:
            end = {"kind": killed}
        elif _exit_code(judge_status) == 0:
            # The judge is done; only a limit the program hit on the way still counts.
            limit_hit = program_end["kind"] in ("output", "memory", "cpu", "wall")
            end = program_end if limit_hit else {"kind": "exit", "code": 0}
        elif _exit_code(judge_status) == trial.PROGRAM_GONE:
            end = program_end
        else:
            why = (
                f"exit status {os.WEXITSTATUS(judge_status)}"
                if os.WIFEXITED(judge_status)
                else f"signal {os.WTERMSIG(judge_status)}"
            )
            return _sandbox_error(plan, duration_ms, f"the judge failed ({why})")
        progress = bytes(self.shm[: min(len(plan.sites), SHM_SIZE)])
        result = verdict.assemble(plan.tests, transcript, end, limits, progress)
        if result["outcome"] not in (verdict.PASSED, verdict.RESOURCE_LIMIT) and report["oom"]:
            # A process of the job was killed for memory while the job itself went on: its
            # failure is about memory, whatever the program made of the loss.
            _, etype, feedback = verdict.abnormal({"kind": "memory"}, "", limits)
            result.update(outcome=verdict.RESOURCE_LIMIT, error_type=etype, feedback=feedback)
        result["duration_ms"] = duration_ms
        result["output"] = report["output"]
        return result

    def _drain(self, fd: int, transcript: verdict.Transcript) -> bool:
        """Read what the pipe holds now; True if a new phase started."""
        new_phase = False
        while True:
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                return new_phase
            if not data:
                return new_phase
            new_phase |= transcript.feed(data)


def _exit_code(status: int) -> int | None:
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else None


def _sandbox_error(plan, duration_ms: float, message: str) -> dict:
    return {
        "outcome": verdict.SANDBOX_ERROR,
        "error_type": "SandboxError",
        "feedback": f"SandboxError: {message}",
        "forgery": None,
        "test_results": [
            {"index": i, "test": t, "status": verdict.NOT_RUN, "error_type": None, "feedback": ""}
            for i, t in enumerate(plan.tests)
        ],
        "duration_ms": duration_ms,
        "output": "",
    }
