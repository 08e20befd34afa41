"""Landlock, through its three raw syscalls (no C extension): a deny-everything ruleset.

With no rule added, every access type the ruleset *handles* is denied: all filesystem access, TCP
bind/connect (ABI >= 4), signals and abstract unix sockets outside the domain (ABI >= 6).
Best effort: kernels without Landlock report ABI 0 and the layer is reported as inactive.
"""

from __future__ import annotations

import ctypes
import os

SYS_CREATE_RULESET = 444  # x86_64 and aarch64 share the numbers of these new syscalls
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


def _fs_mask(abi: int) -> int:
    mask = (1 << 13) - 1  # ABI 1: execute .. make_sym
    if abi >= 2:
        mask |= 1 << 13  # refer
    if abi >= 3:
        mask |= 1 << 14  # truncate
    if abi >= 5:
        mask |= 1 << 15  # ioctl_dev
    return mask


class Landlock:
    """Probed in the zygote; ``restrict()`` is called in each child."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._syscall = self._libc.syscall
        self._syscall.restype = ctypes.c_long
        self.abi = self._probe()

    def _probe(self) -> int:
        abi = self._syscall(
            ctypes.c_long(SYS_CREATE_RULESET),
            ctypes.c_void_p(None),
            ctypes.c_size_t(0),
            ctypes.c_uint32(CREATE_RULESET_VERSION),
        )
        return int(abi) if abi > 0 else 0

    def restrict(self) -> None:
        """Deny everything this ABI can handle. Needs no_new_privs (or CAP_SYS_ADMIN)."""
        if self.abi <= 0:
            raise OSError("Landlock is not available on this kernel")
        attr = _RulesetAttr(
            _fs_mask(self.abi),
            3 if self.abi >= 4 else 0,  # bind_tcp | connect_tcp
            3 if self.abi >= 6 else 0,  # abstract unix socket | signal
        )
        size = 8 if self.abi < 4 else (16 if self.abi < 6 else 24)
        fd = self._syscall(
            ctypes.c_long(SYS_CREATE_RULESET),
            ctypes.byref(attr),
            ctypes.c_size_t(size),
            ctypes.c_uint32(0),
        )
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"landlock_create_ruleset: {os.strerror(err)}")
        try:
            rc = self._syscall(
                ctypes.c_long(SYS_RESTRICT_SELF), ctypes.c_int(fd), ctypes.c_uint32(0)
            )
            if rc != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"landlock_restrict_self: {os.strerror(err)}")
        finally:
            os.close(fd)
