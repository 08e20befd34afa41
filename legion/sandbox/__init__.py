"""A kernel-enforced sandbox for code written by an LLM.

``evaluate(code)`` runs Python in a child forked from a clean zygote and hardened with seccomp,
Landlock and rlimits, and returns an :class:`Evaluation`::

    >>> from legion.sandbox import evaluate
    >>> evaluate("x = 6 * 7\\nx").value
    42

The boundary is the kernel, not Python: the guard only turns mistakes into plain-words errors,
so nothing secret may be put in the child (see docs/sandbox.md).

Importing this package is cheap: trio, the zygote and everything else load on first use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .errors import SandboxCrashed, SandboxError, SandboxUnavailable, ToolConfigError
from .outcome import ERROR_KINDS, Bindings, ErrorKind, Evaluation

if TYPE_CHECKING:
    from .session import Session
    from .status import SandboxInfo

__all__ = [
    "ERROR_KINDS",
    "Bindings",
    "ErrorKind",
    "Evaluation",
    "SandboxCrashed",
    "SandboxError",
    "SandboxInfo",
    "SandboxUnavailable",
    "Session",
    "ToolConfigError",
    "aevaluate",
    "evaluate",
    "info",
    "shutdown",
]

Tools = Mapping[str, Any] | Iterable[Any] | None


def evaluate(
    code: str,
    *,
    tools: Tools = None,
    bindings: Bindings | None = None,
    timeout: float = 5.0,
    max_memory: int | None = None,
    max_cpu: float | None = None,
    max_output: int = 1_000_000,
    modules: Iterable[str] = (),
    unsafe: bool = False,
    _guard: bool = True,
    _break_seccomp: bool = False,
) -> Evaluation:
    """Run ``code`` in a fresh sandboxed child and wait for the outcome (blocking).

    * ``tools``: ``{"Name": obj}`` or a list of classes/instances/modules; sandboxed code calls
      ``Name.fn(...)``; the real function runs here, in the caller's process.
    * ``bindings``: the ``bindings`` of a previous :class:`Evaluation`.
    * ``timeout``: wall-clock seconds, tool time included. ``max_cpu`` (default ``timeout + 1``)
      is the CPU-seconds rlimit, ``max_memory`` the heap rlimit in bytes (default 512 MiB),
      ``max_output`` the cap on printed characters.
    * ``modules``: modules to allow beyond the default allowlist, each one of
      ``legion.sandbox.guard.OPTIONAL_MODULES`` (``ValueError`` naming the module otherwise).
    * ``unsafe``: run even when a layer (seccomp, Landlock, rlimits) cannot be applied. Off by
      default: without it such a machine raises :class:`SandboxUnavailable` (fail closed).

    Async tools must be trio-compatible here; from asyncio use :func:`aevaluate`.
    """
    import functools

    import trio

    from . import guard, proxy, runner

    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        pass
    else:
        raise SandboxError("evaluate() blocks; inside async code use 'await aevaluate(...)'")
    limits = runner.make_limits(
        timeout=timeout,
        max_memory=max_memory,
        max_cpu=max_cpu,
        max_output=max_output,
        unsafe=unsafe,
        session=False,
        guard=_guard,
        break_seccomp=_break_seccomp,
    )
    table = proxy.resolve_tools(tools)
    allowed = guard.allowlist(modules) if modules else ()
    return trio.run(
        functools.partial(
            runner.evaluate_trio, code, table, bindings, timeout, limits, modules=allowed
        )
    )


async def aevaluate(
    code: str,
    *,
    tools: Tools = None,
    bindings: Bindings | None = None,
    timeout: float = 5.0,
    max_memory: int | None = None,
    max_cpu: float | None = None,
    max_output: int = 1_000_000,
    modules: Iterable[str] = (),
    unsafe: bool = False,
    _guard: bool = True,
    _break_seccomp: bool = False,
) -> Evaluation:
    """The async twin of :func:`evaluate`, for trio (native) and asyncio (async tools run on the
    caller's loop)."""
    import sniffio

    from . import bridge, guard, proxy, runner

    limits = runner.make_limits(
        timeout=timeout,
        max_memory=max_memory,
        max_cpu=max_cpu,
        max_output=max_output,
        unsafe=unsafe,
        session=False,
        guard=_guard,
        break_seccomp=_break_seccomp,
    )
    table = proxy.resolve_tools(tools)
    allowed = guard.allowlist(modules) if modules else ()
    if sniffio.current_async_library() == "trio":
        return await runner.evaluate_trio(code, table, bindings, timeout, limits, modules=allowed)
    return await bridge.in_thread(
        lambda caller: runner.evaluate_trio(
            code, table, bindings, timeout, limits, caller, modules=allowed
        )
    )


def info() -> SandboxInfo:
    """Start the zygote if needed and report what this machine's sandbox can do."""
    from .status import info as _info

    return _info()


def shutdown() -> None:
    """Stop the zygote (and with it every child). The next evaluation starts a new one."""
    import sys

    runner = sys.modules.get(__name__ + ".runner")
    if runner is not None:
        runner.SPARES.clear()
        runner.ZYGOTE.stop()


def __getattr__(name: str) -> Any:
    if name == "Session":
        from .session import Session

        return Session
    if name == "SandboxInfo":
        from .status import SandboxInfo

        return SandboxInfo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
