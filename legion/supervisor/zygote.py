"""The agent zygote: a pre-imported, single-threaded fork server for process spawns.

The node starts it once (`python -m legion.supervisor.zygote FD`). It imports trio, msgspec and
the runtime, freezes the heap (`gc.freeze()`, so forked children share those pages), and then waits
on its control socket. For each `Fork` request it imports the requested module (once; later
spawns of the same module are a bare fork), resolves the class or function, forks, and hands the
child the connection socket it received by SCM_RIGHTS. The child sets PDEATHSIG, so it dies with
the zygote, and calls `process.run`. The zygote reaps children and reports each exit status.

It never runs a trio loop and never starts a thread: forking such a process is unsafe. It is never
given PDEATHSIG itself; it learns that the node died by EOF on the control socket, and then kills
every child and exits.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import os
import select
import signal
import socket
import sys
import types
from typing import Any

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

importing_user_code = False
"""True while the zygote imports application modules (the API refuses to run then)."""


def main(ctl_fd: int) -> None:
    import trio  # noqa: F401 - preloaded so that every fork starts warm

    from . import process, server, wire  # noqa: F401

    for name in filter(None, os.environ.get("LEGION_PRELOAD", "").split(",")):
        _import_user(lambda n=name: importlib.import_module(n))
    if os.environ.get("LEGION_SANDBOX", "on") != "off":
        # One sandbox zygote for every process of this node (its children talk straight to
        # the process that asked for them). A machine that cannot run it falls back lazily.
        from legion.sandbox import guard, runner  # noqa: F401 - guard: every agent's prompt

        with contextlib.suppress(Exception):
            runner.share_with_forks()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=ctl_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    children: set[int] = set()
    gc.freeze()
    ctl.send(wire.encode_zygote(wire.ZygoteReady(os.getpid())))
    while True:
        readable, _, _ = select.select([ctl.fileno(), wake_r], [], [])
        if wake_r in readable:
            while True:
                try:
                    if not os.read(wake_r, 4096):
                        break
                except BlockingIOError:
                    break
            _reap(ctl, children)
        if ctl.fileno() in readable:
            try:
                data, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 2)
            except OSError:
                data, fds = b"", []
            if not data:
                _kill_all(children)
                return
            msg = wire.decode_zygote(data)
            if type(msg) is wire.Fork:
                _fork(ctl, msg, fds[0], children, (ctl_fd, wake_r, wake_w))


def _fork(
    ctl: socket.socket, msg: Any, fd: int, children: set[int], own_fds: tuple[int, ...]
) -> None:
    from . import wire

    try:
        _refresh()
        target = _resolve(msg)
    except BaseException as exc:
        os.close(fd)
        error = (
            f"cannot import {msg.qualname} from module {msg.module!r} in the worker: "
            f"{type(exc).__name__}: {exc}. Classes and functions run as processes must be "
            "importable by module path: define them at the top level of a module, or of a "
            "script whose entry point is under `if __name__ == '__main__':`"
        )
        ctl.send(wire.encode_zygote(wire.Forked(msg.id, 0, error)))
        return
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        try:
            _child(fd, target, msg.cwd, zygote_pid, own_fds)
        finally:
            os._exit(1)
    os.close(fd)
    children.add(pid)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        ctl.send(wire.encode_zygote(wire.Forked(msg.id, pid, None)))
        return
    try:
        socket.send_fds(ctl, [wire.encode_zygote(wire.Forked(msg.id, pid, None))], [pidfd])
    finally:
        os.close(pidfd)


def _child(fd: int, target: Any, cwd: str, zygote_pid: int, own_fds: tuple[int, ...]) -> None:
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for own in own_fds:
        os.close(own)
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote_pid:
        os._exit(1)
    try:
        os.chdir(cwd)
    except OSError:
        pass
    from .process import run

    run(fd, target)


_stamps: dict[str, tuple[types.ModuleType, tuple[int, ...]]] = {}
"""Application modules imported here, dependencies first (the order in which their imports
completed): the module and the stamp of its source file when it was loaded."""


def _stamp(path: str) -> tuple[int, ...]:
    """What changes when a file is saved: an editor that writes a new file and renames it over
    the old one changes the inode; one that rewrites in place, the modification time (a
    rewrite of the same size within one tick of the kernel's file clock goes unseen)."""
    try:
        st = os.stat(path)
    except OSError:
        return ()
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)


def _import_user(load: Any) -> Any:
    from .codeload import is_application

    global importing_user_code
    importing_user_code = True
    before = set(sys.modules)
    try:
        return load()
    finally:
        importing_user_code = False
        for name in [n for n in sys.modules if n not in before]:
            module = sys.modules[name]
            if is_application(module):
                _stamps[name] = (module, _stamp(module.__file__ or ""))


def _refresh() -> None:
    """Hot reload: re-execute the application modules whose source changed since they were
    loaded here, dependencies first, so the next forks run the new code. Classes and functions
    are patched in place (`codeload`), so a module that did `from changed import X` holds the
    new `X` without running again. A module that fails keeps its old code."""
    changed = []
    for name, (module, loaded) in list(_stamps.items()):
        stamp = _stamp(module.__file__ or "")
        if sys.modules.get(name) is not module or not stamp:
            # gone, its file gone, or its name now holds another module (`import
            # multiprocessing` points `__mp_main__` at the zygote's own `__main__`): not ours
            _stamps.pop(name)
        elif stamp != loaded:
            _stamps[name] = (module, stamp)
            changed.append(name)
    if not changed:
        return
    from .codeload import LoadError, load

    global importing_user_code
    for name in changed:
        importing_user_code = True
        try:
            load([name])
        except LoadError as exc:  # under `legion dev` its watcher has said so, in one line
            if not os.environ.get("LEGION_DEV"):
                print(f"legion reload: {name} keeps its old code: {exc.detail}", file=sys.stderr)
        finally:
            importing_user_code = False


def _resolve(msg: Any) -> Any:
    for entry in reversed(msg.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if msg.module == "__main__":
        module = sys.modules.get("__mp_main__")
        if module is None or getattr(module, "__file__", None) != msg.main_path:
            if msg.main_path is None:
                raise ImportError("the application's __main__ has no file")
            os.chdir(msg.cwd)
            module = _import_user(lambda: _run_script(msg.main_path))
            _stamps.pop("__mp_main__", None)  # last: it imports the others
            _stamps["__mp_main__"] = (module, _stamp(msg.main_path))
    else:
        module = sys.modules.get(msg.module)
        if module is None:
            os.chdir(msg.cwd)
            module = _import_user(lambda: importlib.import_module(msg.module))
    obj: Any = module
    for part in msg.qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _run_script(path: str) -> Any:
    """Run the application's script as module `__mp_main__` (as multiprocessing does), so its
    `if __name__ == "__main__":` block does not run; its functions' globals are the module's
    own namespace, which a reload re-executes the script into."""
    import types

    module = types.ModuleType("__mp_main__")
    module.__file__ = path
    sys.modules["__mp_main__"] = module
    try:
        with open(path, encoding="utf-8") as f:
            exec(compile(f.read(), path, "exec", dont_inherit=True), module.__dict__)
    except BaseException:
        sys.modules.pop("__mp_main__", None)
        raise
    # `import multiprocessing` (first in this process) aliases `__mp_main__` to `__main__`, the
    # zygote itself: put the script back, or it would be looked up, and reloaded, as the zygote.
    sys.modules["__mp_main__"] = module
    return module


def _reap(ctl: socket.socket, children: set[int]) -> None:
    from . import wire

    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        try:
            ctl.send(wire.encode_zygote(wire.Reaped(pid, status)))
        except OSError:
            pass


def _kill_all(children: set[int]) -> None:
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in list(children):
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


if __name__ == "__main__":
    # Run as the package module, not as __main__, so the API sees `importing_user_code`.
    from legion.supervisor import zygote as _zygote

    _zygote.main(int(sys.argv[1]))
