"""The sandboxed child: hardening (in the order of the research note, §5.2) and evaluation.

Runs in a process forked from the zygote. ``main`` never returns: it hardens the process, reads
``Request`` frames on fd 3, writes ``Call``/``Result`` frames on fd 4 and ``_exit``s.
"""

from __future__ import annotations
import __future__

import ast
import functools
import gc
import linecache
import operator
import os
import resource
import signal
import sys
import types
from dataclasses import dataclass
from typing import Any, NoReturn

from . import bindings as bindings_mod
from . import guard, protocol
from .landlock import Landlock
from .protocol import FD_IN_CHILD, FD_OUT_CHILD, Limits, Request, Result
from .proxy import ToolError, ToolStub, _Link
from .seccomp import Installer

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
FILENAME = "<sandbox>"
MIB = 1024 * 1024
_FUTURE_FLAGS = functools.reduce(
    operator.or_, (getattr(__future__, f).compiler_flag for f in __future__.all_feature_names)
)


@dataclass
class ZygoteState:
    """What the zygote prepared once, before any fork."""

    pid: int
    installer: Installer
    landlock: Landlock | None
    vmsize: int
    hidden: frozenset[str]


class OutputLimitExceeded(BaseException):
    """Raised by ``print`` past the cap; a BaseException so ``except Exception`` cannot hide it."""


class _Capture:
    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[str] = []
        self.size = 0
        self.exceeded = False

    def write(self, text: str) -> int:
        if self.exceeded:
            raise OutputLimitExceeded(self.message())
        text = str(text)
        if self.size + len(text) > self.cap:
            self.parts.append(text[: self.cap - self.size])
            self.size = self.cap
            self.exceeded = True
            raise OutputLimitExceeded(self.message())
        self.parts.append(text)
        self.size += len(text)
        return len(text)

    def flush(self) -> None:
        return None

    def message(self) -> str:
        return f"output limit exceeded ({self.cap} characters)"

    def print(
        self,
        *args: Any,
        sep: str | None = " ",
        end: str | None = "\n",
        file: Any = None,
        flush: bool = False,
    ) -> None:
        sep = " " if sep is None else sep
        end = "\n" if end is None else end
        text = sep.join(str(a) for a in args) + end
        if file is not None and file is not self:
            file.write(text)
        else:
            self.write(text)

    def take(self) -> str:
        text = "".join(self.parts)
        self.parts.clear()
        self.size = 0
        self.exceeded = False
        return text


# --- hardening ---------------------------------------------------------------------------------


def _fds(in_fd: int, out_fd: int) -> None:
    high_in, high_out = os.dup2(in_fd, 200), os.dup2(out_fd, 201)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.dup2(high_in, FD_IN_CHILD)
    os.dup2(high_out, FD_OUT_CHILD)
    os.closerange(FD_OUT_CHILD + 1, 65536)


def _rlimits(limits: Limits, vmsize: int) -> None:
    def cap(which: int, value: int) -> None:
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_DATA, limits.max_memory)
    cap(resource.RLIMIT_AS, limits.max_memory + vmsize + 256 * MIB)
    _soft_cpu, hard_cpu = resource.getrlimit(resource.RLIMIT_CPU)
    cpu_hard = limits.max_cpu + 1
    if hard_cpu != resource.RLIM_INFINITY:
        cpu_hard = min(cpu_hard, hard_cpu)
    resource.setrlimit(resource.RLIMIT_CPU, (min(limits.max_cpu, cpu_hard), cpu_hard))
    cap(resource.RLIMIT_NOFILE, FD_OUT_CHILD + 1)
    cap(resource.RLIMIT_FSIZE, 0)
    cap(resource.RLIMIT_CORE, 0)
    cap(resource.RLIMIT_NPROC, 0)
    cap(resource.RLIMIT_STACK, 16 * MIB)
    cap(resource.RLIMIT_MEMLOCK, 0)
    cap(resource.RLIMIT_MSGQUEUE, 0)
    os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10))


def harden(in_fd: int, out_fd: int, limits: Limits, st: ZygoteState) -> tuple[list[str], str]:
    """Apply every layer; returns (active layers, first failure or "")."""
    layers: list[str] = []
    failure = ""
    # 1. fixed fds; 0-2 are /dev/null; everything else (the control socket) closed
    _fds(in_fd, out_fd)
    # 2. zygote-only state
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.environ.clear()
    layers.append("process")
    inst = st.installer
    # 3. die with the zygote (it is single-threaded, so PDEATHSIG is reliable here)
    inst.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != st.pid:
        os._exit(protocol.EXIT_HARDENING)
    # 4. not dumpable: no ptrace or /proc access from other processes of this uid
    inst.prctl(PR_SET_DUMPABLE, 0)
    # 5. Landlock (its ruleset needs an fd, so before NOFILE), then rlimits
    inst.prctl(PR_SET_NO_NEW_PRIVS, 1)  # required by Landlock
    if st.landlock is not None and st.landlock.abi > 0:
        try:
            st.landlock.restrict()
            layers.append(f"landlock-abi{st.landlock.abi}")
        except OSError as exc:
            failure = failure or f"Landlock could not be applied: {exc}"
    try:
        _rlimits(limits, st.vmsize)
        layers.append("rlimits")
    except (OSError, ValueError) as exc:
        failure = failure or f"resource limits could not be set: {exc}"
    # 6. seccomp, the last kernel layer
    try:
        inst.install(broken=limits.break_seccomp)
        layers.append("seccomp")
    except OSError as exc:
        failure = f"seccomp could not be loaded: {exc.strerror or exc}"
    # 7. audit hook (UX). After seccomp, because installing the filter goes through ctypes,
    # which the hook refuses; it needs no syscall, so the order changes nothing else.
    if limits.guard:
        guard.install_audit_hook()
        layers.append("guard")
    return layers, failure


# --- evaluation --------------------------------------------------------------------------------


def _short_traceback(exc: BaseException) -> tuple[str, int | None]:
    lines = ["Traceback (most recent call last):"]
    last_line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        name = code.co_filename
        if name in (FILENAME, bindings_mod.EARLIER) or name.startswith("<definition of"):
            where = "" if name == FILENAME else f"{name[1:-1]}, "
            lines.append(f"  {where}line {tb.tb_lineno}, in {code.co_name}")
            text = linecache.getline(name, tb.tb_lineno).strip()
            if text:
                lines.append(f"    {text}")
            if name == FILENAME:
                last_line = tb.tb_lineno
        tb = tb.tb_next
    lines.append(_exc_line(exc))
    return "\n".join(lines), last_line


def _exc_line(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable message>"
    if isinstance(exc, guard.SandboxViolation):
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _safe(text: str) -> str:
    """``text`` with any lone surrogate escaped (``\\udce9``) so that it encodes as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class Runner:
    """Evaluates requests in one namespace (one request per child, or many in session mode)."""

    def __init__(self, limits: Limits, st: ZygoteState) -> None:
        self.limits = limits
        self.module = types.ModuleType(bindings_mod.MODULE)
        sys.modules[bindings_mod.MODULE] = self.module
        self.ns = self.module.__dict__
        self.capture = _Capture(limits.max_output)
        self.link = _Link(FD_IN_CHILD, FD_OUT_CHILD)
        self.defs = bindings_mod.Definitions()
        self.tools: frozenset[str] = frozenset()
        self.restored = False
        self.hidden = st.hidden
        self.lost: bindings_mod.Dropped = {}  # variables the restore could not bring back
        if limits.guard:
            table = guard.safe_builtins(self.capture.print, st.hidden)
        else:
            import builtins

            table = dict(vars(builtins))
            table["print"] = self.capture.print
        table["ToolError"] = ToolError
        self.ns["__builtins__"] = table
        sys.stdout = sys.stderr = self.capture  # type: ignore[assignment]

    def _result(
        self,
        ok: bool,
        *,
        error: str = "",
        kind: str = "",
        tb: str = "",
        value: Any = None,
        value_repr: str = "",
        native: bool = False,
        blob: bytes | None = None,
        dropped: bindings_mod.Dropped | None = None,
        layers: list[str],
    ) -> Result:
        dropped = {**self.lost, **(dropped or {})}
        self.lost = {}
        variables = bindings_mod.describe(self.ns, self.tools, dropped) if ok else {}
        # every text must be valid UTF-8 on the wire: a lone surrogate (a non-UTF-8 file name,
        # bytes decoded with 'surrogateescape') shows as \udcXX, as CPython's stderr would
        return Result(
            ok,
            value,
            native,
            _safe(value_repr),
            _safe(self.capture.take()),
            _safe(error),
            kind,
            _safe(tb),
            {_safe(k): _safe(v) for k, v in variables.items()},
            blob,
            {_safe(k): _safe(v) for k, v in dropped.items()},
            layers,
        )

    def run(self, req: Request, layers: list[str]) -> Result:
        self.capture.take()
        self.link.calls = 0
        for name in self.tools:
            self.ns.pop(name, None)
        self.tools = frozenset(req.tools)
        allowed = req.modules or guard.ALLOWED_MODULES
        if self.limits.guard:
            self.ns["__builtins__"]["__import__"] = guard.restricted_import(self.hidden, allowed)
        if req.bindings is not None and not self.restored:
            try:
                self.lost = bindings_mod.restore(req.bindings, self.ns, self.defs)
            except Exception as exc:  # the blob itself is unreadable: start without it
                self.lost = {
                    "<all>": f"the previous variables could not be read ({_exc_line(exc)})"
                }
            self.capture.take()  # what re-run definitions printed is not this step's output
        self.restored = True
        for name, fns in req.tools.items():
            self.ns[name] = ToolStub(self.link, name, fns)
        try:
            tree = ast.parse(req.code, FILENAME, "exec")
        except (RecursionError, MemoryError) as exc:  # CPython: the same error, at compile time
            msg = f"{_exc_line(exc)} (the code is nested too deeply to compile; split it up)"
            return self._result(False, error=msg, kind="exception", layers=layers)
        except SyntaxError as exc:
            where = f"line {exc.lineno}: " if exc.lineno else ""
            msg = f"{where}SyntaxError: {exc.msg}"
            text = (exc.text or "").rstrip("\n")
            # no source line to show (a NUL byte, say): the error alone, not twice
            tb = f"  line {exc.lineno}\n    {text.strip()}\n{msg}" if text else ""
            return self._result(False, error=msg, kind="exception", tb=tb, layers=layers)
        if self.limits.guard:
            try:
                guard.check(tree, allowed, self._foreign())
            except RecursionError as exc:
                msg = f"{_exc_line(exc)} (the code is nested too deeply to check; split it up)"
                return self._result(False, error=msg, kind="exception", layers=layers)
            except guard.GuardError as exc:
                return self._result(
                    False, error=str(exc), kind="forbidden", tb=str(exc), layers=layers
                )
        linecache.cache[FILENAME] = (len(req.code), None, req.code.splitlines(True), FILENAME)
        last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        if last is not None:
            tree.body.pop()
        flags = 0
        try:
            # dont_inherit: this module's own `from __future__` imports must not change how the
            # code compiles (annotations stay objects); the code's own future imports still apply
            code = compile(tree, FILENAME, "exec", dont_inherit=True)
            flags = code.co_flags & _FUTURE_FLAGS
            exec(code, self.ns)
            value = None
            if last is not None:
                expr = ast.Expression(last.value)
                value = eval(
                    compile(expr, FILENAME, "eval", flags=flags, dont_inherit=True), self.ns
                )
            if self.capture.exceeded:
                raise OutputLimitExceeded(self.capture.message())
        except BaseException as exc:
            return self._failure(exc, layers)
        self.defs.record(req.code, tree, flags, self.tools, self.ns)
        return self._success(value, req, layers)

    def _foreign(self) -> set[str]:
        """Names bound to what comes from elsewhere (modules, tools, imported classes and
        functions), whose private attributes the guard refuses."""
        found = set(self.tools)
        for name, value in self.ns.items():
            if isinstance(value, types.ModuleType) or (
                isinstance(value, (type, types.FunctionType, types.BuiltinFunctionType))
                and getattr(value, "__module__", bindings_mod.MODULE) != bindings_mod.MODULE
            ):
                found.add(name)
        return found

    def _failure(self, exc: BaseException, layers: list[str]) -> Result:
        tb, line = _short_traceback(exc)
        where = f"line {line}: " if line else ""
        if isinstance(exc, MemoryError):
            kind = "memory"
            msg = f"memory limit exceeded ({self.limits.max_memory // MIB} MiB)"
            builtins_table = self.ns.get("__builtins__")
            self.ns.clear()  # free the memory to report; a session restarts from its snapshot
            self.ns["__builtins__"] = builtins_table
            gc.collect()
        elif isinstance(exc, OutputLimitExceeded) or self.capture.exceeded:
            kind, msg = "output_limit", self.capture.message()
        elif isinstance(exc, guard.SandboxViolation):
            kind, msg = "forbidden", f"{where}{exc}"
        elif isinstance(exc, PermissionError):
            kind, msg = "forbidden", f"{where}{_exc_line(exc)} (not permitted in the sandbox)"
        else:
            kind, msg = "exception", f"{where}{_exc_line(exc)}"
            lost = (
                self.lost.get(getattr(exc, "name", None) or "")
                if isinstance(exc, NameError)
                else None
            )
            if lost:
                msg += f" (it was not restored from the previous step: {lost})"
        del exc
        return self._result(False, error=msg, kind=kind, tb=tb, layers=layers)

    def _success(self, value: Any, req: Request, layers: list[str]) -> Result:
        native = True
        try:
            size = len(protocol.encode_bounded(value))
        except RecursionError:
            return self._result(
                False,
                kind="exception",
                layers=layers,
                error=f"the value of the last expression is nested too deeply to return (lists "
                f"and dicts may nest at most {protocol.MAX_DEPTH} levels); return a summary",
            )
        except Exception:  # not msgpack-native (an object, an int past 64 bits): its repr
            native, size = False, 0
        try:
            value_repr = repr(value)
        except (ValueError, RecursionError) as exc:  # an int past the int-string limit, say
            return self._result(
                False,
                kind="exception",
                layers=layers,
                error=f"the value of the last expression cannot be shown: {_exc_line(exc)}",
            )
        except BaseException as exc:  # a broken __repr__ of the code's own class
            value_repr = f"<unrepresentable: {_exc_line(exc)}>"
        if len(value_repr) > self.limits.max_output:
            value_repr = value_repr[: self.limits.max_output] + "..."
        if not native:
            value = None
        if size > protocol.MAX_FRAME // 2:
            return self._result(
                False,
                kind="output_limit",
                layers=layers,
                error=f"result too large ({size // MIB} MiB; the limit is "
                f"{protocol.MAX_FRAME // MIB // 2} MiB)",
            )
        blob, dropped = None, None
        if req.snapshot:
            try:
                blob, dropped = bindings_mod.snapshot(self.ns, self.defs, self.tools)
            except Exception as exc:
                return self._result(
                    False,
                    kind="exception",
                    layers=layers,
                    error=f"the variables could not be saved: {_exc_line(exc)}",
                )
        return self._result(
            True,
            value=value,
            value_repr=value_repr,
            native=native,
            blob=blob,
            dropped=dropped,
            layers=layers,
        )


def main(in_fd: int, out_fd: int, limits: Limits, st: ZygoteState) -> NoReturn:
    """Entry point in the forked child. Never returns."""
    try:
        layers, failure = harden(in_fd, out_fd, limits, st)
    except BaseException:
        os._exit(protocol.EXIT_HARDENING)
    try:
        if failure and not limits.unsafe:
            protocol.write_all(FD_OUT_CHILD, protocol.frame(protocol.Refused(failure, layers)))
            os._exit(protocol.EXIT_OK)
        runner = Runner(limits, st)
        while True:
            body = protocol.read_frame(FD_IN_CHILD)
            if body is None:
                break
            req = protocol.parent_decoder.decode(body)
            if not isinstance(req, Request):
                os._exit(protocol.EXIT_PROTOCOL)
            result = runner.run(req, layers)
            try:
                data = protocol.frame(result)
            except MemoryError:
                runner.ns.clear()
                gc.collect()
                data = protocol.frame(result)
            protocol.write_all(FD_OUT_CHILD, data)
            if not limits.session:
                break
    except MemoryError:
        os._exit(protocol.EXIT_MEMORY)
    except BaseException:
        os._exit(protocol.EXIT_PROTOCOL)
    os._exit(protocol.EXIT_OK)
