"""The UX layer: an AST check, restricted builtins, a restricted ``__import__`` and an audit hook.

None of this is a security boundary (generator frames, ``str.format`` and ``string.Formatter``
reach around any such guard); the kernel layers in the child are. Its job is to turn honest
mistakes and obvious attempts into plain-words errors the LLM can act on, at the line it wrote:
``line 1: module 'os' is not available in the sandbox; available modules: ...``.
"""

from __future__ import annotations

import ast
import builtins
import sys
from collections.abc import Callable, Mapping
from typing import Any

ALLOWED_MODULES: tuple[str, ...] = (
    "base64",
    "bisect",
    "calendar",
    "codecs",
    "collections",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "operator",
    "random",
    "re",
    "statistics",
    "string",
    "textwrap",
    "typing",
    "unicodedata",
)
"""Modules sandboxed code may import. All are preloaded in the zygote."""

HIDDEN_MODULES: tuple[str, ...] = (
    "_strptime",
    "locale",
    "stringprep",
    "encodings.idna",
    "encodings.punycode",
    "encodings.utf_16",
    "encodings.utf_16_le",
    "encodings.utf_16_be",
    "encodings.utf_32",
    "encodings.latin_1",
    "encodings.ascii",
    "encodings.cp1252",
    "encodings.unicode_escape",
    "encodings.raw_unicode_escape",
    "encodings.hex_codec",
    "encodings.base64_codec",
    "encodings.rot_13",
    "json.decoder",
    "json.encoder",
    "json.scanner",
    "collections.abc",
    "pickle",
    "copyreg",
    "linecache",
    "reprlib",
    "traceback",
    "_pydatetime",
)
"""Helpers that allowed modules import lazily (``datetime.strptime`` imports ``_strptime``,
``str.encode('idna')`` imports ``encodings.idna``). They are preloaded because imports are
impossible under seccomp, and the restricted ``__import__`` lets C code import them."""

FORBIDDEN_NAMES = frozenset(
    {
        "open",
        "eval",
        "exec",
        "compile",
        "globals",
        "locals",
        "vars",
        "getattr",
        "setattr",
        "delattr",
        "input",
        "breakpoint",
        "help",
        "exit",
        "quit",
        "memoryview",
    }
)

FRAME_ATTRIBUTES = frozenset(
    {
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "cr_origin",
        "ag_frame",
        "ag_code",
        "ag_await",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "f_trace",
        "tb_frame",
        "tb_next",
        "co_code",
        "func_globals",
    }
)

SAFE_DUNDERS = frozenset(
    [
        "__init__",
        "__name__",
        "__qualname__",
        "__doc__",
        "__str__",
        "__repr__",
        "__len__",
        "__iter__",
        "__next__",
        "__eq__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__hash__",
        "__enter__",
        "__exit__",
        "__contains__",
        "__getitem__",
        "__setitem__",
        "__post_init__",
    ]
)
"""Dunder attributes ordinary class code uses (``super().__init__``, ``type(x).__name__``)."""

SAFE_BUILTINS = [
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "classmethod",
    "complex",
    "dict",
    "dir",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "format",
    "frozenset",
    "hash",
    "hex",
    "id",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "ord",
    "pow",
    "print",
    "property",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "staticmethod",
    "str",
    "sum",
    "super",
    "tuple",
    "type",
    "zip",
    "hasattr",
    "aiter",
    "anext",
    "True",
    "False",
    "None",
    "Ellipsis",
    "NotImplemented",
]


class GuardError(Exception):
    """Raised by :func:`check` for code the guard refuses, with the offending line."""

    def __init__(self, message: str, lineno: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno

    def __str__(self) -> str:
        return f"line {self.lineno}: {self.message}" if self.lineno else self.message


class SandboxViolation(PermissionError):
    """Raised at the call site by the audit hook, before the kernel would refuse the call."""


def module_unavailable(name: str) -> str:
    return (
        f"module '{name}' is not available in the sandbox; "
        f"available modules: {', '.join(ALLOWED_MODULES)}"
    )


def _module_allowed(name: str) -> bool:
    return name.split(".", 1)[0] in ALLOWED_MODULES


def _check_name(name: str, node: ast.AST) -> None:
    line = getattr(node, "lineno", None)
    if name in FORBIDDEN_NAMES:
        raise GuardError(f"{name} is not permitted in the sandbox", line)
    if name.startswith("_") and name != "_":
        raise GuardError(f"names starting with '_' are not allowed in the sandbox: {name}", line)


def check(tree: ast.AST) -> None:
    """Refuse imports outside the allowlist, forbidden builtins, ``_``-prefixed names and
    attributes, and frame/code/traceback introspection. Raises :class:`GuardError`."""
    for node in ast.walk(tree):
        line = getattr(node, "lineno", None)
        if isinstance(node, ast.Name):
            _check_name(node.id, node)
        elif isinstance(node, ast.Attribute):
            attr = node.attr
            if attr.startswith("_") and attr not in SAFE_DUNDERS:
                raise GuardError(
                    f"attributes starting with '_' are not allowed in the sandbox: .{attr}",
                    line,
                )
            if attr in FRAME_ATTRIBUTES:
                raise GuardError(
                    f"frame, code and traceback introspection is not allowed in the sandbox:"
                    f" .{attr}",
                    line,
                )
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if not _module_allowed(alias.name):
                    raise GuardError(module_unavailable(alias.name), line)
                if alias.asname:
                    _check_name(alias.asname, node)
        elif isinstance(node, ast.ImportFrom):
            if node.level or not node.module:
                raise GuardError("relative imports are not available in the sandbox", line)
            if not _module_allowed(node.module):
                raise GuardError(module_unavailable(node.module), line)
            for alias in node.names:
                if alias.name == "*":
                    raise GuardError("'from ... import *' is not allowed in the sandbox", line)
                _check_name(alias.name, node)
                if alias.asname:
                    _check_name(alias.asname, node)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            for name in node.names:
                _check_name(name, node)


def restricted_import(
    hidden: frozenset[str],
) -> Callable[..., Any]:
    """An ``__import__`` for the sandbox's builtins.

    Sandboxed code can only name allowlisted modules (the AST check sees to that); C code in an
    allowed module calls ``__import__`` through the *caller's* builtins for its lazy helpers
    (``_strptime``), so those preloaded helpers pass too."""
    real_import = builtins.__import__
    modules = sys.modules

    def sandbox_import(
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        if level == 0 and (_module_allowed(name) or name in hidden) and name in modules:
            return real_import(name, globals, locals, fromlist, level)
        if level == 0 and _module_allowed(name):
            raise ModuleNotFoundError(
                f"module '{name}' is not preloaded in the sandbox and cannot be imported there",
                name=name,
            )
        raise ModuleNotFoundError(module_unavailable(name), name=name)

    return sandbox_import


def safe_builtins(print_fn: Callable[..., None], hidden: frozenset[str]) -> dict[str, Any]:
    table: dict[str, Any] = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    for name, value in vars(builtins).items():
        if isinstance(value, type) and issubclass(value, BaseException):
            table[name] = value
    table["print"] = print_fn
    table["__build_class__"] = builtins.__build_class__
    table["__import__"] = restricted_import(hidden)
    table["__name__"] = "builtins"
    return table


_BLOCKED_EVENTS = (
    "open",
    "os.",
    "subprocess.",
    "socket.",
    "ctypes.",
    "_thread.start_new_thread",
    "mmap.",
    "fcntl.",
    "resource.",
    "shutil.",
    "pty.",
    "sqlite3.",
    "syslog.",
    "urllib.",
    "webbrowser.",
    "glob.",
    "tempfile.",
    "signal.",
    "sys.addaudithook",
    "sys.settrace",
    "sys.setprofile",
    "sys._current_frames",
    "cpython.run_",
    "cpython.remote_debugger",
)


def install_audit_hook() -> None:
    """Turn the first step of an escape into "X is not permitted in the sandbox", at its line."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event.startswith(_BLOCKED_EVENTS) and event != "os.exit":
            raise SandboxViolation(f"{event} is not permitted in the sandbox")

    sys.addaudithook(hook)
