"""Hot code reload: `legion.reload(modules)` swaps new code into a running node.

1. Each name is checked first: a module that is not the application's own (Legion, the
   standard library, an installed package) is refused by name (`ReloadError`), and each
   module's source is compiled: a syntax error stops the reload before anything changes
   (`ReloadError`, with its `path:line`), and the old code keeps running everywhere.
2. The modules are re-executed in this process, and the classes and functions they define are
   patched in place (`legion.supervisor.codeload`): every reference to them (`from my_tools
   import MyTool` in another module, a `tools = [MyTool]` list, live instances) sees the new
   code, and calls through the module object (`helpers.f()`) reach the new functions.
3. The agent zygote notices the changed source on its next fork and loads it the same way, so
   new processes start on the new code (the zygote is not restarted: live processes die with
   it).
4. Every live process is asked, and each one that imported a changed module, directly or
   through another module, loads it the same way: a server between two messages (then
   `code_change(old_vsn, extra)` when its own class's module changed); an agent between two
   turns (a turn in flight finishes on the old code), keeping its conversation, bindings and
   tool instances and rebuilding its tool table and system prompt from the tools as they are
   now; a function process at its next `legion.receive` (at once if it waits in one), its
   running frame kept and its next call through a module object new. The process decides
   (`legion.supervisor.process`), so one whose code this application never imported is reached
   too. A process whose switch fails is put back on its old code and listed in `failed`; a
   supervised one is then ended so that its supervisor restarts it on the new code
   (`restarted`). One still busy when the timeout ends is listed in `failed` as busy, not
   restarted: its request stays queued and it switches when it gets to it.

A `legion.telemetry.RELOAD` event reports which modules changed and which processes took it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import telemetry
from .errors import LegionError
from .supervisor import api, wire
from .supervisor.terms import CodeChange, Pid

__all__ = ["ReloadError", "ReloadResult", "areload", "reload"]


class ReloadError(LegionError):
    """A module cannot be reloaded (it cannot be compiled or executed, or it is not the
    application's own); the old code keeps running."""

    def __init__(self, module: str, detail: str, location: str | None = None) -> None:
        at = f" (at {location})" if location else ""
        super().__init__(f"cannot reload {module}: {detail}{at}; the old code keeps running")
        self.module = module
        self.detail = detail
        self.location = location
        """`path:line` of the failure in the application's source, when there is one."""

    def line(self) -> str:
        """The error as one line for a person watching `legion dev`: `path:line: detail` (the
        form editors and terminals link to the source), then what keeps running."""
        if self.location is None:
            return f"legion: {self}"
        return f"legion: {self.location}: {self.detail}; {self.module} keeps its old code"


@dataclass
class ReloadResult:
    """What a reload did: the modules, the processes that switched, and those that failed.

    A live process appears in `reloaded` only once it runs the new code; one that did not is
    in `failed` with the reason. Processes that never imported a changed module are in neither.
    """

    modules: list[str]
    reloaded: list[Pid] = field(default_factory=list)
    failed: dict[Pid, str] = field(default_factory=dict)
    restarted: list[Pid] = field(default_factory=list)
    """Supervised processes that could not switch in place: ended with reason "reload", so their
    supervisor starts them again, from the zygote, on the new code."""


def _origin(name: str) -> Any:
    """Where the module `name` was (or would be) loaded from: a path, or None for a built-in;
    `ReloadError` when there is no such module."""
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError) as exc:  # its parent package is missing, say
        raise ReloadError(name, f"no such module ({type(exc).__name__}: {exc})") from None
    if spec is None:
        raise ReloadError(name, "no such module: it is neither imported nor importable")
    return spec.origin


def _source(name: str) -> str:
    """The source file of the module `name`, or `ReloadError` saying why there is none."""
    path = _origin(name)
    if not isinstance(path, str) or not path.endswith(".py"):
        raise ReloadError(name, "no Python source file")
    return path


def _names(modules: Any) -> list[str]:
    """The module names given to `reload`, or `TypeError` naming the first that is no name."""
    rule = "modules are named by str, a dotted module name such as 'my_tools' or '__main__'"
    if isinstance(modules, str):
        return [modules]
    try:
        names = list(modules)
    except TypeError:
        raise TypeError(
            f"legion.reload: {rule}, or an iterable of them; not {type(modules).__name__} "
            f"{modules!r}"
        ) from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"legion.reload: {rule}; not {type(name).__name__} {name!r}")
    return names


def _refuse_libraries(names: list[str]) -> None:
    """`ReloadError` naming every module that is not the application's, before anything runs.

    Re-running a library's top level under a live program would replace its objects
    (`os.environ`, a registry, a lock) while every other module still holds the old ones, and
    Legion's own modules run the node that carries out the reload."""
    from .supervisor import codeload

    refused = {}
    for name in names:
        if name == "__main__":  # the application's script, whatever its file is called
            continue
        why = codeload.not_application(name, _origin(name))
        if why is not None:
            refused[name] = why
    if refused:
        raise ReloadError(
            ", ".join(refused),
            "; ".join(f"{name} is {why}" for name, why in refused.items())
            + ". Only the application's own modules are reloaded (never Legion, the standard "
            "library or installed packages): leave those out, or restart the program to update "
            "them",
        )


def _check(modules: list[str]) -> None:
    """Compile every module, then load them here; a failure raises before any process is asked.

    The running script (`__main__`) is compiled but not re-run here, since that would run its
    main block again; processes hold it as `__mp_main__` and do re-run it."""
    from .supervisor import codeload

    for name in modules:
        path = _source(name)
        try:
            with open(path, encoding="utf-8") as f:
                compile(f.read(), path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            where = f"{exc.filename or path}:{exc.lineno}"
            raise ReloadError(name, f"{type(exc).__name__}: {exc.msg}", where) from exc
        except (OSError, ValueError) as exc:
            raise ReloadError(name, f"{type(exc).__name__}: {exc}") from exc
    try:
        codeload.load(m for m in modules if m != "__main__")
    except codeload.LoadError as exc:
        raise ReloadError(exc.module, exc.detail, _where(exc.__cause__)) from exc


def _where(exc: BaseException | None) -> str | None:
    """`path:line` of the deepest frame of `exc` in the application's code (the module's top
    level that raised, or a function it called), None when there is none."""
    import traceback

    from .supervisor import codeload

    if exc is None:
        return None
    if isinstance(exc, SyntaxError) and exc.filename and exc.lineno:  # one the module compiles
        return f"{exc.filename}:{exc.lineno}"
    legion_dir = os.path.dirname(os.path.abspath(__file__)) + os.sep
    ours = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(legion_dir)
        and codeload.not_application("", f.filename) is None
    ]
    return f"{ours[-1].filename}:{ours[-1].lineno}" if ours else None


class _Plan:
    """Every live process is asked with one `CodeChange` request, and each decides on its own
    side what it means (`legion.supervisor.process`): a server loads between two messages, an
    agent between two turns, a function process at its next `legion.receive`; one that never
    imported a changed module answers that it loaded nothing. So a process whose code this
    application never imported is reached too. The runtime's own processes (supervisors) run
    no application code and are left alone."""

    def __init__(self, names: list[str], extra: Any) -> None:
        self.names = names
        self.extra = extra

    def request(self, module: str, qualname: str) -> CodeChange | None:
        """The request for a process of `module.qualname`, or None to leave it alone."""
        if module.split(".")[0] == "legion":
            return None
        return CodeChange(self.extra, self.names)


@dataclass
class _Busy:
    """A process that did not answer in time: why. Its request stays queued (it switches
    when it gets to it), so it is not restarted."""

    reason: str


def _busy(module: str, qualname: str, timeout: float | None) -> _Busy:
    """Why a process did not answer in time, as far as this application can tell its kind."""
    from .supervisor.server import Server

    target = _resolve(module, qualname)
    if getattr(target, "__legion_agent__", False) is True:
        doing = (
            "an agent busy with a turn; if it uses a changed module, it switches when the turn ends"
        )
    elif isinstance(target, type) and issubclass(target, Server):
        doing = (
            "a server busy with a long call; if it uses a changed module, it switches before "
            "its next message"
        )
    elif target is not None:
        doing = (
            "a function process not waiting in legion.receive; if it uses a changed module, it "
            "switches at its next receive"
        )
    else:
        doing = "busy; if it uses a changed module, it switches when it gets to the request"
    return _Busy(f"no answer within {timeout} s: {doing}")


def _resolve(module: str, qualname: str) -> Any:
    target: Any = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target


def _outcome(result: ReloadResult, pid: Pid, reply: Any, supervised: list[Any]) -> None:
    """Record one process's answer: the modules it loaded (`["ok", ..., modules]`), or why it
    did not switch (`["error", reason]`, `_Busy`, or the call's failure as a string)."""
    restart = True
    if isinstance(reply, _Busy):
        result.failed[pid], restart = reply.reason, False
    elif isinstance(reply, str):
        result.failed[pid] = reply
    elif reply[0] != "ok":
        result.failed[pid] = str(reply[1])
    elif reply[-1]:
        result.reloaded.append(pid)
    if pid in result.failed and restart and supervised and supervised[0]:
        api.exit(pid, "reload")  # its supervisor starts it again, on the new code
        result.restarted.append(pid)


def reload(
    modules: Iterable[str] | str, extra: Any = None, timeout: float | None = 30.0
) -> ReloadResult:
    """Reload `modules` (names) in the running node; see the module docstring.

    `extra` is passed to the `code_change` of servers whose own module changed. Every live
    process is asked at once, and `timeout` bounds the wait for all of them (an agent answers
    once its turn in flight is over, a function process at its next `legion.receive`). The
    calling process loads the modules itself (step 2)."""
    from .supervisor.endpoint import _deadline

    timeout = api.check_timeout(timeout, "legion.reload")
    names, start, result = _begin(modules)
    plan = _Plan(names, extra)
    endpoint = api._endpoint()
    live: list[list[Any]] = endpoint._acked(lambda r: wire.Processes(r), None)
    asked = []
    for pid, module, qualname, *supervised in live:
        request = plan.request(module, qualname)
        if request is None or pid == endpoint.pid:
            continue
        try:
            asked.append((pid, module, qualname, endpoint._start_call(pid, request), supervised))
        except Exception as exc:
            _outcome(result, pid, f"{type(exc).__name__}: {exc}", supervised)
    deadline = _deadline(timeout)
    for pid, module, qualname, ref, supervised in asked:
        ok = endpoint._wait(endpoint._answered(ref, False), deadline)
        try:
            reply = endpoint._finish_call(ref, ok, pid, timeout)
        except Exception as exc:
            reply = _failure(exc, module, qualname, timeout)
        _outcome(result, pid, reply, supervised)
    return _end(result, start)


def _failure(exc: Exception, module: str, qualname: str, timeout: float | None) -> Any:
    """Why a process did not answer: busy past the timeout (`_busy`), or the call's failure
    (it died meanwhile, say)."""
    from .supervisor.errors import CallTimeout

    if isinstance(exc, CallTimeout):
        return _busy(module, qualname, timeout)
    return f"{type(exc).__name__}: {exc}"


def _begin(modules: Iterable[str] | str) -> tuple[list[str], float, ReloadResult]:
    """Check the names, then compile and load the modules here (`_check`); any failure raises
    before a process is asked."""
    names = _names(modules)
    start = time.perf_counter()
    try:
        _refuse_libraries(names)
        _check(names)
    except ReloadError as exc:
        telemetry.emit(
            telemetry.RELOAD,
            {"duration": time.perf_counter() - start, "processes": 0},
            {"modules": names, "outcome": "error", "error": str(exc), "pids": []},
        )
        raise
    return names, start, ReloadResult(names)


def _end(result: ReloadResult, start: float) -> ReloadResult:
    telemetry.emit(
        telemetry.RELOAD,
        {"duration": time.perf_counter() - start, "processes": len(result.reloaded)},
        {
            "modules": result.modules,
            "outcome": "error" if result.failed else "ok",
            "pids": result.reloaded,
            "failed": result.failed,
        },
    )
    return result


async def areload(
    modules: Iterable[str] | str, extra: Any = None, timeout: float | None = 30.0
) -> ReloadResult:
    """`reload` for async code: every live process is asked at once."""
    timeout = api.check_timeout(timeout, "legion.reload")
    names, start, result = _begin(modules)
    plan = _Plan(names, extra)
    endpoint = api._endpoint()
    live: list[list[Any]] = await endpoint._aacked(lambda r: wire.Processes(r), None)

    async def one(pid: Pid, module: str, qualname: str, *supervised: Any) -> None:
        request = plan.request(module, qualname)
        if request is None or pid == endpoint.pid:
            return
        try:
            reply = await endpoint.acall(pid, request, timeout)
        except Exception as exc:
            reply = _failure(exc, module, qualname, timeout)
        _outcome(result, pid, reply, list(supervised))

    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for row in live:
                nursery.start_soon(one, *row)
    else:
        import asyncio

        await asyncio.gather(*(one(*row) for row in live))
    return _end(result, start)


# -- the watcher (`legion dev`, `legion.configure(reload=True)`) -----------------------------------


class Watcher:
    """Watches directories of Python files and reloads the modules whose files were saved.

    It runs in a thread of the application (watchfiles: inotify, debounced); a save maps to the
    already-imported modules defined by that file, then to `reload`. A syntax or import error is
    logged with the file and line and the old code keeps running. `stop()` ends it.
    """

    def __init__(self, paths: Iterable[str], debounce_ms: int = 50) -> None:
        import threading

        self.paths = [str(p) for p in paths]
        self.results: list[ReloadResult] = []
        self._fds_before = _notify_fds()
        self._debounce = debounce_ms
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="legion-reload", daemon=True)
        self._thread.start()
        self._ready.wait(5)  # a save made after `watch` returns is seen

    def stop(self) -> None:
        """Stop watching; returns once the watcher's thread and its descriptors are gone."""
        import time

        self._stop.set()
        self._thread.join(10)
        # watchfiles' notify backend closes its epoll/eventfd pair from its own thread just
        # after: wait (bounded) so that a stopped watcher holds nothing.
        deadline = time.monotonic() + 2
        while _notify_fds() - self._fds_before and time.monotonic() < deadline:
            time.sleep(0.01)

    def _run(self) -> None:
        import logging

        import watchfiles

        log = logging.getLogger("legion.reload")
        changes = watchfiles.watch(
            *self.paths,
            watch_filter=watchfiles.PythonFilter(),
            debounce=self._debounce,
            step=20,
            stop_event=self._stop,
            rust_timeout=200,
            yield_on_timeout=True,  # the first (empty) batch says the watch is in place
        )
        for batch in changes:
            self._ready.set()
            names = modules_of(path for _, path in batch)
            if not names:
                continue
            try:
                result = reload(names)
            except ReloadError as exc:
                log.error("%s", exc.line())  # one line, whatever the logging set-up
                continue
            except Exception:
                log.exception("reload of %s failed", ", ".join(names))
                continue
            self.results.append(result)
            print(summary(result), file=sys.stderr, flush=True)


def summary(result: ReloadResult) -> str:
    """One line for a person watching `legion dev`: the modules, how many processes switched,
    and each process that did not, with why."""
    count = len(result.reloaded)
    text = (
        f"legion: reloaded {', '.join(result.modules)}: "
        f"{count} process{'' if count == 1 else 'es'} switched to the new code"
    )
    if result.failed:
        failed = "; ".join(f"{pid!r}: {why}" for pid, why in result.failed.items())
        text += f"; {len(result.failed)} did not ({failed})"
    if result.restarted:
        text += f"; {len(result.restarted)} restarted by their supervisor"
    return text


def _notify_fds() -> set[str]:
    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:"):
                fds.add(fd)
        except OSError:
            continue
    return fds


def modules_of(paths: Iterable[str]) -> list[str]:
    """The imported application modules whose source file is one of `paths` (`__main__` for
    the script); a library saved under a watched folder (a virtualenv in the project, say) is
    not one, since `reload` refuses it."""
    from .supervisor import codeload

    wanted = {os.path.realpath(p) for p in paths}
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if not file or name == "__mp_main__" or os.path.realpath(file) not in wanted:
            continue
        if name == "__main__" or codeload.is_application(module):
            found.append(name)
    return sorted(found)


_watcher: Watcher | None = None


def watch(paths: Iterable[str] | None = None) -> Watcher:
    """Start reloading on save: watch `paths` (default: the current directory) for edits to the
    modules this application imported. Returns the `Watcher`; a second call replaces the first."""
    global _watcher
    if _watcher is not None:
        _watcher.stop()
    _watcher = Watcher(paths if paths is not None else [os.getcwd()])
    return _watcher
