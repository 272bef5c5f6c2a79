"""The judge's zygote: holds the tests, judges each job, and answers the caller.

Runs in a sandbox of its own, as the slot's second uid, with no writable mount at all, under the
jobs' seccomp filter and rlimits. Per job it builds (or reuses) the plan, makes the job's channel
(a socket pair), sends one end to the program's zygote with the program's limits, and judges
(:mod:`trial`), calling the program through the other end; then it learns from the program's
zygote how the program ended and assembles the result (:mod:`verdict`).

It judges in its own process rather than in a fork per job: it runs only trusted test code on
values that crossed as plain data, so there is nothing to contain per job, and a fork (page
tables, copy-on-write faults, teardown) cost as much CPU as the whole program's side (measured:
about 9 ms of 18 per HumanEval job). A judge that dies is a slot restart and a sandbox_error.

Link messages (JSON datagrams): to the program's zygote ``{"run": {"limits", "token"}}`` with the
channel's fd, and ``{"stop": token}``; from it ``{"token", "end", "output", "oom"}``.
"""

from __future__ import annotations

import collections
import json
import os
import resource
import select
import socket
import sys
import time

import confine
import framing
import harness
import trial
import verdict
import zygote

PROGRESS_SIZE = 64 * 1024
PLAN_CACHE = 512
JUDGE_NPROC = 8  # the judge starts nothing; its sandbox's own processes and a margin
LEAVE_S = 0.05  # for a program to leave on the end of its channel before it is stopped
STOP_GRACE_S = 10.0  # past the job's wall clock, a program's zygote that has not answered hangs


class JudgeZygote:
    def __init__(self, ctl_in: int, ctl_out: int, link: socket.socket, config: dict) -> None:
        self.ctl_in = ctl_in
        self.ctl_out = ctl_out
        self.link = link
        self.isolated = bool(config["isolated"])
        self.seccomp = bytes.fromhex(config.get("seccomp", ""))
        self.plans: collections.OrderedDict[str, harness.Plan] = collections.OrderedDict()
        # Check-format progress: which assertions ran and passed, to say after a timeout which
        # one was running.
        self.progress = bytearray(PROGRESS_SIZE)
        self.confined = False

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

    def confine(self, limits: dict) -> None:
        """Once, before the first judging: the job's seccomp filter (no namespaces, no mounts)
        and rlimits. Not RLIMIT_CPU, which would count the zygote's whole life: each judging has
        its deadlines instead (trial.Deadline)."""
        if self.confined:
            return
        self.confined = True
        address_space = confine.vm_size() + limits["memory_mb"] * 1024 * 1024
        for which, value in (
            (resource.RLIMIT_AS, address_space),
            (resource.RLIMIT_NPROC, JUDGE_NPROC),
            (resource.RLIMIT_NOFILE, limits["nofile"]),
            (resource.RLIMIT_FSIZE, 0),  # the judge writes no file
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(which, (value, value))
        if self.isolated:
            confine.drop_capabilities()
            confine.load_seccomp(self.seccomp)

    def handle(self, job: dict) -> dict:
        try:
            plan = self.plan_for(job["tests"], job["entry_point"])
        except harness.InvalidTests as exc:
            return {"error": "invalid_tests", "message": str(exc)}
        limits = job["limits"]
        self.confine(limits)
        token = os.urandom(16).hex()
        job = dict(job, token=token)
        n = min(len(plan.sites), PROGRESS_SIZE)
        self.progress[:n] = bytes(n)
        transcript = verdict.Transcript(plan.format, len(plan.tests), token)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        started = time.monotonic()
        with theirs:
            zygote.send(self.link, {"run": {"limits": limits, "token": token}},
                        (theirs.fileno(),))  # fmt: skip
        try:
            ending = trial.run(plan, job, mine.fileno(), transcript.take, self.progress, started)
            failure = None
        except Exception as exc:  # noqa: BLE001 - a failure of ours, not the program's
            ending, failure = trial.DONE, f"{type(exc).__name__}: {exc}"
        finally:
            mine.close()  # the program sees the end of its channel and leaves
        killed, report = self._await_program(token, transcript, ending, limits, started)
        duration_ms = (time.monotonic() - started) * 1000
        if failure is not None:
            return {"result": _sandbox_error(plan, duration_ms, f"the judge failed ({failure})")}
        return {"result": self._verdict(plan, transcript, ending, killed, report, limits,
                                        duration_ms)}  # fmt: skip

    def _await_program(self, token, transcript, ending, limits, started):
        """How the program ended. Out of time, it is stopped at once. After a judging that is
        over, it leaves by itself on the end of its channel (one wake-up of its zygote fewer than
        a stop), or is stopped after a moment. After its end of the channel closed, it has until
        the running test's deadline to end by itself (a program may close its channel and go on
        running), then that test timed out."""
        killed = ending if ending in (trial.TIMEOUT, trial.WALL) else None
        wall = started + float(limits["max_job_s"])
        if killed is not None:
            zygote.send(self.link, {"stop": token})
            deadline = None
        elif ending == trial.GONE:
            begun = transcript.phase_started or started
            deadline = min(begun + float(limits["timeout_s"]), wall)
        else:
            deadline = time.monotonic() + LEAVE_S
        give_up = wall + STOP_GRACE_S
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                if ending == trial.GONE:
                    killed = trial.WALL if now >= wall else trial.TIMEOUT
                zygote.send(self.link, {"stop": token})
                deadline = None
            if now >= give_up:
                sys.exit(0)  # the program's zygote hangs: the caller restarts the slot
            until = min(give_up, deadline) if deadline is not None else give_up
            ready, _, _ = select.select([self.link], [], [], max(0.0, until - now))
            if not ready:
                continue
            message, fds = zygote.receive(self.link)
            for extra in fds:
                os.close(extra)
            if message is None:
                sys.exit(0)  # the program's zygote is gone: the slot restarts
            if message.get("token") == token:
                return killed, message

    def _verdict(self, plan, transcript, ending, killed, report, limits, duration_ms):
        if report["end"] is None:
            detail = report["output"].strip() or "no detail"
            return _sandbox_error(plan, duration_ms, f"the job could not be started: {detail}")
        program_end = report["end"]
        if killed is not None:
            end = {"kind": killed}
        elif ending == trial.DONE:
            # The judging is over; only a limit the program hit on the way still counts.
            limit_hit = program_end["kind"] in ("output", "memory", "cpu", "wall")
            end = program_end if limit_hit else {"kind": "exit", "code": 0}
        else:
            end = program_end
        progress = bytes(self.progress[: min(len(plan.sites), PROGRESS_SIZE)])
        result = verdict.assemble(plan.tests, transcript, end, limits, progress)
        if result["outcome"] not in (verdict.PASSED, verdict.RESOURCE_LIMIT) and report["oom"]:
            # A process of the job was killed for memory while the job itself went on: its
            # failure is about memory, whatever the program made of the loss.
            _, etype, feedback = verdict.abnormal({"kind": "memory"}, "", limits)
            result.update(outcome=verdict.RESOURCE_LIMIT, error_type=etype, feedback=feedback)
        result["duration_ms"] = duration_ms
        result["output"] = report["output"]
        return result


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
