"""Tools: the objects an agent's generated code calls, and how the prompt describes them.

A tool is a `legion.Tool` subclass (one instance per agent, with the agent's `tool_config(tool)`
as `self.config`) or any plain module. Its public methods or functions are callable from
generated code as `ShortName.method(...)`: the sandbox holds only a stub, and the call crosses
back to the agent process, where the real method runs with the application's credentials.

The prompt shows each tool as Python stubs: signatures and docstrings of the public callables,
never the source (private helpers, comments and secrets written into the source stay out).
A `description` string on the tool replaces the generated text.
"""

from __future__ import annotations

import builtins
import inspect
import types
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Tool", "describe", "instantiate", "public_functions", "short_name"]


class Tool:
    """Base class of a tool. Public methods (no leading `_`) are callable from generated code.

    The base deliberately has no public callables of its own, so nothing but your methods is
    exposed. `config` is what the agent's `tool_config(ToolClass)` returned (a dict, default {}).
    """

    description: str | None = None
    """Replaces the generated description (signatures and docstrings) in the prompt."""

    _legion_config: dict[str, Any]

    @property
    def config(self) -> dict[str, Any]:
        return getattr(self, "_legion_config", {})


def short_name(tool: Any) -> str:
    """The name generated code uses: the class or module name without its package."""
    if isinstance(tool, type | types.ModuleType):
        return tool.__name__.rsplit(".", 1)[-1]
    return type(tool).__name__


def instantiate(tool: Any, config: dict[str, Any]) -> Any:
    """The object the sandbox proxies for `tool`: a fresh instance of a class, whose `config`
    is set before its `__init__` runs; a module or an instance as is."""
    if isinstance(tool, type):
        obj: Any = object.__new__(tool)
        try:
            obj._legion_config = dict(config)
        except AttributeError:  # a class with __slots__ and no room for it
            pass
        obj.__init__()
        return obj
    return tool


def public_functions(tool: Any) -> dict[str, Callable[..., Any]]:
    """Name -> callable of what generated code may call, in definition order.

    For a class or an instance, only methods defined on the class count (its own and those
    inherited from user classes, not `Tool`'s), each bound through its descriptor to the
    instance (or the class): an instance attribute that shares a method's name never shadows
    it, and a callable instance attribute is never exposed, as in the sandbox's proxy. What
    generated code may call is decided by the tool's code, not by its state."""
    found: dict[str, Callable[..., Any]] = {}
    if isinstance(tool, types.ModuleType):
        for name, value in vars(tool).items():
            if (
                not name.startswith("_")
                and callable(value)
                and not isinstance(value, type)
                and _same_package(getattr(value, "__module__", None), tool.__name__)
            ):
                found[name] = value
        return found
    cls = tool if isinstance(tool, type) else type(tool)
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass in (object, Tool):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            if isinstance(value, staticmethod | classmethod) or inspect.isfunction(value):
                instance = None if isinstance(tool, type) else tool
                found[name] = value.__get__(instance, cls)
    return found


def _same_package(module: str | None, name: str) -> bool:
    """Functions of a module, including those a package re-exports from its private modules
    (`msgspec.json.encode` lives in `msgspec._core`), but not names imported from elsewhere."""
    if module is None:
        return False
    return module == name or module.split(".")[0] == name.split(".")[0]


def _signature(fn: Callable[..., Any], bound: bool) -> str:
    try:
        sig = inspect.signature(fn, eval_str=True)
    except (TypeError, ValueError, NameError):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            return "(...)"
    if bound:
        params = list(sig.parameters.values())
        if params and params[0].name in ("self", "cls"):
            sig = sig.replace(parameters=params[1:])
    return _format_signature(sig)


class _Hidden:
    def __repr__(self) -> str:
        return "..."


_HIDDEN = _Hidden()


def _shown_default(p: inspect.Parameter) -> inspect.Parameter:
    """Defaults reach the prompt only when they are None, booleans or numbers: a string default
    may be a token or a URL with credentials, and an object's repr may hold anything."""
    default = p.default
    if default is inspect.Parameter.empty or default is None or isinstance(default, int | float):
        return p
    return p.replace(default=_HIDDEN)


def _format_signature(sig: inspect.Signature) -> str:
    """Annotations as written in code (`list[dict]`, not `typing.List` or `'list'`); defaults
    other than None, booleans and numbers shown as `...`."""

    def name(annotation: Any) -> str:
        if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
            return (
                annotation.__qualname__
                if annotation.__module__ != "builtins"
                else annotation.__name__
            )
        return str(annotation).replace("typing.", "")

    params = [_shown_default(p) for p in sig.parameters.values()]
    text = []
    for p in params:
        piece = str(p.replace(annotation=inspect.Parameter.empty))
        if p.annotation is not inspect.Parameter.empty:
            head, eq, default = piece.partition("=")
            piece = f"{head}: {name(p.annotation)}" + (f" = {default}" if eq else "")
        text.append(piece)
    out = f"({', '.join(text)})"
    if sig.return_annotation is not inspect.Signature.empty:
        out += f" -> {name(sig.return_annotation)}"
    return out


def _indent_doc(doc: str | None, pad: str) -> list[str]:
    if not doc:
        return []
    lines = inspect.cleandoc(doc).splitlines()
    if len(lines) == 1:
        return [f'{pad}"""{lines[0]}"""']
    return [
        f'{pad}"""{lines[0]}',
        *[f"{pad}{line}" if line else "" for line in lines[1:]],
        f'{pad}"""',
    ]


def describe(tool: Any) -> str:
    """The tool's text in the prompt: its `description` if set, else Python stubs."""
    override = getattr(tool, "description", None)
    if isinstance(override, str) and override.strip():
        return override.strip()
    name = short_name(tool)
    is_module = isinstance(tool, types.ModuleType)
    head = f"# module {name}" if is_module else f"class {name}:"
    lines = [head]
    pad = "" if is_module else "    "
    doc = tool.__doc__ if is_module else (tool if isinstance(tool, type) else type(tool)).__doc__
    lines += _indent_doc(doc, pad)
    cls = tool if is_module or isinstance(tool, type) else type(tool)
    for fname, fn in public_functions(tool).items():
        raw = inspect.getattr_static(cls, fname, fn)  # the class's, never an instance attribute
        bound = not is_module and not isinstance(raw, staticmethod)
        target = getattr(raw, "__func__", raw) if not is_module else fn
        prefix = "async def" if inspect.iscoroutinefunction(target) else "def"
        lines.append("")
        lines.append(f"{pad}{prefix} {fname}{_signature(target, bound)}:")
        body = _indent_doc(getattr(target, "__doc__", None), pad + "    ")
        lines += body or [f"{pad}    ..."]
    return "\n".join(lines).strip()


def check_names(tools: Iterable[Any]) -> None:
    """Two tools with one short name, or a tool named like a builtin, would shadow each other
    in the sandbox: refuse at start instead."""
    seen: dict[str, Any] = {}
    for tool in tools:
        name = short_name(tool)
        if name in seen:
            raise ValueError(
                f"two tools share the short name {name!r}: {seen[name]!r} and {tool!r}"
            )
        if hasattr(builtins, name):
            raise ValueError(f"tool {tool!r} would shadow the builtin {name!r}; rename it")
        seen[name] = tool
