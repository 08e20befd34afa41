"""The zygote: a clean interpreter that forks one hardened child per evaluation.

Started by the parent as ``python -I -S -B -c BOOTSTRAP`` with a scrubbed environment and cwd
``/``. The bootstrap adds only the paths it needs and registers ``legion`` and
``legion.sandbox`` as bare packages, so no ``__init__`` of the application (and no ``.pth``
start-up hook of any installed package) runs here. The zygote preloads the module allowlist,
compiles the seccomp filter once, probes Landlock, calls ``gc.freeze()`` and reports ``Ready``.

It never sees code, bindings or tool traffic: a ``Spawn`` request carries limits and three fds
(the child's input pipe, its output pipe and a per-evaluation status socket); the zygote forks,
replies ``Spawned`` with a pidfd on the status socket and later ``Exited``. EOF on the control
socket means the parent is gone: it kills its children and exits. It has no PDEATHSIG.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import select
import signal
import socket
import sys
from typing import NoReturn

BOOTSTRAP = """\
import sys, types
fd, root, *paths = sys.argv[1:]
sys.path.extend(paths)
for name, sub in (("legion", "legion"), ("legion.sandbox", "legion/sandbox")):
    pkg = types.ModuleType(name)
    pkg.__path__ = [root + "/" + sub]
    sys.modules[name] = pkg
from legion.sandbox.zygote import main
main(int(fd))
"""


def _vmsize() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def main(ctl_fd: int) -> NoReturn:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=ctl_fd)
    from . import child, guard, protocol
    from .landlock import Landlock
    from .seccomp import Installer, build_filter

    for name in guard.PRELOADED_MODULES + guard.HIDDEN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
    hidden = frozenset(n for n in guard.HIDDEN_MODULES if n in sys.modules)
    try:
        bpf: bytes | None = build_filter()
        error = ""
    except Exception as exc:  # libseccomp missing or too old: reported, children fail closed
        bpf, error = None, f"{type(exc).__name__}: {exc}"
    try:
        landlock: Landlock | None = Landlock()
    except OSError:
        landlock = None
    state = child.ZygoteState(os.getpid(), Installer(bpf, error), landlock, _vmsize(), hidden)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    gc.collect()
    gc.freeze()
    ready = protocol.Ready(
        os.getpid(),
        sys.version.split()[0],
        bpf is not None,
        error,
        landlock.abi if landlock else 0,
        state.vmsize,
        sorted(guard.ALLOWED_MODULES),
    )
    ctl.sendall(protocol.encode(ready))
    children: dict[int, socket.socket] = {}
    poller = select.poll()
    poller.register(ctl, select.POLLIN)
    poller.register(wake_r, select.POLLIN)
    while True:
        for fd, _ in poller.poll():
            if fd == wake_r:
                _drain(wake_r)
                _reap(children, protocol)
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(ctl, 65536, 3)
            except OSError:
                data, fds = b"", []
            if not data:
                _shutdown(children)
            try:
                spawn = protocol.spawn_decoder.decode(data)
            except Exception:
                spawn = None
            if spawn is None or len(fds) != 3:
                for fd_ in fds:
                    os.close(fd_)
                continue
            in_fd, out_fd, status_fd = fds
            status = socket.socket(fileno=status_fd)
            pid = os.fork()
            if pid == 0:
                for s in (ctl, status, *children.values()):
                    s.detach()
                child.main(in_fd, out_fd, spawn.limits, state)
            os.close(in_fd)
            os.close(out_fd)
            try:
                pidfd = os.pidfd_open(pid)
                try:
                    socket.send_fds(status, [protocol.encode(protocol.Spawned(pid))], [pidfd])
                finally:
                    os.close(pidfd)
            except OSError:
                os.kill(pid, signal.SIGKILL)
            children[pid] = status


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _reap(children: dict[int, socket.socket], protocol: object) -> None:
    from .protocol import Exited, encode

    while True:
        try:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock = children.pop(pid, None)
        if sock is None:
            continue
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        msg = Exited(pid, code, sig, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
        with contextlib.suppress(OSError):
            sock.send(encode(msg))
        sock.close()


def _shutdown(children: dict[int, socket.socket]) -> NoReturn:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    os._exit(0)
