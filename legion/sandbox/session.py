"""Session mode: one long-lived hardened child serving many evaluations.

Every object survives between evaluations (closures, generators, open iterators), and an
evaluation costs a pipe round trip instead of a fork. The trade-offs, which is why it is opt-in:

* a failed evaluation keeps its partial mutations (fork mode keeps the previous bindings);
* a timeout, crash or memory error ends the child: the next evaluation starts a new one from
  the last snapshot (``snapshot=True``) or from the session's starting bindings;
* ``max_cpu`` is a budget for the child's whole life, not per evaluation;
* one evaluation at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from . import proxy, runner
from .errors import SandboxError
from .outcome import Bindings, Evaluation
from .protocol import Request


class Session:
    """``with Session(tools=...) as s: s.evaluate("x = 1"); s.evaluate("x + 1")``.

    Also ``async with`` / ``await s.aevaluate(...)`` under trio or asyncio.
    """

    def __init__(
        self,
        *,
        tools: Any = None,
        bindings: Bindings | None = None,
        timeout: float = 5.0,
        max_memory: int | None = None,
        max_cpu: float = 600.0,
        max_output: int = 1_000_000,
        modules: Iterable[str] = (),
        unsafe: bool = False,
    ) -> None:
        from .guard import allowlist

        runner.check_bindings(bindings)
        self._tools = proxy.resolve_tools(tools)
        self._modules = allowlist(modules) if modules else ()
        self._limits = runner.make_limits(
            timeout=timeout,
            max_memory=max_memory,
            max_cpu=max_cpu,
            max_output=max_output,
            unsafe=unsafe,
            session=True,
            guard=True,
            break_seccomp=False,
        )
        self._timeout = timeout
        self._bindings = bindings
        self._child: runner.Child | None = None
        self._busy = threading.Lock()
        self.restarts = 0

    @property
    def bindings(self) -> Bindings | None:
        """The last snapshot (or the starting bindings)."""
        return self._bindings

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    async def _run(
        self, code: str, snapshot: bool, caller: runner.ToolCaller = runner.call_tool_trio
    ) -> Evaluation:
        import trio

        if not self._busy.acquire(blocking=False):
            raise SandboxError("a session runs one evaluation at a time")
        try:
            if runner.ZYGOTE.ready is None or runner.ZYGOTE.pid is None:
                await trio.to_thread.run_sync(runner.ZYGOTE.ensure)
            started = time.perf_counter()
            deadline = trio.current_time() + self._timeout
            fresh = self._child is None
            if self._child is None:
                self._child = await runner.Child.spawn(self._limits, spares=False)
                self.restarts += 1
            blob = self._bindings.blob if fresh and self._bindings is not None else None
            request = Request(code, proxy.describe(self._tools), blob, snapshot, self._modules)
            ev = await runner.exchange(
                self._child,
                request,
                self._tools,
                self._limits,
                deadline,
                self._timeout,
                self._bindings,
                caller,
                started,
            )
            if self._child.finished or ev.error_kind == "memory":
                self._drop()
            elif ev.ok and snapshot:
                self._bindings = ev.bindings
            return ev
        finally:
            self._busy.release()

    async def aevaluate(self, code: str, *, snapshot: bool = False) -> Evaluation:
        import sniffio

        from . import bridge

        if sniffio.current_async_library() == "trio":
            return await self._run(code, snapshot)
        return await bridge.in_thread(lambda caller: self._run(code, snapshot, caller))

    def evaluate(self, code: str, *, snapshot: bool = False) -> Evaluation:
        import functools

        import trio

        return trio.run(functools.partial(self._run, code, snapshot))

    def _drop(self) -> None:
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            child.close()

    def close(self) -> None:
        """End the child (EOF on its input, then SIGKILL). The session can be used again."""
        self._drop()

    async def aclose(self) -> None:
        self._drop()

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._drop()
