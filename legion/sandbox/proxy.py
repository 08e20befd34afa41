"""Tool proxy: the parent's tool table and the child's stubs.

In the child a tool is a stub named by its short name (``Weather.forecast("Paris")``). A call
writes a ``Call`` frame to the parent and blocks on the ``Reply``. The stub holds nothing but
names: the real tool, and any secret it uses, stays in the parent.
"""

from __future__ import annotations

import inspect
import keyword
import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from . import protocol
from .errors import ToolConfigError

ToolTable = dict[str, dict[str, Callable[..., Any]]]
"""Short tool name -> function name -> the real callable (parent side)."""


def _short_name(obj: Any) -> str:
    if isinstance(obj, (type, types.ModuleType)):
        return obj.__name__.rsplit(".", 1)[-1]
    return type(obj).__name__


def _functions(name: str, obj: Any) -> dict[str, Callable[..., Any]]:
    """The public callables of a tool: a module (functions defined in it), a class (its methods;
    an instance is made on first need for plain methods), an instance (the methods of its class,
    bound to it) or a ``SimpleNamespace`` (an explicit table: each attribute is one function).

    Only methods defined on the class count (its own and those inherited from user classes, not
    ``legion.Tool``'s), never instance attributes that happen to be callable: what the
    sandbox may call is decided by the code of the tool, not by its state."""
    found: dict[str, Callable[..., Any]] = {}
    if isinstance(obj, types.ModuleType):
        for attr, value in vars(obj).items():
            if (
                not attr.startswith("_")
                and callable(value)
                and getattr(value, "__module__", None) == obj.__name__
                and not isinstance(value, type)
            ):
                found[attr] = value
    elif isinstance(obj, types.SimpleNamespace):
        found = {a: v for a, v in vars(obj).items() if not a.startswith("_") and callable(v)}
    elif isinstance(obj, type):
        instance: list[Any] = []

        def bound(attr: str) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                if not instance:
                    instance.append(obj())
                return getattr(instance[0], attr)(*args, **kwargs)

            return call

        for attr, static in _class_methods(obj).items():
            if isinstance(static, (staticmethod, classmethod)):
                found[attr] = getattr(obj, attr)
            else:
                target = bound(attr)
                if inspect.iscoroutinefunction(static):
                    target = _async_bound(target)
                found[attr] = target
    else:
        cls = type(obj)
        for attr, static in _class_methods(cls).items():
            if isinstance(static, staticmethod):
                found[attr] = static.__func__
            elif isinstance(static, classmethod):
                found[attr] = types.MethodType(static.__func__, cls)
            else:
                found[attr] = types.MethodType(static, obj)
    if not found:
        raise ToolConfigError(f"tool {name!r} has no public functions to expose in the sandbox")
    return found


def _class_methods(cls: type) -> dict[str, Any]:
    """Public functions, static and class methods defined on ``cls`` and its bases (the first
    definition in the MRO wins), leaving out ``object`` and ``legion.Tool``."""
    found: dict[str, Any] = {}
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or (klass.__module__, klass.__qualname__) == ("legion.tool", "Tool"):
            continue
        for attr, value in vars(klass).items():
            if attr.startswith("_") or attr in seen:
                continue
            seen.add(attr)
            if isinstance(value, (staticmethod, classmethod)) or inspect.isfunction(value):
                found[attr] = value
    return found


def _async_bound(call: Callable[..., Any]) -> Callable[..., Any]:
    async def acall(*args: Any, **kwargs: Any) -> Any:
        return await call(*args, **kwargs)

    return acall


def resolve_tools(tools: Mapping[str, Any] | Iterable[Any] | None) -> ToolTable:
    """Turn the caller's ``tools`` into the parent's tool table. The one place to extend.

    Accepts ``{"ShortName": obj}`` or a list of objects (short name = class/module name), where
    ``obj`` is a class, an instance or a module whose public callables are the tool functions.
    """
    if tools is None:
        return {}
    if isinstance(tools, Mapping):
        items = [(str(k), v) for k, v in tools.items()]
    elif isinstance(tools, (str, bytes)):
        raise ToolConfigError("tools must be a mapping {'Name': tool} or a list of tools")
    else:
        items = [(_short_name(t), t) for t in tools]
    table: ToolTable = {}
    for name, obj in items:
        if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise ToolConfigError(
                f"tool name {name!r} must be a Python identifier that does not start with '_'"
            )
        if name in table:
            raise ToolConfigError(f"two tools share the short name {name!r}")
        table[name] = _functions(name, obj)
    return table


def describe(table: ToolTable) -> dict[str, list[str]]:
    """What the child needs to build its stubs: names only."""
    return {name: sorted(fns) for name, fns in table.items()}


# --- child side --------------------------------------------------------------------------------


UNTIMED = "__legion_untimed__"


def untimed(fn: Any) -> Any:
    """Mark a tool function whose waiting does not count against the evaluation's timeout
    (a human's answer, say). The child's CPU limit still applies; the tool should have a
    timeout of its own."""
    setattr(fn, UNTIMED, True)
    return fn


class ToolError(Exception):
    """A tool raised, or refused the call; the message is the tool's."""


class _Link:
    """The child's end of the tool channel (fd 3 in, fd 4 out)."""

    __slots__ = ("calls", "fd_in", "fd_out")

    def __init__(self, fd_in: int, fd_out: int) -> None:
        self.fd_in = fd_in
        self.fd_out = fd_out
        self.calls = 0

    def call(self, tool: str, fn: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.calls += 1
        try:
            body = protocol.encode_bounded(protocol.Call(self.calls, tool, fn, list(args), kwargs))
        except RecursionError:
            raise ValueError(
                f"arguments of {tool}.{fn} are nested too deeply: lists and dicts passed to a "
                f"tool may nest at most {protocol.MAX_DEPTH} levels"
            ) from None
        except OverflowError:
            raise ValueError(
                f"arguments of {tool}.{fn} hold an int outside the 64-bit range; pass it as a "
                "str (str(n)) or split it"
            ) from None
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"arguments of {tool}.{fn} must be plain values (str, int, float, bool, None, "
                f"bytes, list, dict, ...): {exc}"
            ) from None
        if len(body) > protocol.MAX_FRAME // 2:
            raise ValueError(
                f"arguments of {tool}.{fn} are too large ({len(body) >> 20} MiB; a tool call "
                f"carries at most {protocol.MAX_FRAME >> 21} MiB)"
            )
        protocol.write_all(self.fd_out, protocol.FRAME_HEADER.pack(len(body)) + body)
        answer = protocol.read_frame(self.fd_in)
        if answer is None:
            raise ToolError(f"{tool}.{fn}: the connection to the tool was lost")
        try:
            with protocol.depth_bound():
                reply = protocol.parent_decoder.decode(answer)
        except RecursionError:
            raise ToolError(
                f"{tool}.{fn} returned a value nested too deeply for the sandbox (lists and "
                f"dicts may nest at most {protocol.MAX_DEPTH} levels)"
            ) from None
        if not isinstance(reply, protocol.Reply) or reply.id != self.calls:
            raise ToolError(f"{tool}.{fn}: unexpected reply from the parent")
        if not reply.ok:
            raise ToolError(reply.error)
        return reply.value


class ToolFunction:
    __slots__ = ("_fn", "_link", "_tool")

    def __init__(self, link: _Link, tool: str, fn: str) -> None:
        self._link = link
        self._tool = tool
        self._fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.call(self._tool, self._fn, args, kwargs)

    def __repr__(self) -> str:
        return f"<tool function {self._tool}.{self._fn}>"


class ToolStub:
    """``Name.fn(...)`` in sandboxed code. Unknown names give a clean AttributeError."""

    __slots__ = ("_fns", "_link", "_name")

    def __init__(self, link: _Link, name: str, fns: list[str]) -> None:
        self._link = link
        self._name = name
        self._fns = frozenset(fns)

    def __getattr__(self, fn: str) -> ToolFunction:
        if fn in self._fns:
            return ToolFunction(self._link, self._name, fn)
        raise AttributeError(
            f"tool {self._name} has no function {fn!r} (only methods defined on the tool's class "
            f"can be called); available: {', '.join(sorted(self._fns))}"
        )

    def __dir__(self) -> list[str]:
        return sorted(self._fns)

    def __repr__(self) -> str:
        return f"<tool {self._name}: {', '.join(sorted(self._fns))}>"
