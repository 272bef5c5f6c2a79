"""Isolation for untrusted, model-written code: the threat model, and the host-side primitives
(probe, the slot's uid lease, its cgroups, the seccomp filters, the bubblewrap command line).

Threat model. The program and everything it starts are hostile: arbitrary Python, ctypes, native
code, subprocesses. T1-T13 are enforced by the kernel, T14-T15 by the split between the program
and its judge. Each line is tested by the ``tests/executor/test_adversarial.py`` cases (T15:
``test_forgery.py``) named in brackets (``test_`` prefix dropped).

T1  Identity: every slot has its own unprivileged uid (an flock lease on EXECUTOR_UID_BASE ..
    +EXECUTOR_UID_COUNT); the switch happens *before* bubblewrap starts, so the job is uid 1000 of
    a user namespace mapped to the slot's uid, with no capabilities, no_new_privs, and no uid 0 to
    go back to. [identity_is_an_unprivileged_mapped_uid_without_capabilities, no_way_back_to_root]
T2  Network: a network namespace with only loopback, and seccomp refuses every socket family but
    AF_UNIX, so TCP to the host's Redis/PostgreSQL and DNS fail. [tcp_to_local_services_is_refused,
    dns_fails, raw_and_netlink_sockets_are_refused]
T3  Host sockets and files: the root is an empty tmpfs with /usr and the sandbox's code bound
    read-only, a /dev of null/zero/urandom/tty, and the /proc of the sandbox's own pid namespace.
    The host's /etc (shadow, passwd), /var/run (PostgreSQL's socket), /root, /work, /home and /sys
    do not exist inside; abstract unix sockets belong to the network namespace.
    [host_postgresql_socket_is_not_reachable, host_abstract_unix_socket_is_not_reachable,
    shadow_and_host_trees_do_not_exist]
T4  Writes: the root, /usr, /dev and the sandbox's code are read-only; the only writable place is
    the job's own tmpfs (/scratch, with /tmp and /dev/shm in it), EXECUTOR_SCRATCH_MB at most.
    [writes_outside_scratch_fail, disk_fill_stops_at_the_scratch_cap]
T5  Memory: RLIMIT_AS per process (EXECUTOR_MEMORY_MB above the zygote's own mappings) and the
    slot's v1 memory cgroup for all its processes together; a job is the OOM killer's first choice
    (oom_score_adj 1000). [memory_bomb_in_one_process, memory_bomb_through_numpy,
    memory_bomb_across_processes_hits_the_cgroup]
T6  CPU: RLIMIT_CPU per process (EXECUTOR_CPU_S; SIGKILL at the limit); with the process cap and
    the wall clock, that bounds a job's total CPU. [cpu_time_limit]
T7  Wall clock: per test and for loading (EXECUTOR_TIMEOUT_S) and per job (EXECUTOR_MAX_JOB_S),
    enforced from outside the job's pid namespace by SIGKILL to its pid 1, upon which the kernel
    kills every process the job started; ignoring SIGTERM changes nothing. [cpu_spin_while_loading,
    endless_sleep, ignoring_sigterm_changes_nothing, wall_clock_cap_of_the_whole_job]
T8  Processes: RLIMIT_NPROC for the slot's uid and the slot's v1 pids cgroup. [fork_bomb]
T9  Output: more than EXECUTOR_OUTPUT_BYTES on stdout+stderr stops the job. [output_flood]
T10 Files: RLIMIT_FSIZE (EXECUTOR_FILE_MB) and RLIMIT_NOFILE. [large_file, open_file_cap]
T11 Secrets: bubblewrap clears the environment and the job gets a fixed, minimal one; the worker's
    variables (DATABASE_URL, API keys) and files are never inside, and the other sandbox processes'
    environments are unreadable. [environment_is_minimal_and_holds_no_secrets,
    other_processes_environments_are_unreadable, shadow_and_host_trees_do_not_exist]
T12 Other processes: the job is pid 1 of its own pid namespace. The zygote and bwrap's init show
    in /proc by number and command line only: their memory, fds and environment are unreadable and
    their pids mean nothing in the job's namespace, so they cannot be signalled; the slot host,
    other slots and the host are not visible at all. Seccomp refuses ptrace, process_vm_*, bpf,
    perf, keyrings, io_uring, userfaultfd, module/kexec loading and, for jobs, mount, unshare,
    setns and clone into new namespaces. A crash (SIGSEGV from ctypes) ends only the job.
    [signalling_the_parent_and_the_zygote_fails, ptrace_is_refused, zygote_memory_is_unreadable,
    namespace_and_mount_syscalls_are_refused, ctypes_crash_is_an_error_and_the_slot_survives,
    a_job_cannot_see_another_slots_job]
T13 No carry-over: a job is a fresh clone of a zygote that never runs job code; its tmpfs, IPC
    namespace (SysV and POSIX IPC) and processes die with it, so the files, threads, subprocesses,
    daemons and module changes of one job are invisible to the next.
    [files_ipc_and_module_state_do_not_carry_over, threads_and_processes_left_running_die_with_the_job]
T14 Verdicts: a job passes only if its judge's end record arrives after every test passed.
    Exiting early (sys.exit, exit(), os._exit, a signal) is a failure; stdout/stderr are not the
    result channel, so printing harness-like text forges nothing; a forked copy of the program
    cannot report. [sys_exit_before_the_tests_is_a_failure, os_exit_before_the_tests_is_a_failure,
    exit_inside_a_test_is_a_failure, overriding_builtins_and_assertion_error_does_not_make_tests_pass,
    printing_what_a_harness_prints_forges_nothing, writing_forged_records_is_tampering,
    closing_the_record_channel_is_tampering, fork_in_the_program_does_not_duplicate_results]
T15 A program cannot forge its verdict. The tests, the expected values and every comparison live
    in the judge, never in the program's memory: the judge's zygote runs in a
    sandbox of its own (bubblewrap, seccomp, rlimits, cgroups) as the slot's second uid, with no
    writable mount and no view of the program's sandbox. The judge calls the program's functions
    through the job's channel; arguments and answers cross as plain data (sandbox/wire.py:
    None, bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset, ranges,
    iterators, numpy arrays and scalars), subclasses reduced to their base type, decoded by the
    judge into fresh objects of base types only; nothing crossing can execute code. An answer
    that is not data fails its assertion (``OUTPUT: <object of type Foo, not comparable as
    data>``) and one that breaks the protocol (wrong token, out of order, malformed) is an error;
    both set the result's ``forgery``, and the teacher rejects such a refinement
    (RejectionReason.FORGED_VERDICT). Each job has a fresh random token, so an earlier job's
    records are refused. What the program does to its own interpreter (gc, frames, sys.modules,
    ctypes, /proc/self/mem, its own copy of the servant) changes only what it answers.
    [lying_eq_ne_and_hash_fail_as_not_data, subclasses_of_int_str_list_are_judged_as_their_base_type,
    gc_frames_sys_modules_ctypes_and_proc_self_mem_reach_nothing,
    forged_records_on_any_fd_are_tampering, replaying_an_earlier_jobs_record_is_tampering,
    exiting_early_is_never_a_pass, a_forked_helper_cannot_answer_for_the_program]
    A judge that fails (our code, or trusted test code that crashes it) is a sandbox_error, never
    the program's verdict; no answer a program can send crashes it (oversized lines are a
    resource limit, malformed ones tampering). [a_judge_crash_is_a_sandbox_error,
    hostile_answers_are_the_programs_verdict_not_a_judge_crash]

Not covered (stated, not hidden): a program can still pass by answering the seen tests' expected
values without solving the task (hard-coding them: the teacher's static guard
RejectionReason.HARDCODES_EXPECTED is the answer to that). Tests that need the program's objects rather than data (a test that builds
a program-defined class, or reads a program's global variable) cannot see them: only the
program's callables are bound in the judge, and what they return must be data.

If any primitive is missing, the slot host refuses to start (SandboxUnavailable naming what is
missing) unless EXECUTOR_ALLOW_INSECURE is set, in which case it says so on every start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import resource
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services.executor.settings import ExecutorSettings
from shared.errors import SandboxUnavailable

SANDBOX_SOURCE = Path(__file__).resolve().parent / "sandbox"
SANDBOX_FILES = (
    "channel.py",
    "confine.py",
    "framing.py",
    "harness.py",
    "judge.py",
    "servant.py",
    "trial.py",
    "verdict.py",
    "wire.py",
    "zygote.py",
)
MOUNT_POINT = "/opt/persd"
# The slot's OOM-kill counter, bound read-only into the sandbox: the zygote reads it before and
# after each job to tell a memory kill from any other (a job can read it too: it is its own).
OOM_CONTROL = "/opt/slot/memory.oom_control"
CGROUP_V1 = Path("/sys/fs/cgroup")
# Processes the sandbox itself needs besides the job's: bwrap's init, the zygote, the job's pid 1.
INFRA_PROCESSES = 4
# Processes of the judge's sandbox besides the infrastructure: the judge of the running job.
JUDGE_PROCESSES = 4
# Memory the slot's cgroup allows beyond the job's cap: the zygote's own pages and slack.
INFRA_MEMORY = 160 * 1024 * 1024

# Syscalls nothing in a sandbox needs (all the way up to the zygote): tracing other processes,
# kernel keyrings, BPF, perf, userfaultfd, io_uring (a history of escapes), module and kexec
# loading, clock and swap administration, and the new mount API.
DENIED_EVERYWHERE = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "acct",
    "swapon",
    "swapoff",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "pivot_root",
    "chroot",
    "iopl",
    "ioperm",
    "quotactl",
    "syslog",
    "lookup_dcookie",
    "vhangup",
    "uselib",
    "ustat",
    "sysfs",
    "fanotify_init",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsmount",
    "fspick",
    "mount_setattr",
    "setns",
)
# Syscalls the zygote needs to build a job (namespaces, mounts) but the job must not have.
DENIED_IN_JOBS = ("mount", "umount2", "unshare")
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
AF_UNIX = 1


def probe(settings: ExecutorSettings) -> list[str]:
    """What this host lacks for kernel-enforced isolation (empty: everything is there)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root privileges (to give each slot its own uid and cgroups)")
    if not _which(settings.bwrap):
        missing.append(f"bubblewrap ({settings.bwrap!r} not found; apt-get install bubblewrap)")
    python = Path(settings.python)
    if not python.is_file():
        missing.append(f"the sandbox interpreter {settings.python} (apt-get install python3)")
    elif not str(python.resolve()).startswith("/usr/"):
        missing.append(
            f"a sandbox interpreter under /usr ({settings.python} is elsewhere; only /usr is"
            " bound into the sandbox)"
        )
    for controller in ("memory", "pids"):
        if not os.access(CGROUP_V1 / controller, os.W_OK):
            missing.append(f"the cgroup v1 {controller} controller at {CGROUP_V1 / controller}")
    try:
        userns = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except (OSError, ValueError):
        userns = 0
    if userns < 2:
        missing.append("user namespaces (/proc/sys/user/max_user_namespaces)")
    try:
        import pyseccomp

        pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    except Exception as exc:  # noqa: BLE001 - any failure means no seccomp
        missing.append(f"libseccomp ({exc})")
    return missing


def _which(command: str) -> str | None:
    return (
        shutil.which(command)
        if "/" not in command
        else (command if os.access(command, os.X_OK) else None)
    )


def install_sandbox_files(runtime_dir: Path) -> Path:
    """Copy the sandbox-side modules into a root-owned, world-readable directory named after their
    content (the checkout may live where the slot's uid cannot read)."""
    blobs = {name: (SANDBOX_SOURCE / name).read_bytes() for name in SANDBOX_FILES}
    digest = hashlib.sha256(b"".join(blobs[n] for n in SANDBOX_FILES)).hexdigest()[:16]
    target = runtime_dir / f"sandbox-{digest}"
    if target.is_dir():
        return target
    runtime_dir.mkdir(parents=True, exist_ok=True)
    runtime_dir.chmod(0o755)
    staging = Path(tempfile.mkdtemp(dir=runtime_dir, prefix=".staging-"))
    for name, blob in blobs.items():
        (staging / name).write_bytes(blob)
        (staging / name).chmod(0o644)
    staging.chmod(0o755)
    try:
        staging.rename(target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another slot host installed it first
    return target


# ---------------------------------------------------------------------- uid lease


@dataclass
class UidLease:
    """An exclusive claim on one sandbox uid, held as an flock for the slot host's lifetime (the
    kernel drops it if the process dies), so two slots never share a uid and its NPROC count."""

    uid: int
    fd: int

    @classmethod
    def acquire(cls, settings: ExecutorSettings) -> UidLease:
        locks = settings.runtime_dir / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        locks.chmod(0o700)
        for uid in range(settings.uid_base, settings.uid_base + settings.uid_count):
            fd = os.open(locks / f"uid-{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            kill_uid(uid)  # leftovers of a slot host that died: nothing carries over
            return cls(uid, fd)
        last = settings.uid_base + settings.uid_count - 1
        raise SandboxUnavailable(
            f"all {settings.uid_count} sandbox uids ({settings.uid_base}-{last}) are in use;"
            " raise EXECUTOR_UID_COUNT"
        )

    def release(self) -> None:
        os.close(self.fd)


def processes_of_uid(uid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("Uid:"):
                        if int(line.split()[1]) == uid:
                            pids.append(int(entry))
                        break
        except (OSError, ValueError):
            continue
    return pids


def kill_uid(uid: int) -> None:
    for pid in processes_of_uid(uid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------- cgroups (v1)


class SlotCgroups:
    """The slot's memory and pids cgroups (v1: this machine kind's v2 has no controllers). One
    per slot, not per job: jobs run one at a time and a job's processes all die with it.

    No cpu cgroup: CFS weighs a cgroup like a single task, so under load from other processes a
    slot's zygote and job together got one task's share, which measurably cut throughput; CPU
    use is bounded by RLIMIT_CPU per process, the process cap and the wall clock instead."""

    def __init__(self, settings: ExecutorSettings, uid: int, judge: bool = False) -> None:
        name = f"{settings.cgroup_parent}/slot-{uid}"
        self.memory = CGROUP_V1 / "memory" / name
        self.pids = CGROUP_V1 / "pids" / name
        # The judge has no scratch: it writes nothing.
        scratch = 0 if judge else settings.scratch_mb * 1024 * 1024
        self.memory_limit = settings.memory_mb * 1024 * 1024 + scratch + INFRA_MEMORY
        self.pids_max = (JUDGE_PROCESSES if judge else settings.nproc) + INFRA_PROCESSES

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.memory, self.pids)

    def create(self) -> None:
        for path in self.paths:
            path.mkdir(parents=True, exist_ok=True)
        self.kill_all()
        self._limit_memory()
        (self.pids / "pids.max").write_text(str(self.pids_max))

    def _limit_memory(self) -> None:
        memory = self.memory / "memory.limit_in_bytes"
        swap = self.memory / "memory.memsw.limit_in_bytes"  # no swapping past the cap either
        if not swap.exists():
            memory.write_text(str(self.memory_limit))
            return
        # The kernel refuses (EINVAL) a memory limit above memsw's at any moment. A uid's cgroup
        # keeps the limits of its last slot, and a uid serves a program or a judge (whose cap is
        # smaller) in turn: raise memsw first, lower memory first.
        raising = self.memory_limit > int(swap.read_text())
        for path in (swap, memory) if raising else (memory, swap):
            path.write_text(str(self.memory_limit))

    def join(self) -> None:
        """Move the calling process in (called between fork and exec of bwrap)."""
        for path in self.paths:
            with open(path / "cgroup.procs", "w") as f:
                f.write("0")

    def oom_kills(self) -> int:
        for line in (self.memory / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def members(self) -> set[int]:
        pids: set[int] = set()
        for path in self.paths:
            with contextlib.suppress(FileNotFoundError):
                pids.update(int(p) for p in (path / "cgroup.procs").read_text().split())
        return pids

    def kill_all(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while (members := self.members()) and time.monotonic() < deadline:
            for pid in members:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        self.kill_all()
        for path in self.paths:
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise
                    time.sleep(0.02)  # the last members are still being reaped


# ---------------------------------------------------------------------- seccomp


def seccomp_program(for_job: bool) -> bytes:
    """Classic BPF from libseccomp: allow by default, refuse the listed syscalls with EPERM, and
    (outside AF_UNIX, which asyncio and multiprocessing need) refuse to create sockets. Jobs also
    lose mount/unshare, clone into new namespaces, and clone3 (ENOSYS, so libc falls back to clone,
    whose flags a filter can see)."""
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED_EVERYWHERE:
        flt.add_rule(sc.ERRNO(errno.EPERM), name)
    flt.add_rule(sc.ERRNO(errno.EPERM), "socket", sc.Arg(0, sc.NE, AF_UNIX))
    if for_job:
        for name in DENIED_IN_JOBS:
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
        for flag in NAMESPACE_FLAGS:
            flt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()


# ---------------------------------------------------------------------- bubblewrap


def bwrap_argv(
    settings: ExecutorSettings,
    sandbox_dir: Path,
    seccomp_fd: int,
    cgroups: SlotCgroups,
    judge: bool = False,
) -> list[str]:
    """The sandbox of a slot's program zygote, or (``judge``) of its judge's zygote, which has no
    scratch and no view of the program's cgroup."""
    argv = [
        _which(settings.bwrap) or settings.bwrap,
        "--unshare-all",  # user, pid, net (loopback only), ipc, uts, cgroup
        "--die-with-parent",
        "--new-session",
        "--clearenv",  # the worker's environment (DATABASE_URL, keys) stays outside
    ]
    for key, value in sandbox_env().items():
        argv += ["--setenv", key, value]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += [
        # Debian resolves libblas/liblapack (numpy) through alternatives symlinks.
        "--ro-bind-try", "/etc/alternatives", "/etc/alternatives",
        "--ro-bind", str(sandbox_dir), MOUNT_POINT,
    ]  # fmt: skip
    if not judge:
        argv += ["--ro-bind", str(cgroups.memory / "memory.oom_control"), OOM_CONTROL]
    argv += [
        "--proc", "/proc",
        "--dev", "/dev",
        "--dir", "/scratch",  # each job mounts its own tmpfs here
        "--symlink", "/scratch/tmp", "/tmp",
        "--remount-ro", "/dev",
        "--remount-ro", "/",
        "--seccomp", str(seccomp_fd),
        "--chdir", "/",
        settings.python, "-s", "-B", f"{MOUNT_POINT}/zygote.py",
    ]  # fmt: skip
    return argv


def sandbox_env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/scratch",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        # Fixed hashing: the repr of a set in feedback must not change between runs.
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        # One BLAS thread: jobs are cloned from the zygote and threads do not survive a clone.
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def drop_to_slot(cgroups: SlotCgroups, uid: int, nproc: int):
    """The preexec function for bwrap: join the slot's cgroups as root, cap processes, then become
    the slot's unprivileged uid *before* bwrap runs, so bwrap sets up an unprivileged user
    namespace instead of running the code as root with capabilities."""

    def preexec() -> None:
        cgroups.join()
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)

    return preexec
