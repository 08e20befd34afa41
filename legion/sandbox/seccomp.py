"""The seccomp allowlist: compiled once in the zygote, installed in every child.

The filter is built from syscall *names* (so it is correct on any architecture libseccomp knows),
exported as raw BPF, and installed in each child with ``prctl(PR_SET_SECCOMP)``. Everything not
listed fails with EPERM; calls only an exploit would make kill the process (SIGSYS); foreign
architectures (i386, x32 on x86_64) are killed by libseccomp's arch check.

Imported only in the zygote: ``pyseccomp`` brings ``ctypes`` and ``subprocess`` with it.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PROT_EXEC = 0x4

FD_IN = 3
FD_OUT = 4

ALLOWED = (
    # memory (mmap/mprotect are added below with a no-PROT_EXEC filter)
    "brk",
    "munmap",
    "mremap",
    "madvise",
    # time (normally vDSO, but some clocksources fall back to the syscall)
    "clock_gettime",
    "clock_getres",
    "gettimeofday",
    "time",
    "clock_nanosleep",
    "nanosleep",
    "restart_syscall",
    # threads/locks already present, randomness, identity
    "futex",
    "sched_yield",
    "rseq",
    "set_robust_list",
    "getrandom",
    "getpid",
    "gettid",
    # signals and exit
    "rt_sigreturn",
    "rt_sigprocmask",
    "sigaltstack",
    "exit",
    "exit_group",
    "close",
)

KILLED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "mount",
    "umount2",
    "unshare",
    "setns",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "personality",
    "pivot_root",
    "chroot",
    "swapon",
    "swapoff",
    "reboot",
)


def build_filter() -> bytes:
    """Compile the allowlist to BPF (the bytes of a ``struct sock_filter`` array)."""
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ERRNO(1))  # EPERM by default
    for name in ALLOWED:
        flt.add_rule(sc.ALLOW, name)
    for name in ("mmap", "mprotect"):
        flt.add_rule(sc.ALLOW, name, sc.Arg(2, sc.MASKED_EQ, PROT_EXEC, 0))
    flt.add_rule(sc.ALLOW, "read", sc.Arg(0, sc.EQ, FD_IN))
    for fd in (1, 2, FD_OUT):
        flt.add_rule(sc.ALLOW, "write", sc.Arg(0, sc.EQ, fd))
    for name in KILLED:
        try:
            flt.add_rule(sc.KILL_PROCESS, name)
        except OSError:  # not a syscall on this architecture
            continue
    fd = os.memfd_create("legion-seccomp", os.MFD_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            flt.export_bpf(f)
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Installer:
    """Holds the libc handle and the BPF in C memory, prepared in the zygote before any fork."""

    def __init__(self, bpf: bytes | None, error: str = "") -> None:
        self.available = bpf is not None
        self.error = error
        bpf = bpf or b""
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._prctl = self._libc.prctl
        self._prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_void_p,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
        self._prctl.restype = ctypes.c_int
        self._buf = ctypes.create_string_buffer(bpf, len(bpf))
        self._prog = _SockFprog(len(bpf) // 8, ctypes.addressof(self._buf))
        self._broken = _SockFprog(0, None)
        self._prog_addr = ctypes.addressof(self._prog)
        self._broken_addr = ctypes.addressof(self._broken)

    def prctl(self, option: int, arg2: int = 0) -> None:
        if self._prctl(option, arg2, None, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    def install(self, *, broken: bool = False) -> None:
        """no_new_privs, then the filter. ``broken`` installs an empty program (test hook)."""
        self.prctl(PR_SET_NO_NEW_PRIVS, 1)
        if not self.available:
            raise OSError(f"seccomp is not available: {self.error}")
        addr = self._broken_addr if broken else self._prog_addr
        if self._prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, addr, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"seccomp filter could not be loaded: {os.strerror(err)}")
