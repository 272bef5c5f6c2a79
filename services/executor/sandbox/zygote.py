"""The zygote: a pre-warmed interpreter inside the sandbox that runs one confined job per request.

Started by the slot host (under bwrap, as the slot's uid). It imports the prelude (numpy & co.)
once; each job is then a clone of this process into fresh namespaces, which costs a page-table
copy instead of an interpreter start and a numpy import. The zygote never runs job code itself,
so every job starts from the same pristine state, and it is the job's supervisor: it enforces the
per-test and wall-clock deadlines and the output cap, validates the record stream, and kills the
job's pid namespace (everything the job started) when the job ends.

Protocol on fds 0/1 (framing): the slot host sends a config frame and the zygote answers
``ready``; the slot host then hands both pipes to the caller, which sends ``{"job": ...}`` frames
and reads ``{"result": ...}`` (or ``{"error": ...}``) frames, one per job.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import mmap
import os
import select
import shutil
import signal
import sys
import tempfile
import time

import confine
import framing
import harness
import verdict

SHM_SIZE = 64 * 1024
PLAN_CACHE = 512
SETUP_FAILED = 112
OUTPUT_KEPT = 4096
RECORD_PIPE_BYTES = 1 << 20  # the default pipe-max-size


class Zygote:
    def __init__(self, ctl_in: int, ctl_out: int, config: dict) -> None:
        self.ctl_in = ctl_in
        self.ctl_out = ctl_out
        self.isolated = bool(config["isolated"])
        self.seccomp = bytes.fromhex(config.get("seccomp", ""))
        self.scratch_bytes = int(config["scratch_bytes"])
        self.scratch_root = config.get("scratch_root")
        self.oom_control = config.get("oom_control")
        self.oom_before = 0
        self.uid = os.getuid()
        self.gid = os.getgid()
        self.plans: collections.OrderedDict[str, harness.Plan] = collections.OrderedDict()
        # Shared with every job (MAP_SHARED survives the clone): check-format progress, read after
        # a timeout to say which assertion was running.
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
        self.oom_before = self._oom_kills()
        n = min(len(plan.sites), SHM_SIZE)
        self.shm[:n] = bytes(n)
        scratch = tempfile.mkdtemp(dir=self.scratch_root) if not self.isolated else None
        rec_r, rec_w = os.pipe()
        out_r, out_w = os.pipe()
        started = time.monotonic()
        pid = confine.clone_into_namespaces(confine.JOB_NAMESPACES if self.isolated else 0)
        if pid == 0:
            try:
                self._enter_job(plan, job, rec_w, out_w, scratch)
            except BaseException as exc:
                # Before the harness took over: our failure, reported in the job's output.
                os.write(2, f"persd zygote: job setup failed: {exc!r}\n".encode())
            finally:
                os._exit(SETUP_FAILED)
        os.close(rec_w)
        os.close(out_w)
        try:
            return self._supervise(pid, plan, job, rec_r, out_r, started)
        finally:
            os.close(rec_r)
            os.close(out_r)
            if scratch is not None:
                shutil.rmtree(scratch, ignore_errors=True)

    # ------------------------------------------------------------------ inside the job

    def _enter_job(self, plan, job: dict, rec_w: int, out_w: int, scratch: str | None) -> None:
        limits = job["limits"]
        if self.isolated:
            confine.prctl(confine.PR_SET_PDEATHSIG, signal.SIGKILL)
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
        # Not inherited across exec: a program the job starts cannot write records.
        os.dup2(rec_w, 3, inheritable=False)
        os.closerange(4, 65536)
        os.chdir(workdir)
        address_space = confine.vm_size() + limits["memory_mb"] * 1024 * 1024
        confine.set_rlimits(limits, address_space)
        if self.isolated:
            confine.drop_capabilities()
            confine.load_seccomp(self.seccomp)
        harness.run_job(plan, job, 3, self.shm)

    # ------------------------------------------------------------------ supervising it

    def _supervise(self, pid, plan, job, rec_r, out_r, started) -> dict:
        limits = job["limits"]
        timeout = float(limits["timeout_s"])
        transcript = verdict.Transcript(plan.format, len(plan.tests), job["token"])
        # Records are read when a deadline comes up and after the job, not as they arrive: every
        # wake-up of the zygote is a context switch, and on a busy host each one waits for a
        # time slice. The pipe is made large enough that the harness never blocks on it.
        with contextlib.suppress(OSError):  # over the uid's pipe quota: 64 KiB still works
            fcntl.fcntl(rec_r, fcntl.F_SETPIPE_SZ, RECORD_PIPE_BYTES)
        os.set_blocking(rec_r, False)
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (out_r, pidfd):
            poller.register(fd, select.POLLIN)
        phase_deadline = started + timeout
        wall_deadline = started + float(limits["max_job_s"])
        output = bytearray()
        output_total = 0
        killed: str | None = None
        exited = False
        try:
            while not exited:
                now = time.monotonic()
                if killed is None and now >= phase_deadline:
                    # Has the job moved on to another test since? Its phase records say when.
                    if self._drain(rec_r, transcript):
                        begun = transcript.phase_started
                        begun = begun if begun is not None and started <= begun <= now else now
                        phase_deadline = begun + timeout
                    if transcript.tampered:
                        killed = "tampered"
                    elif now >= phase_deadline:
                        killed = "timeout"
                if killed is None and now >= wall_deadline:
                    killed = "wall"
                if killed is not None and not exited:
                    os.kill(pid, signal.SIGKILL)
                wait = 1.0 if killed else max(0.0, min(phase_deadline, wall_deadline) - now)
                for fd, _event in poller.poll(wait * 1000):
                    if fd == pidfd:
                        exited = True
                        continue
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
            _, status, usage = os.wait4(pid, 0)
        finally:
            os.close(pidfd)
        duration_ms = (time.monotonic() - started) * 1000
        if not self.isolated:
            # Without a pid namespace the job's leftovers are found by process group only.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        self._drain(rec_r, transcript)

        end = self._end(killed, status, usage, limits, transcript)
        if end is None:
            detail = output.decode("utf-8", "replace").strip() or "no detail"
            return {
                "result": _sandbox_error(
                    plan, duration_ms, f"the job could not be started: {detail}"
                )
            }
        progress = bytes(self.shm[: min(len(plan.sites), SHM_SIZE)])
        result = verdict.assemble(plan.tests, transcript, end, limits, progress)
        if (
            result["outcome"] not in (verdict.PASSED, verdict.RESOURCE_LIMIT)
            and self._oom_happened()
        ):
            # A process of the job was killed for memory while the job itself went on: its
            # failure is about memory, whatever the program made of the loss.
            _, etype, feedback = verdict.abnormal({"kind": "memory"}, "", limits)
            result.update(outcome=verdict.RESOURCE_LIMIT, error_type=etype, feedback=feedback)
        result["duration_ms"] = duration_ms
        result["output"] = output.decode("utf-8", "replace")
        return {"result": result}

    def _drain(self, fd: int, transcript: verdict.Transcript) -> bool:
        """Read what the channel holds now; True if a new phase started."""
        new_phase = False
        while True:
            try:
                data = os.read(fd, 1 << 20)
            except BlockingIOError:
                return new_phase
            if not data:
                return new_phase
            new_phase |= transcript.feed(data)

    def _end(self, killed, status, usage, limits, transcript) -> dict | None:
        if killed is not None:
            if killed == "tampered":
                return {"kind": "tampered", "reason": transcript.tampered}
            return {"kind": killed}
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            if code == SETUP_FAILED and transcript.phase is None:
                return None
            return {"kind": "exit", "code": code}
        sig = os.WTERMSIG(status)
        if sig == signal.SIGKILL:
            # Not ours, and nothing inside the job may signal its pid 1: the kernel did it, for
            # memory (the slot host can tell from the cgroup) or at the CPU limit. Accounted CPU
            # time lags the scheduler's by up to a tick per ~10, hence the margin.
            if self._oom_happened():
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

    def _oom_happened(self) -> bool:
        """Did the slot's memory cgroup kill anything since this job started? Jobs run one at a
        time, so whatever it killed was this job's."""
        return self._oom_kills() > self.oom_before


def _sandbox_error(plan, duration_ms: float, message: str) -> dict:
    return {
        "outcome": verdict.SANDBOX_ERROR,
        "error_type": "SandboxError",
        "feedback": f"SandboxError: {message}",
        "test_results": [
            {"index": i, "test": t, "status": verdict.NOT_RUN, "error_type": None, "feedback": ""}
            for i, t in enumerate(plan.tests)
        ],
        "duration_ms": duration_ms,
        "output": "",
    }


def main() -> None:
    # The control channel moves off 0/1 so that nothing printed by accident can corrupt it.
    ctl_in = os.dup(0)
    ctl_out = os.dup(1)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    config = framing.read_frame(ctl_in)
    if config["isolated"]:
        # Not dumpable: even with the slot's uid, no job can open /proc/<zygote>/mem.
        confine.prctl(confine.PR_SET_DUMPABLE, 0)
    framing.write_frame(
        ctl_out,
        {"ready": True, "pid": os.getpid(), "uid": os.getuid(), "python": sys.version.split()[0]},
    )
    import gc

    gc.freeze()
    Zygote(ctl_in, ctl_out, config).serve()


if __name__ == "__main__":
    main()
