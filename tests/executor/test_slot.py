"""The slot host's side of containment: it restarts a sandbox that died or hangs, and leaves
nothing behind when it closes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from services.executor.isolation import processes_of_uid
from services.executor.pool import Slot
from shared.enums import ExecutionOutcome as O
from tests.executor.conftest import asserts, executor_settings, run

OK = ("def f():\n    return 0\n", asserts("assert f() == 0"))


def zygote_host_pid(slot: Slot) -> int:
    for pid in processes_of_uid(slot.info["uid"]):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if cmdline.endswith(b"zygote.py\0") and not cmdline.startswith(b"/usr/bin/bwrap"):
            return pid
    raise AssertionError("no zygote")


def test_a_dead_sandbox_is_reported_and_restarted() -> None:
    slot = Slot(executor_settings())
    try:
        os.kill(zygote_host_pid(slot), signal.SIGKILL)
        first = run(slot, *OK)
        assert first.outcome is O.SANDBOX_ERROR
        assert first.feedback == "SandboxError: the sandbox died"
        assert run(slot, *OK).outcome is O.PASSED
        assert slot.stats()["starts"] == 2
    finally:
        slot.close()


def test_a_hung_sandbox_is_reported_and_restarted() -> None:
    slot = Slot(executor_settings(timeout_s=0.5, max_job_s=1))
    try:
        os.kill(zygote_host_pid(slot), signal.SIGSTOP)
        hung = run(slot, *OK)
        assert hung.outcome is O.SANDBOX_ERROR
        assert hung.feedback == "SandboxError: the sandbox stopped responding"
        assert run(slot, *OK).outcome is O.PASSED
    finally:
        slot.close()


def test_closing_a_slot_leaves_no_process_cgroup_or_lease() -> None:
    slot = Slot(executor_settings())
    uid = slot.info["uid"]
    cgroups = [Path(p) for p in slot.info["cgroups"]]
    assert all(p.is_dir() for p in cgroups)
    assert run(slot, *OK).outcome is O.PASSED
    slot.close()
    assert processes_of_uid(uid) == []
    assert not any(p.exists() for p in cgroups)
    again = Slot(executor_settings())  # the uid is free again: the lowest free one is taken
    try:
        assert again.info["uid"] <= uid
    finally:
        again.close()


def test_a_uid_serves_a_program_after_a_judge_and_back() -> None:
    """A uid's cgroups keep the limits of its last slot, and a uid serves programs and judges (a
    smaller memory cap) in turn: the kernel refuses a memory limit above memsw's, so setting up
    a program's cgroups after a judge's once failed with EINVAL (seen as 'the sandbox could not
    be set up: [Errno 22] Invalid argument' when two pools started at once)."""
    from services.executor.isolation import SlotCgroups

    settings = executor_settings()
    uid = settings.uid_base + settings.uid_count - 1
    for first, then in ((True, False), (False, True)):
        SlotCgroups(settings, uid, judge=first).create()
        cgroups = SlotCgroups(settings, uid, judge=then)
        try:
            cgroups.create()
            for name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
                path = cgroups.memory / name
                if path.exists():
                    assert int(path.read_text()) == cgroups.memory_limit, name
        finally:
            cgroups.remove()
