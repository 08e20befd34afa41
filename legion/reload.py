"""Hot code reload: `legion.reload(modules)` swaps new code into a running node.

1. Each module's source is compiled first: a syntax error stops the reload before anything
   changes (`ReloadError`), and the old code keeps running everywhere.
2. The module is re-executed in this process, so what it starts from now on is the new code.
3. The agent zygote notices the changed source on its next fork and re-executes it, so new
   processes start on the new code (the zygote is not restarted: live processes die with it).
4. Every live process that runs the new code is told to switch: a server whose class is defined
   in a changed module swaps its class between two messages and runs `code_change(old_vsn,
   extra)` (`legion.code_change(pid, extra, reload=True)`); an agent switches between two turns
   (a turn in flight finishes on the old code), keeps its conversation, bindings and tool
   instances, and rebuilds its system prompt from the tools as they are now.

A `legion.telemetry.RELOAD` event reports which modules changed and which processes took it.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import telemetry
from .errors import LegionError
from .supervisor import api, wire
from .supervisor.terms import Pid

__all__ = ["ReloadError", "ReloadResult", "areload", "reload"]


class ReloadError(LegionError):
    """A changed module cannot be compiled or executed; the old code keeps running."""

    def __init__(self, module: str, detail: str) -> None:
        super().__init__(f"cannot reload {module}: {detail}; the old code keeps running")
        self.module = module
        self.detail = detail


@dataclass
class ReloadResult:
    """What a reload did: the modules, the processes that switched, and those that failed."""

    modules: list[str]
    reloaded: list[Pid] = field(default_factory=list)
    failed: dict[Pid, str] = field(default_factory=dict)
    restarted: list[Pid] = field(default_factory=list)
    """Supervised processes that could not switch in place: ended with reason "reload", so their
    supervisor starts them again, from the zygote, on the new code."""


def _source(name: str) -> str:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is None:
        spec = importlib.util.find_spec(name)
        path = spec.origin if spec is not None else None
    if not isinstance(path, str) or not path.endswith(".py"):
        raise ReloadError(name, "no Python source file")
    return path


def _check(modules: list[str]) -> None:
    """Compile and re-execute here, in order; a failure raises before any process is asked."""
    from .supervisor.server import _reload_from_source

    for name in modules:
        path = _source(name)
        try:
            with open(path, encoding="utf-8") as f:
                compile(f.read(), path, "exec")
        except SyntaxError as exc:
            raise ReloadError(name, f"SyntaxError: {exc.msg} ({path}, line {exc.lineno})") from exc
        except OSError as exc:
            raise ReloadError(name, f"{type(exc).__name__}: {exc}") from exc
    for name in modules:
        module = sys.modules.get(name)
        if module is None or name == "__main__":  # the running script: checked, not re-run
            continue
        try:
            _reload_from_source(module)
        except BaseException as exc:
            raise ReloadError(name, f"{type(exc).__name__}: {exc}") from exc


def reload(modules: Iterable[str] | str, extra: Any = None, timeout: float = 30.0) -> ReloadResult:
    """Reload `modules` (names) in the running node; see the module docstring."""
    names, start, result = _begin(modules)
    live: list[list[Any]] = api._endpoint()._acked(lambda r: wire.Processes(r), None)
    for pid, module, qualname, *supervised in live:
        try:
            if _is_agent(module, qualname):
                _agent_outcome(result, pid, api.call(pid, [_control(), "reload", names], timeout))
            elif module in names:
                api.code_change(pid, extra, reload=True, timeout=timeout)
                result.reloaded.append(pid)
        except Exception as exc:
            result.failed[pid] = f"{type(exc).__name__}: {exc}"
        _restart_if_supervised(result, pid, supervised)
    return _end(result, start)


def _restart_if_supervised(result: ReloadResult, pid: Pid, supervised: list[Any]) -> None:
    """A supervised process that could not switch is ended; its supervisor restarts it on the
    new code (an unsupervised one keeps running the old code, reported in `failed`)."""
    if pid in result.failed and supervised and supervised[0]:
        api.exit(pid, "reload")
        result.restarted.append(pid)


def _control() -> str:
    from .agent import CONTROL

    return CONTROL


def _is_agent(module: str, qualname: str) -> bool:
    target: Any = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return bool(getattr(target, "__legion_agent__", False))


def _agent_outcome(result: ReloadResult, pid: Pid, outcome: Any) -> None:
    if outcome[0] != "ok":
        result.failed[pid] = outcome[1]
    elif outcome[1]:
        result.reloaded.append(pid)


def _begin(modules: Iterable[str] | str) -> tuple[list[str], float, ReloadResult]:
    names = [modules] if isinstance(modules, str) else list(modules)
    start = time.perf_counter()
    try:
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
    modules: Iterable[str] | str, extra: Any = None, timeout: float = 30.0
) -> ReloadResult:
    """`reload` for async code: every live process is asked at once."""
    names, start, result = _begin(modules)
    live: list[list[Any]] = await api._endpoint()._aacked(lambda r: wire.Processes(r), None)

    async def one(pid: Pid, module: str, qualname: str, *supervised: Any) -> None:
        try:
            if _is_agent(module, qualname):
                reply = await api.acall(pid, [_control(), "reload", names], timeout)
                _agent_outcome(result, pid, reply)
            elif module in names:
                await api.acode_change(pid, extra, reload=True, timeout=timeout)
                result.reloaded.append(pid)
        except Exception as exc:
            result.failed[pid] = f"{type(exc).__name__}: {exc}"
        _restart_if_supervised(result, pid, list(supervised))

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
                self.results.append(reload(names))
            except ReloadError as exc:
                log.error("%s", exc)
            except Exception:
                log.exception("reload of %s failed", ", ".join(names))


def _notify_fds() -> set[str]:
    import os

    fds = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:"):
                fds.add(fd)
        except OSError:
            continue
    return fds


def modules_of(paths: Iterable[str]) -> list[str]:
    """The imported modules whose source file is one of `paths` (`__main__` for the script)."""
    import os

    wanted = {os.path.realpath(p) for p in paths}
    found = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if file and name != "__mp_main__" and os.path.realpath(file) in wanted:
            found.append(name)
    return sorted(found)


_watcher: Watcher | None = None


def watch(paths: Iterable[str] | None = None) -> Watcher:
    """Start reloading on save: watch `paths` (default: the current directory) for edits to the
    modules this application imported. Returns the `Watcher`; a second call replaces the first."""
    import os

    global _watcher
    if _watcher is not None:
        _watcher.stop()
    _watcher = Watcher(paths if paths is not None else [os.getcwd()])
    return _watcher
