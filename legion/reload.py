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
        if module is None:
            continue
        try:
            _reload_from_source(module)
        except BaseException as exc:
            raise ReloadError(name, f"{type(exc).__name__}: {exc}") from exc


def reload(modules: Iterable[str] | str, extra: Any = None, timeout: float = 30.0) -> ReloadResult:
    """Reload `modules` (names) in the running node; see the module docstring."""
    names, start, result = _begin(modules)
    live: list[list[Any]] = api._endpoint()._acked(lambda r: wire.Processes(r), None)
    for pid, module, qualname in live:
        try:
            if _is_agent(module, qualname):
                _agent_outcome(result, pid, api.call(pid, [_control(), "reload", names], timeout))
            elif module in names:
                api.code_change(pid, extra, reload=True, timeout=timeout)
                result.reloaded.append(pid)
        except Exception as exc:
            result.failed[pid] = f"{type(exc).__name__}: {exc}"
    return _end(result, start)


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

    async def one(pid: Pid, module: str, qualname: str) -> None:
        try:
            if _is_agent(module, qualname):
                reply = await api.acall(pid, [_control(), "reload", names], timeout)
                _agent_outcome(result, pid, reply)
            elif module in names:
                await api.acode_change(pid, extra, reload=True, timeout=timeout)
                result.reloaded.append(pid)
        except Exception as exc:
            result.failed[pid] = f"{type(exc).__name__}: {exc}"

    import sniffio

    if sniffio.current_async_library() == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for pid, module, qualname in live:
                nursery.start_soon(one, pid, module, qualname)
    else:
        import asyncio

        await asyncio.gather(*(one(pid, module, qualname) for pid, module, qualname in live))
    return _end(result, start)
