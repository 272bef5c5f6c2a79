"""Hostile programs, each contained, each asserting the specific containment (the threat model's
lines T1-T14 are in services/executor/isolation.py). Most cases make the program observe its own
situation and compare it with the expected observation, so a regression fails with the
observation in the feedback."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest

from services.executor.isolation import processes_of_uid, sandbox_env
from services.executor.pool import Slot
from shared.enums import ExecutionOutcome as O
from tests.executor.conftest import asserts, executor_settings, run, statuses

PASS_IF_ZERO = asserts("assert f() == 0")


def observe(runner, body: str, expected: str, timeout_s: float | None = None):
    """Run ``def f(): <body>`` and require ``f() == expected`` (a Python literal)."""
    code = "import os, sys, ctypes, errno, signal, socket, time\n\ndef f():\n" + "".join(
        f"    {line}\n" for line in body.strip("\n").splitlines()
    )
    result = run(runner, code, asserts(f"assert f() == {expected}"), timeout_s=timeout_s)
    assert result.outcome is O.PASSED, result.feedback
    return result


def baseline(slot: Slot) -> set[int]:
    """The slot's program processes on the host while idle: bwrap, bwrap's init, the zygote. The
    zygote's child (the next job's process, cloned ahead of its job, a new one after every job)
    is left out; anything a job left behind would be reparented to bwrap's init and counted."""
    pids = set(processes_of_uid(slot.info["uid"]))
    return {p for p in pids if not _parent_is_python(p)}


def _parent_is_python(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        parent = next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:"))
        return Path(f"/proc/{parent}/cmdline").read_bytes().startswith(b"/usr/bin/python3")
    except (OSError, StopIteration):
        return False


# ----------------------------------------------------------------- T1 identity


def test_identity_is_an_unprivileged_mapped_uid_without_capabilities(slot) -> None:  # T1
    uid = slot.info["uid"]
    assert (
        uid >= 1000
        and slot.settings.uid_base <= uid < slot.settings.uid_base + slot.settings.uid_count
    )
    observe(
        slot,
        """
status = dict(l.split(":\\t") for l in open('/proc/self/status').read().splitlines() if ":\\t" in l)
caps = {k: status[k] for k in ('CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb')}
return (os.getuid(), os.getgid(), os.getgroups(), open('/proc/self/uid_map').read().split(),
        set(caps.values()), status['NoNewPrivs'], status['Seccomp'])
""",
        f"(1000, 1000, [], ['1000', '{uid}', '1'], {{'0000000000000000'}}, '1', '2')",
    )
    # On the host, the whole sandbox (bwrap included) runs as the slot's uid, not root.
    assert slot.info["sandbox_pid"] in processes_of_uid(uid)


def test_no_way_back_to_root(slot) -> None:  # T1
    observe(
        slot,
        """
out = []
for call in (lambda: os.setuid(0), lambda: os.setgid(0), lambda: os.setgroups([0])):
    try:
        call(); out.append('ok')
    except OSError as e:
        out.append(e.errno)
class Header(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]
full = (ctypes.c_uint32 * 6)(*[0xFFFFFFFF] * 6)
libc = ctypes.CDLL(None, use_errno=True)
out.append((libc.capset(ctypes.byref(Header(0x20080522, 0)), full), ctypes.get_errno()))
return out
""",
        # uid/gid 0 do not exist in the job's namespace (EINVAL); groups and capabilities: EPERM.
        "[22, 22, 1, (-1, 1)]",
    )


# ----------------------------------------------------------------- T2 network


@pytest.mark.parametrize(
    ("name", "address"),
    [
        ("tcp_redis", "('127.0.0.1', 6379)"),
        ("tcp_postgres", "('127.0.0.1', 5432)"),
        ("tcp_ipv6", "('::1', 6379)"),
    ],
)
def test_tcp_to_local_services_is_refused(pool, name, address) -> None:  # T2
    observe(
        pool,
        f"""
try:
    socket.create_connection({address}, timeout=1)
except OSError as e:
    return repr(e)
""",
        "\"PermissionError(1, 'Operation not permitted')\"",
    )


def test_dns_fails(pool) -> None:  # T2
    observe(
        pool,
        """
try:
    socket.getaddrinfo('example.com', 80)
except OSError as e:
    return repr(e)
""",
        "\"gaierror(-3, 'Temporary failure in name resolution')\"",
    )


def test_raw_and_netlink_sockets_are_refused(pool) -> None:  # T2
    observe(
        pool,
        """
out = []
for family, kind in ((socket.AF_NETLINK, socket.SOCK_RAW), (socket.AF_PACKET, socket.SOCK_RAW), (socket.AF_INET, socket.SOCK_DGRAM)):
    try:
        socket.socket(family, kind); out.append('ok')
    except OSError as e:
        out.append(e.errno)
return out
""",
        "[1, 1, 1]",
    )


# ----------------------------------------------------------------- T3 host sockets and files


def test_host_postgresql_socket_is_not_reachable(pool) -> None:  # T3
    assert Path("/var/run/postgresql/.s.PGSQL.5432").is_socket()  # it is there on the host
    observe(
        pool,
        """
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('/var/run/postgresql/.s.PGSQL.5432')
except OSError as e:
    return repr(e), os.path.exists('/var/run'), os.path.exists('/var')
""",
        "(\"FileNotFoundError(2, 'No such file or directory')\", False, False)",
    )


def test_host_abstract_unix_socket_is_not_reachable(pool) -> None:  # T3
    name = f"persd-test-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind("\0" + name)
    listener.listen(1)
    try:
        observe(
            pool,
            f"""
s = socket.socket(socket.AF_UNIX)
try:
    s.connect('\\0{name}')
except OSError as e:
    return repr(e)
""",
            "\"ConnectionRefusedError(111, 'Connection refused')\"",
        )
    finally:
        listener.close()


def test_shadow_and_host_trees_do_not_exist(pool) -> None:  # T3, T11
    observe(
        pool,
        """
try:
    open('/etc/shadow').read()
except OSError as e:
    shadow = repr(e)
return shadow, sorted(os.listdir('/etc')), [os.path.exists(p) for p in ('/root', '/work', '/home', '/sys', '/var', '/run')]
""",
        "(\"FileNotFoundError(2, 'No such file or directory')\", ['alternatives'], [False] * 6)",
    )


# ----------------------------------------------------------------- T4 writes


def test_writes_outside_scratch_fail(pool) -> None:  # T4
    observe(
        pool,
        """
out = []
for path in ('/usr/lib/persd-evil', '/persd-evil', '/etc/persd-evil', '/dev/persd-evil', '/opt/persd/harness.py'):
    try:
        open(path, 'w').write('x'); out.append('written')
    except OSError as e:
        out.append(e.errno)
return out
""",
        "[30, 30, 30, 30, 30]",
    )


def test_disk_fill_stops_at_the_scratch_cap(pool) -> None:  # T4
    code = (
        "chunk = b'x' * (4 * 1024 * 1024)\n"
        "for i in range(100):\n"
        "    with open(f'/tmp/fill{i}', 'wb') as fh:\n"
        "        fh.write(chunk)\n"
        "def f():\n    return 0\n"
    )
    result = run(pool, code, PASS_IF_ZERO, timeout_s=10)
    assert result.outcome is O.RESOURCE_LIMIT
    assert result.feedback == "OSError: [Errno 28] No space left on device"


# ----------------------------------------------------------------- T5 memory


def test_memory_bomb_in_one_process(pool) -> None:  # T5
    result = run(pool, "hog = bytearray(2 * 1024 ** 3)\ndef f():\n    return 0\n", PASS_IF_ZERO)
    assert result.outcome is O.RESOURCE_LIMIT
    assert result.error_type == "MemoryError"
    assert result.feedback == "MemoryError: memory limit of 256 MiB exceeded"


def test_memory_bomb_through_numpy(pool) -> None:  # T5
    result = run(pool, "def f():\n    return int(np.ones(10 ** 9).sum())\n", PASS_IF_ZERO)
    assert result.outcome is O.RESOURCE_LIMIT
    assert result.feedback == "MemoryError: memory limit of 256 MiB exceeded"
    assert statuses(result) == ["resource_limit"]


def test_memory_bomb_across_processes_hits_the_cgroup(slot) -> None:  # T5
    starts = slot.stats()["starts"]
    code = """
def child():
    hog = bytearray(200 * 1024 * 1024)
    time.sleep(1)
    os._exit(0)

def f():
    pids = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            child()
        pids.append(pid)
    return [os.waitpid(p, 0)[1] for p in pids]
"""
    result = run(
        slot, "import os, time\n" + code, asserts("assert f() == [0, 0, 0, 0]"), timeout_s=10
    )
    assert result.outcome is O.RESOURCE_LIMIT
    assert result.feedback == "MemoryError: memory limit of 256 MiB exceeded"
    # The OOM killer took the job's processes, not the zygote.
    assert slot.stats()["starts"] == starts
    assert run(slot, "def f():\n    return 0\n", PASS_IF_ZERO).outcome is O.PASSED


# ----------------------------------------------------------------- T6, T7 time


def test_cpu_time_limit() -> None:  # T6
    slot = Slot(executor_settings(cpu_s=1, timeout_s=10))
    try:
        result = run(slot, "def f():\n    while True:\n        pass\n", PASS_IF_ZERO)
    finally:
        slot.close()
    assert result.outcome is O.TIMEOUT
    assert result.feedback == "TimeoutError: CPU time limit of 1 s exceeded"
    assert 900 < result.duration_ms < 5000


def test_cpu_spin_while_loading(pool) -> None:  # T7
    result = run(pool, "while True:\n    pass\n", PASS_IF_ZERO, timeout_s=0.5)
    assert result.outcome is O.TIMEOUT
    assert result.feedback == "TimeoutError: loading the program did not finish within 0.5 s"
    assert statuses(result) == ["not_run"]


def test_endless_sleep(pool) -> None:  # T7
    result = run(
        pool, "import time\ndef f():\n    time.sleep(10 ** 6)\n", PASS_IF_ZERO, timeout_s=0.5
    )
    assert result.outcome is O.TIMEOUT
    assert result.feedback == "TimeoutError: assert f() == 0 did not finish within 0.5 s"


def test_ignoring_sigterm_changes_nothing(slot) -> None:  # T7
    before = baseline(slot)
    code = (
        "import signal, subprocess, time\n"
        "for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
        "    signal.signal(s, signal.SIG_IGN)\n"
        "child = subprocess.Popen(['/usr/bin/python3', '-c',"
        " 'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(1000)'])\n"
        "def f():\n    time.sleep(1000)\n"
    )
    result = run(slot, code, PASS_IF_ZERO, timeout_s=0.5)
    assert result.outcome is O.TIMEOUT
    assert baseline(slot) == before  # the stubborn child died with the job


def test_wall_clock_cap_of_the_whole_job() -> None:  # T7
    slot = Slot(executor_settings(timeout_s=1, max_job_s=1.5))
    try:
        # Each test alone is under the per-test timeout; together they are past the job's cap.
        tests = asserts(*["assert f() == 0"] * 5)
        result = run(slot, "import time\ndef f():\n    time.sleep(0.6)\n    return 0\n", tests)
    finally:
        slot.close()
    assert result.outcome is O.TIMEOUT
    assert (
        result.feedback
        == "TimeoutError: the job did not finish within its wall-clock limit of 1.5 s"
    )
    assert statuses(result) == ["passed", "passed", "timeout", "not_run", "not_run"]


# ----------------------------------------------------------------- T8 processes


def test_fork_bomb(slot) -> None:  # T8
    before = baseline(slot)
    result = run(slot, "import os\nwhile True:\n    os.fork()\n", PASS_IF_ZERO)
    assert result.outcome is O.RESOURCE_LIMIT
    assert result.feedback == "BlockingIOError: [Errno 11] Resource temporarily unavailable"
    assert baseline(slot) == before


# ----------------------------------------------------------------- T9, T10 output and files


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_output_flood(pool, stream) -> None:  # T9
    code = f"import sys\ndef f():\n    while True:\n        sys.{stream}.write('x' * 4096)\n"
    result = run(pool, code, PASS_IF_ZERO)
    assert result.outcome is O.RESOURCE_LIMIT
    assert result.error_type == "OutputLimitExceeded"
    assert result.feedback == (
        "OutputLimitExceeded: the program wrote more than 262144 bytes to stdout/stderr"
    )
    assert result.output == "x" * 4096


def test_large_file(pool) -> None:  # T10
    code = "with open('big', 'wb') as fh:\n    fh.write(b'x' * (100 * 1024 * 1024))\ndef f():\n    return 0\n"
    result = run(pool, code, PASS_IF_ZERO)
    assert result.outcome is O.RESOURCE_LIMIT
    assert result.feedback == "OSError: [Errno 27] File too large"


def test_open_file_cap(pool) -> None:  # T10
    code = "handles = [open('/dev/null') for _ in range(100000)]\ndef f():\n    return 0\n"
    result = run(pool, code, PASS_IF_ZERO)
    assert result.outcome is O.RESOURCE_LIMIT
    assert result.feedback == "OSError: [Errno 24] Too many open files: '/dev/null'"


# ----------------------------------------------------------------- T11 secrets


def test_environment_is_minimal_and_holds_no_secrets(pool) -> None:  # T11
    assert "DATABASE_URL" in os.environ  # the worker has one; the job must not
    expected = sandbox_env() | {"PWD": "/"}
    observe(pool, "return dict(os.environ)", repr(expected))


def test_other_processes_environments_are_unreadable(pool) -> None:  # T11, T12
    observe(
        pool,
        """
mine = str(os.getpid())
out = {}
for pid in sorted(p for p in os.listdir('/proc') if p.isdigit()):
    try:
        out[pid] = len(open(f'/proc/{pid}/environ', 'rb').read())
    except OSError as e:
        out[pid] = e.errno
return out['1'], out['2']
""",
        "(13, 13)",
    )


# ----------------------------------------------------------------- T12 other processes


def test_signalling_the_parent_and_the_zygote_fails(slot) -> None:  # T12
    starts = slot.stats()["starts"]
    observe(
        slot,
        """
# In /proc (the sandbox's pid namespace) the zygote is pid 2 ...
out = [os.getpid(), os.getppid(), open('/proc/2/cmdline', 'rb').read().endswith(b'zygote.py\\0')]
for target in (os.getppid(), 2, -1):
    try:
        os.kill(target, signal.SIGKILL); out.append('sent')
    except OSError as e:
        out.append(e.errno)
return out
""",
        # ... but in the job's own pid namespace that number is nobody. getppid() is 0 (the parent
        # is outside): kill(0) reaches only the job's own group, whose pid 1 ignores it.
        "[1, 0, True, 'sent', 3, 3]",
    )
    assert slot.stats()["starts"] == starts


def test_ptrace_is_refused(slot) -> None:  # T12
    observe(
        slot,
        """
libc = ctypes.CDLL(None, use_errno=True)
out = []
for request, pid in ((16, 2), (16, 1), (0, 0)):  # PTRACE_ATTACH zygote, self; PTRACE_TRACEME
    out.append((libc.ptrace(request, pid, 0, 0), ctypes.get_errno()))
return out
""",
        "[(-1, 1), (-1, 1), (-1, 1)]",
    )


def test_zygote_memory_is_unreadable(slot) -> None:  # T12
    observe(
        slot,
        """
out = []
for path in ('/proc/2/mem', '/proc/2/maps', '/proc/2/fd/0'):
    try:
        open(path, 'rb').read(1); out.append('read')
    except OSError as e:
        out.append(e.errno)
return out
""",
        "[13, 13, 13]",
    )


def test_namespace_and_mount_syscalls_are_refused(pool) -> None:  # T12
    observe(
        pool,
        """
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = []
def call(f):
    out.append((f(), ctypes.get_errno()))
call(lambda: libc.unshare(0x10000000))                               # CLONE_NEWUSER
call(lambda: libc.unshare(0x00020000))                               # CLONE_NEWNS
call(lambda: libc.mount(b'tmpfs', b'/scratch', b'tmpfs', 0, None))
call(lambda: libc.syscall(56, ctypes.c_ulong(0x10000000 | 17), 0, 0, 0, 0))  # clone(NEWUSER)
call(lambda: libc.syscall(321, 0, 0, 0))                             # bpf
call(lambda: libc.syscall(250, 0, 0, 0))                             # keyctl
call(lambda: libc.syscall(425, 1, 0))                                # io_uring_setup
call(lambda: libc.syscall(308, 0, 0))                                # setns
return out
""",
        "[(-1, 1)] * 8",
    )


def test_ctypes_crash_is_an_error_and_the_slot_survives(slot) -> None:  # T12
    starts = slot.stats()["starts"]
    result = run(slot, "import ctypes\ndef f():\n    return ctypes.string_at(0)\n", PASS_IF_ZERO)
    assert result.outcome is O.ERROR
    assert result.feedback == "SIGSEGV: the program was killed by signal SIGSEGV"
    assert slot.stats()["starts"] == starts


def test_a_job_cannot_see_another_slots_job(pool) -> None:  # T12
    sleeper = pool.submit(
        _job("import time\ndef f():\n    time.sleep(1.5)\n    return 0\n", PASS_IF_ZERO)
    )
    time.sleep(0.3)
    # The other slot sees its own sandbox only: bwrap's init, its zygote and itself.
    observe(
        pool,
        """
names = sorted(open(f'/proc/{p}/cmdline', 'rb').read().split(b'\\0')[0] for p in os.listdir('/proc') if p.isdigit())
return names
""",
        "[b'/usr/bin/bwrap', b'/usr/bin/python3', b'/usr/bin/python3']",
    )
    assert sleeper.result().outcome is O.PASSED


def _job(code, tests):
    from services.executor.pool import make_job

    return make_job(code, tests, "f")


# ----------------------------------------------------------------- T13 nothing carries over


def test_files_ipc_and_module_state_do_not_carry_over(slot) -> None:  # T13
    leave = """
import math, os, ctypes
for path in ('/scratch/a', '/tmp/b', '/dev/shm/c'):
    open(path, 'w').write('left behind')
libc = ctypes.CDLL(None, use_errno=True)
segment = libc.shmget(0x5E5D, 4096, 0o1600)  # SysV shared memory, IPC_CREAT
math.pi = 3
os.environ['LEFT'] = 'behind'
import multiprocessing.shared_memory as sm
sm.SharedMemory(name='persd-left', create=True, size=16)
def f():
    return 0 if segment >= 0 else ctypes.get_errno()
"""
    assert run(slot, leave, PASS_IF_ZERO).outcome is O.PASSED
    observe(
        slot,
        """
import math
libc = ctypes.CDLL(None, use_errno=True)
found = [os.path.exists(p) for p in ('/scratch/a', '/tmp/b', '/dev/shm/c', '/dev/shm/persd-left')]
return found, libc.shmget(0x5E5D, 0, 0), ctypes.get_errno(), math.pi, 'LEFT' in os.environ, os.listdir('/scratch')
""",
        "([False] * 4, -1, 2, 3.141592653589793, False, ['shm', 'tmp'])",
    )


def test_threads_and_processes_left_running_die_with_the_job(slot) -> None:  # T13
    before = baseline(slot)
    leave = """
import os, subprocess, threading, time

def scribble():
    i = 0
    while True:
        i += 1
        open(f'/tmp/thread{i % 3}', 'w').write(str(i))
        time.sleep(0.01)

threading.Thread(target=scribble, daemon=False).start()
subprocess.Popen(['/usr/bin/python3', '-c', 'import time\\nwhile True: time.sleep(1)'])
if os.fork() == 0:              # a double-forked daemon in its own session
    os.setsid()
    if os.fork() == 0:
        while True:
            time.sleep(1)
    os._exit(0)

def f():
    return 0
"""
    assert run(slot, leave, PASS_IF_ZERO).outcome is O.PASSED
    assert baseline(slot) == before
    observe(slot, "return sorted(os.listdir('/tmp'))", "[]")


def test_fork_in_the_program_does_not_duplicate_results(pool) -> None:  # T13, T14
    code = "import os\nchild = os.fork() == 0\ndef f():\n    return 1\n"
    result = run(pool, code, asserts("assert f() == 1", "assert f() == 2"))
    assert result.outcome is O.FAILED
    assert statuses(result) == ["passed", "failed"]


# ----------------------------------------------------------------- T14 verdicts


def test_sys_exit_before_the_tests_is_a_failure(pool) -> None:  # T14
    result = run(pool, "import sys\nsys.exit(0)\ndef f():\n    return 0\n", PASS_IF_ZERO)
    assert result.outcome is O.EARLY_EXIT
    assert result.feedback == "SystemExit: the program exited (0) before the tests finished"
    assert statuses(result) == ["not_run"]


def test_os_exit_before_the_tests_is_a_failure(pool) -> None:  # T14
    result = run(pool, "import os\nos._exit(0)\ndef f():\n    return 0\n", PASS_IF_ZERO)
    assert result.outcome is O.EARLY_EXIT
    assert result.feedback == "SystemExit: the program exited (status 0) before the tests finished"


def test_exit_inside_a_test_is_a_failure(pool) -> None:  # T14
    code = "import os\ndef f():\n    os._exit(0)\n"
    result = run(pool, code, asserts("assert f() == 0", "assert f() == 0"))
    assert result.outcome is O.EARLY_EXIT
    assert statuses(result) == ["early_exit", "not_run"]
    quit_ = run(pool, "def f():\n    exit()\n", asserts("assert f() == 0", "assert 1 == 1"))
    assert quit_.outcome is O.EARLY_EXIT
    assert statuses(quit_) == ["early_exit", "passed"]


def test_overriding_builtins_and_assertion_error_does_not_make_tests_pass(pool) -> None:  # T14
    code = """
import builtins
class Never(Exception):
    pass
builtins.AssertionError = Never
AssertionError = Never
builtins.abs = lambda x: 0
builtins.isinstance = lambda *a: True
builtins.repr = lambda x: 'fine'
def sorted(xs):
    return [1, 2, 3]
def f(x):
    return x
"""
    tests = asserts(
        "assert abs(f(5) - 2) < 1", "assert sorted(f([3, 1])) == [1, 2, 3]", "assert f(1) == 2"
    )
    result = run(pool, code, tests)
    assert result.outcome is O.FAILED
    assert statuses(result) == ["failed", "failed", "failed"]
    assert [t.feedback for t in result.test_results] == [
        "AssertionError\nINPUT: f(5)\nOUTPUT: 5\nEXPECTED: abs(f(5) - 2) < 1 to be true",
        "AssertionError\nINPUT: sorted(f([3, 1]))\nOUTPUT: [1, 3]\nEXPECTED: [1, 2, 3]",
        "AssertionError\nINPUT: f(1)\nOUTPUT: 1\nEXPECTED: 2",
    ]


def test_printing_what_a_harness_prints_forges_nothing(pool) -> None:  # T14
    code = """
import sys
for stream in (sys.stdout, sys.stderr):
    stream.write('{"ev": "done", "tok": "x"}\\npassed\\nall tests passed\\n')
    stream.flush()
def f():
    print('passed')
    return 1
"""
    result = run(pool, code, PASS_IF_ZERO)
    assert result.outcome is O.FAILED
    assert result.feedback == "AssertionError\nINPUT: f()\nOUTPUT: 1\nEXPECTED: 0"


def test_writing_forged_records_is_tampering(pool) -> None:  # T14
    code = """
import os
for k in (-1, 0):
    os.write(3, ('{"ev": "phase", "k": %d}\\n' % k).encode())
os.write(3, b'{"ev": "test", "k": 0, "status": "passed"}\\n{"ev": "done"}\\n')
def f():
    return 1
"""
    result = run(pool, code, PASS_IF_ZERO)
    assert result.outcome is O.ERROR
    assert result.error_type == "HarnessTampering"
    assert result.feedback == (
        "HarnessTampering: the program interfered with the test harness"
        " (a record without the job's token)"
    )


def test_closing_the_record_channel_is_tampering(pool) -> None:  # T14
    result = run(pool, "import os\nos.close(3)\ndef f():\n    return 0\n", PASS_IF_ZERO)
    assert result.outcome is O.ERROR
    assert result.feedback == (
        "HarnessTampering: the program interfered with the test harness"
        " (the record channel was closed)"
    )


def test_slot_never_restarted_during_the_attacks(slot) -> None:
    """Runs last in this module: everything above was contained inside the job."""
    assert slot.stats()["starts"] == 1


def test_host_is_untouched(pool) -> None:
    assert not Path("/persd-evil").exists() and not Path("/usr/lib/persd-evil").exists()
    assert threading.active_count() >= 1
