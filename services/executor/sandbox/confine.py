"""Kernel calls the zygote needs that Python's ``os`` module lacks (clone with namespace flags,
mount, capset, seccomp), through ctypes, plus the job's own confinement sequence.

A job is cloned straight into fresh user, mount, pid and IPC namespaces: one clone per job instead
of fork-then-unshare-then-fork, so the job is pid 1 of its own pid namespace. When it exits or is
killed the kernel kills everything it started, and from inside it the zygote is neither visible
nor signallable.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import signal

# The GIL stays held across these calls (PyDLL): a raw clone must not happen while another
# thread could be inside the interpreter, and the zygote has no other threads.
_libc = ctypes.PyDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
JOB_NAMESPACES = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC

MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_BIND = 0x1000
MS_REC = 0x4000

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
SECCOMP_MODE_FILTER = 2
CAP_LAST = 63  # drop beyond the kernel's last cap: EINVAL is ignored

_SYS_CLONE = {"x86_64": 56, "aarch64": 220}

JOB_UID = 1000  # the job's uid inside its user namespace; the slot's uid outside


def _check(result: int, what: str) -> None:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def clone_into_namespaces(flags: int = JOB_NAMESPACES) -> int:
    """Like ``os.fork()``, but the child starts in new namespaces (it is pid 1 of the new pid
    namespace). Python's at-fork hooks do not run: the zygote is single-threaded and the child
    never returns to the zygote's code, so the only difference is that modules such as ``random``
    are not reseeded, which keeps jobs deterministic."""
    number = _SYS_CLONE.get(platform.machine())
    if number is None:
        raise OSError(0, f"clone: unsupported architecture {platform.machine()}")
    pid = _libc.syscall(number, ctypes.c_ulong(flags | signal.SIGCHLD), 0, 0, 0, 0)
    _check(pid, "clone")
    return pid


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    result = _libc.mount(
        source.encode(),
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(result, f"mount {target}")


def prctl(option: int, arg: int = 0) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl {option}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def map_ids(outer_uid: int, outer_gid: int) -> None:
    """Map the job's uid/gid to the slot's: the only identity it has, inside or outside."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{JOB_UID} {outer_uid} 1")
    _write("/proc/self/gid_map", f"{JOB_UID} {outer_gid} 1")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> None:
    """Creating the user namespace gave the job every capability *inside* it (enough to mount);
    it keeps none of them."""
    for cap in range(CAP_LAST + 1):
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) < 0:
            break  # past the kernel's last capability
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def load_seccomp(bpf: bytes) -> None:
    """Install a classic-BPF seccomp program (built on the host with libseccomp)."""
    if not bpf or len(bpf) % 8:
        raise ValueError("seccomp program must be a non-empty array of 8-byte instructions")
    buffer = ctypes.create_string_buffer(bpf, len(bpf))
    prog = _SockFprog(len(bpf) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(
        _libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(prog), 0, 0),
        "seccomp",
    )


def set_rlimits(limits: dict, address_space: int | None) -> None:
    cpu = max(1, int(limits["cpu_s"] + 0.999))
    # soft == hard: the kernel then sends SIGKILL at the limit, which even a namespace's pid 1
    # cannot ignore (SIGXCPU would be dropped for it).
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"], limits["file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits["nofile"], limits["nofile"]))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if address_space is not None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))


def vm_size() -> int:
    """This process's virtual size in bytes (the address-space limit is set relative to it, since
    the prelude's numpy alone maps hundreds of MiB it never touches)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
